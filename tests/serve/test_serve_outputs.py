"""The web API's names (run folder, ``train --name``, ``NAME=PATH``), readable model cards,
area units and the mask download in the input's format (PNG, NIfTI, DICOM SEG)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="needs the serve extra (fastapi, uvicorn)")

from fastapi.testclient import TestClient

from braintumor.errors import DataError
from braintumor.models.folder import read_model_info
from braintumor.serve.app import create_app
from braintumor.serve.naming import parse_model_arg
from brats_support import brats_model_and_zip
from dicom_support import COLS, PIXEL_SPACING, ROWS, dicom_slice_bytes, series_zip, write_series
from serve_support import make_model_dir, png_bytes


def _rewrite_info(folder: Path, **changes) -> None:
    info = dataclasses.replace(read_model_info(folder), **changes)
    (folder / "model.json").write_text(info.to_json())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two run folders as train leaves them (``<run>/model`` + ``<run>/metrics.json``)."""
    root = tmp_path_factory.mktemp("runs")
    cls = make_model_dir(root / "sartaj-resnet18" / "model")
    _rewrite_info(
        cls,
        data_fingerprint={
            "root": "/home/someone/data/sartaj-4class",  # as older model.json files have it
            "layout": "class_folders",
            "n_samples": 120,
            "labels": {"glioma": 30, "meningioma": 30, "no_tumor": 30, "pituitary": 30},
            "ids_sha256": "ab" * 32,
        },
        metrics={"best_val_loss": 0.4, "test_accuracy": 0.875},
        created="2026-12-01T10:00:00+00:00",
    )
    test = {"accuracy": 0.875, "ci95": {"accuracy": [0.8, 0.93]}}
    (root / "sartaj-resnet18" / "metrics.json").write_text(json.dumps({"test": test}))
    (root / "sartaj-resnet18" / "recipe.yaml").write_text("name: test\n")  # marks a run folder
    seg = make_model_dir(root / "figshare-unet" / "model", "segment")
    _rewrite_info(seg, name="tumour-outliner")
    return root


@pytest.fixture(scope="module")
def client(runs: Path) -> TestClient:
    models = [runs / "sartaj-resnet18" / "model", runs / "figshare-unet" / "model"]
    return TestClient(create_app(models, max_upload_mb=2))


def _post(client: TestClient, name: str, data: bytes, model: str = "tumour-outliner"):
    reply = client.post("/api/predict", files={"file": (name, data)}, data={"model": model})
    assert reply.status_code == 200, reply.text
    return reply.json()


def _download(body: dict) -> bytes:
    return base64.b64decode(body["mask_download"]["base64"])


def test_models_are_named_by_run_or_training_name(client: TestClient) -> None:
    names = [card["name"] for card in client.get("/api/models").json()]
    assert names == ["sartaj-resnet18", "tumour-outliner"]


def test_name_equals_path_and_duplicates(runs: Path) -> None:
    run = runs / "sartaj-resnet18" / "model"
    app = create_app([f"mine={run}", run, run])
    assert list(app.state.models) == ["mine", "sartaj-resnet18", "sartaj-resnet18-2"]
    assert parse_model_arg("runs/a=b/model") == (None, "runs/a=b/model")
    with pytest.raises(DataError, match="NAME=PATH"):
        parse_model_arg("bad name=runs/x")
    with pytest.raises(DataError, match="given twice"):
        create_app([f"a={run}", f"a={run}"])


def test_card_is_readable_without_paths_or_hashes(client: TestClient) -> None:
    card = client.get("/api/models").json()[0]
    text = json.dumps(card)
    assert "/home/someone" not in text and "ab" * 32 not in text
    assert card["training_data"] == [
        {
            "name": "sartaj-4class",
            "samples": 120,
            "labels": {"glioma": 30, "meningioma": 30, "no_tumor": 30, "pituitary": 30},
        }
    ]
    assert {"name": "test accuracy", "value": 0.875, "interval": [0.8, 0.93]} in card["metrics"]
    assert {"name": "best validation loss", "value": 0.4, "interval": None} in card["metrics"]
    assert card["recipe"] == "test" and card["created"] == "2026-12-01"
    assert card["task_text"] == "classification of a slice"
    assert "not for diagnosis" in card["intended_use"]


def test_png_area_in_pixels_and_png_mask(client: TestClient) -> None:
    body = _post(client, "s.png", png_bytes())
    assert body["area_unit"] == "pixels" and body["area"] == body["area_px"]
    assert body["area_text"] == f"{body['area_px']} pixels"
    assert body["mask_download"]["format"] == "png"
    assert body["mask_download"]["filename"] == "s_mask.png"
    mask = np.asarray(Image.open(io.BytesIO(_download(body))))
    assert mask.shape == (70, 90) and int((mask > 0).sum()) == body["area_px"]
    assert Image.open(io.BytesIO(base64.b64decode(body["image_png"]))).size == (90, 70)


def test_nifti_area_in_mm2_and_nifti_mask(client: TestClient, tmp_path: Path) -> None:
    volume = np.random.default_rng(0).random((30, 36, 5)).astype(np.float32)
    affine = np.diag([0.5, 0.75, 2.0, 1.0])
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "v.nii.gz")
    body = _post(client, "v.nii.gz", (tmp_path / "v.nii.gz").read_bytes())
    assert body["area_unit"] == "mm²"
    assert body["area"] == pytest.approx(body["area_px"] * 0.5 * 0.75)
    assert body["mask_download"]["format"] == "nifti"
    (tmp_path / "mask.nii.gz").write_bytes(_download(body))
    mask = nib.load(tmp_path / "mask.nii.gz")
    assert mask.shape == (30, 36, 5)
    np.testing.assert_allclose(mask.affine, affine)


def test_dicom_series_zip_gives_a_dicom_seg_over_every_slice(
    client: TestClient, tmp_path: Path
) -> None:
    data, uids = series_zip(tmp_path / "series", n=3)
    body = _post(client, "series.zip", data)
    assert body["area_unit"] == "mm²"
    assert body["area"] == pytest.approx(body["area_px"] * PIXEL_SPACING[0] * PIXEL_SPACING[1])
    download = body["mask_download"]
    assert download["format"] == "dicom-seg" and download["filename"] == "series_seg.dcm"
    assert download["media_type"] == "application/dicom" and download["note"] is None
    seg = pydicom.dcmread(io.BytesIO(_download(body)))
    assert seg.Modality == "SEG"
    assert (seg.Rows, seg.Columns, int(seg.NumberOfFrames)) == (ROWS, COLS, 3)
    referenced = [
        item.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    ]
    assert sorted(referenced) == sorted(uids)
    assert int(seg.pixel_array.astype(bool).sum()) == body["volume_voxels"]


def test_one_dicom_file_gives_a_seg_and_a_bare_one_falls_back_to_png(
    client: TestClient, tmp_path: Path
) -> None:
    uids = write_series(tmp_path / "one", n=1)
    body = _post(client, "slice.dcm", (tmp_path / "one" / "IM0000").read_bytes())
    assert body["mask_download"]["format"] == "dicom-seg"
    seg = pydicom.dcmread(io.BytesIO(_download(body)))
    assert int(seg.NumberOfFrames) == 1
    assert (
        seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
        == uids[0]
    )
    bare = _post(client, "bare.dcm", dicom_slice_bytes(0.0, 1))  # no study, no frame of reference
    assert bare["mask_download"]["format"] == "png"
    assert "no DICOM SEG" in bare["mask_download"]["note"]
    assert "/tmp" not in bare["mask_download"]["note"]


def test_brats_case_gives_a_slider_through_the_brain_and_a_nifti(tmp_path: Path) -> None:
    model, case = brats_model_and_zip(tmp_path)
    client = TestClient(create_app([model]))
    assert [c["name"] for c in client.get("/api/models").json()] == ["brats-unet2d"]
    reply = client.post("/api/predict", files={"file": ("case-17.zip", case.read_bytes())})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["id"] == "case-17"  # named after the upload, not the unpacking folder
    assert body["outputs"] == "labels"  # what the page draws by
    download = body["mask_download"]
    assert download["format"] == "nifti" and download["filename"] == "case-17_seg.nii.gz"
    (tmp_path / "seg.nii.gz").write_bytes(base64.b64decode(download["base64"]))
    labels = np.asarray(nib.load(tmp_path / "seg.nii.gz").dataobj)
    indices = [item["index"] for item in body["stack"]]
    assert len(indices) >= 10 and indices == sorted(indices)  # through the brain, in order
    for item in body["stack"]:
        assert item["area_px"] == int((labels[..., item["index"]] > 0).sum())
