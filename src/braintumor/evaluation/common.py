"""What the evaluations of 2D models share: label matching, batching, skip records, outputs.

The task of a model picks its evaluation (:meth:`braintumor.tasks.Task.evaluate`):
:mod:`.classification` for classifiers, :mod:`.segmentation` for segmenters. Both read the
samples batch by batch, skip (and list) files that cannot be read, and write every output
atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from braintumor.atomic import write_text_atomic
from braintumor.data.layouts import normalise_class_name
from braintumor.data.samples import NO_TUMOR, TUMOR, TUMOUR_TYPES, Sample
from braintumor.errors import DataError, ImageReadError
from braintumor.inference.outputs import csv_text


def label_indices(
    samples: list[Sample], class_names: list[str], model_path: Path
) -> tuple[np.ndarray, dict[str, str]]:
    """Each sample's label as an index into the model's ``class_names``.

    Names are compared after the layout detector's normalisation (``glioma_tumor`` ->
    ``glioma``...). A binary model whose classes are ``no_tumor`` and ``tumor`` evaluated on a
    multi-class set sees glioma, meningioma and pituitary as ``tumor``. Returns the indices and
    the labels that were renamed that way. Raises :class:`DataError` for unlabelled samples and
    for labels the model does not know, naming them.
    """
    unlabelled = [s.id for s in samples if not s.label]
    if unlabelled:
        raise DataError(
            f"{len(unlabelled)} samples have no label (e.g. {unlabelled[0]}); "
            "classification evaluation needs labelled images"
        )
    names = [normalise_class_name(name) for name in class_names]
    binary_tumour = sorted(names) == sorted([NO_TUMOR, TUMOR])
    indices, renamed, unknown = [], {}, {}
    for sample in samples:
        key = normalise_class_name(sample.label or "")
        if key in names:
            indices.append(names.index(key))
        elif binary_tumour and key in TUMOUR_TYPES:
            indices.append(names.index(TUMOR))
            renamed[sample.label or ""] = class_names[names.index(TUMOR)]
        else:
            unknown.setdefault(sample.label, []).append(sample.id)
    if unknown:
        listed = ", ".join(
            f"{label} ({len(ids)} samples, e.g. {ids[0]})" for label, ids in sorted(unknown.items())
        )
        raise DataError(f"{model_path}: the model's classes {class_names} do not include {listed}")
    return np.asarray(indices, dtype=int), renamed


def batches(items: list, size: int) -> Iterator[list]:
    """Consecutive chunks of ``items`` of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def skip_record(sample: Sample, error: ImageReadError | DataError) -> dict:
    """How an unreadable sample is listed in metrics.json."""
    return {"id": sample.id, "path": sample.image, "error": str(error)}


def write_outputs(out_dir: Path, metrics: dict, rows: list[dict]) -> None:
    """``metrics.json`` and ``predictions.csv``, atomically."""
    write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False))
    write_text_atomic(out_dir / "predictions.csv", csv_text(rows))
