"""The 3D component rule across a patient's slice stack: the rule itself, its choice on
validation, and evaluate and predict applying it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braintumor.data.samples import Sample
from braintumor.evaluation.segmentation import evaluate_segmenter
from braintumor.inference.choice import choose_inference
from braintumor.inference.predictor import InferenceSettings, Predictor
from braintumor.inference.stack_filter import filter_stacks, keep_stack_components, stacks_of
from braintumor.io import write_png
from braintumor.models.folder import LoadedModel
from braintumor.recipe_options import InferenceOptions
from braintumor.tasks.predict import predict_images
from braintumor.tasks.registry import PredictOptions, model_task
from model_support import bright_segmenter

SIDE = 64
#: slices 2-4 hold the tumour; slice 6 a bright spot that is not one
TUMOUR_SLICES = (2, 3, 4)
SPOT_SLICE = 6


def _loaded(inference: dict | None = None) -> LoadedModel:
    return bright_segmenter(inference, image_size=SIDE)


def _patient(root: Path, name: str = "TCGA_XX_0001_20000101", n: int = 7) -> list[Sample]:
    """A patient folder in the LGG naming: a tumour over three adjacent slices, a bright spot
    on a slice of its own, and a single bright pixel on every other slice."""
    folder = root / name
    folder.mkdir(parents=True)
    samples = []
    for number in range(1, n + 1):
        image = np.full((SIDE, SIDE), 20, dtype=np.uint8)
        mask = np.zeros((SIDE, SIDE), dtype=np.uint8)
        if number in TUMOUR_SLICES:
            image[20:40, 20:40] = 230
            mask[20:40, 20:40] = 255
        elif number == SPOT_SLICE:
            image[50:56, 50:56] = 230
        else:
            image[5, 5] = 230
        write_png(image, folder / f"{name}_{number}.png")
        write_png(mask, folder / f"{name}_{number}_mask.png")
        samples.append(
            Sample(
                id=f"{name}/{name}_{number}.png",
                image=str(folder / f"{name}_{number}.png"),
                mask=str(folder / f"{name}_{number}_mask.png"),
                group=name,
            )
        )
    return samples


def test_small_3d_components_are_dropped_and_large_ones_kept() -> None:
    masks = [np.zeros((10, 10), dtype=bool) for _ in range(5)]
    for k in (0, 1, 2):
        masks[k][2:6, 2:6] = True  # a tumour of 48 voxels over three slices
    masks[1][8, 8] = True  # one voxel beside it on a tumour slice
    masks[3][6, 6] = True  # touches the tumour's corner diagonally across slices: kept
    masks[4][0:4, 6:9] = True  # 12 voxels apart from the tumour's 49 ...
    masks[4][4, 9] = True  # ... 13: over a quarter of 49, kept
    kept = keep_stack_components(masks)
    assert kept[0].sum() == 16 and kept[2].sum() == 16
    assert not kept[1][8, 8] and kept[1].sum() == 16
    assert kept[3][6, 6]
    assert kept[4].sum() == 13
    masks[4][4, 9] = masks[4][0, 6] = False  # 11 voxels: under a quarter, dropped
    assert keep_stack_components(masks)[4].sum() == 0


def test_stacks_that_cannot_be_stacked_are_left_alone() -> None:
    empty = [np.zeros((4, 4), dtype=bool)] * 3
    assert all(not m.any() for m in keep_stack_components(empty))
    uneven = [np.ones((4, 4), dtype=bool), np.ones((5, 5), dtype=bool)]
    assert [m.sum() for m in keep_stack_components(uneven)] == [16, 25]
    assert keep_stack_components([]) == []


def test_stacks_are_grouped_by_folder_in_numeric_slice_order() -> None:
    paths = [
        "p/P/P_10.tif",
        "p/P/P_9.tif",
        "p/Q/Q_1.tif",
        "p/Q/Q_2.tif",
        "p/R/R_1.tif",  # a stack of one slice
        "p/other.png",
        "p/P/Q_3.tif",  # named after another folder: not P's slice
        "p/P/P_2.tif",
    ]
    assert sorted(stacks_of(paths)) == [[2, 3], [7, 1, 0]]
    masks = [np.zeros((3, 3), dtype=bool) for _ in paths]
    masks[7][:] = True  # P_2, the first of P's stack: 9 voxels
    masks[1][0, 0] = True  # P_9, next in the stack: one voxel touching P_2's, kept
    masks[0][2, 2] = True  # P_10: one voxel that touches nothing: dropped
    masks[5][0, 0] = masks[6][0, 0] = True  # not in a stack: left as they are
    out = filter_stacks(masks, paths)
    assert [int(out[i].sum()) for i in (7, 1, 0, 5, 6)] == [9, 1, 0, 1, 1]


def test_validation_chooses_the_stack_rule_when_it_removes_false_tumours(tmp_path) -> None:
    samples = _patient(tmp_path)
    chosen = choose_inference(_loaded(), samples, InferenceOptions())
    assert chosen["stack_components"] is True
    scores = chosen["val_dice"]
    assert scores["stack_components"] > scores["plain"]
    assert scores["stack_components"] == 1.0
    # keep_largest cannot remove a slice's only blob; with the stack rule it ties, so stays off
    assert chosen["keep_largest"] is False


def test_without_stacks_the_rule_is_no_candidate(tmp_path) -> None:
    samples = _patient(tmp_path)
    flat = [Sample(id=s.id, image=s.image, mask=s.mask) for s in samples]
    for sample in flat:  # the same slices under names that are no stack
        moved = Path(sample.image).with_name("slice" + Path(sample.image).name)
        Path(sample.image).rename(moved)
        sample.image = str(moved)
    chosen = choose_inference(_loaded(), flat, InferenceOptions())
    assert chosen["stack_components"] is False
    assert not any("stack_components" in name for name in chosen["val_dice"])
    fixed = choose_inference(_loaded(), samples, InferenceOptions(stack_components=False))
    assert fixed["stack_components"] is False


def test_evaluate_applies_the_models_stack_rule(tmp_path) -> None:
    samples = _patient(tmp_path / "data")
    metrics = {}
    for on in (False, True):
        loaded = _loaded({"stack_components": on})
        assert InferenceSettings.of(loaded.info).stack_components is on
        metrics[on] = evaluate_segmenter(loaded, samples, tmp_path / f"eval-{on}")
    assert metrics[True]["stack_components"] is True
    assert metrics[True]["patient_volume_dice"] == 1.0
    # without it: 36 + 3 false voxels beside the 1200 of the tumour
    assert metrics[False]["patient_volume_dice"] == pytest.approx(2400 / 2439)
    assert metrics[True]["dice"] > metrics[False]["dice"]
    assert metrics[True]["detection_specificity"] == 1.0
    assert metrics[False]["detection_specificity"] == 0.0


def test_predict_on_a_patient_folder_applies_the_stack_rule(tmp_path) -> None:
    samples = _patient(tmp_path / "data")
    paths = [Path(s.image) for s in samples]
    task = model_task("segment", "test-model")
    areas = {}
    for on in (False, True):
        predictor = Predictor(_loaded({"stack_components": on}), ood=False)
        out = tmp_path / f"pred-{on}"
        out.mkdir()
        options = PredictOptions(batch_size=2, overlays=False)
        records, failures = predict_images(task, predictor, paths, out, options)
        assert not failures
        areas[on] = {Path(r["path"]).stem: r["area_px"] for r in records}
        spot = next(r for r in records if r["path"].endswith(f"_{SPOT_SLICE}.png"))
        written = np.asarray(Image.open(out / spot["mask"]))
        assert bool(written.any()) is not on  # the mask file says what the record says
        located = json.loads((out / spot["localization"]).read_text())
        assert (located["total_area_px"] == 0) is on
    name = paths[0].parent.name
    assert areas[True][f"{name}_{SPOT_SLICE}"] == 0 and areas[False][f"{name}_{SPOT_SLICE}"] == 36
    assert all(areas[True][f"{name}_{k}"] == 400 for k in TUMOUR_SLICES)
