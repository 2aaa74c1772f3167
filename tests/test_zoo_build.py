"""Building a reference model: sources gathered with their labels, trained, carded, installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.models.card import split_front_matter
from braintumor.models.folder import load_model_dir
from braintumor.zoo import build, registry
from braintumor.zoo.build import ReferenceSpec, Source, stage_sources

FOUR = {c: c for c in ("glioma", "meningioma", "pituitary", "no_tumor")}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shared")
    write_synthetic_dataset(root / "src-a", "classify", n=10, size=48, seed=1)
    write_synthetic_dataset(root / "src-b", "classify", n=6, size=48, seed=2)
    return root


def test_stage_sources_maps_labels_and_keeps_the_source_in_the_id(data_root, tmp_path) -> None:
    spec = ReferenceSpec(
        "t",
        "test",
        "fast-cpu-4class",
        (Source("src-a", FOUR), Source("src-b", {"no_tumor": "no_tumor"})),
        1,
    )
    counts = stage_sources(spec, data_root, tmp_path / "stage")
    assert counts["src-a"] == {"glioma": 10, "meningioma": 10, "no_tumor": 10, "pituitary": 10}
    assert counts["src-b"] == {"no_tumor": 6}  # its tumour classes are not used
    linked = sorted(p.relative_to(tmp_path / "stage") for p in (tmp_path / "stage").rglob("*.png"))
    assert len(linked) == 46
    assert all(p.parts[1] in ("src-a", "src-b") for p in linked)
    assert all((tmp_path / "stage" / p).is_symlink() for p in linked)


@pytest.mark.slow
def test_build_reference_trains_cards_and_installs(data_root, tmp_path, monkeypatch) -> None:
    spec = ReferenceSpec(
        "tiny",
        "A tiny test classifier.",
        "fast-cpu-4class",
        (Source("src-a", FOUR), Source("src-b", {"no_tumor": "no_tumor"})),
        minutes=0.2,
        overrides=("image_size=48", "max_epochs=2", "batch_size=16"),
        notes=("Trained on phantoms.",),
    )
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
    shutil.rmtree(tmp_path / "work")
