"""Model cards: Hugging Face front matter, readable sections, and no absolute path anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.config import load_recipe
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.models import build_model
from braintumor.models.card import CardExtras, render_card, split_front_matter
from braintumor.models.card_loso import read_loso_results
from braintumor.models.folder import ModelInfo, save_model_dir
from braintumor.training.run import train_run

runner = CliRunner()
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
TEST_METRICS = {
    "test": {
        "n": 40,
        "accuracy": 0.875,
        "balanced_accuracy": 0.85,
        "macro": {"f1": 0.8, "roc_auc": 0.95},
        "ci95": {"accuracy": [0.75, 0.95], "macro_f1": [0.7, 0.9], "macro_roc_auc": [0.9, 0.99]},
    }
}


def _info() -> ModelInfo:
    return ModelInfo(
        task="classify",
        architecture="small-resnet",
        num_outputs=2,
        in_channels=1,
        class_names=["no_tumor", "tumor"],
        image_size=64,
        recipe={"name": "fast-cpu-4class", "lr": 0.003},
        data_fingerprint={"name": "br35h-binary", "n_samples": 40, "labels": {"tumor": 20}},
        created="2026-01-01T00:00:00+00:00",
    )


def test_card_has_hugging_face_metadata_and_intervals() -> None:
    loso = read_loso_results(RESULTS / "loso_binary_today.json", "binary")
    extras = CardExtras(license="other", loso=loso, loso_file="loso_binary_today.json")
    meta, body = split_front_matter(render_card(_info(), TEST_METRICS, extras))
    assert meta["library_name"] == "braintumor"
    assert meta["license"] == "other"
    assert meta["datasets"] == ["br35h-binary"]
    assert meta["pipeline_tag"] == "image-classification"
    assert {"accuracy", "f1", "roc_auc"} <= set(meta["metrics"])
    assert "brain-tumor" in meta["tags"]
    assert "| accuracy | 0.875 | [0.750, 0.950] |" in body
    assert "| br35h-binary | 40 | tumor 20 |" in body
    assert "Not for diagnosis" in body
    assert "## Leave-one-source-out" in body
    assert "| navoneel-binary | 253 | 0.757 [0.708, 0.805] | 0.874 [0.828, 0.917] |" in body
    assert body.index("## Leave-one-source-out") < body.index("## Recipe")
    assert "| test-time settings | none (one forward pass) |" in body


def test_card_says_what_predict_does_beyond_one_forward_pass() -> None:
    info = _info()
    info.inference = {"tta": True, "keep_largest": False, "stack_components": True}
    body = render_card(info, TEST_METRICS)
    assert (
        "| test-time settings | left-right mirror averaged in (TTA); "
        "3D components across a patient's stack |" in body
    )


def test_models_card_prints_a_card_for_a_folder_without_one(tmp_path) -> None:
    net = build_model("small-resnet", num_classes=2, in_channels=1, widths=[8, 8, 8, 8])
    folder = save_model_dir(net, _info(), tmp_path / "model")
    result = runner.invoke(app, ["models", "card", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("---\nlicense: other\n")
    assert "# fast-cpu-4class (classify)" in result.output
    result = runner.invoke(app, ["models", "card", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "not a model folder" in result.output


@pytest.mark.slow
def test_train_writes_a_card_and_no_absolute_path(tmp_path) -> None:
    data = write_synthetic_dataset(tmp_path / "phantoms", "classify", n=12, size=48, seed=3)
    recipe = load_recipe(
        "fast-cpu-4class", ["image_size=48", "max_epochs=2", "max_minutes=0.3", "batch_size=16"]
    )
    result = train_run(recipe, data, tmp_path / "run", progress=False)
    card = (result.model_dir / "README.md").read_text()
    meta, body = split_front_matter(card)
    assert meta["datasets"] == ["phantoms"]
    assert meta["library_name"] == "braintumor"
    assert "## Results: held-out test split" in body and "95% interval" in body
    assert (
        json.loads((result.model_dir / "model.json").read_text())["data_fingerprint"]["name"]
        == "phantoms"
    )
    for path in result.model_dir.iterdir():
        content = path.read_bytes()
        for absolute in {str(tmp_path), str(Path(tmp_path).resolve())}:
            assert absolute.encode() not in content, f"{path.name} holds {absolute}"
    result = runner.invoke(app, ["models", "card", str(result.model_dir)])
    assert result.output == card
