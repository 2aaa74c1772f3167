"""ONNX export: parity with PyTorch, dynamic batch, the ONNX predictor, failures made clear."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="needs the export extra (onnx, onnxruntime)")

from braintumor.errors import ModelFormatError
from braintumor.export import OnnxPredictor, export_onnx, parity_path
from braintumor.inference.predictor import Predictor
from braintumor.io import read_image
from braintumor.models.folder import load_model_dir
from serve_support import make_model_dir


@pytest.mark.parametrize("task", ["classify", "segment"])
def test_export_matches_pytorch_on_random_and_real_images(
    task: str, tmp_path: Path, shared_data: Path
) -> None:
    folder = make_model_dir(tmp_path / task, task)
    real = sorted((shared_data / "figshare-seg" / "images").glob("*.png"))[:2]
    real += sorted((shared_data / "sartaj-4class" / "Testing" / "glioma_tumor").glob("*.jpg"))[:1]
    for path in real:
        shutil.copy(path, tmp_path / path.name)
    images = [read_image(tmp_path / p.name) for p in real]
    loaded = load_model_dir(folder)
    onnx_path = export_onnx(loaded, parity_images=images)
    assert onnx_path == folder / "model.onnx"
    parity = json.loads(parity_path(onnx_path).read_text())
    assert parity["n_real_images"] == 3
    assert [c["input"] for c in parity["checks"][:2]] == ["random batch 1", "random batch 3"]
    assert parity["max_abs_diff"] < 1e-4
    # The ONNX predictor gives what the PyTorch predictor gives, batch of several images.
    onnx, torch_ = OnnxPredictor(folder), Predictor(loaded, precision="fp32")
    if task == "classify":
        np.testing.assert_allclose(onnx.classify(images), torch_.classify(images), atol=1e-5)
    else:
        for a, b in zip(onnx.segment(images), torch_.segment(images), strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_parity_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import braintumor.export as export

    real_session = export._session

    class Drifting:
        """An ONNX runtime whose answers are 0.01 off: the check must notice."""

        def __init__(self, path: Path) -> None:
            self.inner = real_session(path)

        def run(self, names, feeds):
            return [out + 1e-2 for out in self.inner.run(names, feeds)]

    monkeypatch.setattr(export, "_session", Drifting)
    loaded = load_model_dir(make_model_dir(tmp_path / "m"))
    with pytest.raises(ModelFormatError, match=r"differs from PyTorch by 0\.01"):
        export_onnx(loaded, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
    assert not parity_path(tmp_path / "out.onnx").exists()


def test_onnx_predictor_needs_the_file(tmp_path: Path) -> None:
    folder = make_model_dir(tmp_path / "m")
    with pytest.raises(ModelFormatError, match="braintumor export"):
        OnnxPredictor(folder)
    (folder / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFormatError, match="not a loadable ONNX model"):
        OnnxPredictor(folder)


def test_export_command(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from braintumor.cli.export import export_command

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is called by its name
    app.command("export")(export_command)
    folder = make_model_dir(tmp_path / "m")
    out = tmp_path / "exported" / "net.onnx"
    result = CliRunner().invoke(app, ["export", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and (out.parent / "net.parity.json").is_file()
    bad = CliRunner().invoke(app, ["export", str(folder), "--format", "tflite"])
    assert bad.exit_code == 2
