"""``--adapt-bn`` on ``braintumor evaluate`` and ``braintumor predict``, end to end on phantoms
shifted by source: each source is adapted on its own images, the model folder is unchanged."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.data.preprocess import PreprocessSpec
from braintumor.data.synth_sources import write_source_shift_datasets
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.inference.predictor import Predictor
from braintumor.io import read_image
from braintumor.models.folder import ModelInfo, build_network, save_model_dir
from braintumor.zoo.registry import sha256_file
from cli_support import assert_one_line_error
from model_support import loaded_2d

runner = CliRunner()
SIZE = 32


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A reference source and a darker one, six glioma and six healthy phantoms each."""
    return write_source_shift_datasets(
        tmp_path_factory.mktemp("shift"),
        ["reference", "dark"],
        n_per_class=6,
        size=SIZE,
        kinds=("glioma", "no_tumor"),
    )


@pytest.fixture(scope="module")
def model_dir(shifted: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small residual classifier whose batch-norm statistics are the reference source's."""
    info = ModelInfo(
        task="classify",
        architecture="small-resnet",
        num_outputs=2,
        in_channels=1,
        class_names=["no_tumor", "tumor"],
        image_size=SIZE,
        model_args={"widths": [8, 8, 8, 8]},
        preprocessing=PreprocessSpec(image_size=SIZE, in_channels=1).to_dict(),
    )
    torch.manual_seed(0)
    network = build_network(info)
    loaded = loaded_2d("classify", network, info.class_names, SIZE)
    Predictor(loaded, batch_size=12).adapt_bn(read_image(p) for p in shifted[0].rglob("*.png"))
    network = network.to(memory_format=torch.contiguous_format)
    return save_model_dir(network, info, tmp_path_factory.mktemp("model") / "model")


def _evaluate(model: Path, data: list[str], out: Path, *flags: str) -> dict:
    result = runner.invoke(app, ["evaluate", str(model), *data, "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    return json.loads((out / "metrics.json").read_text())


def _probs(out: Path, name: str = "predictions.csv") -> dict[str, float]:
    with (out / name).open() as handle:
        return {row["id"]: float(row["prob_tumor"]) for row in csv.DictReader(handle)}


@pytest.mark.slow  # three whole evaluations with their reports (about 15 s)
def test_evaluate_adapts_each_source(model_dir: Path, shifted: list[Path], tmp_path: Path) -> None:
    ref, dark = shifted
    weights = sha256_file(model_dir / "model.safetensors")
    both = [f"ref={ref}", f"dark={dark}"]
    result = runner.invoke(
        app, ["evaluate", str(model_dir), *both, "--out", str(tmp_path / "a"), "--adapt-bn"]
    )
    assert result.exit_code == 0, result.output
    assert "batch norm adapted" in result.output and "ref 12, dark 12" in result.output
    adapted = json.loads((tmp_path / "a" / "metrics.json").read_text())
    plain = _evaluate(model_dir, both, tmp_path / "p")
    alone = _evaluate(model_dir, [f"ref={ref}"], tmp_path / "r", "--adapt-bn")
    assert adapted["adapt_bn"]["images"] == {"ref": 12, "dark": 12}
    assert list(alone["adapt_bn"]["images"].values()) == [12]
    assert "ood" not in adapted and "adapt_bn" not in plain
    assert set(adapted["per_source"]) == {"ref", "dark"}
    with_dark, unadapted = _probs(tmp_path / "a"), _probs(tmp_path / "p")
    ref_only = _probs(tmp_path / "r")
    dark_ids = [i for i in with_dark if i.startswith("dark/")]
    assert len(dark_ids) == 12
    assert max(abs(with_dark[i] - unadapted[i]) for i in dark_ids) > 1e-3
    # The reference source was adapted on its own images only: the dark ones changed nothing.
    assert len(ref_only) == 12
    assert all(abs(with_dark[i] - p) < 1e-5 for i, p in ref_only.items())
    assert sha256_file(model_dir / "model.safetensors") == weights


def test_predict_adapts_on_the_inputs(model_dir: Path, shifted: list[Path], tmp_path: Path) -> None:
    dark = shifted[1]
    args = ["predict", str(model_dir), str(dark)]
    plain = runner.invoke(app, [*args, "--out", str(tmp_path / "p")])
    adapted = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--adapt-bn"])
    assert plain.exit_code == 0 and adapted.exit_code == 0, adapted.output
    payload = json.loads((tmp_path / "a" / "predictions.json").read_text())
    assert payload["adapt_bn"] == {"images": 12}
    before, after = _probs(tmp_path / "p"), _probs(tmp_path / "a")
    assert max(abs(before[i] - after[i]) for i in before) > 1e-3


def test_adapt_bn_refuses_onnx(model_dir: Path, shifted: list[Path], tmp_path: Path) -> None:
    args = ["predict", str(model_dir), str(shifted[1]), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, [*args, "--adapt-bn", "--backend", "onnx"])
    assert_one_line_error(result, "--adapt-bn needs --backend torch")


def test_a_model_without_batch_norm_is_evaluated_as_it_is(tmp_path: Path) -> None:
    info = ModelInfo(
        task="segment",
        architecture="unet",  # MONAI's U-Net normalises with instance norm
        num_outputs=1,
        in_channels=1,
        class_names=["background", "tumor"],
        image_size=SIZE,
        model_args={"channels": [4, 8], "num_res_units": 0},
        preprocessing=PreprocessSpec(image_size=SIZE, in_channels=1).to_dict(),
    )
    model = save_model_dir(build_network(info), info, tmp_path / "unet")
    data = write_synthetic_dataset(tmp_path / "seg", "segment", n=4, size=SIZE)
    plain = _evaluate(model, [str(data)], tmp_path / "p")
    result = runner.invoke(
        app, ["evaluate", str(model), str(data), "--out", str(tmp_path / "a"), "--adapt-bn"]
    )
    assert result.exit_code == 0, result.output
    assert "has no batch-norm layers: --adapt-bn changes nothing" in result.stderr
    adapted = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert adapted["adapt_bn"]["layers"] == 0
    assert adapted["dice"] == plain["dice"]


def test_train_takes_adapt_bn_only_with_the_loso_protocol(shifted: list[Path]) -> None:
    args = ["train", "fast-cpu-binary", "--data", str(shifted[0]), "--adapt-bn"]
    result = runner.invoke(app, args)
    assert_one_line_error(result, "--adapt-bn goes with --protocol loso")
    result = runner.invoke(app, [*args, "--protocol", "kfold"])
    assert_one_line_error(result, "--adapt-bn goes with --protocol loso")


def test_brats_models_refuse_adapt_bn(tmp_path: Path) -> None:
    args = ["predict", "zoo:brats2d", str(tmp_path), "--out", str(tmp_path / "o"), "--adapt-bn"]
    assert_one_line_error(runner.invoke(app, args), "--adapt-bn: not available for brats2d")
