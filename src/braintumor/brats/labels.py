"""BraTS labels inside the toolkit: one working convention, network targets, and back.

Every case is mapped to the ``brats2023`` convention when loaded (0 background, 1 necrotic /
non-enhancing core, 2 oedema, 3 enhancing), whatever its files use; predictions are mapped back
to the input's convention only when written. The conventions themselves live in
:mod:`braintumor.metrics.brats`.

Two ways to train on them:

- ``regions``: three sigmoid outputs WT, TC, ET (nested, as nnU-Net and MONAI's BraTS tutorials
  train them);
- ``labels``: a softmax over background and the three tumour labels (system 002).
"""

from __future__ import annotations

import numpy as np
import torch

from braintumor.errors import DataError
from braintumor.io.label_tables import LabelEntry
from braintumor.metrics.brats import (
    REGION_LABELS,
    REGIONS,
    detect_convention,
    regions_to_labels,
    remap_labels,
)

WORKING_CONVENTION = "brats2023"
LABEL_MODES = ("regions", "labels")
CONVENTIONS = tuple(REGION_LABELS)
REGION_NAMES = list(REGIONS)
# The labels of each region in the working convention (the one definition: metrics.brats).
_WORKING_REGIONS = REGION_LABELS[WORKING_CONVENTION]
LABEL_NAMES = ["background", "necrosis", "oedema", "enhancing"]
# Label names and colours per convention for viewers' colour tables; the colours follow the
# overlays (oedema = WT only: green, core: yellow, enhancing = ET: red).
_NAMED_LABELS: dict[str, list[tuple[int, str, tuple[int, int, int]]]] = {
    "brats2017": [
        (1, "necrotic and non-enhancing core", (255, 220, 0)),
        (2, "oedema", (0, 200, 0)),
        (4, "enhancing tumour", (255, 40, 40)),
    ],
    "brats2023": [
        (1, "necrotic core", (255, 220, 0)),
        (2, "oedema", (0, 200, 0)),
        (3, "enhancing tumour", (255, 40, 40)),
    ],
    "brats2013": [
        (1, "necrosis", (255, 220, 0)),
        (2, "oedema", (0, 200, 0)),
        (3, "non-enhancing tumour", (255, 140, 0)),
        (4, "enhancing tumour", (255, 40, 40)),
    ],
}


def check_label_mode(label_mode: str) -> str:
    """Return ``label_mode`` if it is known, else raise a DataError naming the choices."""
    if label_mode not in LABEL_MODES:
        raise DataError(f"BraTS: label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
    return label_mode


def class_names(label_mode: str) -> list[str]:
    """Names of the network's output channels for ``label_mode``."""
    return list(REGION_NAMES if check_label_mode(label_mode) == "regions" else LABEL_NAMES)


def num_outputs(label_mode: str) -> int:
    """Output channels of the network: 3 regions, or background + 3 labels."""
    return len(class_names(label_mode))


def to_working(labels: np.ndarray, convention: str = "auto") -> tuple[np.ndarray, str]:
    """Map a label map to the working convention; returns (uint8 labels, source convention)."""
    source = detect_convention(labels) if convention == "auto" else convention
    return remap_labels(labels, source, WORKING_CONVENTION).astype(np.uint8), source


def from_working(labels: np.ndarray, convention: str) -> np.ndarray:
    """Map a working-convention label map to ``convention`` (uint8)."""
    return remap_labels(labels, WORKING_CONVENTION, convention).astype(np.uint8)


def target_channels(labels: torch.Tensor, label_mode: str) -> torch.Tensor:
    """Working-convention labels (..., spatial) -> float targets (K, spatial).

    ``regions``: WT, TC, ET (:data:`braintumor.metrics.brats.REGION_LABELS`). ``labels``:
    one-hot of 0-3. ``labels`` may carry a leading channel axis of size 1, which is dropped.
    """
    if labels.ndim >= 3 and labels.shape[0] == 1:
        labels = labels[0]
    labels = labels.long()
    if check_label_mode(label_mode) == "regions":
        members = (torch.tensor(_WORKING_REGIONS[r], device=labels.device) for r in REGIONS)
        return torch.stack([torch.isin(labels, m) for m in members]).float()
    onehot = torch.nn.functional.one_hot(labels.clamp(0, 3), num_classes=4)
    return onehot.movedim(-1, 0).float()


def activate(logits: torch.Tensor, label_mode: str) -> torch.Tensor:
    """Logits (B, K, ...) -> probabilities: sigmoid for regions, softmax for labels."""
    if check_label_mode(label_mode) == "regions":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def probabilities_to_labels(probs: np.ndarray, label_mode: str) -> np.ndarray:
    """Probabilities (K, spatial) -> working-convention labels (spatial, uint8).

    Regions are thresholded at 0.5 and nested the nnU-Net way (ET, then TC, then WT win).
    """
    if check_label_mode(label_mode) == "regions":
        wt, tc, et = (probs[k] > 0.5 for k in range(3))
        return regions_to_labels(wt, tc, et, WORKING_CONVENTION)
    return np.argmax(probs, axis=0).astype(np.uint8)


def region_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean WT, TC, ET masks of a working-convention label map."""
    return {region: np.isin(labels, members) for region, members in _WORKING_REGIONS.items()}


def label_table(convention: str) -> list[LabelEntry]:
    """Background and the tumour labels of ``convention``, named and coloured for viewers."""
    if convention not in _NAMED_LABELS:
        raise DataError(f"BraTS: unknown convention {convention!r}; use one of {CONVENTIONS}")
    named = [LabelEntry(value, name, rgb) for value, name, rgb in _NAMED_LABELS[convention]]
    return [LabelEntry(0, "background", (0, 0, 0)), *named]
