"""A grey model reads an LGG slice as its FLAIR channel wherever the slice comes from: one
source among several (training cache), a file given to predict, an evaluation; never the
average of three sequences."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from braintumor.data.cache import decode_slices
from braintumor.data.lgg import FLAIR, is_lgg_slice, slice_spec
from braintumor.data.preprocess import PreprocessSpec, prepare_slice
from braintumor.data.samples import Sample
from braintumor.data.sources import load_data
from braintumor.inference.prefetch import load_prepared
from braintumor.invariance.check import load_slices

PATIENT = "TCGA_CS_4941_19960909"
GREY = PreprocessSpec(image_size=64, in_channels=1, color="grey", intensity="equalize")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"data/{PATIENT}/{PATIENT}_12.tif", True),
        (f"{PATIENT}/{PATIENT}_3.TIFF", True),
        (f"data/{PATIENT}/{PATIENT}_12_mask.tif", False),  # its reference mask
        (f"data/other/{PATIENT}_12.tif", False),  # not in its patient's folder
        (f"data/{PATIENT}/{PATIENT}_12.png", False),
        (f"data/{PATIENT}/{PATIENT}_x.tif", False),
        ("data/TCGA_CS_4941/TCGA_CS_4941_1.tif", False),
    ],
)
def test_lgg_slices_are_known_by_their_kaggle_3m_names(path: str, expected: bool) -> None:
    assert is_lgg_slice(Path(path)) is expected


def _sequences(seed: int) -> np.ndarray:
    """Three unlike 'sequences': a bright disc in FLAIR only, other patterns elsewhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:96, :96]
    head = ((yy - 48) ** 2 + (xx - 48) ** 2 < 40**2).astype(np.float32)
    flair = head * 90 + 150 * ((yy - 40) ** 2 + (xx - 56) ** 2 < 10**2)
    pre = head * (60 + 60 * (xx / 96.0))
    post = head * rng.uniform(40, 200, size=head.shape)
    return np.stack([pre, flair, post], axis=-1).clip(0, 255).astype(np.uint8)


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric="rgb")
    return path


def test_slice_spec_takes_flair_only_for_grey_specs_without_their_own_channels() -> None:
    array, lgg = _sequences(0), Path(f"d/{PATIENT}/{PATIENT}_1.tif")
    assert slice_spec(lgg, array, GREY).channels == [FLAIR]
    assert slice_spec(Path("d/any/slice.tif"), array, GREY) is GREY
    assert slice_spec(lgg, array[..., 1], GREY) is GREY  # already one channel
    keep = dataclasses.replace(GREY, color="keep", in_channels=3)
    assert slice_spec(lgg, array, keep) is keep
    chosen = dataclasses.replace(GREY, channels=[0])
    assert slice_spec(lgg, array, chosen) is chosen


def test_every_read_path_gives_the_flair_input(tmp_path: Path) -> None:
    array = _sequences(1)
    lgg = _write(tmp_path / "lgg" / PATIENT / f"{PATIENT}_7.tif", array)
    elsewhere = _write(tmp_path / "renamed" / "slice_7.tif", array)
    flair = prepare_slice(array[..., FLAIR], GREY)
    mixed = prepare_slice(array, GREY)
    assert np.abs(flair.astype(int) - mixed.astype(int)).mean() > 10  # the choice matters

    np.testing.assert_array_equal(load_prepared(lgg, GREY).network_input, flair)
    np.testing.assert_array_equal(load_prepared(elsewhere, GREY).network_input, mixed)
    samples = [Sample(id="a", image=str(lgg)), Sample(id="b", image=str(elsewhere))]
    decoded = decode_slices(samples, GREY, cache_dir=tmp_path / "cache", workers=1)
    np.testing.assert_array_equal(decoded.images[0], flair)
    np.testing.assert_array_equal(decoded.images[1], mixed)
    slices, skipped = load_slices(samples, with_masks=False)
    assert not skipped
    np.testing.assert_array_equal(slices[0].grey, array[..., FLAIR])


def test_cached_slices_from_before_the_rule_are_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache entry written when LGG slices were averaged has another key."""
    from braintumor.data import cache

    lgg = [Sample(id="x", image=str(tmp_path / PATIENT / f"{PATIENT}_2.tif"))]
    now = cache._cache_key(lgg, GREY, with_masks=False)
    keep = dataclasses.replace(GREY, color="keep", in_channels=3)
    keep_now = cache._cache_key(lgg, keep, with_masks=False)
    monkeypatch.setattr(cache, "is_lgg_slice", lambda path: False)  # the key before the rule
    assert cache._cache_key(lgg, GREY, with_masks=False) != now
    assert cache._cache_key(lgg, keep, with_masks=False) == keep_now  # unchanged: not averaged


@pytest.mark.realdata
def test_lgg_as_one_classification_source_is_read_as_flair(
    shared_data: Path, tmp_path: Path
) -> None:
    patient = "TCGA_CS_5395_19981004"
    target = tmp_path / "lgg" / "kaggle_3m" / patient
    shutil.copytree(shared_data / "lgg-kaggle3m" / "kaggle_3m" / patient, target)
    layout = load_data([f"lgg={tmp_path / 'lgg'}"], "classify", ["no_tumor", "tumor"])
    assert {s.label for s in layout.samples} == {"no_tumor", "tumor"}
    decoded = decode_slices(layout.samples[:4], GREY, cache_dir=tmp_path / "cache", workers=1)
    for sample, image in zip(decoded.samples, decoded.images, strict=True):
        real = tifffile.imread(sample.image)
        np.testing.assert_array_equal(image, prepare_slice(real[..., FLAIR], GREY))
