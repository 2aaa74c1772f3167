"""Leave one source out: train on the other datasets, test on the one never seen.

For each held-out source the training pool is every other source minus the samples whose
duplicate group (exact or near copy, patient, numbered neighbours) reaches into the held-out
source: those are removed and counted, so a copy of a test image is never trained on. Where
that would take a whole class out of training (a source that copies another wholesale, as
Sartaj's set holds Figshare slices), the copies are removed from the held-out source instead,
which is then tested on what no training source holds (``copies``: auto, train or test). A
validation split is carved from the pool by group, or, with validation sources (system 004's
protocol: train on one set, validate on a second, test on a third), is those sources with
their copies removed from training too. Each fold is an ordinary training run in
``<run>/test-<source>/``; ``loso.json`` and ``report.html`` hold the per-source metrics,
their mean and worst. With ``adapt_bn`` each fold's model is evaluated a second time with its
batch-norm statistics re-estimated on the held-out source's images
(:mod:`braintumor.inference.adapt_bn`), in ``<fold>/test-adapted/``: ``metrics_adapted`` and
``summary_adapted`` beside the unadapted figures. A 2D segmenter runs the same protocol:
every source is held out (masks need no classes) and each gets Dice and IoU per slice and,
for patients' stacks, volume Dice per patient (``task: segment`` in the summary).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from braintumor.atomic import write_text_atomic
from braintumor.config import Recipe
from braintumor.data.audit import audit_results, check_samples
from braintumor.data.balance import contributions
from braintumor.data.coarse_labels import coarse_members
from braintumor.data.cross_sources import count_cross_source_groups
from braintumor.data.layouts import DetectedLayout
from braintumor.data.layouts_base import CLASSIFY_DATA, SEGMENT_DATA
from braintumor.data.samples import Sample
from braintumor.data.sources import load_data
from braintumor.data.splits import (
    EXCLUDED,
    TEST,
    TRAIN,
    VAL,
    layout_split_groups,
    train_val_test_split,
    write_splits,
)
from braintumor.errors import DataError
from braintumor.metrics.per_source import HEADLINE, mean_and_worst
from braintumor.metrics.per_source_segmentation import SEGMENTATION_HEADLINE, held_out_figures
from braintumor.report.html import ReportSection, write_report
from braintumor.runfolder import RunFolder
from braintumor.tasks.registry import EvaluateOptions, get_task
from braintumor.training.splits import train_only_coarse

console = Console(stderr=True)


@dataclass
class Fold:
    """One held-out configuration: a split label per sample and what was removed."""

    test_sources: list[str]
    val_sources: list[str]
    assignment: list[str]
    excluded: dict[str, int] = field(default_factory=dict)
    dropped_from: str = "train"

    @property
    def name(self) -> str:
        """``test-<source>`` (sources joined by ``+``)."""
        return "test-" + "+".join(self.test_sources)


def source_groups(layout: DetectedLayout, recipe: Recipe, workers: int = 2) -> list[str]:
    """Duplicate groups over all sources (exact + near copies merged with layout groups; near
    links of weak-pHash sources confirmed by pixel correlation)."""
    results = check_samples(layout.samples, layout.root, workers=workers, progress=True)
    report = audit_results(layout.samples, layout.root, results, recipe.phash_threshold)
    return layout_split_groups(layout, report, recipe.phash_threshold)


def default_test_sources(samples: Sequence[Sample], kind: str = CLASSIFY_DATA) -> list[str]:
    """Sources with at least two classes whose removal leaves every class in training; for
    segmentation (``kind`` :data:`SEGMENT_DATA`) every source: a mask needs no class."""
    if kind == SEGMENT_DATA:
        return list(dict.fromkeys(str(s.source) for s in samples))
    # A tumour of unknown type is no class a held-out source can be scored on.
    coarse = coarse_members(s.label for s in samples)
    table = {
        source: {label: n for label, n in counts.items() if label not in coarse}
        for source, counts in contributions(samples).items()
    }
    every = {label for counts in table.values() for label in counts}
    chosen = []
    for source, counts in table.items():
        rest = {label for other, c in table.items() if other != source for label in c}
        if len(counts) >= 2 and rest >= every:
            chosen.append(source)
    return chosen


DROP_MODES = ("auto", "train", "test")
ADAPTED_TEXT = (
    "The same models, their batch-norm statistics re-estimated on the held-out source's "
    "unlabelled test images before predicting them (AdaBN)."
)


class MissingClassError(DataError):
    """A fold would leave a class of the held-out source without training samples."""


def plan_fold(
    samples: Sequence[Sample],
    groups: Sequence[str],
    test_sources: Sequence[str],
    val_sources: Sequence[str],
    recipe: Recipe,
    drop: str = "auto",
) -> Fold:
    """Split labels for one fold.

    ``drop`` says where samples whose duplicate group spans the held-out source and the
    others go: ``train`` removes them from training (the held-out source is tested whole),
    ``test`` removes them from the held-out source (it is tested on what no other source
    holds: needed when a source copies another wholesale), ``auto`` tries ``train`` and
    falls back to ``test`` when training would lose a class the held-out source holds.
    Raises :class:`DataError` for unknown sources or a class training cannot cover.
    """
    if drop not in DROP_MODES:
        raise DataError(f"copies: must be one of {', '.join(DROP_MODES)}, not {drop!r}")
    known = {s.source for s in samples}
    for name in [*test_sources, *val_sources]:
        if name not in known:
            raise DataError(
                f"no source named {name}; sources: {', '.join(sorted(map(str, known)))}"
            )
    if drop == "auto":
        try:
            return plan_fold(samples, groups, test_sources, val_sources, recipe, "train")
        except MissingClassError:
            return plan_fold(samples, groups, test_sources, val_sources, recipe, "test")
    assignment, excluded = _assign(samples, groups, set(test_sources), set(val_sources), drop)
    if not val_sources:
        pool = [i for i, side in enumerate(assignment) if side == TRAIN]
        share = recipe.val_fraction / max(1e-6, 1 - recipe.test_fraction)
        inner = train_val_test_split(
            [samples[i] for i in pool],
            (1 - share, share, 0.0),
            recipe.seed,
            [groups[i] for i in pool],
        )
        for i, side in zip(pool, inner, strict=True):
            assignment[i] = side
    # Tumours of unknown type train only (as in every run), so the fold counts what it scores.
    assignment = train_only_coarse(list(samples), assignment)
    trained = {s.label for s, side in zip(samples, assignment, strict=True) if side == TRAIN}
    tested = {s.label for s, side in zip(samples, assignment, strict=True) if side == TEST}
    segmenting = get_task(recipe.task).data_kinds[0] == SEGMENT_DATA  # masks, not classes
    missing = [] if segmenting else sorted(str(c) for c in tested - trained)
    if missing or not tested:
        raise MissingClassError(
            f"held-out {', '.join(test_sources)}: "
            + (
                f"class {', '.join(missing)} has no training sample in the other sources "
                if missing
                else "every sample has a copy in the other sources "
            )
            + f"once copies are removed from {drop}"
        )
    return Fold(list(test_sources), list(val_sources), assignment, excluded, drop)


def _assign(
    samples: Sequence[Sample],
    groups: Sequence[str],
    tests: set[str],
    vals: set[str],
    drop: str,
) -> tuple[list[str], dict[str, int]]:
    """Sides before the train/val carve; samples tied to another role's group are excluded."""
    by_role: dict[str, set[str]] = {"test": set(), "val": set(), "train": set()}
    for sample, group in zip(samples, groups, strict=True):
        role = "test" if sample.source in tests else "val" if sample.source in vals else "train"
        by_role[role].add(group)
    assignment: list[str] = []
    excluded: Counter[str] = Counter()
    for sample, group in zip(samples, groups, strict=True):
        if sample.source in tests:
            shared = group in by_role["train"] or group in by_role["val"]
            side = EXCLUDED if drop == "test" and shared else TEST
        elif sample.source in vals:
            side = EXCLUDED if drop == "train" and group in by_role["test"] else VAL
        else:
            held = group in by_role["val"] or (drop == "train" and group in by_role["test"])
            side = EXCLUDED if held else TRAIN
        if side == EXCLUDED:
            excluded[str(sample.source)] += 1
        assignment.append(side)
    return assignment, dict(excluded)


def run_loso(
    recipe: Recipe,
    data: Sequence[str | Path] | str | Path,
    run_dir: Path,
    test_sources: Sequence[str] = (),
    val_sources: Sequence[str] = (),
    copies: str = "auto",
    devices: Any = "auto",
    nodes: int = 1,
    accelerator: str = "auto",
    progress: bool = True,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
    adapt_bn: bool = False,
    **_: Any,
) -> dict[str, Any]:
    """Train and test one fold per held-out source; write ``loso.json`` and ``report.html``.

    ``test_sources`` (default: the recipe's ``extra.test_source``, else every source with two
    or more classes whose removal leaves every class in training) are held out one per fold;
    ``val_sources`` (default ``extra.val_source``) validate instead of a carved split;
    ``copies`` is :func:`plan_fold`'s ``drop``. ``on_fold`` is called with the summary so far
    after each fold. ``adapt_bn`` adds each fold's figures with batch norm adapted to the
    held-out source (``metrics_adapted``, ``summary_adapted``). The other options go to each
    training run.
    """
    data = [data] if isinstance(data, str | Path) else list(data)
    train_options = {
        "devices": devices,
        "nodes": nodes,
        "accelerator": accelerator,
        "progress": progress,
    }
    kind = get_task(recipe.task).data_kinds[0]
    if kind not in (CLASSIFY_DATA, SEGMENT_DATA):
        raise DataError(
            f"recipe {recipe.name!r}: leave-one-source-out needs a 2D classify or segment recipe"
        )
    layout = load_data(data, kind, recipe.classes)
    samples = layout.samples
    if len({s.source for s in samples}) < 2:
        raise DataError("leave-one-source-out needs two or more --data sources")
    run_dir.mkdir(parents=True, exist_ok=True)
    tests = list(test_sources) or list(recipe.extra.test_source)
    vals = list(val_sources) or list(recipe.extra.val_source)
    held_out = [[t] for t in tests or default_test_sources(samples, kind)]
    if not held_out:
        raise DataError("no source holds two classes while the others cover every class")
    groups = source_groups(layout, recipe)
    merged = count_cross_source_groups(samples, groups)
    console.print(f"{merged} duplicate groups span two or more sources")
    summary: dict[str, Any] = {
        "protocol": "loso",
        "recipe": recipe.name,
        "task": "segment" if kind == SEGMENT_DATA else "classify",
        "sources": contributions(samples),
        "cross_source_groups": merged,
        "adapt_bn": adapt_bn,
        "folds": [],
    }
    for test in held_out:
        fold = plan_fold(samples, groups, test, [v for v in vals if v not in test], recipe, copies)
        summary["folds"].append(
            _run_fold(fold, recipe, data, samples, groups, run_dir, train_options, adapt_bn)
        )
        _write_summary(run_dir, summary)
        if on_fold is not None:
            on_fold(summary)
    return summary


def _run_fold(
    fold: Fold,
    recipe: Recipe,
    data: Sequence[str | Path],
    samples: Sequence[Sample],
    groups: Sequence[str],
    run_dir: Path,
    train_options: dict[str, Any],
    adapt_bn: bool = False,
) -> dict[str, Any]:
    from braintumor.training.run import train_run  # Lightning: slow to import

    splits_csv = run_dir / f"splits-{fold.name}.csv"
    write_splits(splits_csv, samples, fold.assignment, groups)
    removed = ", ".join(f"{s} {n}" for s, n in fold.excluded.items()) or "none"
    console.print(
        f"[bold]{fold.name}[/bold]: {fold.assignment.count(TRAIN)} train, "
        f"{fold.assignment.count(VAL)} val, {fold.assignment.count(TEST)} test; "
        f"cross-source copies removed from {fold.dropped_from}: {removed}"
    )
    start = time.perf_counter()
    result = train_run(
        recipe,
        list(data),
        run_dir / fold.name,
        splits_csv=splits_csv,
        **train_options,
    )
    record = {
        "test_sources": fold.test_sources,
        "val_sources": fold.val_sources,
        "n_train": fold.assignment.count(TRAIN),
        "n_val": fold.assignment.count(VAL),
        "n_test": fold.assignment.count(TEST),
        "excluded_copies": fold.excluded,
        "copies_removed_from": fold.dropped_from,
        "seconds": round(time.perf_counter() - start, 1),
        "run_dir": str(result.run_dir),
        "metrics": held_out_metrics(result.metrics.get("test") or {}, fold.test_sources),
    }
    if adapt_bn and result.model_dir is not None:
        test = [s for s, side in zip(samples, fold.assignment, strict=True) if side == TEST]
        adapted = _evaluate_adapted(result.model_dir, test, recipe)
        record["adapt_bn"] = adapted["adapt_bn"]
        if adapted["adapt_bn"]["layers"]:  # else the figures are the unadapted ones
            record["metrics_adapted"] = held_out_metrics(adapted, fold.test_sources)
    return record


def held_out_metrics(metrics: dict[str, Any], test_sources: Sequence[str]) -> dict[str, dict]:
    """Each held-out source's figures from a fold's test evaluation: a classifier's per-source
    metrics, or a segmenter's (:func:`held_out_figures`; its evaluation splits by source only
    when the test holds several, and a fold holds one out)."""
    per_source = metrics.get("per_source") or {}
    if metrics.get("task") == "segment" and len(test_sources) == 1 and "summary" in metrics:
        return {test_sources[0]: held_out_figures(metrics)}
    return {s: per_source[s] for s in test_sources if s in per_source}


def _evaluate_adapted(model_dir: Path, test: list[Sample], recipe: Recipe) -> dict[str, Any]:
    """The fold's model on its test samples, batch norm adapted to each held-out source."""
    from braintumor.models.folder import load_model_dir

    loaded = load_model_dir(model_dir)
    out = RunFolder(model_dir.parent).test_adapted
    options = EvaluateOptions(batch_size=recipe.batch_size, adapt_bn=True)
    return get_task(recipe.task).evaluate(loaded, test, out, options)


def headline_keys(task: str | None) -> tuple[str, ...]:
    """The per-source figures a summary's mean and worst are taken over, by the task its
    results name (``classify`` where older results name none)."""
    return SEGMENTATION_HEADLINE if task == "segment" else HEADLINE


def _write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    segmenting = summary.get("task") == "segment"
    keys = headline_keys(summary.get("task"))
    per_source = {s: m for fold in summary["folds"] for s, m in fold["metrics"].items()}
    summary["summary"] = mean_and_worst(per_source, keys)
    adapted = {
        s: m for fold in summary["folds"] for s, m in fold.get("metrics_adapted", {}).items()
    }
    if adapted:
        summary["summary_adapted"] = mean_and_worst(adapted, keys)
    write_text_atomic(run_dir / "loso.json", json.dumps(summary, indent=2))
    from braintumor.report.evaluation import held_out_segmentation_section, per_source_section

    section_of = held_out_segmentation_section if segmenting else per_source_section
    sections = [section_of(per_source)] if per_source else []
    if adapted:
        section = section_of(adapted)
        sections.append(
            dataclasses.replace(
                section,
                heading="Per source, batch norm adapted to the held-out source",
                text=ADAPTED_TEXT + " " + (section.text or ""),
            )
        )
    folds = [
        {
            "held out": "+".join(f["test_sources"]),
            "validated on": "+".join(f["val_sources"]) or "carved from training sources",
            "train / val / test": f"{f['n_train']} / {f['n_val']} / {f['n_test']}",
            "cross-source copies removed": (
                ", ".join(f"{s} {n}" for s, n in f["excluded_copies"].items()) or "0"
            )
            + f" (from {f['copies_removed_from']})",
            "seconds": str(f["seconds"]),
        }
        for f in summary["folds"]
    ]
    sections.append(
        ReportSection(
            "Folds",
            text=f"{summary['cross_source_groups']} duplicate groups span two or more sources.",
            table=folds,
        )
    )
    write_report(
        run_dir / "report.html", f"Leave one source out: {summary['recipe']}", sections, ""
    )
