"""Evaluate a trained 2D model on labelled samples: metrics.json, predictions.csv, report.html.

The task of the model picks the evaluation: :mod:`evaluation_cls` for classifiers,
:mod:`evaluation_seg` for segmenters. Both read the samples batch by batch, skip (and list)
files that cannot be read, and write every output atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from braintumor.atomic import write_text_atomic
from braintumor.data.layouts import normalise_class_name
from braintumor.data.samples import NO_TUMOR, Sample
from braintumor.engine.model_io import LoadedModel
from braintumor.engine.prediction_outputs import csv_text
from braintumor.errors import DataError, ImageReadError, ModelFormatError

#: Labels a tumour / no-tumour model counts as "tumor" when evaluated on a multi-class set.
TUMOUR_TYPES = ("glioma", "meningioma", "pituitary")
TUMOR = "tumor"


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


def model_device(loaded: LoadedModel) -> str:
    """The device the loaded network's parameters sit on."""
    first = next(loaded.model.parameters(), None)
    return str(first.device) if first is not None else "cpu"


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


def evaluate_model(
    loaded: LoadedModel,
    samples: list[Sample],
    out_dir: Path,
    curves_csv: Path | None = None,
    batch_size: int = 32,
) -> dict:
    """Score ``loaded`` on ``samples`` and write metrics.json, predictions.csv and report.html.

    Classifiers: accuracy, per-class and macro precision/recall/F1, ROC-AUC, confusion
    matrix, ECE and bootstrap 95% CIs. Segmenters: Dice, IoU, sensitivity, specificity,
    precision and HD95 per image and, when samples carry a group (patient), per patient,
    under the default empty-mask rule. ``curves_csv`` (a run's metrics.csv) adds training
    curves to the report. Returns the metrics dict written to metrics.json.
    """
    if not samples:
        raise DataError("nothing to evaluate: no samples")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if loaded.info.task == "classify":
        from braintumor.engine.evaluation_cls import evaluate_classifier

        return evaluate_classifier(loaded, samples, out_dir, curves_csv, batch_size)
    if loaded.info.task == "segment":
        from braintumor.engine.evaluation_seg import evaluate_segmenter

        return evaluate_segmenter(loaded, samples, out_dir, curves_csv, batch_size)
    raise ModelFormatError(
        f"{loaded.path}: task {loaded.info.task!r} is not evaluated here; "
        "evaluate classify and segment models"
    )
