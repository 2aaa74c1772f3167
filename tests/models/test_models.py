"""The model zoo: every registered model builds and gives the documented output shape;
registry conventions, the frozen system-004 head, local weight files and refused pickles."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from braintumor.errors import ModelFormatError, RecipeError
from braintumor.models import (
    build_model,
    count_parameters,
    get_spec,
    list_models,
    load_weights,
    logits_to_probs,
    model_size_mb,
)
from braintumor.models.registry import meta_size
from braintumor.models.segmenters3d import nnunet_kernels_strides

# built on the meta device only: forward passes of these are too slow for unit tests
# (hrnet_w18_ssld is hrnet_w18's architecture with other pretrained weights)
META_ONLY = {"hrnet_w48", "hrnet_w48_ssld", "hrnet_w64", "hrnet_w18_ssld"}
# small inputs, and kwargs that let a model take them
SMALL_KWARGS = {
    "vit_small_patch16_224": {"img_size": 64},
    "vit_base_patch16_224": {"img_size": 64},
    "dynunet": {"patch_size": (32, 32, 32)},
    "swinunetr": {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
}
REQUIRED = {
    "classify": {
        "resnet18", "resnet34", "resnet50", "efficientnet_b0", "hrnet_w18", "hrnet_w48",
        "hrnet_w64", "hrnet_w18_ssld", "hrnet_w48_ssld", "vit_small_patch16_224",
        "vit_base_patch16_224", "convnext_tiny", "resnet10t", "resnet50-maxpool-head",
        "small-resnet",
    },
    "segment2d": {
        "unet", "attention-unet", "resnet50-unet", "unetplusplus", "deeplabv3plus", "pspnet",
        "fpn", "resnet18-unet", "unet3plus", "resunetpp", "resnet50-attention-unet",
        "dilated-unet",
    },
    "segment3d": {"segresnet", "dynunet", "swinunetr", "unet3d"},
}  # fmt: skip


def _case(name: str) -> tuple[int, int, torch.Tensor, tuple[int, ...]]:
    """(num_classes, in_channels, input, expected output shape) for a model."""
    task = get_spec(name).task
    if task == "classify":
        k = 2 if get_spec(name).single_logit else 4
        return k, 1, torch.randn(1, 1, 64, 64), (1, 1 if k == 2 else 4)
    if task == "segment2d":
        return 3, 4, torch.randn(1, 4, 64, 64), (1, 3, 64, 64)
    size = (64, 32, 32) if name == "swinunetr" else (32, 32, 32)
    return 3, 4, torch.randn(1, 4, *size), (1, 3, *size)


def test_registry_holds_every_required_model() -> None:
    for task, names in REQUIRED.items():
        registered = {spec.name for spec in list_models(task)}
        assert names <= registered, names - registered
        for spec in list_models(task):
            assert spec.task == task and spec.reference and spec.description


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(RecipeError, match="hrnet_w48"):
        get_spec("hrnet_w84")
    with pytest.raises(RecipeError, match="unknown task"):
        list_models("detect")


@pytest.mark.parametrize("name", sorted(s.name for s in list_models() if s.name not in META_ONLY))
def test_forward_gives_documented_shape(name: str) -> None:
    if name == "swinunetr":
        pytest.importorskip("einops")
    k, c, x, expected = _case(name)
    torch.manual_seed(0)
    model = build_model(name, num_classes=k, in_channels=c, **SMALL_KWARGS.get(name, {})).eval()
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(META_ONLY))
def test_large_hrnets_build_on_meta(name: str) -> None:
    params, size = meta_size(name, num_classes=4)
    assert params > (15e6 if "w18" in name else 70e6)  # W18 19 M, W48 75 M, W64 126 M
    assert size == pytest.approx(params * 4 / 2**20, rel=0.05)


@pytest.mark.parametrize("spec", [s for s in list_models() if s.gradcam_layer], ids=str)
def test_gradcam_layer_exists(spec) -> None:
    with torch.device("meta"):
        model = build_model(
            spec.name, num_classes=2, in_channels=3, **SMALL_KWARGS.get(spec.name, {})
        )
    layer = model.get_submodule(spec.gradcam_layer)
    if spec.vit_tokens:
        assert isinstance(layer, nn.LayerNorm) and model.num_prefix_tokens == 1


def test_maxpool_head_freezes_conv1_to_conv3() -> None:
    model = build_model("resnet50-maxpool-head", num_classes=2)
    backbone = model.backbone
    for name in ("conv1", "bn1", "layer1", "layer2"):
        assert not any(p.requires_grad for p in getattr(backbone, name).parameters()), name
    for part in (backbone.layer3, backbone.layer4, model.head):
        assert all(p.requires_grad for p in part.parameters())
    model.train()
    frozen_bn, trained_bn = backbone.layer2[0].bn1, backbone.layer3[0].bn1
    assert not frozen_bn.training and not backbone.bn1.training and trained_bn.training
    before_frozen = frozen_bn.running_mean.clone()
    before_trained = trained_bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(frozen_bn.running_mean, before_frozen)
    assert not torch.equal(trained_bn.running_mean, before_trained)
    with pytest.raises(RecipeError, match="num_classes must be 2"):
        build_model("resnet50-maxpool-head", num_classes=4)


def test_small_resnet_is_timm_resnet() -> None:
    from timm.models.resnet import BasicBlock, ResNet

    model = build_model("small-resnet", num_classes=4, in_channels=1)
    assert isinstance(model, ResNet) and isinstance(model.layer1[0], BasicBlock)
    assert count_parameters(model) < 2e6


def test_logits_to_probs_handles_single_logit_and_softmax() -> None:
    single = torch.tensor([[0.0], [2.0]])
    probs = logits_to_probs(single)
    assert probs.shape == (2, 2)
    assert probs[1, 1].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert torch.allclose(probs.sum(1), torch.ones(2))
    multi = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.allclose(logits_to_probs(multi), torch.softmax(multi, 1))


def test_build_model_rejects_bad_requests(tmp_path) -> None:
    with pytest.raises(RecipeError, match="bad option"):
        build_model("unet", num_classes=2, no_such_option=3)
    with pytest.raises(RecipeError, match="no pretrained"):
        build_model("unet3plus", num_classes=2, pretrained=True)
    with pytest.raises(RecipeError, match="not both"):
        build_model("resnet10t", num_classes=2, pretrained=True, weights=tmp_path / "w.pth")


def test_parameter_counts_match_the_papers() -> None:
    # UNet 3+ (Huang et al. 2020) reports 26.97 M, ResUNet++ (Jha et al. 2019) 4.07 M
    assert meta_size("unet3plus", num_classes=1)[0] == pytest.approx(26.97e6, rel=0.01)
    assert meta_size("resunetpp", num_classes=1)[0] == pytest.approx(4.07e6, rel=0.01)
    nobridge = meta_size("unet3plus", num_classes=1, bridge=False)[0]
    assert nobridge < 10e6  # system 002 reports 8.9 M for its nobridge U-Net 3+
    linear = nn.Linear(10, 5)
    assert count_parameters(linear) == 55
    assert model_size_mb(linear) == pytest.approx(55 * 4 / 2**20)


def test_dynunet_strides_follow_patch_and_spacing() -> None:
    kernels, strides = nnunet_kernels_strides((128, 128, 128), (1.0, 1.0, 1.0))
    assert strides[0] == [1, 1, 1] and len(strides) == 6 and strides[-1] == [2, 2, 2]
    kernels, strides = nnunet_kernels_strides((160, 160, 32), (1.0, 1.0, 3.0))
    assert strides[1] == [2, 2, 1] and kernels[0] == [3, 3, 1]
    with pytest.raises(RecipeError, match="halved"):
        nnunet_kernels_strides((30, 32, 32), (1.0, 1.0, 1.0))


def _fill(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_weights_from_safetensors_load_exactly(tmp_path) -> None:
    source = build_model("resnet10t", num_classes=4)
    state = _fill(source, 1)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    model = build_model("resnet10t", num_classes=4, weights=path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pth_checkpoint_unwrapped_and_other_head_skipped(tmp_path) -> None:
    source = build_model("resnet10t", num_classes=4)
    state = _fill(source, 2)
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = build_model("resnet10t", num_classes=3)
    report = load_weights(model, path)
    assert set(report.skipped) == {"fc.weight", "fc.bias"}
    assert report.skipped["fc.weight"] == ((4, 512), (3, 512))
    assert set(report.missing) == {"fc.weight", "fc.bias"} and not report.unexpected
    assert torch.equal(model.state_dict()["layer4.0.conv1.weight"], state["layer4.0.conv1.weight"])
    with pytest.raises(ModelFormatError, match="does not fit"):
        load_weights(build_model("resnet10t", num_classes=3), path, strict=True)


def test_rgb_first_conv_adapted_to_grey(tmp_path) -> None:
    source = build_model("resnet18", num_classes=2, in_channels=3)
    state = _fill(source, 3)
    path = tmp_path / "rgb.safetensors"
    save_file(state, str(path))
    model = build_model("resnet18", num_classes=2, in_channels=1)
    report = load_weights(model, path)
    assert report.adapted == ["conv1.weight"]
    expected = state["conv1.weight"].sum(dim=1, keepdim=True)
    assert torch.allclose(model.conv1.weight, expected)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_code_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": _Exploit(str(marker))}}, path)
    assert b"system" in path.read_bytes()  # the file really carries the call
    with pytest.raises(ModelFormatError, match="could run code"):
        build_model("resnet10t", num_classes=2, weights=path)
    assert not marker.exists()


def test_unreadable_weight_files_raise_model_format_error(tmp_path) -> None:
    model = build_model("small-resnet", num_classes=2)
    with pytest.raises(ModelFormatError, match="no such"):
        load_weights(model, tmp_path / "absent.safetensors")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ModelFormatError, match="unknown weights format"):
        load_weights(model, tmp_path / "w.onnx")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ModelFormatError, match=r"bad\.safetensors"):
        load_weights(model, tmp_path / "bad.safetensors")


def test_models_cli_lists_sizes() -> None:
    from braintumor.cli.models import models_app

    runner = CliRunner()
    result = runner.invoke(models_app, ["--task", "segment3d", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| segresnet")]
    assert len(rows) == 1 and float(rows[0].split("|")[4]) > 1.0  # millions of parameters
    result = runner.invoke(models_app, ["list", "--task", "nope"])
    assert result.exit_code == 2


def test_offline_pretrained_request_is_one_clear_error(monkeypatch) -> None:
    import timm

    def offline(*args, **kwargs):
        raise OSError("cannot reach the hub")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ModelFormatError, match="weights=FILE"):
        build_model("resnet10t", num_classes=2, pretrained=True)
    with pytest.raises(OSError, match="cannot reach"):  # without pretrained it is a plain bug
        build_model("resnet10t", num_classes=2)
