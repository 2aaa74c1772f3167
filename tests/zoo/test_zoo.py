"""The model zoo: ``zoo:NAME`` wherever a model folder goes, integrity, compact weights, listing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.cli.predict import input_kind
from braintumor.data.preprocess import PreprocessSpec
from braintumor.data.synthetic import write_brats_dataset, write_synthetic_dataset
from braintumor.errors import ModelFormatError
from braintumor.models import build_model
from braintumor.models.card import write_card
from braintumor.models.folder import ModelInfo, load_model_dir, save_model_dir
from braintumor.zoo import default_zoo_models, registry, resolve_model_ref, zoo_entries
from braintumor.zoo.compact import install_zoo_model

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]
runner = CliRunner()
# float16 keeps 11 significant bits: probabilities of the compact copy stay within this of the
# float32 model's (measured: below 1e-4 on the shipped 4class model).
PROB_TOLERANCE = 2e-3


def _model(folder: Path, task: str, arch: str, args: dict, size: int = 32) -> Path:
    torch.manual_seed(0)
    classify = task == "classify"
    net = build_model(arch, num_classes=4 if classify else 1, in_channels=1, **args)
    for module in net.modules():  # non-trivial normalisation statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    info = ModelInfo(
        task=task,
        architecture=arch,
        num_outputs=4 if classify else 1,
        in_channels=1,
        class_names=CLASSES if classify else ["background", "tumor"],
        image_size=size,
        model_args=args,
        preprocessing=PreprocessSpec(image_size=size, in_channels=1).to_dict(),
        data_fingerprint={"name": "synthetic", "n_samples": 10, "labels": {"glioma": 10}},
    )
    folder = save_model_dir(net, info, folder)
    write_card(folder, info)
    return folder


@pytest.fixture(scope="module")
def fp32_models(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("fp32")
    return {
        "4class": _model(tmp / "cls", "classify", "small-resnet", {"widths": [8, 8, 8, 8]}),
        "seg2d": _model(tmp / "seg", "segment", "unet", {"channels": [4, 8], "num_res_units": 0}),
    }


@pytest.fixture
def zoo(tmp_path, fp32_models, monkeypatch) -> Path:
    """A zoo of two small models in a temporary folder, in place of the shipped one."""
    zoo_dir = tmp_path / "zoo"
    for name, folder in fp32_models.items():
        install_zoo_model(folder, name, f"test {name}", {"accuracy": "0.5 [0.4, 0.6]"}, zoo_dir)
    monkeypatch.setattr(registry, "ZOO_DIR", zoo_dir)
    return zoo_dir


@pytest.fixture(scope="module")
def slices(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(folder / f"s{i}.png")
    return folder


def test_zoo_ref_resolves_to_the_installed_folder(zoo) -> None:
    assert resolve_model_ref("zoo:4class") == zoo / "4class"
    assert resolve_model_ref(Path("some/folder")) == Path("some/folder")
    assert load_model_dir("zoo:seg2d").info.task == "segment"


def test_unknown_zoo_name_lists_the_available_ones(zoo) -> None:
    with pytest.raises(
        ModelFormatError,
        match=r"zoo:nope: no such reference model; available: "
        r"zoo:4class, zoo:seg2d",
    ):
        load_model_dir("zoo:nope")
    result = runner.invoke(app, ["predict", "zoo:nope", "x.png"])
    assert result.exit_code == 2
    assert "available: zoo:4class, zoo:seg2d" in result.output


def test_corrupted_shipped_file_points_to_reinstalling(zoo, slices, tmp_path) -> None:
    weights = zoo / "4class" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match=r"corrupted.*reinstall braintumor"):
        load_model_dir("zoo:4class")
    result = runner.invoke(app, ["predict", "zoo:4class", str(slices), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "reinstall braintumor" in result.output
    (zoo / "seg2d" / "README.md").unlink()
    with pytest.raises(ModelFormatError, match="missing from the installed model zoo"):
        load_model_dir("zoo:seg2d")


def test_compact_weights_are_half_precision_and_outputs_match_float32(zoo, fp32_models) -> None:
    from safetensors.torch import load_file

    stored = load_file(str(zoo / "4class" / "model.safetensors"))
    floats = [t for t in stored.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    size_fp32 = (fp32_models["4class"] / "model.safetensors").stat().st_size
    assert (zoo / "4class" / "model.safetensors").stat().st_size < 0.6 * size_fp32
    x = torch.randn(8, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    for name, folder in fp32_models.items():
        full, compact = load_model_dir(folder).model, load_model_dir(f"zoo:{name}").model
        assert all(p.dtype == torch.float32 for p in compact.parameters())  # restored to fp32
        with torch.no_grad():
            a, b = full(x), compact(x)
        probs = (a.softmax(1), b.softmax(1)) if name == "4class" else (a.sigmoid(), b.sigmoid())
        diff = float((probs[0] - probs[1]).abs().max())
        assert diff < PROB_TOLERANCE, f"{name}: max |p_fp32 - p_fp16| = {diff:.2e}"
        assert not torch.equal(a, b)  # the comparison is between two different weight sets


def test_models_zoo_lists_names_and_headline_figures(zoo) -> None:
    result = runner.invoke(app, ["models", "--zoo", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert "zoo:4class" in result.output and "zoo:seg2d" in result.output
    assert "accuracy 0.5 [0.4, 0.6]" in result.output


def test_predict_evaluate_export_accept_zoo_refs(zoo, slices, tmp_path, monkeypatch) -> None:
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", "zoo:4class", str(slices), "--out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "predictions.json").read_text())
    assert payload["model"] == "zoo:4class" and len(payload["predictions"]) == 3
    data = write_synthetic_dataset(tmp_path / "data", "classify", n=3, size=32, seed=0)
    result = runner.invoke(
        app, ["evaluate", "zoo:4class", str(data), "--out", str(tmp_path / "eval")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 12
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["export", "zoo:4class"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "4class.onnx").is_file()  # not written into the installed zoo
    assert not (zoo / "4class" / "model.onnx").exists()


def test_predict_without_a_model_uses_the_reference_models(zoo, slices, tmp_path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", str(slices), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "no model given: using zoo:4class, zoo:seg2d" in result.output
    assert json.loads((out / "4class" / "predictions.json").read_text())["model"] == "zoo:4class"
    summary = json.loads((out / "seg2d" / "summary.json").read_text())
    assert summary["model"] == "zoo:seg2d" and len(summary["images"]) == 3


def test_input_kind_tells_brats_cases_from_slices(zoo, slices, tmp_path) -> None:
    cases = tmp_path / "cases"
    write_brats_dataset(cases, n_cases=1, shape=(16, 16, 16), seed=0)
    assert input_kind([str(cases)]) == "brats"
    assert input_kind([str(slices)]) == "slices"
    assert default_zoo_models("slices") == ["4class", "seg2d"]
    with pytest.raises(ModelFormatError, match="no reference model for brats"):
        default_zoo_models("brats")  # this test zoo has no brats2d


def test_shipped_zoo_is_intact_small_and_loads_offline() -> None:
    entries = zoo_entries()
    if not entries:
        pytest.skip("no reference model built in this checkout")
    total = 0
    for name, entry in entries.items():
        folder = resolve_model_ref(f"zoo:{name}")  # checks every SHA-256
        total += sum(f.stat().st_size for f in folder.iterdir())
        loaded = load_model_dir(f"zoo:{name}")
        assert loaded.info.task == entry.task
        assert "research" in (folder / "README.md").read_text().lower()
    assert total < 40e6, f"shipped models take {total / 1e6:.1f} MB"


def test_serve_without_a_model_serves_every_reference_model(zoo) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from braintumor.cli.serve import reference_models
    from braintumor.serve.app import create_app

    refs = reference_models()
    assert [str(r) for r in refs] == ["zoo:4class", "zoo:seg2d"]
    cards = TestClient(create_app(refs)).get("/api/models").json()
    assert sorted(c["name"] for c in cards) == ["zoo:4class", "zoo:seg2d"]


def test_demo_compares_phantom_and_reference_models_on_real_slices(
    zoo, fp32_models, tmp_path
) -> None:
    from braintumor.cli.demo_reference import EXAMPLES_DIR, compare_on_examples, example_slices

    slices = example_slices()
    assert 6 <= len(slices) <= 8
    assert {p.stem.split("_")[0] for p in slices} == {"glioma", "meningioma", "pituitary"}
    assert "Jun Cheng" in (EXAMPLES_DIR / "ATTRIBUTION.md").read_text()
    figure = compare_on_examples(fp32_models["4class"], fp32_models["seg2d"], tmp_path)
    assert Image.open(figure).size[0] > 300
    reference = json.loads((tmp_path / "reference" / "4class" / "predictions.json").read_text())
    assert reference["model"] == "zoo:4class" and len(reference["predictions"]) == len(slices)
    assert len(list((tmp_path / "reference" / "seg2d").glob("*_overlay.png"))) == len(slices)
