"""Building a reference model: sources with their classes, trained, carded, installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.errors import DataError, RecipeError
from braintumor.inference.predictor import Predictor
from braintumor.models.card import split_front_matter
from braintumor.models.ensemble import Ensemble
from braintumor.models.folder import load_model_dir
from braintumor.zoo import build, registry, retune
from braintumor.zoo.build import per_source_test, source_counts
from braintumor.zoo.specs import ReferenceSpec, Source

NO = ("no_tumor",)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shared")
    write_synthetic_dataset(root / "src-a", "classify", n=10, size=48, seed=1)
    write_synthetic_dataset(root / "src-b", "classify", n=6, size=48, seed=2)
    return root


def test_sources_become_data_values_with_their_class_filter(data_root) -> None:
    data = [Source("src-a").data_arg(data_root), Source("src-b", NO).data_arg(data_root)]
    assert data == [f"src-a={data_root / 'src-a'}", f"src-b={data_root / 'src-b'}:no_tumor"]
    assert Source("src-a").data_arg(data_root, alone=True) == str(data_root / "src-a")
    counts = source_counts(data, "classify", None)
    assert counts["src-a"] == {"glioma": 10, "meningioma": 10, "no_tumor": 10, "pituitary": 10}
    assert counts["src-b"] == {"no_tumor": 6}  # its tumour classes are not used
    binary = source_counts(data, "classify", ["no_tumor", "tumor"])
    assert binary["src-a"] == {"tumor": 30, "no_tumor": 10}


def _tiny_spec(name: str, recipe: str, *overrides: str, **fields) -> ReferenceSpec:
    """A reference spec over the two phantom sources (src-b: its healthy slices only)."""
    sources = (Source("src-a"), Source("src-b", NO))
    settings = ("image_size=48", "batch_size=16", *overrides)
    return ReferenceSpec(name, f"{name}.", recipe, sources, 0.2, settings, **fields)


@pytest.mark.slow
def test_build_reference_trains_cards_and_installs(data_root, tmp_path, monkeypatch) -> None:
    spec = _tiny_spec("tiny", "fast-cpu-4class", "max_epochs=2", notes=("Trained on phantoms.",))
    monkeypatch.setitem(build.REFERENCE_MODELS, "tiny", spec)
    zoo_dir = tmp_path / "zoo"
    summary = build.build_reference("tiny", data_root, tmp_path / "work", zoo_dir=zoo_dir)
    assert summary["sources"]["src-b"] == {"no_tumor": 6}
    assert summary["compact_max_prob_diff"] < 2e-3
    assert set(summary["headline"]) >= {"accuracy", "balanced accuracy"}
    monkeypatch.setattr(registry, "ZOO_DIR", zoo_dir)
    loaded = load_model_dir("zoo:tiny")
    assert loaded.info.class_names == ["glioma", "meningioma", "no_tumor", "pituitary"]
    meta, body = split_front_matter((zoo_dir / "tiny" / "README.md").read_text())
    assert meta["datasets"] == ["src-a", "src-b"]
    assert "### Test split by source" in body and "Trained on phantoms." in body
    assert "python benchmarks/train_reference.py tiny" in body
    assert str(tmp_path) not in (zoo_dir / "tiny" / "model.json").read_text()
    index = json.loads((zoo_dir / "index.json").read_text())
    assert set(index["models"]["tiny"]["files"]) == {"model.safetensors", "model.json", "README.md"}
    assert loaded.info.inference == {"tta": True}  # fast-cpu-4class's inference.tta

    # New inference settings without training: same weights, test split evaluated again.
    retuned = retune.retune_reference("tiny", {"tta": False}, data_root, tmp_path / "w2", zoo_dir)
    again = load_model_dir("zoo:tiny")
    assert again.info.inference == {"tta": False} and Predictor(again).tta is False
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[key]), key
    assert retuned["test_before"] == summary["headline"]
    card = (zoo_dir / "tiny" / "README.md").read_text()
    assert "python benchmarks/train_reference.py tiny --retune tta=false" in card
    registry.verify_entry(registry.zoo_entry("tiny", zoo_dir))  # the index follows the files
    other = tmp_path / "other"
    shutil.copytree(data_root, other)
    next((other / "src-b").rglob("*.png")).unlink()  # one healthy slice fewer
    with pytest.raises(DataError, match="not the ones it was built on"):
        retune.retune_reference("tiny", {"tta": True}, other, tmp_path / "w3", zoo_dir)
    with pytest.raises(RecipeError, match="must be true, false or auto"):
        retune.parse_settings(["tta=maybe"])
    with pytest.raises(RecipeError, match="nothing is chosen"):
        retune.parse_settings(["tta=auto"])
    with pytest.raises(RecipeError, match="unknown"):
        retune.parse_settings(["mirror=true"])
    assert retune.parse_settings(["tta=true", "keep_largest=False"]) == {
        "tta": True,
        "keep_largest": False,
    }
    shutil.rmtree(tmp_path / "work")


@pytest.mark.slow
def test_a_reference_of_several_members_installs_their_ensemble(
    data_root, tmp_path, monkeypatch
) -> None:
    spec = _tiny_spec("tiny-ens", "fast-cpu-binary", "max_epochs=1", "ema_epochs=null", members=2)
    monkeypatch.setitem(build.REFERENCE_MODELS, spec.name, spec)
    zoo_dir, run = tmp_path / "zoo", tmp_path / "work" / "tiny-ens-run"
    summary = build.build_reference(spec.name, data_root, tmp_path / "work", zoo_dir=zoo_dir)
    assert summary["compact_max_prob_diff"] < 2e-3
    assert (run / "member-2" / "model").is_dir()
    monkeypatch.setattr(registry, "ZOO_DIR", zoo_dir)
    loaded = load_model_dir(f"zoo:{spec.name}")
    assert isinstance(loaded.model, Ensemble) and loaded.info.members == 2
    assert loaded.info.metrics["test_images_trained_on"] == 0
    assert "ensemble of 2" in (zoo_dir / spec.name / "README.md").read_text()
    registry.verify_entry(registry.zoo_entry(spec.name, zoo_dir))
    # A build stopped in its second member goes on from there: the first member is kept.
    first = (run / "member-1" / "model" / "model.safetensors").read_bytes()
    shutil.rmtree(run / "member-2")
    shutil.rmtree(run / "model")
    again = build.build_reference(
        spec.name, data_root, tmp_path / "work", zoo_dir=zoo_dir, resume=True
    )
    assert again["resumed"] and (run / "member-2" / "model").is_dir()
    assert (run / "member-1" / "model" / "model.safetensors").read_bytes() == first
    assert load_model_dir(f"zoo:{spec.name}").info.members == 2


def test_card_rows_of_a_segmenter_over_two_sources() -> None:
    summary = {"n": 3, "mean": 0.71, "median": 0.7, "std": 0.1, "ci95": [0.6, 0.8]}
    metrics = {
        "test": {
            "task": "segment",
            "per_source": {
                "figshare-seg": {"n": 180, "dice": summary, "iou": summary},
                "lgg-kaggle3m": {
                    "n": 120,
                    "dice": summary,
                    "iou": summary,
                    "patient_volume_dice": dict(summary, mean=0.5, ci95=None),
                },
            },
        }
    }
    rows = per_source_test(metrics)
    assert [r["source"] for r in rows] == ["figshare-seg", "lgg-kaggle3m"]
    assert rows[0]["Dice per slice"] == "0.710 [0.600, 0.800]"
    assert rows[0]["volume Dice per patient"] == "-"
    assert rows[1]["volume Dice per patient"] == "0.500" and rows[1]["test slices"] == "120"


def test_a_recarded_build_keeps_the_recorded_training_time(tmp_path) -> None:
    record = tmp_path / "reference_models.json"
    first = {"name": "seg2d", "train_seconds": 1006.7, "load_average": [1.5], "headline": "a"}
    first["resumed"] = True  # its train_seconds are the resuming call's
    build.write_build_record(record, first)
    recard = {"name": "seg2d", "train_seconds": None, "load_average": None, "headline": "b"}
    recard["resumed"] = False
    build.write_build_record(record, recard)
    entry = json.loads(record.read_text())["models"]["seg2d"]
    assert entry == {**first, "headline": "b"}

    build.write_build_record(record, {"name": "seg2d", "train_seconds": 30.0, "headline": "c"})
    assert json.loads(record.read_text())["models"]["seg2d"]["train_seconds"] == 30.0


def test_segmentation_sources_are_counted_by_their_masks(shared_data, tmp_path) -> None:
    """LGG slices have no class: the card counts tumour slices and empty masks instead."""
    patient = "TCGA_CS_5395_19981004"
    shutil.copytree(
        shared_data / "lgg-kaggle3m" / "kaggle_3m" / patient, tmp_path / "kaggle_3m" / patient
    )
    counts = source_counts([f"lgg={tmp_path}"], "segment", None)
    assert counts == {"lgg": {"tumour slice": 3, "empty mask": 17}}
