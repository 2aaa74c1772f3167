"""Segmenter evaluation: per-image and per-patient scores under an explicit empty-mask rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from braintumor.data.lgg import flair_view, is_lgg_slice
from braintumor.data.preprocess import to_grey_uint8
from braintumor.data.samples import Sample
from braintumor.errors import DataError, ImageReadError
from braintumor.evaluation.adaptation import ADAPTED_TITLE, SourceAdaptation, wants_ood
from braintumor.evaluation.common import skip_record, write_outputs
from braintumor.inference.inputs import read_pair
from braintumor.inference.ood import ood_fields, ood_summary
from braintumor.inference.outputs import tumour_mask
from braintumor.inference.predictor import Predictor, model_device
from braintumor.inference.stack_filter import (
    STACK_MIN_FRACTION,
    keep_stack_components,
    stacks_of,
)
from braintumor.io import LoadedImage
from braintumor.metrics.patient import patient_summary, slice_counts
from braintumor.metrics.per_source_segmentation import segmentation_by_source
from braintumor.metrics.segmentation import (
    SEGMENTATION_METRICS,
    EmptyRule,
    aggregate,
    segmentation_scores,
)
from braintumor.models.folder import LoadedModel
from braintumor.report.evaluation import pick_panel_ids, segmentation_report

THRESHOLD = 0.5
N_BOOTSTRAP = 1000


def _spacing(image: LoadedImage) -> tuple[float, float] | None:
    return image.spacing if image.spacing is not None and len(image.spacing) == 2 else None


def _headline(summary: dict) -> dict:
    """Mean Dice/IoU/HD95 per image (and per patient) for tables and the model card."""
    out = {}
    for level in ("per_image", "per_group"):
        for name in ("dice", "iou", "hd95"):
            block = summary.get(level, {}).get(name)
            if block is not None:
                prefix = "patient_" if level == "per_group" else ""
                out[f"{prefix}{name}"] = block["mean"]
    return out


def _patient_headline(per_patient: dict | None) -> dict:
    """Volume Dice per patient (mean, median) and slice detection, for tables and the card."""
    if per_patient is None:
        return {}
    detection = per_patient["detection"]
    return {
        "patient_volume_dice": per_patient["dice"]["mean"],
        "patient_volume_dice_median": per_patient["dice"]["median"],
        "detection_sensitivity": detection["sensitivity"],
        "detection_specificity": detection["specificity"],
    }


def _image_or_none(sample: Sample) -> LoadedImage | None:
    """The sample's image for batch-norm adaptation; None when it cannot be read."""
    try:
        return read_pair(sample)[0]
    except (ImageReadError, DataError):
        return None


@dataclasses.dataclass(frozen=True)
class _Predicted:
    """One slice's predicted mask with what scoring it needs."""

    sample: Sample
    spacing: tuple[float, float] | None
    truth: np.ndarray
    pred: np.ndarray
    ood: dict

    def scored(self, empty_rule: EmptyRule) -> tuple[dict, dict]:
        """The metrics row and the predictions.csv row."""
        scores = segmentation_scores(self.pred, self.truth, self.spacing, empty_rule)
        sample = self.sample
        detail = {
            "id": sample.id,
            "path": sample.image,
            "mask": sample.mask,
            "group": sample.group,
            **scores,
            **slice_counts(self.pred, self.truth),
            **self.ood,
        }
        return {"id": sample.id, **scores}, detail


def _mask_rule(predictor: Predictor) -> str:
    steps = [f"probability >= {THRESHOLD}"]
    if predictor.tta:
        steps.insert(0, "mirror TTA")
    if predictor.keep_largest:
        steps.append("largest component only")
    if predictor.stack_components:
        steps.append(
            f"in each patient stack, 3D components under {STACK_MIN_FRACTION:.0%} "
            "of the largest dropped"
        )
    return f"Predicted mask: {', '.join(steps)} (the model folder's settings)."


def evaluate_segmenter(
    loaded: LoadedModel,
    samples: list[Sample],
    out_dir: Path,
    curves_csv: Path | None = None,
    batch_size: int = 32,
    empty_rule: EmptyRule = EmptyRule(),
    adapt_bn: bool = False,
) -> dict:
    """Segmenter evaluation (the ``segment`` task's :meth:`~braintumor.tasks.Task.evaluate`).

    The prediction is the tumour probability ``>= 0.5`` at the image's original size, with the
    model folder's TTA and largest-component settings (:mod:`~braintumor.inference.choice`).
    HD95 is in mm when the image carries a pixel spacing (DICOM), else in pixels.
    ``adapt_bn`` re-estimates the batch-norm statistics on each source's images before
    predicting it (:mod:`braintumor.evaluation.adaptation`).
    """
    missing = [s.id for s in samples if not s.mask]
    if missing:
        raise DataError(
            f"{len(missing)} samples have no mask (e.g. {missing[0]}); "
            "segmentation evaluation needs one per image"
        )
    predictor = Predictor(
        loaded,
        device=model_device(loaded),
        batch_size=batch_size,
        ood=wants_ood(adapt_bn, loaded.model),
    )
    adaptation = SourceAdaptation(predictor, samples, _image_or_none, adapt_bn)
    # Slices of a patient stack wait for the rest of their stack when the model drops small
    # 3D components (inference/stack_filter.py); the others are scored as they come.
    stacks = stacks_of([s.image for s in samples]) if predictor.stack_components else []
    in_stack = {i for stack in stacks for i in stack}
    scored: dict[int, tuple[dict, dict]] = {}
    waiting: dict[int, _Predicted] = {}
    skipped: list[dict] = []
    ood_parts: list[np.ndarray] = []
    for chunk in adaptation.chunks(batch_size):
        pairs = []
        for index in chunk:
            try:
                pairs.append((index, *read_pair(samples[index])))
            except (ImageReadError, DataError) as error:
                skipped.append(skip_record(samples[index], error))
        if not pairs:
            continue
        probs, ood_scores = predictor.segment_scored([image for _, image, _ in pairs])
        ood_parts += [] if ood_scores is None else [ood_scores]
        for n, ((index, image, truth), prob) in enumerate(zip(pairs, probs, strict=True)):
            predicted = _Predicted(
                samples[index],
                _spacing(image),
                truth,
                tumour_mask(prob, THRESHOLD, keep_largest=predictor.keep_largest),
                ood_fields(None if ood_scores is None else ood_scores[n], predictor.ood),
            )
            if index in in_stack:
                waiting[index] = predicted
            else:
                scored[index] = predicted.scored(empty_rule)
    for stack in stacks:
        present = [i for i in stack if i in waiting]
        kept = keep_stack_components([waiting[i].pred for i in present])
        for index, pred in zip(present, kept, strict=True):
            waiting[index] = dataclasses.replace(waiting[index], pred=pred)
            scored[index] = waiting[index].scored(empty_rule)
    rows = [scored[i][0] for i in sorted(scored)]
    details = [scored[i][1] for i in sorted(scored)]
    if not rows:
        raise DataError(f"none of the {len(samples)} samples could be read (first: {skipped[0]})")
    by_id = {s.id: s for s in samples}
    groups = None
    if any(by_id[r["id"]].group for r in rows):
        # A sample without a group is its own patient.
        groups = [by_id[r["id"]].group or r["id"] for r in rows]
    summary = aggregate(rows, groups, n_bootstrap=N_BOOTSTRAP, seed=0)
    per_patient = None
    if groups is not None:
        per_patient = patient_summary(details, groups, empty_rule, N_BOOTSTRAP, seed=0)
    metrics = {
        "task": loaded.info.task,
        "model": str(loaded.path),
        "architecture": loaded.info.architecture,
        "n_samples": len(samples),
        "n": len(rows),
        "threshold": THRESHOLD,
        "tta": predictor.tta,
        "keep_largest": predictor.keep_largest,
        "stack_components": predictor.stack_components,
        "empty_rule": dataclasses.asdict(empty_rule),
        "metrics": list(SEGMENTATION_METRICS),
        **_headline(summary),
        **_patient_headline(per_patient),
        "summary": summary,
        "per_patient": per_patient,
        "per_source": segmentation_by_source(
            details,
            [by_id[r["id"]].source for r in rows],
            [by_id[r["id"]].group for r in rows],
            empty_rule,
            N_BOOTSTRAP,
        ),
        "skipped": skipped,
    }
    ood = ood_summary(np.concatenate(ood_parts) if ood_parts else None, predictor.ood)
    if ood is not None:
        metrics["ood"] = ood
    adapted = adaptation.record()
    if adapted is not None:
        metrics["adapt_bn"] = adapted
    write_outputs(out_dir, metrics, details)
    panels = []
    stacked_preds = {p.sample.id: p.pred for p in waiting.values()}
    chosen = [by_id[i] for i in pick_panel_ids(rows)]
    if chosen:
        for sample in chosen:
            image, truth = read_pair(sample)
            if sample.id in stacked_preds:  # as scored: after its stack's 3D rule
                pred = stacked_preds[sample.id]
            else:
                with adaptation.applied(sample):
                    prob = predictor.segment([image])[0]
                pred = tumour_mask(prob, THRESHOLD, keep_largest=predictor.keep_largest)
            # An LGG slice is shown as FLAIR, never as a mix of its three sequences.
            shown = flair_view(image.array) if is_lgg_slice(image.path) else image.array
            panels.append((sample.id, to_grey_uint8(shown), truth, pred))
    segmentation_report(
        out_dir,
        rows,
        summary,
        panels,
        curves_csv,
        title=f"Evaluation of {loaded.path.name} ({loaded.info.architecture})"
        + (ADAPTED_TITLE if adapted and adapted["layers"] else ""),
        empty_rule=empty_rule,
        mask_rule=_mask_rule(predictor),
        per_patient=per_patient,
        per_source=metrics["per_source"],
    )
    return metrics
