"""Evaluation metrics: classification, calibration, segmentation and BraTS regions."""

from braintumor.metrics.brats import (
    brats_case_scores,
    detect_convention,
    regions_to_labels,
    remap_labels,
    to_regions,
)
from braintumor.metrics.calibration import expected_calibration_error, reliability_curve
from braintumor.metrics.classification import classification_metrics
from braintumor.metrics.segmentation import (
    EmptyRule,
    aggregate,
    image_diagonal,
    multiclass_label_scores,
    per_group_mean,
    segmentation_scores,
)

__all__ = [
    "EmptyRule",
    "aggregate",
    "brats_case_scores",
    "classification_metrics",
    "detect_convention",
    "expected_calibration_error",
    "image_diagonal",
    "multiclass_label_scores",
    "per_group_mean",
    "regions_to_labels",
    "reliability_curve",
    "remap_labels",
    "segmentation_scores",
    "to_regions",
]
