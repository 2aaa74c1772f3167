"""Whole-case prediction: output grid, NIfTI geometry and convention, overlays, 2D/3D, TTA."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from braintumor.brats.inference import predict_case, predict_probabilities
from braintumor.brats.preprocess import BratsPreprocess, load_case
from braintumor.errors import ModelFormatError
from braintumor.models.folder import LoadedModel, ModelInfo
from brats_support import synthetic_cases


class ThresholdNet(torch.nn.Module):
    """Region logits from FLAIR (channel 0) and T1ce (channel 1) by fixed 1x1 weights."""

    def __init__(self, ndim: int) -> None:
        super().__init__()
        conv = torch.nn.Conv3d if ndim == 3 else torch.nn.Conv2d
        self.conv = conv(2, 3, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 10.0  # WT: bright FLAIR
            self.conv.weight[1, 1] = 10.0  # TC and ET: bright T1ce
            self.conv.weight[2, 1] = 10.0
            self.conv.bias.copy_(torch.tensor([-25.0, -30.0, -30.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def loaded_model(mode: str, tmp_path: Path) -> LoadedModel:
    pre = {
        "kind": "brats",
        **BratsPreprocess(modalities=["flair", "t1ce"]).to_dict(),
        "convention": "brats2023",
        "mode": mode,
        "label_mode": "regions",
    }
    pre |= {"image_size": 48} if mode == "2d" else {"patch_size": [32, 32, 32], "sw_overlap": 0.5}
    info = ModelInfo(
        task=f"brats{mode}",
        architecture="threshold",
        num_outputs=3,
        in_channels=2,
        class_names=["WT", "TC", "ET"],
        image_size=48,
        preprocessing=pre,
    )
    return LoadedModel(ThresholdNet(3 if mode == "3d" else 2).eval(), info, tmp_path)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return synthetic_cases(tmp_path_factory.mktemp("brats"), 1, naming="2023")


@pytest.mark.parametrize("mode", ["2d", "3d"])
def test_prediction_is_written_on_the_input_grid(mode, cases, tmp_path):
    sample = cases[0]
    record = predict_case(loaded_model(mode, tmp_path), sample, tmp_path / "out")
    seg = nib.load(record["segmentation"])
    flair = nib.load(sample.modalities["flair"])
    assert seg.shape == flair.shape
    np.testing.assert_allclose(seg.affine, flair.affine)
    assert seg.header.get_xyzt_units() == flair.header.get_xyzt_units()
    labels = np.asarray(seg.dataobj)
    # Input convention 2023: enhancing tumour is 3, never 4.
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3} and (labels == 3).any()
    truth = np.asarray(nib.load(sample.mask).dataobj) > 0
    dice = 2 * ((labels > 0) & truth).sum() / ((labels > 0).sum() + truth.sum())
    assert dice > 0.5  # the thresholds find the bright oedema/core, on the right voxels
    saved = json.loads((tmp_path / "out" / f"{sample.id}_seg.json").read_text())
    assert saved["volumes_ml"]["WT"] == pytest.approx((labels > 0).sum() / 1000.0)
    assert saved["volumes_ml"]["WT"] >= saved["volumes_ml"]["TC"] >= saved["volumes_ml"]["ET"]
    assert 1 <= len(saved["overlays"]) <= 3 and all(Path(p).is_file() for p in saved["overlays"])


def test_asked_convention_and_tta(cases, tmp_path):
    loaded = loaded_model("3d", tmp_path)
    record = predict_case(
        loaded, cases[0], tmp_path, tta=True, convention="brats2017", overlays=False
    )
    labels = np.asarray(nib.load(record["segmentation"]).dataobj)
    assert (labels == 4).any() and not (labels == 3).any()
    assert record["tta"] is True and record["overlays"] == []
    # Colour tables beside the NIfTI name every label value it holds, in its convention.
    ctbl, snap = (Path(p) for p in record["colour_tables"])
    assert ctbl.name == f"{cases[0].id}_seg.ctbl" and snap.name == f"{cases[0].id}_seg.itksnap.txt"
    rows = [line.split() for line in ctbl.read_text().splitlines() if not line.startswith("#")]
    assert {int(r[0]) for r in rows} == {0, 1, 2, 4} >= set(np.unique(labels).tolist())
    assert all(len(r) == 6 and min(map(int, r[2:])) >= 0 for r in rows)
    assert [r[1] for r in rows if r[0] == "4"] == ["enhancing_tumour"]
    described = [line for line in snap.read_text().splitlines() if not line.startswith("#")]
    assert [int(line.split()[0]) for line in described] == [0, 1, 2, 4]
    assert described[3].split()[1:4] == ["255", "40", "40"] and '"enhancing tumour"' in described[3]


def test_sliding_window_output_matches_the_working_grid(cases, tmp_path):
    case = load_case(cases[0], BratsPreprocess(modalities=["flair", "t1ce"]), with_labels=False)
    probs = predict_probabilities(loaded_model("3d", tmp_path), case, overlap=0.25)
    assert probs.shape == (3, *case.image.shape[1:])
    assert probs.min() >= 0.0 and probs.max() <= 1.0


def test_a_classifier_folder_is_refused(cases, tmp_path):
    loaded = loaded_model("2d", tmp_path)
    loaded.info.preprocessing = {"image_size": 224}
    with pytest.raises(ModelFormatError, match="not a BraTS model"):
        predict_case(loaded, cases[0], tmp_path)
