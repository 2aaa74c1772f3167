"""The four BraTS 2013 cases of the shared data: FLAIR + T1c, labels 0-4, odd int32 brain masks."""

from __future__ import annotations

import numpy as np
import pytest

from braintumor.brats.preprocess import BratsPreprocess, load_case
from braintumor.brats.task import dataset_convention
from braintumor.data.layouts import detect_layout


@pytest.mark.realdata
def test_brats2013_cases_load_with_flair_t1ce_and_labels(shared_data):
    samples = detect_layout(shared_data / "brats2013-4cases").samples
    assert len(samples) == 4
    assert dataset_convention(samples) == "brats2013"
    settings = BratsPreprocess(modalities=["flair", "t1ce"], convention="brats2013")
    for sample in samples[:2]:
        case = load_case(sample, settings)
        assert case.original_shape == (240, 240, 155) and case.image.shape[0] == 2
        # The int32 mask reads as ~0 and ~0.99999997: thresholding keeps a brain-sized region.
        share = case.brain.sum() / np.prod(case.original_shape)
        assert 0.05 < share < 0.5, share
        assert case.image.shape[1:] < case.original_shape  # cropped to the brain box
        assert set(np.unique(case.labels).tolist()) == {0, 1, 2, 3}
        inside = case.image[:, case.brain]
        np.testing.assert_allclose(inside.mean(axis=1), 0.0, atol=1e-3)
