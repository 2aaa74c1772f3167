"""Evaluation of 2D models: label mapping, metrics files, report, and the evaluate command."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from braintumor.cli.evaluate import evaluate_command
from braintumor.data.layouts import detect_layout
from braintumor.data.samples import Sample
from braintumor.data.splits import select_samples, write_splits
from braintumor.errors import DataError
from braintumor.evaluation.common import label_indices
from braintumor.metrics.segmentation import segmentation_scores
from braintumor.models.folder import load_model_dir
from braintumor.runfolder import RunFolder
from braintumor.tasks.registry import evaluate_model
from model_support import save_untrained

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]

app = typer.Typer()
app.command()(evaluate_command)
runner = CliRunner()


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    args = {"widths": [8, 8, 8, 8]}
    folder = tmp_path_factory.mktemp("cls") / "classify-model"
    return save_untrained(folder, "classify", "small-resnet", CLASSES, args, seed=1)


@pytest.fixture(scope="module")
def segmenter_dir(tmp_path_factory) -> Path:
    args = {"channels": [4, 8], "num_res_units": 0}
    folder = tmp_path_factory.mktemp("seg") / "segment-model"
    return save_untrained(folder, "segment", "unet", ["background", "tumor"], args, seed=1)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _slice(seed: int, size: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 100, size=(size, size), dtype=np.uint8)
    array[seed % 20 : seed % 20 + 12, 10:25] = 240
    return array


def _class_folders(root: Path, per_class: int = 3, splits: tuple[str, ...] = ()) -> Path:
    seed = 0
    for split in splits or ("",):
        for name in ("glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"):
            for i in range(per_class):
                seed += 1
                _png(root / split / name / f"image({i}).png", _slice(seed))
    return root


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_labels_map_onto_the_model_classes():
    samples = [
        Sample(id=str(i), image="x", label=label)
        for i, label in enumerate(["glioma_tumor", "no_tumor", "pituitary"])
    ]
    indices, renamed = label_indices(samples, CLASSES, Path("m"))
    assert indices.tolist() == [0, 2, 3] and renamed == {}


def test_binary_model_on_a_four_class_set_counts_tumour_types_as_tumor():
    samples = [
        Sample(id=str(i), image="x", label=label)
        for i, label in enumerate(["glioma", "meningioma", "no_tumor", "pituitary"])
    ]
    indices, renamed = label_indices(samples, ["no_tumor", "tumor"], Path("m"))
    assert indices.tolist() == [1, 1, 0, 1]
    assert renamed == {"glioma": "tumor", "meningioma": "tumor", "pituitary": "tumor"}


def test_unknown_and_missing_labels_are_refused():
    samples = [Sample(id="a/1.png", image="x", label="astrocytoma")]
    with pytest.raises(DataError, match=r"astrocytoma \(1 samples, e.g. a/1.png\)"):
        label_indices(samples, CLASSES, Path("m"))
    with pytest.raises(DataError, match="no label"):
        label_indices([Sample(id="b", image="x")], CLASSES, Path("m"))
    # a 4-class model does not silently accept a binary set's "tumor"
    with pytest.raises(DataError, match="tumor"):
        label_indices([Sample(id="c", image="x", label="tumor")], CLASSES, Path("m"))


def test_classification_accuracy_matches_predictions_csv(tmp_path, classifier_dir):
    data = _class_folders(tmp_path / "data")
    broken = data / "glioma_tumor" / "image(9).png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    samples = detect_layout(data).samples
    loaded = load_model_dir(classifier_dir)
    out = tmp_path / "eval"
    metrics = evaluate_model(loaded, samples, out, batch_size=5)
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 12 and metrics["n"] == 12
    by_hand = sum(r["true"] == r["predicted"] for r in rows) / len(rows)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(by_hand)
    assert np.asarray(saved["confusion_matrix"]).sum() == 12
    assert [s["id"] for s in saved["skipped"]] == [s.id for s in samples if "(9)" in s.image]
    assert saved["tta"] is bool(loaded.info.inference.get("tta"))  # the folder's setting
    for row in rows:
        assert sum(float(row[f"prob_{c}"]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
    assert (out / "report.html").is_file() and (out / "confusion_matrix.png").is_file()


def test_binary_model_evaluated_on_four_classes(tmp_path):
    model_dir = save_untrained(
        tmp_path / "classify-model",
        "classify",
        "small-resnet",
        ["no_tumor", "tumor"],
        {"widths": [8] * 4},
    )
    data = _class_folders(tmp_path / "data", per_class=2)
    metrics = evaluate_model(load_model_dir(model_dir), detect_layout(data).samples, tmp_path / "e")
    rows = _rows(tmp_path / "e" / "predictions.csv")
    assert {r["true"] for r in rows if r["label"] != "no_tumor"} == {"tumor"}
    assert metrics["per_class"]["tumor"]["support"] == 6
    assert metrics["label_mapping"]["glioma"] == "tumor"


def test_segmentation_scores_per_image_and_per_patient(tmp_path, segmenter_dir):
    samples = []
    for i in range(4):
        image = _png(tmp_path / "images" / f"{i}.png", _slice(i + 1, size=36))
        mask = np.zeros((36, 36), np.uint8)
        if i != 3:  # one empty truth mask: the empty-mask rule applies
            mask[8:20, 10:25] = 255
        mask_path = _png(tmp_path / "masks" / f"{i}.png", mask)
        samples.append(Sample(id=str(i), image=str(image), mask=str(mask_path), group=f"p{i // 2}"))
    loaded = load_model_dir(segmenter_dir)
    out = tmp_path / "eval"
    metrics = evaluate_model(loaded, samples, out, batch_size=3)
    rows = _rows(out / "predictions.csv")
    dice = [float(r["dice"]) for r in rows]
    assert metrics["summary"]["per_image"]["dice"]["mean"] == pytest.approx(np.mean(dice))
    assert metrics["dice"] == pytest.approx(np.mean(dice))
    assert metrics["summary"]["n_groups"] == 2
    patient0 = np.mean(dice[:2])
    patient1 = np.mean(dice[2:])
    assert metrics["patient_dice"] == pytest.approx((patient0 + patient1) / 2)
    assert metrics["empty_rule"]["both_empty_overlap"] == 1.0
    # the stored score of the empty-truth image follows the rule
    predicted_any = int(rows[3]["predicted_px"]) > 0
    assert float(rows[3]["dice"]) == (0.0 if predicted_any else 1.0)
    # and a direct recomputation of one image agrees with the file
    truth = np.asarray(Image.open(samples[0].mask)) > 0
    assert int(rows[0]["truth_px"]) == int(truth.sum())
    assert segmentation_scores(truth, truth)["dice"] == 1.0
    assert (out / "report.html").is_file()


def test_segmenter_on_two_sources_reports_each(tmp_path, segmenter_dir):
    """A stacked source (patients of several slices) gets volume Dice; single slices do not."""
    samples = []
    for i in range(16):
        image = _png(tmp_path / "images" / f"{i}.png", _slice(i + 1, size=36))
        mask = np.zeros((36, 36), np.uint8)
        mask[8:20, 10:25] = 255 if i % 3 else 0
        mask_path = _png(tmp_path / "masks" / f"{i}.png", mask)
        stacked = i < 10  # two patients of five slices, then six single slices
        samples.append(
            Sample(
                id=str(i),
                image=str(image),
                mask=str(mask_path),
                group=f"p{i // 5}" if stacked else f"s{i}",
                source="stacks" if stacked else "singles",
            )
        )
    out = tmp_path / "eval"
    metrics = evaluate_model(load_model_dir(segmenter_dir), samples, out, batch_size=4)
    rows = {r["id"]: float(r["dice"]) for r in _rows(out / "predictions.csv")}
    by_source = metrics["per_source"]
    assert set(by_source) == {"stacks", "singles"}
    assert by_source["stacks"]["n"] == 10 and by_source["singles"]["n"] == 6
    for name, ids in (("stacks", range(10)), ("singles", range(10, 16))):
        expected = np.mean([rows[str(i)] for i in ids])
        assert by_source[name]["dice"]["mean"] == pytest.approx(expected)
    assert by_source["stacks"]["patient_volume_dice"]["n"] == 2
    assert "patient_volume_dice" not in by_source["singles"]
    assert "By source" in (out / "report.html").read_text()
    one_source = [dataclasses.replace(s, source="stacks") for s in samples]
    alone = evaluate_model(load_model_dir(segmenter_dir), one_source, tmp_path / "e2")
    assert alone["per_source"] is None


def test_segment_samples_without_masks_are_refused(tmp_path, segmenter_dir):
    image = _png(tmp_path / "a.png", _slice(1))
    with pytest.raises(DataError, match="no mask"):
        evaluate_model(load_model_dir(segmenter_dir), [Sample(id="a", image=str(image))], tmp_path)


def test_select_samples_by_split_and_splits_csv(tmp_path):
    samples = [Sample(id=f"s{i}", image="x", label="glioma", split="train") for i in range(4)]
    assert select_samples(samples, None, None) == samples
    with pytest.raises(DataError, match="splits found: train"):
        select_samples(samples, "test", None)
    splits = tmp_path / "splits.csv"
    write_splits(splits, samples, ["train", "test", "val", "test"], ["g0", "g1", "g2", "g3"])
    assert [s.id for s in select_samples(samples, "Testing", splits)] == ["s1", "s3"]
    write_splits(splits, [Sample(id="other", image="x")], ["test"], ["g"])
    with pytest.raises(DataError, match="another folder"):
        select_samples(samples, "test", splits)


def test_evaluate_command_on_the_test_split(tmp_path, classifier_dir):
    data = _class_folders(tmp_path / "data", per_class=2, splits=("Training", "Testing"))
    out = tmp_path / "eval"
    args = [str(classifier_dir), str(data), "--out", str(out), "--split", "test"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "macro F1" in result.stdout
    rows = _rows(out / "predictions.csv")
    assert len(rows) == 8 and all(r["id"].startswith("Testing/") for r in rows)
    missing = runner.invoke(app, [str(classifier_dir), str(tmp_path / "none")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


@pytest.mark.slow  # a whole evaluation with its report
def test_evaluate_command_shows_the_training_curves_of_a_run(tmp_path, classifier_dir):
    # A model folder inside a run folder, whose curves the trainer wrote to logs/metrics.csv.
    run = RunFolder(tmp_path / "run")
    shutil.copytree(classifier_dir, run.model)
    run.recipe.write_text("name: test\n")
    run.logs.mkdir(parents=True)
    run.metrics_csv.write_text(
        "epoch,step,train/loss,val/loss,val/acc\n"
        "0,3,1.2,,\n0,3,,1.1,0.4\n1,7,0.9,,\n1,7,,0.8,0.6\n2,11,0.7,,\n2,11,,0.6,0.7\n"
    )
    data = _class_folders(tmp_path / "data", per_class=1)
    out = tmp_path / "eval"
    result = runner.invoke(app, [str(run.model), str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "training_curves.png").stat().st_size > 1000
    assert "Training curves" in (out / "report.html").read_text()
    # A model folder on its own has no curves to show.
    alone = tmp_path / "alone"
    shutil.copytree(classifier_dir, alone)
    result = runner.invoke(app, [str(alone), str(data), "--out", str(tmp_path / "eval2")])
    assert result.exit_code == 0, result.output
    assert "Training curves" not in (tmp_path / "eval2" / "report.html").read_text()
