"""Batch-norm adaptation (AdaBN): the statistics become the new source's, predictions use
them, each source of an evaluation is adapted on its own images, and nothing else changes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from braintumor.data.preprocess import normalise_batch
from braintumor.data.samples import Sample
from braintumor.data.synth_2d import make_slice
from braintumor.data.synth_sources import STYLES, apply_style, write_source_shift_datasets
from braintumor.errors import DataError
from braintumor.inference.adapt_bn import adapt_batchnorm, batchnorm_layers, bn_state
from braintumor.inference.predictor import Predictor
from braintumor.io import LoadedImage, read_image
from braintumor.tasks.registry import evaluate_model
from model_support import loaded_2d

SIZE = 32


class TinyClassifier(nn.Module):
    """conv -> batch norm -> ReLU -> mean -> linear: one batch-norm layer to look at."""

    def __init__(self, norm: nn.Module | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.norm = norm if norm is not None else nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.norm(self.conv(x))).mean(dim=(2, 3)))


class BrightSpotSegmenter(nn.Module):
    """Tumour where a pixel is 1.5 standard deviations (batch-norm statistics) above the mean."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) - 1.5


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[LoadedImage]]:
    """Eight phantoms of a reference source and eight of a darker, biased, noisy one."""
    folders = write_source_shift_datasets(
        tmp_path_factory.mktemp("shift"),
        ["reference", "dark"],
        n_per_class=4,
        size=SIZE,
        kinds=("glioma", "no_tumor"),
    )
    return {
        name: [read_image(p) for p in sorted(folder.rglob("*.png"))]
        for name, folder in zip(("ref", "dark"), folders, strict=True)
    }


def _classifier(norm: nn.Module | None = None) -> Predictor:
    loaded = loaded_2d("classify", TinyClassifier(norm), ["no_tumor", "tumor"], SIZE)
    # fp32: what is checked is which statistics are used, not bf16's rounding of them
    return Predictor(loaded, batch_size=8, precision="fp32")


def _inputs(predictor: Predictor, images: list[LoadedImage]) -> torch.Tensor:
    batch = torch.stack([predictor.prepare(image) for image in images])
    return normalise_batch(batch, predictor.spec)


def test_statistics_become_the_new_source_s(sources: dict[str, list[LoadedImage]]) -> None:
    predictor = _classifier()
    predictor.adapt_bn(sources["ref"])  # the statistics training on the reference would give
    trained = bn_state(predictor.model)
    weights = {k: v.clone() for k, v in predictor.model.state_dict().items() if k not in trained}
    predictor.batch_size = 4  # two batches of four: the cumulative average is the mean
    assert predictor.adapt_bn(sources["dark"]) == 8
    with torch.no_grad():
        features = predictor.model.conv(_inputs(predictor, sources["dark"]))
    norm = predictor.model.norm
    expected = features.mean(dim=(0, 2, 3))
    assert torch.allclose(norm.running_mean, expected, atol=1e-5)
    assert not torch.allclose(norm.running_mean, trained["norm.running_mean"], atol=1e-2)
    assert int(norm.num_batches_tracked) == 2 and norm.momentum == 0.1
    assert not norm.training and not predictor.model.training
    for name, value in predictor.model.state_dict().items():
        if name in weights:
            assert torch.equal(value, weights[name]), name


def test_predictions_use_the_adapted_statistics(sources: dict[str, list[LoadedImage]]) -> None:
    predictor = _classifier()
    predictor.adapt_bn(sources["ref"])
    before = predictor.classify(sources["dark"])
    predictor.adapt_bn(sources["dark"])  # one batch of eight: its own statistics
    after = predictor.classify(sources["dark"])
    x = _inputs(predictor, sources["dark"])
    predictor.model.norm.train()  # normalised by the batch's own statistics
    with torch.no_grad():
        batch_stats = torch.softmax(predictor.model(x), dim=1).numpy()
    predictor.model.norm.eval()
    with torch.no_grad():
        features = predictor.model.conv(x)
    expected_var = features.var(dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(predictor.model.norm.running_var, expected_var, rtol=1e-4)
    assert np.abs(after - batch_stats).max() < 1e-4
    assert np.abs(after - before).max() > 1e-2


def test_a_model_without_batch_norm_is_left_alone(sources: dict[str, list[LoadedImage]]) -> None:
    predictor = _classifier(nn.GroupNorm(2, 4))
    before = predictor.classify(sources["dark"])
    assert not batchnorm_layers(predictor.model)
    assert predictor.adapt_bn(sources["dark"]) == 0
    assert np.array_equal(predictor.classify(sources["dark"]), before)


def test_a_failed_adaptation_keeps_the_trained_statistics() -> None:
    model = TinyClassifier()
    model.norm.running_mean.fill_(3.0)
    with pytest.raises(DataError, match="no readable image"):
        adapt_batchnorm(model, iter([]))
    with pytest.raises(DataError, match="two or more images"):
        adapt_batchnorm(model, iter([torch.zeros(1, 1, SIZE, SIZE)]))
    assert torch.all(model.norm.running_mean == 3.0) and model.norm.momentum == 0.1


def _labelled(images: list[LoadedImage], source: str) -> list[Sample]:
    return [
        Sample(
            id=f"{source}/{Path(image.path).name}",
            image=str(image.path),
            label="no_tumor" if "no_tumor" in str(image.path) else "tumor",
            source=source,
        )
        for image in images
    ]


@pytest.mark.slow  # three whole evaluations with their reports (about 15 s)
def test_evaluation_adapts_each_source_on_its_own_images(
    sources: dict[str, list[LoadedImage]], tmp_path: Path
) -> None:
    classes = ["no_tumor", "tumor"]
    ref, dark = _labelled(sources["ref"], "ref"), _labelled(sources["dark"], "dark")
    loaded = loaded_2d("classify", TinyClassifier(), classes, SIZE)
    trained = bn_state(loaded.model)
    both = evaluate_model(loaded, ref + dark, tmp_path / "both", batch_size=8, adapt_bn=True)
    alone = evaluate_model(loaded, ref, tmp_path / "alone", batch_size=8, adapt_bn=True)
    plain = evaluate_model(loaded, ref + dark, tmp_path / "plain", batch_size=8)
    assert both["adapt_bn"]["images"] == {"ref": 8, "dark": 8}
    assert alone["adapt_bn"]["images"] == {"ref": 8}
    assert "adapt_bn" not in plain
    for name, value in bn_state(loaded.model).items():  # the trained statistics are back
        assert torch.equal(value, trained[name]), name

    def probs(out: Path) -> dict[str, float]:
        with (out / "predictions.csv").open() as handle:
            return {row["id"]: float(row["prob_tumor"]) for row in csv.DictReader(handle)}

    adapted, single = probs(tmp_path / "both"), probs(tmp_path / "alone")
    unadapted = probs(tmp_path / "plain")
    for sample in ref:  # the dark images did not move the reference source's statistics
        assert adapted[sample.id] == pytest.approx(single[sample.id], abs=1e-6)
    assert max(abs(adapted[s.id] - unadapted[s.id]) for s in dark) > 1e-2


def _phantoms(folder: Path, style: str, n: int, seed: int) -> list[Sample]:
    """``n`` glioma phantoms rendered in ``style``, with their masks."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        image, mask = make_slice("glioma", SIZE, rng)
        path, mask_path = folder / f"{style}{i}.png", folder / f"{style}{i}_mask.png"
        Image.fromarray(apply_style(image, STYLES[style], rng)).save(path)
        Image.fromarray(mask * 255).save(mask_path)
        samples.append(Sample(id=path.stem, image=str(path), mask=str(mask_path), source=style))
    return samples


def test_segmentation_evaluation_adapts_too(tmp_path: Path) -> None:
    reference = _phantoms(tmp_path, "reference", 6, seed=0)
    dark = _phantoms(tmp_path, "dark", 6, seed=1)
    classes = ["background", "tumor"]
    loaded = loaded_2d("segment", BrightSpotSegmenter(), classes, SIZE, num_outputs=1)
    # the statistics of its training source
    Predictor(loaded, batch_size=6).adapt_bn(read_image(s.image) for s in reference)
    plain = evaluate_model(loaded, dark, tmp_path / "plain", batch_size=4)
    adapted = evaluate_model(loaded, dark, tmp_path / "adapted", batch_size=4, adapt_bn=True)
    assert adapted["adapt_bn"]["images"] == {"dark": 6} and adapted["adapt_bn"]["layers"] == 1
    # Measured: Dice 0.00 with the reference statistics, 0.26 adapted to the dark source.
    assert adapted["dice"] >= plain["dice"] + 0.15, (plain["dice"], adapted["dice"])
