"""The evaluation reports: a folder with report.html (self-contained) and its figures as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from braintumor.errors import DataError
from braintumor.metrics.segmentation import EmptyRule
from braintumor.report import plots
from braintumor.report.html import ReportFigure, ReportSection, write_report

SEG_KEY_ORDER = ("dice", "iou", "sensitivity", "specificity", "precision", "hd95")


def _figure(out_dir: Path, name: str, png: bytes, caption: str) -> ReportFigure:
    plots.save_png(png, out_dir / name)
    return ReportFigure(png=png, caption=caption)


def _curves_section(out_dir: Path, curves_csv: Path | None) -> list[ReportSection]:
    if curves_csv is None:
        return []
    png = plots.training_curves(curves_csv)
    fig = _figure(out_dir, "training_curves.png", png, f"From {Path(curves_csv).name}.")
    return [ReportSection("Training curves", figures=[fig])]


def classification_report(
    out_dir: str | Path,
    metrics: dict,
    class_names: list[str],
    y_true: np.ndarray,
    probs: np.ndarray,
    images_for_mistakes: Sequence[np.ndarray],
    ids: Sequence[str],
    curves_csv: Path | None = None,
    title: str = "Classification report",
    per_source: dict[str, dict] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` and its PNGs for a classifier's test-set evaluation.

    ``metrics`` is :func:`braintumor.metrics.classification_metrics` of ``y_true``/``probs``.
    ``images_for_mistakes`` and ``ids`` are indexed like ``y_true`` (any sequence that supports
    ``len`` and indexing, so images can be loaded lazily); pass an empty sequence to leave out
    the grid of mistakes. ``per_source`` (source -> :func:`braintumor.metrics.per_source.
    source_metrics`) adds a table per test source when there are several. Returns the
    report's path.
    """
    out = Path(out_dir)
    y = np.asarray(y_true).astype(int)
    p = np.asarray(probs, dtype=float)
    if p.ndim == 1:
        p = np.stack([1.0 - p, p], axis=1)
    if len(ids) != len(y) or (len(images_for_mistakes) not in (0, len(y))):
        raise DataError(
            f"classification report: {len(y)} labels, {len(ids)} ids and "
            f"{len(images_for_mistakes)} images do not line up"
        )
    ci = metrics.get("ci95") or {}
    macro = metrics["macro"]
    summary = {
        "test items": metrics["n"],
        "accuracy": metrics["accuracy"],
        "accuracy 95% CI": ci.get("accuracy"),
        "balanced accuracy": metrics["balanced_accuracy"],
        "macro precision": macro["precision"],
        "macro recall": macro["recall"],
        "macro F1": macro["f1"],
        "macro F1 95% CI": ci.get("macro_f1"),
        "macro ROC-AUC": macro["roc_auc"],
        "macro ROC-AUC 95% CI": ci.get("macro_roc_auc"),
        "expected calibration error": metrics["ece"],
    }
    per_class = [{"class": name, **values} for name, values in metrics["per_class"].items()]
    counts = {name: int((y == i).sum()) for i, name in enumerate(class_names)}
    sections = [
        ReportSection(
            "Summary",
            text=(
                "Intervals are percentile bootstrap 95% CIs over "
                f"{metrics.get('n_bootstrap', 0)} resamples of the test items. ROC-AUC is "
                "one-vs-rest; with two classes it is the positive class's."
            ),
            table=summary,
        ),
        ReportSection(
            "Per class",
            table=per_class,
            figures=[
                _figure(
                    out,
                    "class_distribution.png",
                    plots.class_distribution(counts, "Test items per true class"),
                    "Test items per true class.",
                )
            ],
        ),
        ReportSection(
            "Confusion matrix",
            figures=[
                _figure(
                    out,
                    "confusion_matrix.png",
                    plots.confusion_matrix_plot(metrics["confusion_matrix"], class_names),
                    "Rows: true class; columns: predicted class.",
                )
            ],
        ),
        ReportSection(
            "ROC curves",
            figures=[
                _figure(out, "roc_curves.png", plots.roc_curves(y, p, class_names), "One-vs-rest.")
            ],
        ),
        ReportSection(
            "Calibration",
            text="Top-class confidence against accuracy in 15 equal-width bins.",
            figures=[
                _figure(
                    out,
                    "reliability.png",
                    plots.reliability_diagram(metrics["reliability"], metrics["ece"]),
                    "Bars under the diagonal: over-confident.",
                )
            ],
        ),
    ]
    if per_source and len(per_source) > 1:
        sections.insert(1, per_source_section(per_source))
    if len(images_for_mistakes):
        chosen = plots.worst_mistakes(y, p)
        grid = plots.mistakes_grid(y, p, class_names, images_for_mistakes, ids)
        table = [
            {
                "id": ids[i],
                "true": class_names[y[i]],
                "predicted": class_names[int(p[i].argmax())],
                "probability": float(p[i].max()),
            }
            for i in chosen
        ]
        figures = [] if grid is None else [_figure(out, "mistakes.png", grid, "")]
        text = None if chosen else "No test item was misclassified."
        sections.append(
            ReportSection("Most confident mistakes", text=text, table=table, figures=figures)
        )
    sections += _curves_section(out, curves_csv)
    return write_report(out / "report.html", title, sections, subtitle=", ".join(class_names))


#: Column titles of :data:`~braintumor.metrics.per_source_segmentation.SEGMENTATION_HEADLINE`.
SEGMENTATION_TITLES = ("Dice per slice", "IoU per slice", "volume Dice per patient")


def segmentation_source_rows(per_source: dict[str, dict]) -> list[dict[str, str]]:
    """One row per test source of a segmenter: slices, Dice and IoU per slice and, for
    patients' stacks, volume Dice per patient, each as ``mean [low, high]``."""

    def cell(summary: dict | None) -> str:
        if not summary or summary.get("mean") is None:
            return "-"
        ci = summary.get("ci95")
        return f"{summary['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    return [
        {
            "source": source,
            "test slices": str(figures["n"]),
            "Dice per slice": cell(figures.get("dice")),
            "IoU per slice": cell(figures.get("iou")),
            "volume Dice per patient": cell(figures.get("patient_volume_dice")),
        }
        for source, figures in per_source.items()
    ]


def _flat_cell(metrics: dict, key: str) -> str:
    """``value [low, high]`` of a flat per-source record (``metrics[key]``, ``ci95[key]``)."""
    value, ci = metrics.get(key), (metrics.get("ci95") or {}).get(key)
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _mean_and_worst_rows(
    per_source: dict[str, dict], titles: dict[str, str], blank: dict[str, str]
) -> list[dict[str, str]]:
    """The ``mean`` and ``worst`` rows of a per-source table (``titles``: key -> column)."""
    from braintumor.metrics.per_source import mean_and_worst

    summary = mean_and_worst(per_source, tuple(titles))
    rows = []
    for kind in ("mean", "worst"):
        row = {"source": kind, **blank}
        for key, title in titles.items():
            block = summary.get(key)
            where = f" ({block['worst_source']})" if block and kind == "worst" else ""
            row[title] = f"{block[kind]:.3f}{where}" if block else "-"
        rows.append(row)
    return rows


def held_out_segmentation_section(per_source: dict[str, dict]) -> ReportSection:
    """One row per held-out source of a segmenter (:func:`braintumor.metrics.
    per_source_segmentation.held_out_figures`), then the mean and worst source."""
    from braintumor.metrics.per_source_segmentation import SEGMENTATION_HEADLINE

    titles = dict(zip(SEGMENTATION_HEADLINE, SEGMENTATION_TITLES, strict=True))
    rows = [
        {
            "source": source,
            "test slices": str(m["n"]),
            **{t: _flat_cell(m, k) for k, t in titles.items()},
        }
        for source, m in per_source.items()
    ]
    rows += _mean_and_worst_rows(per_source, titles, {"test slices": ""})
    return ReportSection(
        "Per held-out source",
        text="Dice and IoU per slice under the evaluation's empty-mask rule; volume Dice per "
        "patient where a source's slices are patients' stacks. 95% bootstrap intervals.",
        table=rows,
    )


def per_source_section(per_source: dict[str, dict]) -> ReportSection:
    """One row per test source: its size, classes and headline metrics with 95% CIs."""
    from braintumor.metrics.per_source import HEADLINE

    titles = {key: key.replace("_", " ") for key in HEADLINE}
    rows = [
        {
            "source": source,
            "n": str(m["n"]),
            "classes": ", ".join(f"{k} {v}" for k, v in m["classes"].items()),
            **{title: _flat_cell(m, key) for key, title in titles.items()},
        }
        for source, m in per_source.items()
    ]
    rows += _mean_and_worst_rows(per_source, titles, {"n": "", "classes": ""})
    text = (
        "Balanced accuracy is over the classes each source holds; tumour AUC, sensitivity and "
        "specificity treat every class but no_tumor as tumour. 95% bootstrap intervals."
    )
    return ReportSection("Per source", text=text, table=rows)


def pick_panel_ids(
    rows: Sequence[dict], n_best: int = 3, n_worst: int = 3, key: str = "dice"
) -> list[str]:
    """Ids of the best and worst rows by ``key`` (rows need an ``"id"``), best first."""
    scored = [r for r in rows if r.get(key) is not None]
    ranked = sorted(scored, key=lambda r: r[key], reverse=True)
    best = ranked[:n_best]
    worst = [r for r in ranked[::-1][:n_worst] if r not in best]
    return [str(r["id"]) for r in best + worst[::-1]]


def _empty_rule_text(rule: EmptyRule) -> str:
    one_hd = "the image diagonal" if rule.one_empty_hd95 is None else f"{rule.one_empty_hd95}"
    return (
        f"Empty-mask rule: both masks empty -> Dice {rule.both_empty_overlap:g}, "
        f"HD95 {rule.both_empty_hd95:g}; one empty -> Dice {rule.one_empty_overlap:g}, "
        f"HD95 {one_hd}. HD95 is in mm where the pixel spacing is known, else in pixels."
    )


def _patient_sections(per_patient: dict) -> list[ReportSection]:
    """Volume Dice per patient (Buda et al.'s figure) and slice-level detection."""
    det = per_patient["detection"]

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    text = (
        f"{per_patient['n_patients']} patients. Each patient's Dice is that of the stacked "
        "volume (pixel counts summed over its slices), not the mean of its slices' Dice. "
        f"Tumour detection per slice: sensitivity {shown(det['sensitivity'])} "
        f"(TP {det['tp']}, FN {det['fn']}), specificity {shown(det['specificity'])} "
        f"(TN {det['tn']}, FP {det['fp']})."
    )
    table = [{"metric": f"volume {name}", **per_patient[name]} for name in ("dice", "iou")] + [
        {"metric": "dice, tumour slices only", **per_patient["tumour_slice_dice"]}
    ]
    return [
        ReportSection("Per patient (volume)", text=text, table=table),
        ReportSection("Patients", table=per_patient["patients"]),
    ]


def segmentation_report(
    out_dir: str | Path,
    per_image_rows: list[dict],
    summary: dict,
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    curves_csv: Path | None = None,
    title: str = "Segmentation report",
    empty_rule: EmptyRule = EmptyRule(),
    mask_rule: str = "",
    per_patient: dict | None = None,
    per_source: dict[str, dict] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` and its PNGs for a segmenter's test-set evaluation.

    ``per_patient`` (:func:`braintumor.metrics.patient.patient_summary`) adds the patients'
    volume Dice and slice-level detection; ``per_source``
    (:func:`braintumor.metrics.per_source_segmentation.segmentation_by_source`) a table of
    each test source's figures.

    ``mask_rule`` says how probabilities became masks (threshold, TTA, largest component).
    ``per_image_rows`` hold an ``"id"`` and metric values (from ``segmentation_scores``);
    ``summary`` is :func:`braintumor.metrics.aggregate` of them; ``panels`` are
    (id, image, truth mask, predicted mask) for the cases to show, e.g. those of
    :func:`pick_panel_ids`. Returns the report's path.
    """
    out = Path(out_dir)
    if not per_image_rows:
        raise DataError("segmentation report: no per-image rows")

    def summary_table(block: dict) -> list[dict]:
        return [{"metric": name, **values} for name, values in block.items()]

    sections = [
        ReportSection(
            "Summary per image",
            text=(f"{mask_rule} " if mask_rule else "")
            + _empty_rule_text(empty_rule)
            + " Intervals are percentile bootstrap 95% CIs of the mean.",
            table=summary_table(summary["per_image"]),
        )
    ]
    if "per_group" in summary:
        sections.append(
            ReportSection(
                "Summary per patient",
                text=f"{summary['n_groups']} patients; each is the mean over its images.",
                table=summary_table(summary["per_group"]),
            )
        )
    if per_source:
        sections.insert(
            1,
            ReportSection(
                "By source",
                text="Each test source on its own: mean per slice [bootstrap 95% CI]; the "
                "volume Dice per patient where a source's slices come as patients' stacks.",
                table=segmentation_source_rows(per_source),
            ),
        )
    if per_patient is not None:
        sections.extend(_patient_sections(per_patient))
    metric_names = [m for m in SEG_KEY_ORDER if m in summary["per_image"]] or list(
        summary["per_image"]
    )
    sections.append(
        ReportSection(
            "Distributions",
            figures=[
                _figure(
                    out,
                    "metric_distributions.png",
                    plots.metric_distributions(per_image_rows, metric_names),
                    "Per-image values.",
                )
            ],
        )
    )
    rank_key = "dice" if "dice" in metric_names else metric_names[0]
    scored = [r for r in per_image_rows if r.get(rank_key) is not None]
    worst = sorted(scored, key=lambda r: r[rank_key])[:10]
    sections.append(ReportSection(f"Ten lowest {rank_key} scores", table=worst))
    if panels:
        by_id = {str(r.get("id")): r for r in per_image_rows}
        captions = [
            f"{pid} ({rank_key} {by_id[str(pid)][rank_key]:.3f})"
            if by_id.get(str(pid), {}).get(rank_key) is not None
            else str(pid)
            for pid, *_ in panels
        ]
        sections.append(
            ReportSection(
                "Best and worst cases",
                text="Overlay: truth in green, prediction in red.",
                figures=[
                    _figure(
                        out,
                        "segmentation_panels.png",
                        plots.segmentation_panels(panels, captions),
                        "",
                    )
                ],
            )
        )
    sections += _curves_section(out, curves_csv)
    return write_report(out / "report.html", title, sections)
