"""Grad-CAM: localises what drives a score, works on every classifier family, draws overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from braintumor.errors import BrainTumorError
from braintumor.explain import choose_layer, explain_image, gradcam, resolve_target
from braintumor.io.base import LoadedImage
from braintumor.models.folder import LoadedModel
from braintumor.models.registry import build_model
from model_support import loaded_2d


class BrightnessNet(nn.Module):
    """Conv detector of bright pixels -> global average -> class 1 up, class 0 down.

    Its Grad-CAM for class 1 is known in advance: the bright region, nothing else.
    """

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 4, 3, padding=1)
        self.features = nn.Sequential(conv, nn.ReLU())
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            conv.weight.fill_(1 / 9)
            conv.bias.fill_(-0.6)  # fires only where the mean of 3x3 pixels > 0.6
            self.fc.weight.copy_(torch.tensor([[-1.0] * 4, [1.0] * 4]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _square_image(size: int = 64, top: int = 8, left: int = 36, side: int = 16) -> torch.Tensor:
    x = torch.full((1, 1, size, size), 0.2) + 0.02 * torch.randn(1, 1, size, size)
    x[..., top : top + side, left : left + side] = 1.0
    return x


def test_cam_concentrates_on_the_evidence() -> None:
    torch.manual_seed(0)
    net = BrightnessNet().eval()
    x = _square_image()
    heat = gradcam(net, x, target_class=1, layer="features")
    inside = np.zeros(heat.shape, dtype=bool)
    inside[8:24, 36:52] = True
    assert heat.shape == (64, 64)
    assert heat[inside].mean() > 0.5
    assert heat[inside].sum() / heat.sum() > 0.8  # the square is 6% of the image
    # Class 0 is pushed *down* by the square: no positive evidence anywhere -> zeros.
    assert np.allclose(gradcam(net, x, target_class=0, layer="features"), 0.0)
    # Default target = the predicted class (1 here).
    np.testing.assert_allclose(gradcam(net, x, layer="features"), heat, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "size", "kwargs"),
    [
        # A fresh timm ResNet zeroes each block's last BN, which makes every map flat.
        ("resnet18", 64, {"zero_init_last": False}),
        ("efficientnet_b0", 64, {}),
        ("hrnet_w18", 64, {}),
        ("vit_small_patch16_224", 64, {"img_size": 64}),
    ],
)
def test_cam_on_every_classifier_family(name: str, size: int, kwargs: dict) -> None:
    torch.manual_seed(0)
    net = build_model(name, num_classes=4, in_channels=3, **kwargs).eval()
    x = torch.randn(1, 3, size, size)
    maps = [gradcam(net, x, target_class=k) for k in (0, 1)]
    for heat in maps:
        assert heat.shape == (size, size)
        assert np.isfinite(heat).all()
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    assert np.abs(maps[0] - maps[1]).mean() > 1e-3, "the map should depend on the class"
    # The explained network is untouched: no hooks left on it, so predictions stay as they were.
    assert not any(m._forward_hooks or m._backward_hooks for m in net.modules())


def test_layer_choice_follows_registry_and_tokens() -> None:
    vit = build_model("vit_small_patch16_224", num_classes=2, img_size=32)
    assert choose_layer(vit, "vit_small_patch16_224") == ("blocks.11.norm1", True)
    assert choose_layer(BrightnessNet()) == ("features.0", False)
    with pytest.raises(BrainTumorError, match="not in this network"):
        gradcam(BrightnessNet(), torch.zeros(1, 1, 8, 8), layer="nope")
    with pytest.raises(BrainTumorError, match=r"\(1, C, H, W\)"):
        gradcam(BrightnessNet(), torch.zeros(2, 1, 8, 8))


def test_resolve_target_by_name_or_index() -> None:
    names = ["glioma", "meningioma", "no_tumor", "pituitary"]
    assert resolve_target("pituitary", names) == 3
    assert resolve_target("1", names) == 1
    assert resolve_target(None, names) is None
    with pytest.raises(BrainTumorError, match="unknown target class"):
        resolve_target("astro", names)
    with pytest.raises(BrainTumorError, match="out of range"):
        resolve_target(7, names)


def _loaded_classifier(tmp_path: Path) -> LoadedModel:
    torch.manual_seed(0)
    net = build_model("resnet18", num_classes=3, in_channels=1, zero_init_last=False)
    return loaded_2d(
        "classify",
        net,
        ["a", "b", "c"],
        image_size=64,
        path=tmp_path / "model",
        architecture="resnet18",
        model_args={"zero_init_last": False},
    )


def test_explain_image_writes_an_overlay_of_the_original_size(tmp_path: Path) -> None:
    loaded = _loaded_classifier(tmp_path)
    rng = np.random.default_rng(0)
    pixels = (rng.random((50, 80)) * 60).astype(np.uint8)
    pixels[10:30, 40:60] = 250
    image = LoadedImage(array=pixels, path=tmp_path / "slice.png")
    result = explain_image(loaded, image, tmp_path / "out", target="b")
    assert set(result["probabilities"]) == {"a", "b", "c"}
    assert abs(sum(result["probabilities"].values()) - 1) < 1e-5
    assert result["target_class"] == "b"
    assert result["layer"] == "layer4"
    written = Image.open(result["overlay_path"])
    assert written.size == (80, 50) and written.mode == "RGB"
    # The grey original with colour added: red and blue channels part somewhere.
    overlay = np.asarray(written).astype(int)
    assert overlay.std() > 10
    assert np.abs(overlay[..., 0] - overlay[..., 2]).max() > 30


def test_explain_refuses_segmenters(tmp_path: Path) -> None:
    loaded = _loaded_classifier(tmp_path)
    loaded.info.task = "segment"
    image = LoadedImage(array=np.zeros((16, 16), np.uint8), path=tmp_path / "x.png")
    with pytest.raises(BrainTumorError, match="explains classifiers"):
        explain_image(loaded, image, None)


def test_explain_command_writes_overlays_and_json(tmp_path: Path) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from braintumor.cli.explain import explain_command
    from serve_support import make_model_dir, png_bytes

    app = typer.Typer()
    app.callback()(lambda: None)  # a group, so the command is called by its name
    app.command("explain")(explain_command)
    folder = make_model_dir(tmp_path / "m")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes())
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(10))
    out = tmp_path / "out"
    args = ["explain", str(folder), str(tmp_path / "in"), "--out", str(out), "--target", "glioma"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "explanations.json").read_text())
    [record] = payload["explanations"]
    assert record["target_class"] == "glioma" and (out / record["overlay_path"]).is_file()
    assert [e["id"] for e in payload["errors"]] == ["broken"]
    bad = CliRunner().invoke(app, [*args[:5], "--target", "astrocytoma"])
    assert bad.exit_code == 2
