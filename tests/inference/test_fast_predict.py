"""The fast predict path: JPEGs decoded reduced, the same pixels in the training cache and in
predict, inputs read ahead in order, and the inference precision."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import braintumor.inference.precision as precision
from braintumor.data.cache import decode_slices
from braintumor.data.preprocess import PreprocessSpec, decode_side
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.inference.predictor import Predictor
from braintumor.inference.prefetch import as_stored, full_shape, load_prepared, prefetched
from braintumor.io import read_image
from braintumor.models import build_model
from model_support import loaded_2d


def _jpeg(path: Path, side: int = 512, seed: int = 0) -> Path:
    """A grey head-like JPEG stored as RGB, as most public MRI JPEGs are."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    head = ((yy - side / 2) ** 2 + (xx - side / 2.2) ** 2) < (side / 3) ** 2
    grey = np.where(head, 90 + rng.integers(0, 120, (side, side)), 5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(path, quality=90)
    return path


def test_a_jpeg_is_decoded_reduced_down_to_the_side_asked_and_remembers_its_size(tmp_path):
    path = _jpeg(tmp_path / "a.jpg", side=512)
    reduced = read_image(path, min_side=128)
    assert reduced.array.shape[:2] == (128, 128)
    assert full_shape(reduced) == (512, 512)
    assert as_stored(reduced).array.shape[:2] == (512, 512)
    # A side the reduction cannot reach without going under it: decoded whole.
    assert read_image(path, min_side=300).array.shape[:2] == (512, 512)
    assert "full_shape" not in read_image(path, min_side=300).meta


def test_png_is_read_whole_whatever_the_side_asked(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.full((256, 256), 7, dtype=np.uint8)).save(path)
    assert read_image(path, min_side=32).array.shape == (256, 256)


def test_a_brain_crop_spec_decodes_whole():
    assert decode_side(PreprocessSpec(image_size=128, brain_crop=True)) is None
    assert decode_side(PreprocessSpec(image_size=128)) == 256


def test_training_cache_and_predict_see_the_same_pixels(tmp_path):
    spec = PreprocessSpec(image_size=64, in_channels=1, intensity="equalize")
    paths = [_jpeg(tmp_path / f"s{i}.jpg", side=512, seed=i) for i in range(3)]
    samples = [Sample(id=p.name, image=str(p), label="x") for p in paths]
    cached = decode_slices(samples, spec, cache_dir=tmp_path / "cache", workers=1)
    for path, row in zip(paths, cached.images, strict=True):
        prepared = load_prepared(path, spec)
        assert prepared.array.shape[:2] == (128, 128)  # decoded at 2 x 64, not 512
        np.testing.assert_array_equal(prepared.network_input, row)


def test_prefetch_keeps_order_and_reads_at_most_one_batch_ahead():
    batches = [[0, 1], [2, 3], [4, 5], [6]]
    started: list[int] = []
    lock = threading.Lock()

    def load(item: int) -> int:
        with lock:
            started.append(item)
        return item * 10

    reader = prefetched(batches, load)
    first = next(reader)
    assert first == [0, 10]
    assert set(started) <= {0, 1, 2, 3}  # the batch in hand and the next one only
    assert [first, *reader] == [[0, 10], [20, 30], [40, 50], [60]]


def test_prepared_inputs_give_the_predictors_own_preparation(tmp_path):
    torch.manual_seed(0)
    net = build_model("small-resnet", num_classes=2, in_channels=1, widths=(8, 8, 8, 8))
    loaded = loaded_2d("classify", net, ["a", "b"], image_size=64)
    predictor = Predictor(loaded, precision="fp32")
    path = _jpeg(tmp_path / "a.jpg", side=512)
    prepared = load_prepared(path, predictor.spec)
    direct = read_image(path, min_side=decode_side(predictor.spec))
    np.testing.assert_allclose(
        predictor.classify([prepared]), predictor.classify([direct]), atol=1e-6
    )


def test_segment_maps_come_back_at_the_stored_size_of_a_reduced_jpeg(tmp_path):
    torch.manual_seed(0)
    net = build_model("unet", num_classes=1, in_channels=1, channels=(4, 8), num_res_units=0)
    predictor = Predictor(loaded_2d("segment", net, ["background", "tumor"]), precision="fp32")
    prepared = load_prepared(_jpeg(tmp_path / "a.jpg", side=512), predictor.spec)
    assert prepared.array.shape[:2] == (64, 64)
    assert predictor.segment([prepared])[0].shape == (512, 512)


def test_precision_auto_follows_the_cpu_and_bad_names_are_refused(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(precision, "bf16_pays", lambda: True)
    assert precision.resolve_precision("auto", cpu) == "bf16"
    assert precision.resolve_precision("auto", gpu) == "fp32"
    assert precision.resolve_precision("fp32", cpu) == "fp32"
    monkeypatch.setattr(precision, "bf16_pays", lambda: False)
    assert precision.resolve_precision("auto", cpu) == "fp32"
    assert precision.resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(DataError, match="precision must be one of"):
        precision.resolve_precision("fp16", cpu)


@pytest.mark.parametrize("seed", range(4))
def test_histogram_shortcuts_give_numpys_and_scikit_images_values_exactly(seed):
    from skimage.exposure import equalize_hist

    from braintumor.data.intensity import equalized, grey_histogram, percentile_uint8

    rng = np.random.default_rng(seed)
    # Few grey levels (equal neighbours at the percentile) and many (numpy decides).
    levels = (3, 256)[seed % 2]
    plane = (rng.integers(0, levels, (97, 131)) * (255 // max(levels - 1, 1))).astype(np.uint8)
    for view in (plane, plane[::2, 1:], plane[None]):  # OpenCV's count, a strided view, numpy's
        np.testing.assert_array_equal(
            grey_histogram(view), np.bincount(view.ravel(), minlength=256)
        )
    for q in (1.0, 50.0, 99.0):
        assert percentile_uint8(plane, q) == float(np.percentile(plane, q))
        assert percentile_uint8(plane, q, grey_histogram(plane)) == float(np.percentile(plane, q))
    mask = rng.random(plane.shape) < 0.6
    np.testing.assert_array_equal(equalized(plane, mask), equalize_hist(plane, 256, mask=mask))


@pytest.mark.parametrize(
    ("vendor", "flags", "pays"),
    [
        ("GenuineIntel", "avx512f amx_bf16 amx_tile avx512_bf16", True),
        ("GenuineIntel", "avx512f avx512_bf16", False),  # measured slower than fp32
        ("AuthenticAMD", "avx512f avx512_bf16", True),
        ("AuthenticAMD", "avx2", False),
    ],
)
def test_bf16_by_default_only_where_it_measured_faster(monkeypatch, vendor, flags, pays):
    info = f"vendor_id\t: {vendor}\nflags\t\t: fpu sse2 {flags}\n"
    monkeypatch.setattr(precision, "_cpuinfo", lambda: info)
    assert precision.bf16_pays() is pays
    assert precision.cpu_has_bf16() is ("bf16" in flags)
