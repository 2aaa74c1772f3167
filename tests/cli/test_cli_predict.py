"""``braintumor predict``: files written, unreadable inputs listed, exit codes."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from braintumor.cli.predict import predict_command
from braintumor.inference.predictor import Predictor
from braintumor.io import read_image
from braintumor.models import build_model
from braintumor.models.folder import ModelInfo, load_model_dir, save_model_dir
from dicom_support import write_series
from model_support import save_untrained

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]

app = typer.Typer()
app.command()(predict_command)
runner = CliRunner()


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    args = {"widths": [8, 8, 8, 8]}
    folder = tmp_path_factory.mktemp("cls") / "classify-model"
    return save_untrained(folder, "classify", "small-resnet", CLASSES, args)


@pytest.fixture(scope="module")
def segmenter_dir(tmp_path_factory) -> Path:
    args = {"channels": [4, 8], "num_res_units": 0}
    folder = tmp_path_factory.mktemp("seg") / "segment-model"
    return save_untrained(folder, "segment", "unet", ["background", "tumor"], args)


def _write_png(path: Path, height: int, width: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 120, size=(height, width), dtype=np.uint8)
    array[height // 3 : height // 2, width // 4 : width // 2] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_classify_writes_csv_and_json_with_probabilities(tmp_path, classifier_dir):
    for i in range(3):
        _write_png(tmp_path / "in" / f"scan{i}.png", 40, 50 + i, i)
    out = tmp_path / "out"
    result = runner.invoke(app, [str(classifier_dir), str(tmp_path / "in"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out / "predictions.csv")
    assert [r["id"] for r in rows] == ["scan0", "scan1", "scan2"]
    for row in rows:
        probs = [float(row[f"prob_{name}"]) for name in CLASSES]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted"] == CLASSES[int(np.argmax(probs))]
        assert float(row["confidence"]) == pytest.approx(max(probs))
    payload = json.loads((out / "predictions.json").read_text())
    assert payload["class_names"] == CLASSES and payload["errors"] == []
    assert len(payload["predictions"]) == 3


def test_tta_changes_nothing_in_the_format(tmp_path, classifier_dir):
    _write_png(tmp_path / "a.png", 40, 60, 0)
    out = tmp_path / "out"
    args = [str(classifier_dir), str(tmp_path / "a.png"), "--out", str(out), "--tta"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "predictions.json").read_text())
    assert payload["tta"] is True
    assert sum(payload["predictions"][0]["probabilities"].values()) == pytest.approx(1.0)


def test_unreadable_input_is_listed_and_the_rest_predicted(tmp_path, classifier_dir):
    good = _write_png(tmp_path / "in" / "good.png", 40, 40, 1)
    bad = tmp_path / "in" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    out = tmp_path / "out"
    result = runner.invoke(app, [str(classifier_dir), str(good), str(bad), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.stderr
    rows = {r["id"]: r for r in _rows(out / "predictions.csv")}
    assert rows["good"]["status"] == "ok"
    assert rows["broken"]["status"] == "error" and "broken.png" in rows["broken"]["error"]
    errors = json.loads((out / "predictions.json").read_text())["errors"]
    assert [e["id"] for e in errors] == ["broken"]


def test_all_inputs_unreadable_exits_1(tmp_path, classifier_dir):
    bad = tmp_path / "empty.png"
    bad.write_bytes(b"")
    result = runner.invoke(app, [str(classifier_dir), str(bad), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "empty" in result.stderr


def test_missing_model_is_a_one_line_error(tmp_path):
    _write_png(tmp_path / "a.png", 20, 20, 0)
    args = [str(tmp_path / "nope"), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "not a model folder" in result.stderr


def test_segment_writes_mask_overlay_and_localization(tmp_path, segmenter_dir):
    _write_png(tmp_path / "in" / "slice.png", 45, 70, 3)
    out = tmp_path / "out"
    args = [str(segmenter_dir), str(tmp_path / "in"), "--out", str(out), "--threshold", "0.4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out / "slice_mask.png"))
    overlay = Image.open(out / "slice_overlay.png")
    assert mask.shape == (45, 70) and set(np.unique(mask)) <= {0, 255}
    assert overlay.mode == "RGB" and overlay.size == (70, 45)
    loc = json.loads((out / "slice_localization.json").read_text())
    assert loc["total_area_px"] == int((mask > 0).sum())
    assert loc["total_area_mm2"] is None  # a PNG has no pixel spacing
    assert sum(c["area_px"] for c in loc["components"]) == loc["total_area_px"]
    summary = _rows(out / "summary.csv")
    assert summary[0]["id"] == "slice" and int(summary[0]["area_px"]) == loc["total_area_px"]
    # The terminal says the same: tumour found or not, and its area.
    line = next(x for x in result.stdout.splitlines() if "slice.png" in x)
    found = summary[0]["tumor"] == "True"
    assert ("yes" if found else "no") in line
    assert (f"{loc['total_area_px']} px" in line) == found
    assert f"answers: {'tumour' if found else 'no tumour'} 1" in result.stdout


def test_no_overlays_writes_the_same_masks_and_no_pictures(tmp_path, segmenter_dir):
    # A 512 px JPEG is decoded reduced for the network; without overlays it is never decoded
    # whole, and its mask must still come out at the file's size, the same as with them.
    array = np.asarray(Image.open(_write_png(tmp_path / "grey.png", 512, 384, 5)).convert("RGB"))
    (tmp_path / "in").mkdir()
    Image.fromarray(array).save(tmp_path / "in" / "scan.jpg", quality=95)
    (tmp_path / "grey.png").unlink()
    base = [str(segmenter_dir), str(tmp_path / "in"), "--threshold", "0.45"]
    for out, flag in (("with", "--overlays"), ("without", "--no-overlays")):
        result = runner.invoke(app, [*base, "--out", str(tmp_path / out), flag])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "with" / "scan_overlay.png").is_file()
    assert not list((tmp_path / "without").glob("*overlay*"))
    masks = [np.asarray(Image.open(tmp_path / o / "scan_mask.png")) for o in ("with", "without")]
    assert masks[0].shape == (512, 384)
    assert np.array_equal(masks[0], masks[1])
    row = _rows(tmp_path / "without" / "summary.csv")[0]
    assert row["overlay"] == "" and row["mask"] == "scan_mask.png"


def test_segment_nifti_volume_slice_with_spacing(tmp_path, segmenter_dir):
    volume = np.random.default_rng(0).random((30, 40, 7)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([0.5, 0.8, 2.0, 1.0])), tmp_path / "vol.nii.gz")
    out = tmp_path / "out"
    args = [str(segmenter_dir), str(tmp_path / "vol.nii.gz"), "--out", str(out)]
    result = runner.invoke(app, [*args, "--slice", "2", "--threshold", "0.0"])
    assert result.exit_code == 0, result.output
    mask = np.asarray(Image.open(out / "vol_z2_mask.png"))
    assert mask.shape == (40, 30)  # (Y, X) after rotation to display orientation
    loc = json.loads((out / "vol_z2_localization.json").read_text())
    assert loc["slice"] == 2
    # threshold 0 marks every pixel: area is the whole slice, 0.5 x 0.8 mm per pixel
    assert loc["total_area_px"] == 30 * 40
    assert loc["total_area_mm2"] == pytest.approx(30 * 40 * 0.4)


def test_min_area_drops_small_components(tmp_path, segmenter_dir):
    _write_png(tmp_path / "s.png", 32, 32, 4)
    out = tmp_path / "out"
    args = [str(segmenter_dir), str(tmp_path / "s.png"), "--out", str(out)]
    result = runner.invoke(app, [*args, "--threshold", "0.0", "--min-area", "2000"])
    assert result.exit_code == 0, result.output
    assert not np.asarray(Image.open(out / "s_mask.png")).any()  # 1024 px < 2000


def test_model_folder_keep_largest_applies_unless_all_components_asked(tmp_path, segmenter_dir):
    model = tmp_path / "model"
    shutil.copytree(segmenter_dir, model)
    info = json.loads((model / "model.json").read_text())
    info["inference"] = {"tta": False, "keep_largest": True}
    (model / "model.json").write_text(json.dumps(info))
    image = _write_png(tmp_path / "s.png", 64, 64, 5)
    # The untrained network's map is noise: at its median it falls into many components.
    prob = Predictor(load_model_dir(model)).segment([read_image(image)])[0]
    threshold = str(float(np.median(prob)))
    base = [str(model), str(image), "--threshold", threshold]
    every = runner.invoke(app, [*base, "--out", str(tmp_path / "all"), "--all-components"])
    largest = runner.invoke(app, [*base, "--out", str(tmp_path / "largest")])
    assert every.exit_code == 0 and largest.exit_code == 0, every.output + largest.output
    all_summary = json.loads((tmp_path / "all" / "summary.json").read_text())
    largest_summary = json.loads((tmp_path / "largest" / "summary.json").read_text())
    assert all_summary["keep_largest"] is False and largest_summary["keep_largest"] is True
    assert all_summary["images"][0]["n_components"] > 1
    assert largest_summary["images"][0]["n_components"] == 1


@pytest.mark.realdata
def test_real_files_with_spaces_and_mixed_formats(tmp_path, shared_data, classifier_dir):
    source = shared_data / "navoneel-binary" / "no"
    picked = sorted(source.iterdir())[:4]
    for path in picked:
        shutil.copy(path, tmp_path / path.name)
    out = tmp_path / "out"
    result = runner.invoke(app, [str(classifier_dir), str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out / "predictions.csv")
    assert sorted(r["path"] for r in rows) == sorted(str(tmp_path / p.name) for p in picked)
    assert all(r["status"] == "ok" for r in rows)


def test_brats_model_predicts_case_folders(tmp_path):
    from braintumor.brats.labels import REGION_NAMES
    from braintumor.brats.preprocess import BratsPreprocess
    from braintumor.data.synthetic import write_brats_dataset

    cases = write_brats_dataset(tmp_path / "brats", n_cases=2, shape=(32, 32, 16))
    torch.manual_seed(0)
    args = {"channels": [4, 8], "num_res_units": 0}
    net = build_model("unet", num_classes=3, in_channels=4, **args)
    pre = BratsPreprocess().to_dict() | {
        "kind": "brats",
        "mode": "2d",
        "label_mode": "regions",
        "image_size": 32,
    }
    info = ModelInfo(
        task="brats2d",
        architecture="unet",
        num_outputs=3,
        in_channels=4,
        class_names=REGION_NAMES,
        image_size=32,
        model_args=args,
        preprocessing=pre,
    )
    model_dir = save_model_dir(net, info, tmp_path / "brats-model")
    (tmp_path / "not-a-case").mkdir()
    out = tmp_path / "out"
    args_cli = [str(model_dir), str(cases), str(tmp_path / "not-a-case"), "--out", str(out)]
    result = runner.invoke(app, args_cli)
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in _rows(out / "summary.csv")}
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 2
    for row in ok:
        seg = nib.load(row["segmentation"])
        assert seg.shape == (32, 32, 16)
        assert float(row["volume_WT_ml"]) == pytest.approx(
            float((np.asarray(seg.dataobj) > 0).sum()) / 1000.0
        )
    assert rows["not-a-case"]["status"] == "error"


def test_dicom_series_folder_is_one_input_with_mm_areas(tmp_path, segmenter_dir):
    write_series(tmp_path / "scans" / "series", 3)  # no suffix: DICM bytes
    out = tmp_path / "out"
    args = [str(segmenter_dir), str(tmp_path / "scans"), "--out", str(out), "--threshold", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = _rows(out / "summary.csv")
    assert [r["id"] for r in summary] == ["series_z1"]
    assert np.asarray(Image.open(out / "series_z1_mask.png")).shape == (20, 24)
    assert float(summary[0]["area_mm2"]) == pytest.approx(20 * 24 * 0.5 * 0.8)


def test_bad_slice_and_backend_are_user_errors(tmp_path, classifier_dir):
    image = _write_png(tmp_path / "a.png", 20, 20, 0)
    base = [str(classifier_dir), str(image), "--out", str(tmp_path / "o")]
    bad_slice = runner.invoke(app, [*base, "--slice", "middle"])
    assert bad_slice.exit_code == 2 and "--slice" in bad_slice.stderr
    bad_backend = runner.invoke(app, [*base, "--backend", "tensorrt"])
    assert bad_backend.exit_code == 2 and "--backend" in bad_backend.stderr
    bad_precision = runner.invoke(app, [*base, "--precision", "fp8"])
    assert bad_precision.exit_code == 2 and "precision" in bad_precision.stderr


def test_onnx_backend_matches_torch(tmp_path, classifier_dir):
    pytest.importorskip("onnxruntime")
    from braintumor.export import export_onnx
    from braintumor.models.folder import load_model_dir

    model_dir = tmp_path / "model"
    shutil.copytree(classifier_dir, model_dir)
    export_onnx(load_model_dir(model_dir))
    for i in range(3):
        _write_png(tmp_path / "in" / f"s{i}.png", 36, 44, i)
    probs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        args = [str(model_dir), str(tmp_path / "in"), "--out", str(out), "--tta"]
        args += ["--precision", "fp32"]  # the exported graph is fp32
        result = runner.invoke(app, [*args, "--backend", backend, "--device", "cpu"])
        assert result.exit_code == 0, result.output
        rows = _rows(out / "predictions.csv")
        probs[backend] = np.array([[float(r[f"prob_{c}"]) for c in CLASSES] for r in rows])
    assert probs["onnx"].shape == (3, 4)
    np.testing.assert_allclose(probs["onnx"], probs["torch"], atol=1e-4)


def test_terminal_shows_the_first_answers_and_counts_them_all(tmp_path, classifier_dir):
    from braintumor.cli.predict_summary import MAX_ROWS

    for i in range(MAX_ROWS + 2):
        _write_png(tmp_path / "in" / f"scan{i:02d}.png", 40, 50, i)
    out = tmp_path / "out"
    result = runner.invoke(app, [str(classifier_dir), str(tmp_path / "in"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out / "predictions.csv")
    shown = [r for r in rows if f"scan{int(r['id'][4:]):02d}.png" in result.stdout]
    assert len(shown) == MAX_ROWS  # the first ten, by name; the last two only counted
    first = rows[0]
    line = next(x for x in result.stdout.splitlines() if "scan00.png" in x)
    assert first["predicted"] in line and f"{float(first['confidence']):.2f}" in line
    counts = {name: sum(r["predicted"] == name for r in rows) for name in CLASSES}
    summary = next(x for x in result.stdout.splitlines() if x.startswith("answers:"))
    for name, n in counts.items():
        assert (f"{name} {n}" in summary) == (n > 0), summary
    assert "2 not shown above" in summary
