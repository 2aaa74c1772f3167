"""Multimodal BraTS segmentation: case preprocessing, 2D-slice and 3D-patch training, whole-case
inference with sliding windows and TTA, WT/TC/ET evaluation.

- :mod:`~braintumor.brats.preprocess`: load, check, normalise, crop, resample and cache a case;
- :mod:`~braintumor.brats.labels`: label conventions, region / label targets;
- :mod:`~braintumor.brats.slices` and :mod:`~braintumor.brats.patches`: the datamodules;
- :mod:`~braintumor.brats.task`: recipe -> (module, datamodule, preprocessing record);
- :mod:`~braintumor.brats.inference`: ``predict_case``; :mod:`~braintumor.brats.evaluate`:
  ``evaluate_cases``.
"""

from braintumor.brats.preprocess import BratsPreprocess, Case, load_case
from braintumor.brats.task import build_brats_task, info_class_names

__all__ = ["BratsPreprocess", "Case", "build_brats_task", "info_class_names", "load_case"]
