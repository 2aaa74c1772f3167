"""Tumour components kept or dropped in 3D, across a patient's stack of slices.

A 2D segmenter sees one slice at a time, so a bright spot on a slice far from the tumour
becomes a false tumour of its own; across the stack (``<folder>/<folder>_<N>.tif``, the LGG
patient folders) it is a small 3D component apart from the tumour. As nnU-Net's
post-processing does in 3D, the slices' masks are stacked in slice order, labelled in 3D
(26-connected: touching across adjacent slices counts) and only components of at least
:data:`STACK_MIN_FRACTION` of the largest one's volume are kept. A fraction rather than the
largest component alone: a patient's largest component is not always the tumour (a run of false
positives over many slices can outweigh a small tumour), and one patient can hold several
lesions. Whether a model uses the rule is chosen on the validation split
(:mod:`braintumor.inference.choice`).

scikit-image's ``label`` does the 3D labelling; the fraction rule is a few lines here because
neither MONAI's ``KeepLargestConnectedComponent`` (the N largest) nor ``remove_small_objects``
(an absolute size) keeps components relative to the largest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from skimage.measure import label

from braintumor.patient_stack import stack_slice

#: Components smaller than this fraction of the stack's largest component are dropped.
STACK_MIN_FRACTION = 0.25


def stack_labels(masks: Sequence[np.ndarray]) -> np.ndarray | None:
    """The 3D components of one stack's masks (in slice order), 26-connected, as a label
    volume; None when the slices differ in size and cannot be stacked."""
    if not masks or len({m.shape for m in masks}) != 1:
        return None
    return label(np.stack([np.asarray(m, dtype=bool) for m in masks]), connectivity=3)


def keep_stack_components(
    masks: Sequence[np.ndarray], min_fraction: float = STACK_MIN_FRACTION
) -> list[np.ndarray]:
    """The masks of one stack (in slice order) with the 3D components under ``min_fraction``
    of the largest one's volume removed. Slices of different sizes cannot be stacked: they are
    returned unchanged."""
    labels = stack_labels(masks)
    if labels is None:
        return list(masks)
    if not labels.any():
        return list(labels > 0)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    return list(keep[labels])


def stacks_of(paths: Sequence[str | Path]) -> list[list[int]]:
    """Indices of ``paths`` grouped by stack folder, each group in slice order; paths that are
    not a stack slice, and stacks of one slice, are left out."""
    groups: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for index, path in enumerate(paths):
        found = stack_slice(Path(path))
        if found is not None:
            groups[found[0]].append((found[1], index))
    return [[index for _, index in sorted(group)] for group in groups.values() if len(group) > 1]


def filter_stacks(masks: list[np.ndarray], paths: Sequence[str | Path]) -> list[np.ndarray]:
    """``masks`` (one per path) with :func:`keep_stack_components` applied to every stack among
    ``paths``; masks of other paths are returned as they are."""
    out = list(masks)
    for stack in stacks_of(paths):
        for index, mask in zip(
            stack, keep_stack_components([masks[i] for i in stack]), strict=True
        ):
            out[index] = mask
    return out
