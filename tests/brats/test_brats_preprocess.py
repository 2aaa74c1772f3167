"""BraTS case loading: checks, brain z-score, crop box, resampling, label conventions, cache."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

from braintumor.brats.labels import (
    from_working,
    probabilities_to_labels,
    region_masks,
    target_channels,
    to_working,
)
from braintumor.brats.preprocess import (
    BratsPreprocess,
    bounding_box,
    cache_case,
    crop,
    load_case,
    paste,
    resample,
)
from braintumor.errors import DataError
from braintumor.metrics.brats import to_regions
from brats_support import synthetic_cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return synthetic_cases(tmp_path_factory.mktemp("brats"), 2, naming="2013")


def test_zscore_inside_brain_mask_and_crop(cases):
    case = load_case(cases[0], BratsPreprocess(modalities=["flair", "t1ce"], crop_margin=2))
    inside = case.image[:, case.brain]
    np.testing.assert_allclose(inside.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(inside.std(axis=1), 1.0, atol=1e-3)
    assert np.all(case.image[:, ~case.brain] == 0)
    # The phantoms have no non-enhancing label (3), so 0/1/2/4 reads as brats2017.
    assert case.image.shape[1:] == case.crop_shape and case.convention == "brats2017"
    # The 2013 brain mask file decides the box, which is smaller than the 64x64x48 grid.
    assert case.crop_shape != case.original_shape
    assert case.labels is not None and set(np.unique(case.labels)) <= {0, 1, 2, 3}


def test_crop_box_round_trip():
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 30, 10), bool)
    mask[5:9, 10:21, 2:4] = True
    box = bounding_box(mask, margin=2)
    assert box == ((3, 11), (8, 23), (0, 6))
    volume = rng.normal(size=(2, 20, 30, 10)).astype(np.float32)
    back = paste(crop(volume, box), box, (20, 30, 10))
    inside = tuple(slice(a, b) for a, b in box)
    np.testing.assert_array_equal(back[(slice(None), *inside)], volume[(slice(None), *inside)])
    back[(slice(None), *inside)] = 0
    assert not back.any()
    assert bounding_box(np.zeros((4, 4, 4), bool), 1) == ((0, 4), (0, 4), (0, 4))


def test_resample_to_target_spacing_and_back(cases):
    settings = BratsPreprocess(modalities=["flair"], target_spacing=[2.0, 2.0, 2.0])
    case = load_case(cases[0], settings)
    assert case.image.shape[1:] == tuple(round(n / 2) for n in case.crop_shape)
    assert case.working_spacing == (2.0, 2.0, 2.0)
    back = resample(case.image, case.crop_shape, "trilinear")
    assert back.shape[1:] == case.crop_shape


@pytest.mark.parametrize(
    ("convention", "values", "working"),
    [
        ("brats2017", [0, 1, 2, 4], [0, 1, 2, 3]),
        ("brats2023", [0, 1, 2, 3], [0, 1, 2, 3]),
        ("brats2013", [0, 1, 2, 3, 4], [0, 1, 2, 1, 3]),
    ],
)
def test_label_mapping_both_ways(convention, values, working):
    labels = np.array(values, dtype=np.float32).reshape(1, 1, -1)
    mapped, detected = to_working(labels, "auto")
    assert detected == convention
    assert mapped.ravel().tolist() == working
    back = from_working(mapped, convention).ravel().tolist()
    # 2013's non-enhancing tumour (3) merges into label 1 and comes back as 1.
    expected = [1 if (convention == "brats2013" and v == 3) else v for v in values]
    assert back == expected


def test_targets_and_outputs_are_nested_regions():
    labels = torch.tensor([[0, 1, 2, 3]])
    regions = target_channels(labels[None], "regions")
    assert regions[:, 0].tolist() == [[0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]
    onehot = target_channels(labels, "labels")
    assert onehot.shape == (4, 1, 4) and onehot.sum(0).eq(1).all()
    assert probabilities_to_labels(regions.numpy(), "regions").tolist() == [[0, 1, 2, 3]]
    assert probabilities_to_labels(onehot.numpy(), "labels").tolist() == [[0, 1, 2, 3]]
    # The targets, the masks of predictions and the scores use the same regions.
    scored = to_regions(labels.numpy(), "brats2023")
    for k, (name, mask) in enumerate(region_masks(labels.numpy()).items()):
        assert mask.tolist() == scored[name].tolist() == regions[k].bool().tolist()


def test_missing_modality_names_case_and_modality(cases):
    sample = cases[0]
    with pytest.raises(DataError, match=r"no 't2w' modality"):
        load_case(sample, BratsPreprocess(modalities=["flair", "t2w"]))


def test_mismatched_label_shape_and_affine_name_the_label_file(cases, tmp_path):
    src = cases[0]
    labels = nib.load(src.mask)
    bad_shape = tmp_path / "seg_shape.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((64, 64, 40), np.uint8), labels.affine), bad_shape)
    with pytest.raises(DataError, match=r"seg_shape\.nii\.gz.*shape"):
        load_case(_with_mask(src, bad_shape), BratsPreprocess(modalities=["flair"]))
    moved = labels.affine.copy()
    moved[0, 3] += 5.0
    bad_affine = tmp_path / "seg_affine.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(labels.dataobj), moved), bad_affine)
    with pytest.raises(DataError, match=r"seg_affine\.nii\.gz.*affine"):
        load_case(_with_mask(src, bad_affine), BratsPreprocess(modalities=["flair"]))


def test_cache_is_reused_and_invalidated_by_a_changed_file(cases, tmp_path):
    case_dir = tmp_path / "case"
    shutil.copytree(cases[1].image, case_dir)
    sample = _relocated(cases[1], case_dir)
    settings = BratsPreprocess(modalities=["flair", "t1ce"])
    first = cache_case(sample, settings, tmp_path / "cache")
    again = cache_case(sample, settings, tmp_path / "cache")
    assert again.folder == first.folder
    assert np.array_equal(np.asarray(first.image()), load_case(sample, settings).image)
    flair = nib.load(sample.modalities["flair"])
    nib.save(
        nib.Nifti1Image(np.asarray(flair.dataobj) * 2 + 1, flair.affine), sample.modalities["flair"]
    )
    changed = cache_case(sample, settings, tmp_path / "cache")
    assert changed.folder != first.folder
    other = cache_case(sample, BratsPreprocess(modalities=["flair"]), tmp_path / "cache")
    assert other.folder not in (first.folder, changed.folder)
    assert np.asarray(other.image()).shape[0] == 1


def _with_mask(sample, mask):
    from dataclasses import replace

    return replace(sample, mask=str(mask))


def _relocated(sample, folder):
    from dataclasses import replace
    from pathlib import Path

    move = {k: str(folder / Path(v).name) for k, v in sample.modalities.items()}
    return replace(
        sample, image=str(folder), mask=str(folder / Path(sample.mask).name), modalities=move
    )
