"""Bad input through the whole command line: one ``error:`` line, exit code 2, no traceback,
and nothing written (no output folder, no run folder, a run folder left byte for byte)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from braintumor.cli.main import app
from braintumor.data.synthetic import write_synthetic_dataset
from cli_support import assert_one_line_error
from model_support import save_untrained

runner = CliRunner()
CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def _invoke(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cls-model") / "classify-model"
    return save_untrained(folder, "classify", "small-resnet", CLASSES, {"widths": [8, 8, 8, 8]})


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Path:
    args = {"channels": [4, 8], "num_res_units": 0}
    folder = tmp_path_factory.mktemp("seg-model") / "segment-model"
    return save_untrained(folder, "segment", "unet", ["bg", "tumor"], args)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("cls"), "classify", n=6, size=48)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("seg"), "segment", n=6, size=48)


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """``folder`` made immutable with ``chattr +i`` (root ignores permission bits)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: cannot make a folder unwritable for root")
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i refused here ({done.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)


# --- outputs that cannot be written ---------------------------------------------------------


@pytest.mark.parametrize("model", ["classifier", "segmenter"])
def test_predict_out_is_an_existing_file(model, request, images, tmp_path) -> None:
    target = tmp_path / "preds"
    target.write_text("keep me")
    result = _invoke("predict", request.getfixturevalue(model), images / "glioma", "--out", target)
    assert_one_line_error(result, str(target), "existing file")
    assert target.read_text() == "keep me"


def test_predict_out_in_an_immutable_folder(classifier, images, tmp_path) -> None:
    with immutable(tmp_path / "locked") as locked:
        result = _invoke("predict", classifier, images / "glioma", "--out", locked / "preds")
        assert_one_line_error(result, "not writable")
        assert list(locked.iterdir()) == []


def test_train_run_dir_in_an_immutable_folder(images, tmp_path) -> None:
    with immutable(tmp_path / "locked") as locked:
        result = _invoke("train", "--data", images, "--run-dir", locked / "run")
        assert_one_line_error(result, "--run-dir", "not writable")
        assert list(locked.iterdir()) == []


# --- no empty output folders ----------------------------------------------------------------


def test_predict_on_an_empty_folder_leaves_no_out_folder(classifier, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    result = _invoke("predict", classifier, tmp_path / "empty", "--out", tmp_path / "out")
    assert_one_line_error(result, "no image files found")
    assert not (tmp_path / "out").exists()


def test_evaluate_with_other_classes_leaves_no_out_folder(classifier, tmp_path, images) -> None:
    data = tmp_path / "animals"
    for name, source in (("cat", "glioma"), ("dog", "meningioma")):
        shutil.copytree(images / source, data / name)
    result = _invoke("evaluate", classifier, data, "--out", tmp_path / "eval")
    assert_one_line_error(result, "cat")
    assert not (tmp_path / "eval").exists()


def test_explain_of_a_segmenter_leaves_no_out_folder(segmenter, pairs, tmp_path) -> None:
    result = _invoke("explain", segmenter, pairs / "images", "--out", tmp_path / "cams")
    assert_one_line_error(result, "Grad-CAM explains classifiers")
    assert not (tmp_path / "cams").exists()


@pytest.mark.slow  # a whole evaluation with its report
def test_evaluate_takes_data_as_an_option_too(classifier, images, tmp_path) -> None:
    done = _invoke("evaluate", classifier, "--data", images, "--out", tmp_path / "e")
    assert done.exit_code == 0, done.output
    assert (tmp_path / "e" / "metrics.json").is_file()
    # DATA and --data together are several sources; a folder named twice counts once.
    again = _invoke("evaluate", classifier, images, "--data", images, "--out", tmp_path / "f")
    assert again.exit_code == 0, again.output
    assert (
        json.loads((tmp_path / "f" / "metrics.json").read_text())["n"]
        == json.loads((tmp_path / "e" / "metrics.json").read_text())["n"]
    )


def test_evaluate_splits_file_not_utf8(classifier, images, tmp_path) -> None:
    splits = tmp_path / "splits.csv"
    splits.write_bytes(b"\xff\xfe\x00\x81 not text")
    result = _invoke("evaluate", classifier, images, "--splits", splits, "--out", tmp_path / "e")
    assert_one_line_error(result, str(splits), "not UTF-8")
    assert not (tmp_path / "e").exists()


# --- datasets too small, odd or incomplete -------------------------------------------------


@pytest.fixture
def three_images(images, tmp_path) -> Path:
    data = tmp_path / "tiny"
    (data / "glioma").mkdir(parents=True)
    (data / "pituitary").mkdir()
    for name in ("glioma_0000.png", "glioma_0001.png"):
        shutil.copy(images / "glioma" / name, data / "glioma" / name)
    shutil.copy(images / "pituitary" / "pituitary_0000.png", data / "pituitary")
    return data


def test_data_split_of_a_tiny_dataset(three_images, tmp_path) -> None:
    out = tmp_path / "splits.csv"
    result = _invoke("data", "split", three_images, "--out", out, "--workers", 1)
    assert_one_line_error(result, "3 images", "glioma 2, pituitary 1", "needs at least 3")
    assert not out.exists()


def test_train_on_a_tiny_dataset_leaves_no_run_folder(three_images, tmp_path) -> None:
    run = tmp_path / "run"
    result = _invoke("train", "--data", three_images, "--run-dir", run)
    assert_one_line_error(result, "too few images to split", "glioma 2, pituitary 1")
    assert not run.exists()


def test_single_class_folder_says_why(images, tmp_path) -> None:
    shutil.copytree(images / "glioma", tmp_path / "data" / "glioma")
    result = _invoke("data", "info", tmp_path / "data")
    assert_one_line_error(result, "one class folder found (glioma/, 6 images)", "two classes")


def test_unpaired_images_and_masks_are_named_and_counted(pairs, tmp_path) -> None:
    data = tmp_path / "pairs"
    shutil.copytree(pairs, data)
    lonely_image = sorted((data / "masks").iterdir())[0]
    image_name = lonely_image.name.replace("_mask", "")
    lonely_image.unlink()
    shutil.copy(sorted((data / "masks").iterdir())[0], data / "masks" / "extra_mask.png")
    info = _invoke("data", "info", data)
    assert info.exit_code == 0, info.output
    assert f"images/{image_name}" in info.stdout and "masks/extra_mask.png" in info.stdout
    audit = _invoke("data", "audit", data, "--workers", 1, "--json", tmp_path / "a.json")
    assert audit.exit_code == 0, audit.output
    assert f"images/{image_name}: image without a mask" in audit.stdout
    assert "masks/extra_mask.png: mask without an image" in audit.stdout
    problems = (tmp_path / "a.json").read_text()
    assert '"image without a mask"' in problems and '"mask without an image"' in problems
    row = next(line for line in audit.stdout.splitlines() if "mask problems" in line)
    assert " 2 " in row


# --- train: everything checked before anything is written ----------------------------------


def test_resume_without_run_dir_is_one_line() -> None:
    result = _invoke("train", "--data", ".", "--resume")
    assert_one_line_error(result, "--resume needs --run-dir")


def test_train_missing_test_data_fails_before_training(images, tmp_path) -> None:
    run = tmp_path / "run"
    result = _invoke("train", "--data", images, "--run-dir", run, "--test-data", tmp_path / "no")
    assert_one_line_error(result, "--test-data", "does not exist")
    assert not run.exists()


def test_train_missing_weights_fails_before_writing(images, tmp_path) -> None:
    run = tmp_path / "run"
    result = _invoke("train", "--data", images, "--run-dir", run, "--weights", tmp_path / "w.pt")
    assert_one_line_error(result, "no such weights file")
    assert not run.exists() and result.stdout == ""


def test_train_unsafe_weights_fails_before_writing(images, tmp_path) -> None:
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"conv.weight": torch.zeros(1), "obj": Path("x")}, unsafe)
    run = tmp_path / "run"
    result = _invoke("train", "--data", images, "--run-dir", run, "--weights", unsafe)
    assert_one_line_error(result, str(unsafe), "refused")
    assert not run.exists() and result.stdout == ""


def _run_folder(tmp_path: Path) -> Path:
    """A run folder as training leaves it: recipe, splits, logs and two checkpoints."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "logs").mkdir()
    (run / "logs" / "metrics.csv").write_text("epoch,step,val/loss\n0,5,1.2\n")
    (run / "recipe.yaml").write_text("name: fast-cpu-4class\n")
    state = {"state_dict": {"w": torch.zeros(3)}, "epoch": 0, "pytorch-lightning_version": "2"}
    torch.save(state, run / "checkpoints" / "best.ckpt")
    torch.save(state, run / "checkpoints" / "last.ckpt")
    return run


@pytest.mark.parametrize("damage", ["truncated", "pickled objects"])
def test_resume_from_a_broken_checkpoint_leaves_the_run_untouched(damage, images, tmp_path):
    run = _run_folder(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:300])
    else:
        torch.save({"state_dict": {}, "epoch": 0, "hook": Path("x")}, last)
    before = _snapshot(run)
    result = _invoke("train", "--data", images, "--run-dir", run, "--resume")
    expected = "truncated or corrupt" if damage == "truncated" else "pickled Python objects"
    assert_one_line_error(result, str(last), expected, "best.ckpt is intact")
    assert _snapshot(run) == before


@pytest.mark.parametrize(
    "command",
    [
        ["data", "split", "{data}", "--out", "{out}"],
        ["data", "audit", "{data}", "--json", "{out}"],
        ["export", "{model}", "--out", "{out}"],
    ],
)
def test_output_file_that_is_a_folder_fails_before_the_work(command, classifier, images, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    names = {"{data}": str(images), "{out}": str(out), "{model}": str(classifier)}
    result = _invoke(*(names.get(word, word) for word in command))
    assert_one_line_error(result, str(out), "must be a file name, and this is a folder")
    assert list(out.iterdir()) == []
