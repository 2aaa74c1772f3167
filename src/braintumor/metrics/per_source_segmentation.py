"""Segmentation figures of each test source when a segmenter was trained on several.

Slices of one source may come as patients' stacks (LGG) or as one slice per patient
(Figshare), so each source gets Dice and IoU per slice (mean with a bootstrap 95% interval,
under the evaluation's empty-mask rule) and, where its groups are patients' stacks, the
per-patient volume Dice of :mod:`braintumor.metrics.patient`.
"""

from __future__ import annotations

from collections.abc import Sequence

from braintumor.metrics.patient import patient_summary
from braintumor.metrics.segmentation import EmptyRule, value_summary

#: Per-slice scores reported per source.
SLICE_SCORES = ("dice", "iou")
#: Slices per group, on average, from which a source's groups count as patients' stacks
#: (LGG: about 39) rather than single slices or near-copy pairs (Figshare: 2 at most).
STACK_SLICES = 5


def segmentation_by_source(
    details: Sequence[dict],
    sources: Sequence[str | None],
    groups: Sequence[str | None],
    empty_rule: EmptyRule = EmptyRule(),
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, dict] | None:
    """``{source: {"n", "dice", "iou", ["patient_volume_dice"]}}`` (each a value summary:
    mean, median, ``ci95``...), or None unless the rows come from at least two sources. The
    volume Dice is there for a source whose groups hold :data:`STACK_SLICES` slices or more
    on average.

    ``details`` are the evaluation's per-slice rows (scores and pixel counts), ``sources`` and
    ``groups`` the source and patient of each row (None: no patient grouping for that slice).
    """
    names = sorted({source for source in sources if source})
    if len(names) < 2:
        return None
    out: dict[str, dict] = {}
    for name in names:
        picked = [i for i, source in enumerate(sources) if source == name]
        rows = [details[i] for i in picked]
        figures: dict = {"n": len(rows)}
        for score in SLICE_SCORES:
            values = [r[score] for r in rows if r.get(score) is not None]
            figures[score] = value_summary(values, n_bootstrap, seed)
        patients = [groups[i] for i in picked]
        if all(patients) and len(patients) >= STACK_SLICES * len(set(patients)):
            summary = patient_summary(rows, [str(p) for p in patients], empty_rule, n_bootstrap)
            figures["patient_volume_dice"] = summary["dice"]
        out[name] = figures
    return out


#: A held-out source's headline figures of a segmenter (leave-one-source-out), in table order.
SEGMENTATION_HEADLINE = ("dice", "iou", "patient_volume_dice")


def held_out_figures(metrics: dict) -> dict:
    """A segmenter's test metrics on one held-out source (:mod:`braintumor.protocols.loso`) as
    flat per-source figures: ``n``, the mean Dice and IoU per slice and, where its groups are
    patients' stacks (:data:`STACK_SLICES`), the mean volume Dice per patient, each with its
    bootstrap interval in ``ci95`` (the shape :func:`braintumor.metrics.per_source.
    mean_and_worst` and the cards read)."""
    per_image = metrics["summary"]["per_image"]
    blocks = {score: per_image.get(score) for score in SLICE_SCORES}
    patients = metrics.get("per_patient")
    if patients and metrics["n"] >= STACK_SLICES * patients["n_patients"]:
        blocks["patient_volume_dice"] = patients["dice"]
    return {
        "n": metrics["n"],
        **{key: block["mean"] if block else None for key, block in blocks.items()},
        "ci95": {key: block.get("ci95") if block else None for key, block in blocks.items()},
    }
