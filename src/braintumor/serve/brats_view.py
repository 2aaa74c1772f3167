"""The slice slider of a BraTS result: FLAIR slices with the predicted WT/TC/ET outlined.

``predict_case`` writes overlays of the three slices with the most tumour; the page wants to
scroll through the whole brain, so this reads the written segmentation back and draws a
stack of axial slices (one grey scale for the whole volume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from braintumor.brats.inference import overlay_png
from braintumor.data.preprocess import rescale_to_uint8
from braintumor.data.samples import Sample
from braintumor.metrics.brats import to_regions


def brats_stack(
    sample: Sample, segmentation: Path, convention: str, slices: int
) -> list[dict[str, Any]]:
    """Up to ``slices`` axial slices through the brain: ``{index, picture, area_px}`` each.

    ``picture`` is the RGB overlay (uint8); ``area_px`` the whole tumour's (WT) area on it.
    """
    modality = sample.modalities.get("flair") or next(iter(sample.modalities.values()))
    flair = np.asarray(nib.load(modality).dataobj, dtype=np.float32)
    grey = rescale_to_uint8(flair)
    labels = np.asarray(nib.load(segmentation).dataobj)
    regions = to_regions(labels, convention)
    brain = np.flatnonzero(flair.any(axis=(0, 1)))
    if brain.size == 0:
        return []
    picks = np.linspace(brain[0], brain[-1], min(slices, brain.size)).round().astype(int)
    stack = []
    for z in sorted(set(picks.tolist())):
        picture = overlay_png(grey[..., z], {name: mask[..., z] for name, mask in regions.items()})
        area = int(regions["WT"][..., z].sum())
        stack.append({"index": z, "picture": picture, "area_px": area})
    return stack
