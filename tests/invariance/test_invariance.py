"""Export invariance: intensity standardisation, export-perturbation augmentations, variants."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from braintumor.config import load_recipe
from braintumor.data.cache import DecodedSlices, _cache_key
from braintumor.data.intensity import head_mask, standardise
from braintumor.data.preprocess import PreprocessSpec, prepare_slice, to_grey_uint8
from braintumor.data.samples import Sample
from braintumor.errors import RecipeError
from braintumor.invariance.variants import REDUCED, VARIANTS, regamma
from braintumor.io import read_image
from braintumor.training import augment as aug
from braintumor.training.augment import AugmentConfig, augment_batch
from braintumor.training.datamodule import SliceDataset
from braintumor.training.setup import preprocess_spec


def _head(size: int = 96) -> np.ndarray:
    """A bright ellipse with darker structures inside on a black background, uint8."""
    yy, xx = np.mgrid[:size, :size]
    inside = ((yy - size / 2) / (0.4 * size)) ** 2 + ((xx - size / 2) / (0.3 * size)) ** 2 < 1
    image = np.where(inside, 150 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0), 3).astype(np.uint8)
    return image


def _batch(seed: int = 0) -> torch.Tensor:
    return torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


TRANSFORMS = {
    "histogram_shift": lambda x: aug.histogram_shift(x, 1.0),
    "bias_field": lambda x: aug.bias_field(x, 0.3),
    "sharpen": lambda x: aug.sharpen(x, 0.8),
    "resample": lambda x: aug.resample(x, 1.0),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_augmentation_keeps_shape_dtype_range_and_repeats_with_a_seed(name: str) -> None:
    transform = TRANSFORMS[name]
    x = _batch()
    torch.manual_seed(3)
    first = transform(x)
    torch.manual_seed(3)
    again = transform(x)
    assert first.shape == x.shape and first.dtype == torch.float32
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert torch.equal(first, again)
    assert not torch.allclose(first, x, atol=1e-3), f"{name} left the batch unchanged"


def test_histogram_shift_is_monotone_and_keeps_black_and_white() -> None:
    ramp = torch.linspace(0, 1, 256).view(1, 1, 1, 256).repeat(8, 1, 1, 1)
    torch.manual_seed(0)
    out = aug.histogram_shift(ramp, 1.0)
    assert torch.all(out[..., 1:] >= out[..., :-1] - 1e-6)
    assert torch.allclose(out[..., 0], torch.zeros(8, 1, 1))
    assert torch.allclose(out[..., -1], torch.ones(8, 1, 1))


def test_bias_field_is_smooth_and_positive() -> None:
    flat = torch.full((2, 1, 64, 64), 0.5)
    torch.manual_seed(1)
    out = aug.bias_field(flat, 0.3)
    ratio = out / flat
    assert float(ratio.min()) > 0.2 and float(ratio.max()) < 5.0
    # Smooth: neighbouring pixels differ far less than the field varies overall.
    step = (ratio[..., 1:] - ratio[..., :-1]).abs().max()
    assert float(step) < 0.1 * float(ratio.max() - ratio.min()) + 1e-6


def test_resample_softens_and_probability_zero_is_identity() -> None:
    x = _batch()
    assert torch.equal(aug.resample(x, 0.0), x)
    torch.manual_seed(0)
    soft = aug.resample(x, 1.0)
    variation = (x[..., 1:] - x[..., :-1]).abs().mean()
    assert float((soft[..., 1:] - soft[..., :-1]).abs().mean()) < 0.7 * float(variation)


def test_intensity_only_augmentation_leaves_masks_alone() -> None:
    cfg = AugmentConfig(
        hflip=0.0, gamma=0.4, histogram_shift=0.5, bias_field=0.2, sharpen=0.5, resample=0.5
    )
    masks = (torch.rand(4, 1, 32, 32) > 0.5).float()
    torch.manual_seed(2)
    images, out_masks = augment_batch(_batch(), masks, cfg)
    assert torch.equal(out_masks, masks)
    assert images.shape == (4, 1, 32, 32) and float(images.max()) <= 1.0


def test_augment_config_reads_jpeg_quality_and_rejects_unknown_keys() -> None:
    cfg = AugmentConfig.from_dict({"jpeg": 0.3, "jpeg_quality": [40, 90]})
    assert cfg.jpeg == 0.3 and cfg.jpeg_quality == (40, 90)
    with pytest.raises(RecipeError, match="unknown augment keys"):
        AugmentConfig.from_dict({"jpg": 0.3})


def test_jpeg_reencoding_in_the_dataset_is_seeded_and_keeps_uint8() -> None:
    images = np.stack([_head(64)[None]] * 6)
    decoded = DecodedSlices(samples=[], images=images, masks=None, failures=[])
    labels = np.zeros(6, dtype=np.int64)
    first = SliceDataset(decoded, labels, seed=5, jpeg=1.0, jpeg_quality=(20, 30))
    second = SliceDataset(decoded, labels, seed=5, jpeg=1.0, jpeg_quality=(20, 30))
    a, b = first.__getitems__(list(range(6))), second.__getitems__(list(range(6)))
    assert a["image"].dtype == torch.uint8 and a["image"].shape == (6, 1, 64, 64)
    assert torch.equal(a["image"], b["image"])
    assert not torch.equal(a["image"], torch.from_numpy(images))
    plain = SliceDataset(decoded, labels, seed=5).__getitems__(list(range(6)))
    assert torch.equal(plain["image"], torch.from_numpy(images))


def test_spec_rejects_unknown_options_and_old_specs_keep_their_preprocessing() -> None:
    with pytest.raises(RecipeError, match="intensity"):
        PreprocessSpec(intensity="zscore")  # type: ignore[arg-type]
    with pytest.raises(RecipeError, match="percentiles"):
        PreprocessSpec(intensity="percentile", percentiles=[99.0, 1.0])
    with pytest.raises(RecipeError, match="head_outline"):
        PreprocessSpec(head_outline="brightest")  # type: ignore[arg-type]
    old = PreprocessSpec.from_dict({"image_size": 64, "in_channels": 1, "color": "grey"})
    assert old.intensity == "none" and old.outline == "otsu"
    older_standardised = PreprocessSpec.from_dict({"intensity": "equalize"})
    assert older_standardised.outline == "range"


def test_cache_key_changes_with_the_intensity_standardisation(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(_head()).save(image)
    samples = [Sample(id="a", image=str(image))]
    keys = {
        _cache_key(samples, PreprocessSpec(image_size=64, intensity=mode), False)
        for mode in ("none", "percentile", "equalize")
    }
    assert len(keys) == 3


def test_standardise_removes_linear_and_monotone_changes_and_fixes_the_background() -> None:
    head = _head()
    mask = head_mask(head)
    assert 0.25 < mask.mean() < 0.5  # the ellipse covers ~38% of the image
    darker = (head // 2).astype(np.uint8)
    gamma = np.round(255 * (head / 255.0) ** 2.0).astype(np.uint8)
    pct = standardise(head, mask, "percentile", background=7)
    assert (
        np.abs(standardise(darker, mask, "percentile", background=7) - pct.astype(int)).max() <= 3
    )
    eq = standardise(head, mask, "equalize")
    assert np.abs(standardise(gamma, mask, "equalize").astype(int) - eq).mean() < 3
    assert np.all(pct[~mask] == 7) and np.all(eq[~mask] == 0)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_writes_a_readable_file_with_its_mask_aligned(name, tmp_path) -> None:
    grey = _head(80)
    truth = np.zeros_like(grey, dtype=bool)
    truth[30:50, 30:44] = True
    path, moved = VARIANTS[name](grey, truth, tmp_path / "slice")
    array = read_image(path).array
    assert moved is not None and moved.shape == array.shape[:2]
    assert moved.sum() > 0
    if VARIANTS[name].family in ("intensity", "encoding"):
        assert np.array_equal(moved, truth)


def _export_four_ways(source: Path, folder: Path) -> dict[str, Path]:
    """The slice re-encoded as JPEG q50, with gamma 0.7, darker, and as a 16-bit PNG."""
    grey = to_grey_uint8(read_image(source).array)
    paths = {
        name: folder / f"{name}.{ext}"
        for name, ext in (
            ("jpeg50", "jpg"),
            ("gamma07", "png"),
            ("darker", "png"),
            ("png16", "png"),
        )
    }
    Image.fromarray(grey).save(paths["jpeg50"], quality=50)
    Image.fromarray(np.round(255 * (grey / 255.0) ** 0.7).astype(np.uint8)).save(paths["gamma07"])
    Image.fromarray(grey // 2).save(paths["darker"])
    Image.fromarray(grey.astype(np.uint16) * 257).save(paths["png16"])
    return paths


#: Largest mean absolute difference (share of the grey range) between the network inputs of
#: two exports of one slice under the default recipes' preprocessing (equalised in the head);
#: measured at most 0.02 on these slices.
TOLERANCE = 0.03


@pytest.mark.realdata
@pytest.mark.parametrize(
    "relative", ["figshare-seg/images/1.png", "sartaj-4class/Testing/glioma_tumor/image(1).jpg"]
)
def test_preprocessing_maps_exports_of_one_real_slice_together(shared_data, tmp_path, relative):
    source = tmp_path / Path(relative).name
    shutil.copy(shared_data / relative, source)
    exports = _export_four_ways(source, tmp_path)
    spec = PreprocessSpec(image_size=128, in_channels=1, intensity="equalize")
    plain = PreprocessSpec(image_size=128, in_channels=1)
    reference = prepare_slice(read_image(source).array, spec).astype(np.float32)
    for name, path in exports.items():
        out = prepare_slice(read_image(path).array, spec).astype(np.float32)
        difference = float(np.abs(out - reference).mean()) / 255
        assert difference <= TOLERANCE, f"{name}: mean difference {difference:.3f}"
    # Without the standardisation the darker export is far apart: the check can fail.
    dark = prepare_slice(read_image(exports["darker"]).array, plain).astype(np.float32)
    original = prepare_slice(read_image(source).array, plain).astype(np.float32)
    assert float(np.abs(dark - original).mean()) / 255 > 2 * TOLERANCE


#: The same for the 4-class default's crop to the head, whose outline follows the gamma out
#: (measured at most 0.033 on these slices for gamma 0.5-1.4; the ``range`` outline moved
#: them by 0.15-0.33 at gamma 0.5).
CROP_TOLERANCE = 0.05


@pytest.mark.realdata
def test_the_head_crop_stays_put_when_the_export_changes_its_gamma(shared_data) -> None:
    spec = preprocess_spec(load_recipe("fast-cpu-4class"))
    assert spec.brain_crop and spec.outline == "gamma-normalised"
    old_outline = dataclasses.replace(spec, head_outline="range")
    moved_before = []
    for relative in (
        "figshare-seg/images/1.png",
        "sartaj-4class/Testing/glioma_tumor/image(1).jpg",
        # framed by a dim rectangle (the scanner's field of view) inside a black border
        "sartaj-4class/Training/meningioma_tumor/m (145).jpg",
    ):
        grey = to_grey_uint8(read_image(shared_data / relative).array)
        for gamma in (0.5, 0.7, 1.4):
            moved = _mean_difference(grey, regamma(grey, gamma), spec)
            assert moved <= CROP_TOLERANCE, f"{relative}, gamma {gamma}: {moved:.3f}"
        moved_before.append(_mean_difference(grey, regamma(grey, 0.5), old_outline))
    assert max(moved_before) > 3 * CROP_TOLERANCE  # the check can fail: the old outline moves


def _mean_difference(a: np.ndarray, b: np.ndarray, spec: PreprocessSpec) -> float:
    """Mean absolute difference of two slices' network inputs, as a share of the grey range."""
    first, second = (prepare_slice(x, spec).astype(np.float32) for x in (a, b))
    return float(np.abs(first - second).mean()) / 255


@pytest.mark.slow
def test_model_trained_on_phantoms_passes_a_reduced_invariance_check(tmp_path) -> None:
    from braintumor.config import load_recipe
    from braintumor.data.layouts import detect_layout
    from braintumor.data.synthetic import write_synthetic_dataset
    from braintumor.invariance.check import run_invariance
    from braintumor.invariance.variants import select_variants
    from braintumor.models.folder import load_model_dir
    from braintumor.training.run import train_run

    data = write_synthetic_dataset(tmp_path / "data", "classify", n=60, seed=4)
    # Bounded by epochs, not minutes, so that a loaded machine gives the same model. The
    # phantoms differ in shape only; under these augmentations 60 steps (12 epochs of 5) left
    # the network at chance; 600 steps at 96 px reached a held-out balanced accuracy of 0.94
    # on one CPU and 0.85-0.86 on another (an AMD EPYC), 900 steps 0.91-0.92 there.
    invariance = [
        "preprocess.intensity=equalize",
        "augment.gamma=0.4",
        "augment.histogram_shift=0.3",
        "augment.jpeg=0.3",
    ]
    recipe = load_recipe(  # the options under test on the plain recipe: no crop to the head
        "plain-cpu-4class",
        ["image_size=96", "batch_size=16", "max_epochs=90", "max_minutes=null", *invariance],
    )
    result = train_run(recipe, data, tmp_path / "run", progress=False)
    # Checked on 160 new phantoms rather than the run's 36 test slices: with 36, one slice is
    # a 0.03 change of balanced accuracy, so the check measured noise as much as invariance.
    held_out = write_synthetic_dataset(tmp_path / "held-out", "classify", n=40, seed=5)
    test = detect_layout(held_out).samples
    report = run_invariance(load_model_dir(result.model_dir), test, select_variants(list(REDUCED)))
    assert report["reference"]["balanced_accuracy"] >= 0.85, report["reference"]
    # Runs are not bit-identical across machines and loads, and one gamma row of 160 phantoms
    # is noisy: with the options a single gamma variant changed 0-11% of the answers and cost
    # up to 0.075 balanced accuracy over seven runs on an AMD EPYC, so the two gammas are
    # judged together. Trained without the options, gamma 0.5 and 2.0 changed 16% and 13% of
    # the answers (mean 14%) and cost 0.13 and 0.09 (mean 0.11): these bounds refuse that.
    rows = {row["variant"]: row for row in report["variants"]}
    gammas = [rows["gamma-0.5"], rows["gamma-2.0"]]
    assert np.mean([row["flip_rate"] for row in gammas]) <= 0.12, gammas
    assert np.mean([row["delta"] for row in gammas]) >= -0.08, gammas
    for row in (rows["jpeg-75"], rows["jpeg-50"]):  # 0-2% changed in every run
        assert row["flip_rate"] <= 0.10, row
        assert row["delta"] >= -0.05, row


def test_benchmark_table_shows_every_variant_and_marks_misses(tmp_path, monkeypatch) -> None:
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import invariance as bench

    rows = [
        {
            "variant": "gamma-0.5",
            "family": "intensity",
            "flip_rate": 0.02,
            "balanced_accuracy": 0.90,
            "delta": -0.01,
            "passes": True,
        },
        {
            "variant": "jpeg-50",
            "family": "encoding",
            "flip_rate": 0.08,
            "balanced_accuracy": 0.85,
            "delta": -0.06,
            "passes": False,
        },
    ]
    record = {
        "task": "classify",
        "n": 10,
        "reference": {"balanced_accuracy": 0.91},
        "variants": rows,
        "worst": {"by_metric_drop": "jpeg-50", "by_flip_rate": "jpeg-50"},
        "passes": False,
        "wall_seconds": 60.0,
    }
    (tmp_path / "invariance_demo.json").write_text(json.dumps(record))
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    table = bench.markdown_table()
    assert (
        "| demo | classify | 10 | balanced_accuracy 0.910 | jpeg-50 / jpeg-50 | -0.060 | 8.0% "
        "| no |" in table
    )
    assert "| jpeg-50 | 0.850 / 8.0% ✗ |" in table and "| gamma-0.5 | 0.900 / 2.0% |" in table


def test_segmenter_check_moves_the_truth_with_geometric_variants(tmp_path) -> None:
    from torch import nn

    from braintumor.invariance.check import run_invariance
    from braintumor.invariance.variants import select_variants
    from model_support import loaded_2d

    samples = []
    for i in range(3):
        image = _head(96)
        truth = np.zeros_like(image, dtype=bool)
        truth[30 + 5 * i : 50 + 5 * i, 35:55] = True
        image[truth] = 235
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / f"{i}_mask.png")
        samples.append(
            Sample(
                id=str(i), image=str(tmp_path / f"{i}.png"), mask=str(tmp_path / f"{i}_mask.png")
            )
        )
    # A 1x1 convolution that calls every pixel brighter than grey level ~222 tumour.
    threshold = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        threshold.weight.fill_(40.0)
        threshold.bias.fill_(-40.0 * ((222 / 255 - 0.5) / 0.25))
    loaded = loaded_2d("segment", threshold, ["background", "tumor"], image_size=96, num_outputs=1)
    geometric = ["fov-pad-20", "fov-crop-10", "rotate-10", "resample-256"]
    report = run_invariance(loaded, samples, select_variants(geometric), batch_size=2)
    assert report["task"] == "segment" and report["reference"]["dice"] > 0.95
    assert report["tta"] is False  # the model folder's setting
    for row in report["variants"]:
        assert row["dice"] > 0.85, row
    # with mirror TTA: the threshold is mirror-symmetric, so the figures are the same
    mirrored = run_invariance(loaded, samples, select_variants(geometric), batch_size=2, tta=True)
    assert mirrored["tta"] is True
    assert mirrored["reference"]["dice"] == pytest.approx(report["reference"]["dice"], abs=1e-6)


def test_fov_cut_reframes_like_an_export_that_cut_the_head_edges() -> None:
    # A bright square in the middle and bright columns at both edges: cutting every side by a
    # quarter of the frame removes the edge columns and enlarges the square to twice its size.
    image = torch.zeros(1, 1, 64, 64)
    image[..., 24:40, 24:40] = 1.0
    image[..., :, :4] = 1.0
    image[..., :, 60:] = 1.0
    mask = (image > 0).float()
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    torch.manual_seed(0)
    framed, box = aug.narrow_field_of_view(theta, probability=1.0, fraction=0.25)
    # Every side cut by U(0, 0.25) of the frame: the box lies inside and is never empty.
    assert bool((box[:, [0, 2]] >= -1).all() and (box[:, [1, 3]] <= 1).all())
    assert bool((box[:, 1] - box[:, 0] >= 1.0).all() and (box[:, 3] - box[:, 2] >= 1.0).all())
    # The longer side of the box fills the frame, centred on the box.
    half_side = max(float(box[0, 1] - box[0, 0]), float(box[0, 3] - box[0, 2])) / 2
    assert abs(float(framed[0, 0, 0]) - half_side) < 1e-6
    assert abs(float(framed[0, 0, 2]) - float(box[0, 0] + box[0, 1]) / 2) < 1e-6
    fixed_box = torch.tensor([[-0.5, 0.5, -0.5, 0.5]])
    fixed = theta * 0.5
    grid = torch.nn.functional.affine_grid(fixed, [1, 1, 64, 64], align_corners=False)
    out = torch.nn.functional.grid_sample(image, grid, align_corners=False) * aug._inside(
        grid, fixed_box
    )
    assert float(out[..., :, :4].sum()) == 0.0  # the edge columns were cut away
    assert 0.9 < float((out > 0.5).float().mean()) / 0.25 < 1.1  # the square fills half a side
    # Not chosen (probability 0): the frame and the affine are unchanged.
    same, whole = aug.narrow_field_of_view(theta, probability=0.0, fraction=0.25)
    assert torch.equal(same, theta)
    assert torch.equal(whole, torch.tensor([[-1.0, 1.0, -1.0, 1.0]]))
    # Through augment_batch the mask follows the image, and the central square is enlarged.
    image[..., :, :4] = image[..., :, 60:] = 0.0
    mask = (image > 0).float()
    cfg = AugmentConfig(hflip=0.0, fov_cut=1.0, fov_cut_fraction=0.2)
    torch.manual_seed(3)
    images, masks = augment_batch(image.repeat(4, 1, 1, 1), mask.repeat(4, 1, 1, 1), cfg)
    assert masks is not None
    # (nearest for the mask, bilinear for the image: they may differ along the edges only)
    assert float(((masks > 0.5) != (images > 0.5)).float().mean()) < 0.02
    assert float((images > 0.5).float().mean()) > float((image > 0.5).float().mean())


def test_fov_cut_fraction_is_checked() -> None:
    with pytest.raises(RecipeError, match="fov_cut_fraction"):
        AugmentConfig.from_dict({"fov_cut": 0.3, "fov_cut_fraction": 0.6})
