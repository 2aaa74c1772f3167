"""Batch norm folded into convolutions for prediction: same outputs, the model untouched, and
folded again when AdaBN changes the statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from braintumor.data.preprocess import normalise_batch
from braintumor.inference.adapt_bn import batchnorm_layers
from braintumor.inference.fold_bn import FoldedNetwork, conv_bn_pairs, fold_batchnorm
from braintumor.inference.predictor import Predictor
from braintumor.io import LoadedImage
from braintumor.models import build_model
from model_support import loaded_2d


def _with_statistics(model: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters, so folding them changes weights."""
    generator = torch.Generator().manual_seed(0)
    for layer in batchnorm_layers(model).values():
        n = layer.num_features
        layer.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
        layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
        layer.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
        layer.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def test_folded_resnet_matches_and_leaves_the_model_alone() -> None:
    model = _with_statistics(build_model("resnet10t", num_classes=4, in_channels=1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pairs = conv_bn_pairs(model)
    assert len(pairs) >= 10
    folded = fold_batchnorm(model, pairs)
    assert not batchnorm_layers(folded)  # every batch norm of this ResNet follows a conv
    assert len(batchnorm_layers(model)) == len(pairs)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    x = torch.randn(3, 1, 64, 64)
    with torch.inference_mode():
        expected, got = model(x), folded(x)
    assert torch.allclose(expected, got, atol=1e-4, rtol=1e-4)
    assert hasattr(folded, "forward_features")  # still the model's own class


class _ConvReadTwice(nn.Module):
    """A batch norm whose convolution's output is also read elsewhere: not foldable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.norm2 = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        z = self.norm2(self.conv2(y))
        return self.norm(y) + z


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.norm = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent: torch.fx cannot trace it
            return self.norm(self.conv(x))
        return self.conv(x)


class _ReadsStatistics(nn.Module):
    """Uses its batch norm's running mean beyond the normalisation: not foldable as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x)) + self.norm.running_mean.view(1, -1, 1, 1)


def test_a_folded_copy_that_answers_differently_is_not_used() -> None:
    model = _with_statistics(_ReadsStatistics())
    assert conv_bn_pairs(model) == [("conv", "norm")]  # fx sees a BatchNorm2d after a Conv2d
    with pytest.warns(UserWarning, match="not folded"):
        network = FoldedNetwork(model)
    assert network.current() is model
    training = _with_statistics(build_model("resnet10t", num_classes=2, in_channels=1)).train()
    assert FoldedNetwork(training).current() is training  # no probe through training mode


def test_only_pairs_whose_conv_output_nothing_else_reads() -> None:
    assert conv_bn_pairs(_ConvReadTwice().eval()) == [("conv2", "norm2")]
    untraceable = _Untraceable().eval()
    assert conv_bn_pairs(untraceable) == []
    assert FoldedNetwork(untraceable).current() is untraceable
    resnet = build_model("resnet10t", num_classes=2, in_channels=1).eval()
    assert FoldedNetwork(resnet, fold=False).current() is resnet


def test_refolds_when_the_statistics_change() -> None:
    model = _with_statistics(build_model("resnet10t", num_classes=2, in_channels=1))
    network = FoldedNetwork(model)
    first = network.current()
    assert network.current() is first  # cached while the statistics stay
    x = torch.randn(2, 1, 64, 64)
    for layer in batchnorm_layers(model).values():
        layer.running_mean.add_(0.5)
    with torch.inference_mode():
        expected, got = model(x), network.current()(x)
    assert network.current() is not first
    assert torch.allclose(expected, got, atol=1e-4, rtol=1e-4)


def test_predictor_runs_folded_and_adapts_through_it() -> None:
    model = _with_statistics(build_model("resnet10t", num_classes=2, in_channels=1))
    loaded = loaded_2d("classify", model, ["a", "b"], image_size=64)
    rng = np.random.default_rng(0)
    images = [
        LoadedImage(array=rng.integers(0, 255, (64, 64), dtype=np.uint8), path=Path(f"{i}.png"))
        for i in range(6)
    ]
    predictor = Predictor(loaded, precision="fp32", ood=False)
    probs = predictor.classify(images)
    assert predictor.network.current() is not predictor.model
    with torch.inference_mode():
        x = torch.stack([predictor.prepare(image) for image in images])
        plain = predictor.model(normalise_batch(x, predictor.spec)).softmax(1).numpy()
    assert np.allclose(probs, plain, atol=1e-5)
    predictor.adapt_bn(images)  # new statistics in predictor.model: the folded copy follows
    adapted = predictor.classify(images)
    assert not np.allclose(adapted, probs, atol=1e-4)
