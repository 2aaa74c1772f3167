"""Out-of-distribution statistics of a model folder: what its training inputs looked like.

``ood.safetensors`` holds the arrays (class means of pooled features, the inverse shared
covariance); the ``ood`` block of ``model.json`` the thresholds and how they were fitted. Both
are plain data: nothing here runs a network (scores: :mod:`braintumor.inference.ood`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from braintumor.atomic import atomic_path
from braintumor.errors import ModelFormatError

OOD_FILE = "ood.safetensors"
METHODS = ("mahalanobis", "energy")
#: share of in-distribution (validation) inputs the threshold accepts
ACCEPT_RATE = 0.95


@dataclass
class OODStats:
    """What a model folder records about its training inputs, and how far is too far.

    ``means`` (K, D) are class means of the pooled features (K = 1 for segmenters),
    ``precision`` (D, D) the inverse shared covariance; ``thresholds`` hold, per score, the
    value above which an input is flagged; ``method`` is the score used. ``details`` says how
    the statistics were fitted (counts, accepted share on validation, layer shape).
    """

    method: str
    layer: str
    at_input: bool
    means: np.ndarray
    precision: np.ndarray
    thresholds: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        """The threshold of the chosen score."""
        return self.thresholds[self.method]

    def block(self) -> dict[str, Any]:
        """The ``ood`` block of ``model.json`` (the arrays go to ``ood.safetensors``)."""
        return {
            "method": self.method,
            "threshold": self.threshold,
            "thresholds": dict(self.thresholds),
            "accept_rate": ACCEPT_RATE,
            "layer": self.layer,
            "at_input": self.at_input,
            "feature_dim": int(self.means.shape[1]),
            "n_means": int(self.means.shape[0]),
            "file": OOD_FILE,
            **self.details,
        }

    def save(self, folder: str | Path) -> dict[str, Any]:
        """Write ``ood.safetensors`` into ``folder`` (atomically); return the JSON block."""
        tensors = {
            "means": torch.from_numpy(np.ascontiguousarray(self.means, dtype=np.float32)),
            "precision": torch.from_numpy(np.ascontiguousarray(self.precision, dtype=np.float32)),
        }
        with atomic_path(Path(folder) / OOD_FILE) as tmp:
            save_file(tensors, str(tmp))
        return self.block()

    @classmethod
    def load(cls, folder: str | Path, block: dict[str, Any]) -> OODStats:
        """Read the statistics a model folder's ``ood`` block points to."""
        path = Path(folder) / str(block.get("file", OOD_FILE))
        try:
            tensors = load_file(str(path))
            means, precision = tensors["means"].numpy(), tensors["precision"].numpy()
            method, thresholds = str(block["method"]), dict(block["thresholds"])
            layer, at_input = str(block["layer"]), bool(block["at_input"])
        except (OSError, SafetensorError, KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{path}: unreadable OOD statistics ({exc})") from exc
        if (
            method not in METHODS
            or method not in thresholds
            or precision.shape != (means.shape[1], means.shape[1])
        ):
            raise ModelFormatError(f"{path}: OOD statistics do not match model.json's ood block")
        known = {"method", "thresholds", "threshold", "layer", "at_input", "file"}
        details = {k: v for k, v in block.items() if k not in known}
        return cls(method, layer, at_input, means, precision, thresholds, details)
