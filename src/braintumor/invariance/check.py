"""Run a trained 2D model on re-exports of its test slices and measure what changes.

Classifiers: the share of slices whose predicted class differs from the prediction on the
original file (flip rate) and the balanced accuracy of each variant. Segmenters: the mean Dice
of each variant, the truth mask moved with the image for geometric variants. The original
files give the reference figures; every variant is written to real files in a temporary
folder and read back through the normal prediction path (decoding included: a JPEG is decoded
reduced where the model allows it, as ``predict`` reads it).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from braintumor.data.lgg import flair_view, is_lgg_slice
from braintumor.data.preprocess import PreprocessSpec, to_grey_uint8
from braintumor.data.samples import Sample
from braintumor.errors import DataError, ImageReadError
from braintumor.evaluation.common import label_indices
from braintumor.evaluation.segmentation import THRESHOLD
from braintumor.inference.inputs import read_pair
from braintumor.inference.outputs import tumour_mask
from braintumor.inference.predictor import Predictor, model_device
from braintumor.inference.prefetch import load_prepared
from braintumor.invariance.variants import Variant
from braintumor.io import LoadedImage, read_image
from braintumor.metrics.segmentation import segmentation_scores
from braintumor.models.folder import LoadedModel
from braintumor.tasks.registry import CLASSES, MASK, model_task

#: Targets: a classifier's flip rate and balanced-accuracy drop, a segmenter's Dice drop.
MAX_FLIP_RATE = 0.05
MAX_METRIC_DROP = 0.03


@dataclass
class TestSlice:
    """One readable test sample: its grey pixels and truth."""

    sample: Sample
    grey: np.ndarray  # uint8 (H, W), what every variant starts from
    mask: np.ndarray | None  # bool (H, W) for segmenters


def load_slices(samples: list[Sample], with_masks: bool) -> tuple[list[TestSlice], list[str]]:
    """Read every sample (and its mask ``with_masks``); unreadable ones are listed, not fatal."""
    slices, skipped = [], []
    for sample in samples:
        try:
            if with_masks:
                image, mask = read_pair(sample)
            else:
                image, mask = read_image(sample.image), None
        except (ImageReadError, DataError) as error:
            skipped.append(f"{sample.id}: {error}")
            continue
        # An LGG slice's grey is its FLAIR channel, as grey models read it (data/lgg.py).
        array = flair_view(image.array) if is_lgg_slice(image.path) else image.array
        slices.append(TestSlice(sample, to_grey_uint8(array), mask))
    return slices, skipped


def _dice(predictor: Predictor, images: list[LoadedImage], truths: list[np.ndarray]) -> float:
    scores = []
    for start in range(0, len(images), predictor.batch_size):
        chunk = images[start : start + predictor.batch_size]
        for prob, truth in zip(predictor.segment(chunk), truths[start:], strict=False):
            pred = tumour_mask(prob, THRESHOLD, keep_largest=predictor.keep_largest)
            scores.append(segmentation_scores(pred, truth)["dice"])
    return float(np.mean(scores))


def _export(
    slices: list[TestSlice], variant: Variant, folder: Path, spec: PreprocessSpec
) -> tuple[list[LoadedImage], list[np.ndarray | None]]:
    """Write every slice as ``variant`` and read the files back as ``predict`` reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    images: list[LoadedImage] = []
    masks: list[np.ndarray | None] = []
    for index, item in enumerate(slices):
        path, mask = variant(item.grey, item.mask, folder / f"{index:05d}")
        images.append(load_prepared(path, spec))
        masks.append(mask)
    return images, masks


def run_invariance(
    loaded: LoadedModel,
    samples: list[Sample],
    variants: list[Variant],
    batch_size: int = 32,
    work_dir: Path | None = None,
    tta: bool | None = None,
) -> dict[str, Any]:
    """Reference figures on the original files and one row per variant (see module doc).
    ``tta``: predict with mirror TTA (None: the model folder's setting).

    Each row holds the metric, its change against the reference, and for classifiers the
    flip rate; ``worst`` names the variant furthest from its target, ``passes`` whether
    every variant meets it (flip rate <= 5 % and a drop <= 0.03).
    """
    task = loaded.info.task
    outputs = model_task(task, loaded.path).outputs
    if outputs not in (CLASSES, MASK):
        raise DataError(f"{loaded.path}: invariance is measured for 2D models, not {task!r}")
    slices, skipped = load_slices(samples, with_masks=outputs == MASK)
    if not slices:
        raise DataError(f"none of the {len(samples)} test samples could be read")
    predictor = Predictor(loaded, device=model_device(loaded), tta=tta, batch_size=batch_size)
    rows: list[dict[str, Any]] = []
    # The reference reads the original files as predict does, like every variant.
    originals = [load_prepared(Path(s.sample.image), predictor.spec) for s in slices]
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="invariance-") as tmp:
        if outputs == CLASSES:
            samples_read = [s.sample for s in slices]
            labels, _ = label_indices(samples_read, predictor.class_names, loaded.path)
            base = predictor.classify(originals).argmax(1)
            reference = {"balanced_accuracy": float(balanced_accuracy_score(labels, base))}
            for variant in variants:
                images, _ = _export(slices, variant, Path(tmp) / variant.name, predictor.spec)
                pred = predictor.classify(images).argmax(1)
                bal = float(balanced_accuracy_score(labels, pred))
                rows.append(
                    {
                        "variant": variant.name,
                        "family": variant.family,
                        "flip_rate": float(np.mean(pred != base)),
                        "balanced_accuracy": bal,
                        "delta": bal - reference["balanced_accuracy"],
                    }
                )
                shutil.rmtree(Path(tmp) / variant.name)
        else:
            truths = [s.mask for s in slices]
            reference = {"dice": _dice(predictor, originals, truths)}
            for variant in variants:
                images, moved = _export(slices, variant, Path(tmp) / variant.name, predictor.spec)
                dice = _dice(predictor, images, moved)
                rows.append(
                    {
                        "variant": variant.name,
                        "family": variant.family,
                        "dice": dice,
                        "delta": dice - reference["dice"],
                    }
                )
                shutil.rmtree(Path(tmp) / variant.name)
    for row in rows:
        row["passes"] = row["delta"] >= -MAX_METRIC_DROP and row.get("flip_rate", 0.0) <= (
            MAX_FLIP_RATE
        )
    return {
        "task": task,
        "tta": predictor.tta,
        "n": len(slices),
        "skipped": skipped,
        "reference": reference,
        "variants": rows,
        "worst": _worst(rows),
        "passes": all(row["passes"] for row in rows),
    }


def _worst(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The variant with the largest metric drop and, for classifiers, the largest flip rate."""
    if not rows:
        return None
    worst = {"by_metric_drop": min(rows, key=lambda r: r["delta"])["variant"]}
    if "flip_rate" in rows[0]:
        worst["by_flip_rate"] = max(rows, key=lambda r: r["flip_rate"])["variant"]
    return worst
