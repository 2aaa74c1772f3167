"""Out-of-distribution statistics: fitting, the model folder round trip, and the flag in
``predict``, ``evaluate`` and ``serve`` outputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from skimage import data as skdata
from typer.testing import CliRunner

from braintumor.cli.evaluate import evaluate_command
from braintumor.cli.main import app as main_app
from braintumor.cli.predict import predict_command
from braintumor.data.layouts import detect_layout
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.errors import ModelFormatError
from braintumor.inference.ood import feature_layer, mahalanobis_score
from braintumor.inference.ood_fit import calibrate_model_dir, gaussian
from braintumor.inference.predictor import Predictor
from braintumor.io import read_image
from braintumor.models import build_model
from braintumor.models.folder import load_model_dir, read_model_info
from braintumor.models.ood_stats import OOD_FILE, OODStats
from serve_support import make_model_dir

runner = CliRunner()
predict_app = typer.Typer()
predict_app.command()(predict_command)
evaluate_app = typer.Typer()
evaluate_app.command()(evaluate_command)


def _foreign(folder: Path) -> Path:
    """A photograph, a text page and uniform noise: images no brain-MRI model has seen."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skdata.astronaut()).save(folder / "astronaut.png")
    Image.fromarray(skdata.page()).save(folder / "page.png")
    noise = (np.random.default_rng(0).random((96, 96)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    return folder


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("phantoms"), "classify", n=25, seed=3)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, phantoms) -> Path:
    """An untrained classifier folder whose OOD statistics were fitted on phantoms."""
    folder = make_model_dir(tmp_path_factory.mktemp("cls") / "model", "classify", size=64)
    samples = detect_layout(phantoms).samples
    calibrate_model_dir(folder, samples[::2], samples[1::2])
    return folder


def test_feature_layers_are_the_head_input_and_the_bottleneck() -> None:
    classifier = build_model("small-resnet", num_classes=4, in_channels=1)
    assert feature_layer(classifier, True, 1, 64) == "fc"
    unet = build_model("unet", num_classes=1, in_channels=1, channels=[8, 16, 32])
    layer = feature_layer(unet, False, 1, 64)
    seen = {}
    hook = unet.get_submodule(layer).register_forward_hook(lambda m, a, o: seen.update(o=o))
    unet(torch.zeros(1, 1, 64, 64))
    hook.remove()
    assert seen["o"].shape[-2:] == (16, 16)  # two stride-2 steps: the deepest map


def test_mahalanobis_is_small_near_a_class_and_large_far_from_all() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0] * 8, [5.0] * 8])
    labels = rng.integers(0, 2, 400)
    features = torch.from_numpy(centres[labels] + rng.normal(size=(400, 8)))
    means, precision = gaussian(features, torch.from_numpy(labels))
    near = torch.from_numpy(centres + 0.1).float()
    far = torch.full((2, 8), 40.0)
    near_scores = mahalanobis_score(near, torch.from_numpy(means), torch.from_numpy(precision))
    far_scores = mahalanobis_score(far, torch.from_numpy(means), torch.from_numpy(precision))
    assert near_scores.max() < 3 < 100 < far_scores.min()


def test_statistics_round_trip_through_the_model_folder(calibrated) -> None:
    info = read_model_info(calibrated)
    assert info.ood["method"] == "mahalanobis"
    assert info.ood["layer"] == "fc"
    assert 0.85 <= info.ood["val_accepted"] <= 1.0
    stats = OODStats.load(calibrated, info.ood)
    assert stats.means.shape[1] == info.ood["feature_dim"] == stats.precision.shape[0]
    assert stats.threshold == pytest.approx(info.ood["threshold"])
    copy = calibrated.parent / "copy"
    shutil.copytree(calibrated, copy)
    stats.save(copy)
    again = OODStats.load(copy, info.ood)
    np.testing.assert_array_equal(again.means, stats.means)
    np.testing.assert_array_equal(again.precision, stats.precision)
    (copy / OOD_FILE).write_bytes(b"not safetensors")
    with pytest.raises(ModelFormatError, match="unreadable OOD statistics"):
        Predictor(load_model_dir(copy))


def test_folder_without_statistics_predicts_as_before(tmp_path) -> None:
    folder = make_model_dir(tmp_path / "old", "classify", size=64)
    predictor = Predictor(load_model_dir(folder))
    assert predictor.ood is None
    image = read_image(_foreign(tmp_path / "in") / "noise.png")
    probs, scores = predictor.classify_scored([image])
    assert scores is None and probs.shape == (1, 4)
    result = runner.invoke(
        predict_app, [str(folder), str(tmp_path / "in"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    header = (tmp_path / "o" / "predictions.csv").read_text().splitlines()[0]
    assert "ood" not in header
    assert "ood" not in json.loads((tmp_path / "o" / "predictions.json").read_text())


def test_predict_outputs_carry_the_flag_and_warn(tmp_path, calibrated, phantoms) -> None:
    inputs = _foreign(tmp_path / "in")
    shutil.copy(next((phantoms / "glioma").iterdir()), inputs / "phantom.png")
    result = runner.invoke(predict_app, [str(calibrated), str(inputs), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "o" / "predictions.csv") as handle:
        rows = {row["id"]: row for row in csv.DictReader(handle)}
    assert {"ood", "ood_score"} <= set(rows["noise"])
    assert float(rows["noise"]["ood_score"]) > 0
    payload = json.loads((tmp_path / "o" / "predictions.json").read_text())
    flags = {p["id"]: p["ood"] for p in payload["predictions"]}
    assert payload["ood"]["method"] == "mahalanobis"
    assert payload["ood"]["n_flagged"] == sum(flags.values())
    for record in payload["predictions"]:
        if record["ood"]:
            assert f"{record['path']}: unlike the model's training images" in result.output


@pytest.mark.slow  # a whole evaluation with its report
def test_evaluate_reports_flagged_images(tmp_path, calibrated, phantoms) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(evaluate_app, [str(calibrated), str(phantoms), "-o", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    flagged = sum(row["ood"] == "True" for row in rows)
    assert metrics["ood"]["n_flagged"] == flagged
    assert metrics["ood"]["flagged_rate"] == pytest.approx(flagged / len(rows))


def test_calibrate_ood_command_adds_statistics_to_an_old_folder(tmp_path, phantoms) -> None:
    folder = make_model_dir(tmp_path / "old", "segment", size=64)
    assert not read_model_info(folder).ood
    result = runner.invoke(
        main_app, ["models", "calibrate-ood", str(folder), "--data", str(phantoms)]
    )
    assert result.exit_code == 0, result.output
    info = read_model_info(folder)
    assert info.ood["method"] == "mahalanobis" and info.ood["n_means"] == 1
    assert (folder / OOD_FILE).is_file()
    assert "out-of-distribution statistics" in result.output
    predictor = Predictor(load_model_dir(folder))
    image = read_image(next((phantoms / "glioma").iterdir()))
    _, scores = predictor.segment_scored([image, image])
    assert scores is not None and scores.shape == (2,) and scores[0] == pytest.approx(scores[1])


def test_web_json_carries_the_flag(calibrated) -> None:
    from fastapi.testclient import TestClient

    from braintumor.serve.app import create_app

    client = TestClient(create_app([calibrated]))
    card = client.get("/api/models").json()[0]
    assert card["ood"]["method"] == "mahalanobis"
    buffer = __import__("io").BytesIO()
    Image.fromarray(skdata.astronaut()).save(buffer, format="PNG")
    response = client.post("/api/predict", files={"file": ("a.png", buffer.getvalue())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["ood"], bool)
    assert body["ood_threshold"] == pytest.approx(card["ood"]["threshold"])
    assert body["ood"] == (body["ood_score"] > body["ood_threshold"])


@pytest.mark.slow
def test_trained_model_flags_foreign_images_and_accepts_new_phantoms(tmp_path) -> None:
    """Trained on phantoms: every foreign image is flagged, held-out phantoms about 95% pass."""
    from braintumor.config import load_recipe
    from braintumor.training.run import train_run

    data = write_synthetic_dataset(tmp_path / "train", "classify", n=60, seed=11)
    recipe = load_recipe(
        "plain-cpu-4class",  # learns phantoms fastest: this checks the OOD fit, not the recipe
        # an epoch count, not a time budget: the test must not depend on the machine's load
        [
            "model=small-resnet",
            "model_args={layers: [1, 1, 1, 1]}",
            "image_size=48",
            "batch_size=16",
            "max_epochs=30",
            "max_minutes=null",
        ],
    )
    result = train_run(recipe, data, tmp_path / "run", progress=False)
    assert result.metrics["test"]["accuracy"] > 0.5  # it learned the phantoms' classes
    ood = read_model_info(result.model_dir).ood
    assert ood["n_val"] >= 30 and ood["val_accepted"] == pytest.approx(0.95, abs=0.03)
    predictor = Predictor(load_model_dir(result.model_dir))
    foreign = [read_image(p) for p in sorted(_foreign(tmp_path / "foreign").iterdir())]
    _, foreign_scores = predictor.classify_scored(foreign)
    assert predictor.ood.flags(foreign_scores).all(), foreign_scores
    held_out = write_synthetic_dataset(tmp_path / "new", "classify", n=50, seed=99)
    images = [read_image(s.image) for s in detect_layout(held_out).samples]
    _, scores = predictor.classify_scored(images)
    accepted = 1 - predictor.ood.flags(scores).mean()
    # The threshold is the 95th percentile of about 36 validation phantoms, a rough estimate:
    # a new set lands near, not at, 95% (0.81 measured with these seeds).
    assert 0.75 <= accepted <= 1.0, f"{accepted:.3f} of {len(images)} new phantoms accepted"
    assert np.median(scores) < predictor.ood.threshold < foreign_scores.min()
