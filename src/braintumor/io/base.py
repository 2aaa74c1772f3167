"""The value every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class LoadedImage:
    """Pixels plus the geometry needed to measure in millimetres and to write results back.

    ``array`` is channels-last: (H, W) or (H, W, C) for 2D rasters; (X, Y, Z) for volumes in
    the file's voxel order (NIfTI) or (rows, cols, slices) for DICOM series.
    ``spacing`` is in millimetres per axis of ``array`` (None when the format has none).
    ``affine`` is the 4x4 voxel-to-world matrix for volumes (None for plain rasters).
    """

    array: np.ndarray
    path: Path
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
