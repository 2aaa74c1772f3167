"""Preprocessing, batched augmentation, the decoded cache and the model folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from braintumor.data.cache import decode_slices
from braintumor.data.intensity import HeadOutline
from braintumor.data.preprocess import (
    PreprocessSpec,
    brain_bbox,
    normalise_batch,
    prepare_mask,
    prepare_slice,
    restore_mask_size,
    to_grey_uint8,
)
from braintumor.data.samples import Sample
from braintumor.errors import ModelFormatError, RecipeError
from braintumor.invariance.variants import regamma
from braintumor.models.folder import ModelInfo, load_model_dir, save_model_dir
from braintumor.training.augment import AugmentConfig, augment_batch


def _head(height: int = 120, width: int = 80) -> np.ndarray:
    image = np.zeros((height, width), np.uint8)
    yy, xx = np.mgrid[:height, :width]
    inside = ((yy - 70) / 40) ** 2 + ((xx - 40) / 30) ** 2 < 1
    image[inside] = 180
    return image


def test_prepare_slice_pads_to_square_and_resizes() -> None:
    spec = PreprocessSpec(image_size=64, in_channels=3, color="grey")
    out = prepare_slice(np.stack([_head()] * 3, axis=-1), spec)
    assert out.shape == (1, 64, 64) and out.dtype == np.uint8
    # Width 80 padded to 120: the left and right borders are the zero padding.
    assert out[0, :, :5].max() == 0 and out[0, :, -5:].max() == 0


@pytest.mark.parametrize("outline", ["otsu", "range", "gamma-normalised"])
def test_brain_crop_finds_the_head(outline: HeadOutline) -> None:
    y0, y1, x0, x1 = brain_bbox(_head(), outline)
    assert abs(y0 - 30) <= 3 and abs(y1 - 110) <= 3 and abs(x0 - 10) <= 3 and abs(x1 - 70) <= 3


def test_gamma_normalised_outline_ignores_a_brightened_field_of_view() -> None:
    # The head inside a dim, noisy rectangle (the scanner's field of view) on black, as some
    # public JPEGs are framed; a gamma 0.5 export lifts the rectangle's noise.
    rng = np.random.default_rng(0)
    image = np.zeros((160, 160), np.uint8)
    image[10:150, 15:145] = rng.integers(4, 12, size=(140, 130))
    yy, xx = np.mgrid[:160, :160]
    inside = ((yy - 80) / 50) ** 2 + ((xx - 80) / 40) ** 2 < 1
    image[inside] = (140 + 60 * np.sin(xx / 4.0) * np.cos(yy / 6.0))[inside].astype(np.uint8)
    lifted = regamma(image, 0.5)
    head = (30, 131, 40, 121)
    for grey in (image, lifted):
        box = brain_bbox(grey, "gamma-normalised")
        assert max(abs(a - b) for a, b in zip(box, head, strict=True)) <= 4, box
    assert brain_bbox(lifted, "range") != brain_bbox(image, "range")  # the check can fail


def test_mask_restores_to_original_geometry() -> None:
    spec = PreprocessSpec(image_size=64)
    mask = (_head() > 0).astype(np.uint8)
    small = prepare_mask(mask, spec).astype(np.float32)
    back = restore_mask_size(small, *mask.shape) > 0.5
    overlap = (back & (mask > 0)).sum() / (mask > 0).sum()
    assert back.shape == mask.shape and overlap > 0.95


def test_brain_crop_crops_the_mask_with_its_image(tmp_path) -> None:
    # A bright tumour inside the head: after the crop it must sit where the image shows it.
    image = np.zeros((160, 160), np.uint8)
    image[20:140, 50:130] = 120  # the head, off-centre
    image[40:60, 60:80] = 250  # the tumour
    mask = np.zeros_like(image)
    mask[40:60, 60:80] = 255
    Image.fromarray(image).save(tmp_path / "i.png")
    Image.fromarray(mask).save(tmp_path / "m.png")
    sample = Sample(id="i", image=str(tmp_path / "i.png"), mask=str(tmp_path / "m.png"))
    spec = PreprocessSpec(image_size=64, in_channels=1, brain_crop=True)
    decoded = decode_slices([sample], spec, with_masks=True, cache_dir=tmp_path / "c", workers=1)
    tumour_in_image = decoded.images[0, 0] > 200
    tumour_in_mask = decoded.masks[0] > 0
    overlap = (tumour_in_image & tumour_in_mask).sum() / tumour_in_mask.sum()
    assert tumour_in_mask.sum() > 0 and overlap > 0.9


def test_normalise_batch_repeats_grey_and_standardises() -> None:
    spec = PreprocessSpec(image_size=8, in_channels=3, mean=[0.5], std=[0.25])
    batch = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    x = normalise_batch(batch, spec)
    assert x.shape == (2, 3, 8, 8)
    assert torch.allclose(x, torch.full_like(x, 2.0))


def test_augment_moves_image_and_mask_together() -> None:
    torch.manual_seed(0)
    image = torch.zeros(4, 1, 32, 32)
    image[:, :, 4:12, 4:12] = 1.0
    mask = (image > 0.5).float()
    cfg = AugmentConfig(hflip=0.5, rotate=20, translate=0.1, zoom=0.1)
    out_image, out_mask = augment_batch(image, mask, cfg)
    assert not torch.equal(out_image, image)
    # Wherever the mask went, the bright square went too.
    inside = out_image[out_mask > 0.5]
    assert inside.numel() > 0 and inside.mean() > 0.8
    assert set(torch.unique(out_mask).tolist()) <= {0.0, 1.0}


def test_augment_rejects_unknown_keys() -> None:
    with pytest.raises(RecipeError, match="unknown augment keys"):
        AugmentConfig.from_dict({"rotation": 10})


def test_decode_cache_reuses_and_skips_unreadable(tmp_path) -> None:
    samples = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        Image.fromarray(_head()).save(path)
        samples.append(Sample(id=path.name, image=str(path), label="x"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    samples.append(Sample(id="bad.png", image=str(bad), label="x"))
    spec = PreprocessSpec(image_size=32)
    first = decode_slices(samples, spec, cache_dir=tmp_path / "cache", workers=1)
    assert [s.id for s in first.samples] == ["0.png", "1.png", "2.png"]
    assert first.failures and first.failures[0][0] == "bad.png"
    again = decode_slices(samples, spec, cache_dir=tmp_path / "cache", workers=1)
    assert isinstance(again.images, np.memmap)  # served from the cache, not decoded again
    assert np.array_equal(np.asarray(again.images), first.images)


def test_model_folder_round_trip_and_tampering(tmp_path) -> None:
    from braintumor.models import build_model

    model = build_model("resnet10t", num_classes=3, in_channels=1)
    info = ModelInfo(
        task="classify",
        architecture="resnet10t",
        num_outputs=3,
        in_channels=1,
        class_names=["a", "b", "c"],
        image_size=32,
    )
    folder = save_model_dir(model, info, tmp_path / "model")
    loaded = load_model_dir(folder)
    x = torch.randn(2, 1, 32, 32)
    model.eval()
    assert torch.allclose(loaded.model(x), model(x), atol=1e-6)
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match=r"model\.json"):
        load_model_dir(folder)


def test_schedule_follows_the_time_budget_when_it_runs_ahead_of_steps() -> None:
    from braintumor.training.optim import warmup_then_decay

    by_steps = warmup_then_decay(100, 0.0, "cosine")
    used = {"share": 0.0}
    by_time = warmup_then_decay(100, 0.0, "cosine", lambda: used["share"])
    assert by_steps(10) == pytest.approx(by_time(10))
    used["share"] = 1.0  # the budget is spent after 10 of 100 steps: anneal fully
    assert by_time(10) == pytest.approx(0.0, abs=1e-9)
    assert by_steps(10) > 0.9


@pytest.mark.parametrize("name", ["adamw", "sgd", "adopt"])
def test_optimizer_is_fused_where_torch_has_it_and_updates_like_the_plain_one(name) -> None:
    from timm.optim import create_optimizer_v2

    from braintumor.config import load_recipe
    from braintumor.training.optim import build_optimizer

    recipe = load_recipe("fast-cpu-seg", [f"optimizer={name}", "lr=0.1"])
    torch.manual_seed(0)
    ours, plain = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    plain.load_state_dict(ours.state_dict())
    start = ours.weight.detach().clone()
    optimizer = build_optimizer(ours, recipe)
    reference = create_optimizer_v2(
        list(plain.parameters()), opt=name, lr=0.1, weight_decay=recipe.weight_decay
    )
    assert bool(optimizer.defaults.get("fused")) == (name != "adopt")  # adopt is timm's own
    x = torch.randn(16, 6)
    for _ in range(3):
        for model, opt in ((ours, optimizer), (plain, reference)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    assert not torch.allclose(ours.weight, start, atol=1e-3)  # the steps moved the weights
    for a, b in zip(ours.parameters(), plain.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_grey_of_8bit_colour_equals_the_float_channel_mean_rescaled(channels: int) -> None:
    rng = np.random.default_rng(channels)
    for low, high in [(0, 256), (40, 90), (200, 201)]:  # full range, narrow, constant
        rgb = rng.integers(low, high, size=(31, 45, channels), dtype=np.uint8)
        mean = rgb[..., :3].astype(np.float32).mean(axis=-1)
        span = float(mean.max()) - float(mean.min())
        expected = (
            ((mean - float(mean.min())) * (255.0 / span)).round().astype(np.uint8)
            if span > 0
            else np.zeros(mean.shape, np.uint8)
        )
        np.testing.assert_array_equal(to_grey_uint8(rgb), expected)


def test_validation_dice_follows_the_empty_rule() -> None:
    from braintumor.config import load_recipe
    from braintumor.training.module import SegmentationModule

    class Fixed(torch.nn.Module):  # logits chosen by the test: + where the mask is predicted
        def __init__(self, logits: torch.Tensor) -> None:
            super().__init__()
            self.logits = logits

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.logits

    truth = torch.zeros(3, 1, 4, 4)
    truth[1, 0, :2] = 1  # image 1: tumour in the top half; images 0 and 2: none
    logits = torch.full((3, 1, 4, 4), -5.0)
    logits[1, 0, :1] = 5.0  # half of the tumour found: Dice 2*4/(4+8)
    logits[2, 0, 0, 0] = 5.0  # a false positive on an empty image: Dice 0
    module = SegmentationModule(load_recipe("fast-cpu-seg"), 1, 3, False, model=Fixed(logits))
    logged: dict[str, torch.Tensor] = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)  # no Trainer
    module.validation_step({"image": torch.zeros(3, 3, 4, 4), "mask": truth}, 0)
    # Both empty counts 1 (image 0), as docs/evaluation.md says.
    assert float(logged["val/dice"]) == pytest.approx((1.0 + 8 / 12 + 0.0) / 3)
