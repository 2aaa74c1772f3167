"""Report figures drawn with matplotlib's object API (no pyplot state, safe off the main thread).

Every function returns the figure as PNG bytes; :func:`save_png` writes them atomically.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_curve

from braintumor.atomic import write_bytes_atomic
from braintumor.errors import DataError
from braintumor.localize import draw_overlay

DPI = 110


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _displayable(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An array imshow shows faithfully, and its colour map: grey as is, colour as uint8 RGB."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return img, "gray"
    if img.ndim == 3 and img.shape[2] == 3 and img.dtype != np.uint8:
        f = img.astype(np.float64)
        lo, hi = float(f.min()), float(f.max())
        img = ((f - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(f)).astype(np.uint8)
    return img, None


def save_png(png: bytes, path: str | Path) -> Path:
    """Write PNG bytes to ``path`` atomically and return the path."""
    write_bytes_atomic(path, png)
    return Path(path)


def read_epoch_metrics(metrics_csv: str | Path) -> dict[str, dict[int, float]]:
    """Per-epoch values of every logged column of a Lightning CSVLogger ``metrics.csv``.

    CSVLogger writes one sparse row per logging call; the last value logged in an epoch wins.
    Step-level columns (``*_step``) and ``step`` are skipped.
    """
    path = Path(metrics_csv)
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"{path}: cannot read the training log ({exc.strerror})") from exc
    if not rows or "epoch" not in rows[0]:
        raise DataError(f"{path}: not a Lightning metrics.csv (no 'epoch' column)")
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        if not row.get("epoch"):
            continue
        epoch = int(float(row["epoch"]))
        for key, value in row.items():
            if key in ("epoch", "step") or key.endswith("_step") or value in ("", None):
                continue
            try:
                series.setdefault(key, {})[epoch] = float(value)
            except ValueError:
                continue
    return series


def _clean_name(name: str) -> str:
    return name.removesuffix("_epoch")


def training_curves(metrics_csv: str | Path, monitor: str | None = None) -> bytes:
    """Loss per epoch (train and validation) and the monitored metric (or every other metric)."""
    series = read_epoch_metrics(metrics_csv)
    losses = {k: v for k, v in series.items() if "loss" in k}
    not_metrics = ("lr", "time/")  # learning rate and wall-clock minutes have other scales
    others = {
        k: v for k, v in series.items() if "loss" not in k and not k.lower().startswith(not_metrics)
    }
    if monitor is not None:
        stem = monitor.split("/")[-1].split("_", 1)[-1]
        others = {k: v for k, v in others.items() if k == monitor or k.endswith(stem)}
    if not losses and not others:
        raise DataError(f"{metrics_csv}: the training log holds no per-epoch values")
    panels = [("loss", losses)] + ([("metric", others)] if others else [])
    fig = Figure(figsize=(5.2 * len(panels), 3.6))
    for i, (ylabel, group) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, len(panels), i)
        for name, values in sorted(group.items()):
            epochs = sorted(values)
            ax.plot(epochs, [values[e] for e in epochs], marker="o", ms=3, label=_clean_name(name))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Training curves")
    return _png(fig)


def confusion_matrix_plot(cm: Sequence[Sequence[int]], class_names: list[str]) -> bytes:
    """Counts and row-normalised (recall per true class) confusion matrices side by side."""
    counts = np.asarray(cm, dtype=float)
    k = len(class_names)
    if counts.shape != (k, k):
        raise DataError(f"confusion matrix {counts.shape} does not fit {k} classes")
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(4.0, 0.9 * k + 2.5)
    fig = Figure(figsize=(2 * size + 1, size), layout="constrained")
    for i, (title, data, fmt) in enumerate(
        [("counts", counts, "{:.0f}"), ("normalised by true class", normalised, "{:.2f}")], 1
    ):
        ax = fig.add_subplot(1, 2, i)
        image = ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() if data.max() > 0 else 1)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(k), class_names, rotation=35, ha="right")
        ax.set_yticks(range(k), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        threshold = data.max() / 2 if data.max() > 0 else 1
        for r in range(k):
            for c in range(k):
                ax.text(
                    c,
                    r,
                    fmt.format(data[r, c]),
                    ha="center",
                    va="center",
                    color="white" if data[r, c] > threshold else "black",
                    fontsize=9,
                )
    return _png(fig)


def roc_curves(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> bytes:
    """One-vs-rest ROC curve per class (the positive class only when there are two)."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(probs, dtype=float)
    classes = [1] if len(class_names) == 2 else list(range(len(class_names)))
    fig = Figure(figsize=(5, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    for c in classes:
        positive = y == c
        if positive.all() or not positive.any():
            continue  # no curve without both positives and negatives
        fpr, tpr, _ = roc_curve(positive, p[:, c])
        auc = float(sk_auc(fpr, tpr))
        ax.plot(fpr, tpr, label=f"{class_names[c]} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (one-vs-rest)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def reliability_diagram(reliability: dict, ece: float | None = None) -> bytes:
    """Accuracy against confidence per bin (from :func:`metrics.reliability_curve`) + counts."""
    edges = np.asarray(reliability["bin_edges"], dtype=float)
    centres = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    acc = np.array([np.nan if a is None else a for a in reliability["accuracy"]], dtype=float)
    conf = np.array([np.nan if c is None else c for c in reliability["confidence"]], dtype=float)
    fig = Figure(figsize=(5, 5.6))
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
    ax = fig.add_subplot(grid[0])
    ax.bar(centres, np.nan_to_num(acc), width=width * 0.95, color="#4c78a8", label="accuracy")
    ax.bar(
        centres,
        np.nan_to_num(conf - acc),
        bottom=np.nan_to_num(acc),
        width=width * 0.95,
        color="#e45756",
        alpha=0.45,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xticklabels([])
    title = "Reliability diagram" + (f" (ECE {ece:.3f})" if ece is not None else "")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left")
    ax2 = fig.add_subplot(grid[1])
    ax2.bar(centres, reliability["count"], width=width * 0.95, color="grey")
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("confidence (top class)")
    ax2.set_ylabel("count")
    return _png(fig)


def worst_mistakes(y_true: np.ndarray, probs: np.ndarray, max_items: int = 16) -> list[int]:
    """Indices of the wrong predictions made with the highest confidence, worst first."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(probs, dtype=float)
    pred = p.argmax(axis=1)
    wrong = np.flatnonzero(pred != y)
    order = wrong[np.argsort(-p[wrong, pred[wrong]], kind="stable")]
    return order[:max_items].tolist()


def short_id(sample_id: str, width: int = 34) -> str:
    """The end of a long sample id, which names the file ("..." in front), so that the titles
    of a 4-column grid do not run into each other; predictions.csv keeps the whole id."""
    return sample_id if len(sample_id) <= width else "..." + sample_id[-(width - 3) :]


def mistakes_grid(
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: list[str],
    images: Sequence[np.ndarray],
    ids: Sequence[str],
    max_items: int = 16,
) -> bytes | None:
    """A grid of the most confident mistakes with id, truth, prediction and its probability.

    ``images`` and ``ids`` are indexed like ``y_true``; returns None when nothing is wrong.
    """
    chosen = worst_mistakes(y_true, probs, max_items)
    if not chosen:
        return None
    p = np.asarray(probs, dtype=float)
    cols = min(4, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = Figure(figsize=(3.0 * cols, 3.3 * rows))
    for i, idx in enumerate(chosen, start=1):
        ax = fig.add_subplot(rows, cols, i)
        img, cmap = _displayable(images[idx])
        ax.imshow(img, cmap=cmap)
        pred = int(p[idx].argmax())
        ax.set_title(
            f"{short_id(ids[idx])}\ntrue {class_names[int(y_true[idx])]}\n"
            f"pred {class_names[pred]} ({p[idx, pred]:.2f})",
            fontsize=8,
        )
        ax.axis("off")
    return _png(fig)


def class_distribution(counts: dict[str, int], title: str = "Class distribution") -> bytes:
    """Bar chart of item counts per class, with the count on each bar."""
    names, values = list(counts), [int(v) for v in counts.values()]
    fig = Figure(figsize=(max(4.0, 1.1 * len(names) + 1.5), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    bars = ax.bar(names, values, color="#4c78a8")
    ax.bar_label(bars, fontsize=9)
    ax.set_ylabel("items")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=20)
    return _png(fig)


def segmentation_panels(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    captions: Sequence[str] | None = None,
) -> bytes:
    """One row per case: image | truth | prediction | overlay (truth green, prediction red)."""
    if not panels:
        raise DataError("segmentation panels: no cases to draw")
    fig = Figure(figsize=(11, 2.9 * len(panels)))
    for r, (case_id, image, truth, pred) in enumerate(panels):
        truth, pred = np.asarray(truth).astype(bool), np.asarray(pred).astype(bool)
        over = draw_overlay(image, truth, color=(0, 200, 0), alpha=0.25, boxes=False)
        over = draw_overlay(over, pred, color=(255, 0, 0), alpha=0.25, boxes=False)
        tiles = [(image, "image"), (truth, "truth"), (pred, "prediction"), (over, "overlay")]
        for c, (tile, name) in enumerate(tiles):
            ax = fig.add_subplot(len(panels), 4, r * 4 + c + 1)
            shown, cmap = _displayable(tile)
            ax.imshow(shown, cmap=cmap)
            ax.axis("off")
            if c == 0:
                label = captions[r] if captions is not None else case_id
                ax.set_title(f"{label}\n{name}", fontsize=8, loc="left")
            else:
                ax.set_title(name, fontsize=8)
    return _png(fig)


def _horizontal_box(ax, values: np.ndarray) -> None:
    # matplotlib 3.10 renamed vert=False to orientation="horizontal".
    try:
        ax.boxplot(values, orientation="horizontal", widths=0.6)
    except TypeError:
        ax.boxplot(values, vert=False, widths=0.6)


def metric_distributions(rows: Sequence[dict], metrics: Sequence[str]) -> bytes:
    """Per metric: a histogram over the per-image rows with a box plot under it (None skipped)."""
    present = [m for m in metrics if any(r.get(m) is not None for r in rows)]
    if not present:
        raise DataError("metric distributions: no values to plot")
    cols = min(3, len(present))
    n_rows = math.ceil(len(present) / cols)
    # Nested grids instead of constrained layout: several times faster to draw.
    fig = Figure(figsize=(4.2 * cols, 3.4 * n_rows))
    outer = fig.add_gridspec(n_rows, cols, hspace=0.5, wspace=0.3)
    for i, name in enumerate(present):
        values = np.array([r[name] for r in rows if r.get(name) is not None], dtype=float)
        inner = outer[i // cols, i % cols].subgridspec(2, 1, height_ratios=[3, 1], hspace=0.08)
        hist_ax = fig.add_subplot(inner[0])
        box_ax = fig.add_subplot(inner[1], sharex=hist_ax)
        hist_ax.hist(values, bins=min(30, max(5, values.size // 3)), color="#4c78a8")
        hist_ax.set_title(f"{name}: median {np.median(values):.3g}, n {values.size}", fontsize=9)
        hist_ax.set_ylabel("images")
        hist_ax.tick_params(labelbottom=False)
        _horizontal_box(box_ax, values)
        box_ax.set_yticks([])
        box_ax.xaxis.set_major_locator(MaxNLocator(5))
        box_ax.set_xlabel(name)
    return _png(fig)
