"""Choose a run's train/val/test samples without leakage, and pin them in ``splits.csv``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from braintumor.config import Recipe
from braintumor.data.coarse_labels import coarse_members, is_coarse
from braintumor.data.cross_sources import count_cross_source_groups
from braintumor.data.layouts_base import BRATS_DATA
from braintumor.data.samples import Sample
from braintumor.data.splits import (
    EXCLUDED,
    TEST,
    TRAIN,
    VAL,
    check_no_leak,
    layout_split_groups,
    read_splits,
    split_counts,
    train_val_test_split,
    write_splits,
)
from braintumor.errors import DataError
from braintumor.runfolder import RunFolder

console = Console(stderr=True)


def leak_groups(layout: Any, recipe: Recipe) -> list[str]:
    """Patient/case groups merged with exact and near-duplicate clusters (pHash)."""
    samples = layout.samples
    report = None
    if layout.task != BRATS_DATA:  # no pixel hashing of whole BraTS volumes
        from braintumor.data.audit import audit_dataset

        report = audit_dataset(samples, layout.root, phash_threshold=recipe.phash_threshold)
    groups = layout_split_groups(layout, report, recipe.phash_threshold)
    merged = count_cross_source_groups(samples, groups)
    if len({s.source for s in samples}) > 1:
        console.print(f"{merged} duplicate groups span two or more sources (kept on one side)")
    return groups


def _from_table(samples: list[Sample], path: Path, recipe: Recipe) -> tuple[list[str], list[str]]:
    """Assignment and groups from a splits file; a fold file tests on fold ``extra.fold``."""
    table = read_splits(path)
    missing = [s.id for s in samples if s.id not in table.assignment]
    if missing:
        raise DataError(f"{path}: {len(missing)} samples have no split (first: {missing[0]})")
    groups = [table.groups[s.id] for s in samples]
    values = [table.assignment[s.id] for s in samples]
    if table.column == "split":
        return values, groups
    fold = str(recipe.extra.fold)
    if fold not in set(values):
        raise DataError(f"{path}: no fold {fold} (set extra.fold to one of {sorted(set(values))})")
    rest = [s for s, v in zip(samples, values, strict=True) if v != fold]
    rest_groups = [g for g, v in zip(groups, values, strict=True) if v != fold]
    val_share = recipe.val_fraction / max(1e-6, 1 - recipe.test_fraction)
    inner = iter(
        train_val_test_split(rest, (1 - val_share, val_share, 0.0), recipe.seed, rest_groups)
    )
    return [TEST if v == fold else next(inner) for v in values], groups


def train_only_coarse(samples: list[Sample], assignment: list[str]) -> list[str]:
    """The assignment with coarse samples (:mod:`braintumor.data.coarse_labels`) moved out of
    validation and test, which score typed classes; their groups stay where they were, so
    no copy crosses the split."""
    members = coarse_members(s.label for s in samples)
    return [
        EXCLUDED if side in (VAL, TEST) and is_coarse(sample, members) else side
        for sample, side in zip(samples, assignment, strict=True)
    ]


def resolve_splits(
    layout: Any,
    recipe: Recipe,
    run_dir: Path,
    splits_csv: Path | None = None,
    resume: bool = False,
) -> dict[str, list[Sample]]:
    """Samples per split; the choice is written to ``run_dir/splits.csv`` (reused on resume).

    Order of preference: the run's own file when resuming, ``--splits``, the dataset's own
    test folder (train samples duplicated in it are excluded), else grouped fractions.
    """
    samples: list[Sample] = layout.samples
    pinned = RunFolder(run_dir).splits
    if resume and pinned.is_file():
        assignment, groups = _from_table(samples, pinned, recipe)
    elif splits_csv is not None:
        assignment, groups = _from_table(samples, splits_csv, recipe)
    else:
        groups = leak_groups(layout, recipe)
        has_test = any(s.split == TEST for s in samples)
        fractions = (
            1 - recipe.val_fraction - recipe.test_fraction,
            recipe.val_fraction,
            recipe.test_fraction,
        )
        if has_test:
            fractions = (1 - recipe.val_fraction, recipe.val_fraction, 0.0)
        assignment = train_val_test_split(
            samples, fractions, recipe.seed, groups, respect_given_test=has_test
        )
    assignment = train_only_coarse(samples, assignment)
    check_no_leak(samples, assignment, groups)
    write_splits(pinned, samples, assignment, groups)
    members = coarse_members(s.label for s in samples)
    unscored = sum(
        side == EXCLUDED and is_coarse(s, members)
        for s, side in zip(samples, assignment, strict=True)
    )
    excluded = assignment.count(EXCLUDED) - unscored
    if excluded:
        console.print(
            f"[yellow]{excluded} samples share a duplicate group across the split and were left out"
        )
    if unscored:
        console.print(
            f"{unscored} tumours of unknown type were left out of validation and test "
            "(they train, but cannot be scored on the typed classes)"
        )
    for side, counts in split_counts(samples, assignment).items():
        console.print(f"{side}: {sum(counts.values())} {counts}")
    by_split: dict[str, list[Sample]] = {TRAIN: [], VAL: [], TEST: []}
    for sample, side in zip(samples, assignment, strict=True):
        if side in by_split:
            by_split[side].append(sample)
    if not by_split[TRAIN] or not by_split[VAL]:
        raise DataError(f"{layout.root}: too few samples for a train and a validation split")
    return by_split
