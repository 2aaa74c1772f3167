"""The fast predict path on real JPEG slices: reduced decoding against a full decode, bf16
against fp32, with the shipped ``zoo:4class`` model. The bounds hold with a margin over what
docs/benchmarks.md ("Predict on files") measures on the model's whole test split."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from braintumor.data.preprocess import decode_side, prepare_slice
from braintumor.inference.predictor import Predictor
from braintumor.inference.prefetch import full_shape, load_prepared
from braintumor.io import read_image
from braintumor.models.folder import load_model_dir
from braintumor.zoo import resolve_model_ref

# 512 px JPEG slices of three classes: what a reduced decode is for.
FILES = [
    f"sartaj-4class/Training/{folder}/{prefix} ({n}).jpg"
    for folder, prefix in (
        ("glioma_tumor", "gg"),
        ("meningioma_tumor", "m"),
        ("pituitary_tumor", "p"),
    )
    for n in (10, 100, 101)
]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(load_model_dir(resolve_model_ref("zoo:4class")), precision="fp32")


@pytest.fixture()
def slices(tmp_path: Path, shared_data: Path) -> list[Path]:
    copies = []
    for name in FILES:
        copy = tmp_path / name.replace("/", "_").replace(" ", "_")
        shutil.copy(shared_data / name, copy)
        copies.append(copy)
    return copies


def test_reduced_decode_stays_close_to_a_full_decode(slices, predictor):
    # The shipped model crops to the head, which needs the whole image: it is decoded whole.
    assert predictor.spec.brain_crop
    assert all(load_prepared(path, predictor.spec).array.shape[:2] == (512, 512) for path in slices)
    # So is one whose head outline follows the decoded size (gamma-normalised).
    spec = dataclasses.replace(predictor.spec, brain_crop=False)
    assert predictor.spec.outline == "gamma-normalised" and decode_side(spec) is None
    # Without both (the same in-head equalisation, as the binary default) the JPEG is decoded
    # at the size needed.
    spec = dataclasses.replace(spec, head_outline="range")
    reduced = [load_prepared(path, spec) for path in slices]
    assert all(full_shape(r) == (512, 512) and r.array.shape[:2] == (256, 256) for r in reduced)
    for path, image in zip(slices, reduced, strict=True):
        full = prepare_slice(read_image(path).array, spec).astype(int)
        diff = np.abs(full - image.network_input.astype(int))
        # Measured on these files with in-head equalisation: mean 0.4-1.5 grey levels (the
        # DCT-domain downscale shifts flat areas a little), at most 0.62% of pixels > 16.
        # Without equalisation: mean 0.3-3.9, 0.01%.
        assert diff.mean() < 5.0, path.name
        assert (diff > 16).mean() < 0.02, path.name


def test_bf16_gives_the_fp32_classes_on_real_slices(slices, predictor):
    bf16 = Predictor(predictor.loaded, precision="bf16")
    assert bf16.precision == "bf16"
    images = [load_prepared(path, predictor.spec) for path in slices]
    exact, fast = predictor.classify(images), bf16.classify(images)
    np.testing.assert_array_equal(fast.argmax(axis=1), exact.argmax(axis=1))
    assert np.abs(fast - exact).max() < 0.05  # measured: 0.0045-0.0055
