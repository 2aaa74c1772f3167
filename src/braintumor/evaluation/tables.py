"""The headline numbers of an evaluation as terminal tables (``braintumor evaluate``)."""

from __future__ import annotations

from rich.table import Table


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and len(value) == 2:
        return f"[{value[0]:.4f}, {value[1]:.4f}]"
    return str(value)


def _table(metrics: dict) -> Table:
    table = Table(title=f"{metrics['task']}: {metrics['n']} images", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    return table


def classification_table(metrics: dict) -> Table:
    """Accuracy, macro scores and ECE of a classifier, with their 95% intervals."""
    table = _table(metrics)
    ci = metrics.get("ci95") or {}
    macro = metrics["macro"]
    for name, value, interval in (
        ("accuracy", metrics["accuracy"], ci.get("accuracy")),
        ("balanced accuracy", metrics["balanced_accuracy"], None),
        ("macro precision", macro["precision"], None),
        ("macro recall", macro["recall"], None),
        ("macro F1", macro["f1"], ci.get("macro_f1")),
        ("macro ROC-AUC", macro["roc_auc"], ci.get("macro_roc_auc")),
        ("ECE", metrics["ece"], None),
    ):
        table.add_row(name, _fmt(value), _fmt(interval))
    return table


def segmentation_table(metrics: dict) -> Table:
    """Mean scores of a segmenter per image and per patient, with their 95% intervals."""
    table = _table(metrics)
    summary = metrics["summary"]
    for level, prefix in (("per_image", ""), ("per_group", "per patient ")):
        for name, block in summary.get(level, {}).items():
            table.add_row(f"{prefix}{name} (mean)", _fmt(block["mean"]), _fmt(block["ci95"]))
    return table


def brats_table(metrics: dict) -> Table:
    """Mean WT/TC/ET Dice, HD95 and volumes of a BraTS evaluation."""
    table = Table(title=f"BraTS: {metrics['n_cases']} cases", title_justify="left")
    for column in ("region", "Dice", "HD95 (mm)", "sensitivity", "precision"):
        table.add_column(column, justify="left" if column == "region" else "right")
    for region, values in metrics["mean"].items():
        table.add_row(
            region,
            *(_fmt(values[k]) for k in ("dice", "hd95", "sensitivity", "precision")),
        )
    return table
