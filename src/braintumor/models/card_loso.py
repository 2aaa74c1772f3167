"""The leave-one-source-out section of a model card, from a ``benchmarks/loso.py`` results file.

The file (``benchmarks/results/loso_<setting>_<tag>.json``) holds one fold per held-out
source with that source's metrics and bootstrap 95% intervals, their mean and worst, the
recipe the folds trained, the command that ran them and the training data. The section
renders them as estimates of how a model trained this way does on a source it has never
seen, and says where the benchmark's recipe or data differ from the model's own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from braintumor.errors import DataError

LOSO_BENCHMARK = "loso"
LOSO_PREFIX = "## Leave-one-source-out"
HEADING = f"{LOSO_PREFIX}: estimates for unseen sources"
#: (metric key in the results, column title) of a classifier's folds
COLUMNS = (
    ("balanced_accuracy", "balanced accuracy [95% CI]"),
    ("tumor_auc", "tumour AUC [95% CI]"),
    ("sensitivity", "sensitivity [95% CI]"),
    ("specificity", "specificity [95% CI]"),
)
#: the same of a segmenter's (:func:`braintumor.metrics.per_source_segmentation.held_out_figures`)
SEGMENTATION_COLUMNS = (
    ("dice", "Dice per slice [95% CI]"),
    ("iou", "IoU per slice [95% CI]"),
    ("patient_volume_dice", "volume Dice per patient [95% CI]"),
)
FOOTNOTES = {
    "classify": "Balanced accuracy is over the classes each held-out source holds; tumour AUC, "
    "sensitivity and specificity count every class but no_tumor as tumour (- where the "
    "source lacks one side). Intervals: bootstrap 95% over the held-out source's images.",
    "segment": "Dice and IoU per slice under the evaluation's empty-mask rule; volume Dice per "
    "patient where the held-out source's slices are patients' stacks (- otherwise). "
    "Intervals: bootstrap 95% over the held-out source's slices (patients for volume Dice).",
}
#: Recipe keys compared between the benchmark's folds and the model.
COMPARED = ("name", "model", "image_size", "max_minutes", "preprocess", "augment", "class_weights")


def read_loso_results(path: str | Path, setting: str | None = None) -> dict[str, Any]:
    """A ``benchmarks/loso.py`` results file; with ``setting``, it must be that setting's.

    Raises :class:`DataError` (one line) for a missing or unreadable file, another
    benchmark's file, a file without folds, or another setting.
    """
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no such leave-one-source-out results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable JSON results file ({error})") from None
    if not isinstance(results, dict) or results.get("benchmark") != LOSO_BENCHMARK:
        raise DataError(f"{path}: not a leave-one-source-out results file (benchmarks/loso.py)")
    if not results.get("folds"):
        raise DataError(f"{path}: holds no finished fold")
    if setting is not None and results.get("setting") != setting:
        raise DataError(
            f"{path}: results of setting {results.get('setting')!r}, this model's is {setting!r}"
        )
    return results


def _cell(metrics: dict[str, Any], key: str) -> str:
    value, ci = metrics.get(key), (metrics.get("ci95") or {}).get(key)
    if value is None:
        return "-"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


def loso_columns(task: str | None) -> tuple[tuple[str, str], ...]:
    """(metric key, column title) of a leave-one-source-out table for results of ``task``
    (``classify`` where older results name none)."""
    return SEGMENTATION_COLUMNS if task == "segment" else COLUMNS


def _columns(results: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return loso_columns(results.get("task"))


def _rows(results: dict[str, Any], metrics_key: str, summary_key: str) -> list[list[str]]:
    columns = _columns(results)
    rows = [
        [source, str(m.get("n", "?")), *(_cell(m, key) for key, _ in columns)]
        for fold in results["folds"]
        for source, m in (fold.get(metrics_key) or {}).items()
    ]
    summary = results.get(summary_key) or {}
    for kind in ("mean", "worst"):
        cells = []
        for key, _ in columns:
            block = summary.get(key)
            if block is None:
                cells.append("-")
            else:
                where = f" ({block['worst_source']})" if kind == "worst" else ""
                cells.append(f"{block[kind]:.3f}{where}")
        rows.append([kind, "", *cells])
    return rows


def _table(rows: list[list[str]], columns: tuple[tuple[str, str], ...]) -> list[str]:
    header = ["held-out source", "n", *(title for _, title in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _differences(bench: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """``key value (this model: value)`` for each compared recipe key (or sub-key of a
    mapping such as ``augment``) that differs; ``none`` where one side lacks it."""
    out = []
    for key in COMPARED:
        if key not in bench:
            continue
        ours, theirs = bench.get(key), model.get(key)
        if isinstance(ours, dict) and isinstance(theirs, dict):
            pairs = [(f"{key}.{k}", ours.get(k), theirs.get(k)) for k in {**ours, **theirs}]
        else:
            pairs = [(key, ours, theirs)]
        out += [f"{name} {_shown(a)} (this model: {_shown(b)})" for name, a, b in pairs if a != b]
    return out


def _shown(value: Any) -> str:
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def portable_command(command: str) -> str:
    """``command`` without ``--runs FOLDER``: where the fold runs were written is a path of the
    machine that ran them, not something a reader needs to reproduce them (a card names no
    paths)."""
    return re.sub(r"\s--runs(?:=|\s+)\S+", "", command)


def loso_section(
    results: dict[str, Any],
    model_recipe: dict[str, Any] | None = None,
    source_file: str | None = None,
) -> list[str]:
    """Markdown lines: what the figures are, the per-source table with mean and worst, and
    (when the results hold them) the same with batch norm adapted to the held-out source."""
    recipe = results.get("recipe") or {}
    budget = recipe.get("max_minutes")
    lines = [
        "",
        HEADING,
        "",
        "How a model trained with this toolkit does on a dataset it never saw: each row trains "
        "on the other sources and tests on the held-out one, with the held-out source's copies "
        "(exact, near, same patient) kept out of training. These are estimates for unseen "
        "sources from the generalisation benchmark, not figures of this model's own weights: "
        "the folds are separate training runs.",
        "",
        f"- benchmark: setting `{results.get('setting')}`, run `{results.get('tag')}`"
        + (f", results file `{source_file}`" if source_file else ""),
        f"- recipe: `{recipe.get('name', '?')}` ({recipe.get('model', '?')}, "
        f"{recipe.get('image_size', '?')} px), budget "
        + (f"{budget:g} minutes per fold" if isinstance(budget, int | float) else "unknown"),
        f"- data: {', '.join(results.get('data') or []) or 'unknown'}",
        f"- command: `{portable_command(results.get('command', 'unknown'))}`",
    ]
    if model_recipe:
        differences = _differences(recipe, model_recipe)
        if differences:
            lines.append("- the folds' recipe differs from this model's: " + "; ".join(differences))
    columns = _columns(results)
    lines += ["", *_table(_rows(results, "metrics", "summary"), columns)]
    if any(fold.get("metrics_adapted") for fold in results["folds"]):
        lines += [
            "",
            "With batch norm adapted to the held-out source (`--adapt-bn`: statistics "
            "re-estimated on its unlabelled test images):",
            "",
            *_table(_rows(results, "metrics_adapted", "summary_adapted"), columns),
        ]
    lines += ["", FOOTNOTES["segment" if results.get("task") == "segment" else "classify"]]
    return lines


def replace_loso_section(card: str, section: list[str]) -> str:
    """``card`` (a card's Markdown) with its leave-one-source-out section replaced by
    ``section`` (:func:`loso_section`); a card without one gets it before ``## Recipe``
    (else at the end). Nothing else in the card changes."""
    lines = card.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(LOSO_PREFIX)), None)
    if start is None:
        start = end = next((i for i, line in enumerate(lines) if line == "## Recipe"), len(lines))
    else:
        end = next(
            (j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines)
        )
    before = "\n".join(lines[:start]).rstrip("\n")
    after = "\n".join(lines[end:])
    body = "\n".join(section).strip("\n")
    return before + "\n\n" + body + "\n" + ("\n" + after + "\n" if after else "")
