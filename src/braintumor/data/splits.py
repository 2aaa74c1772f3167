"""Leak-free splits: samples that are the same patient, byte copies or near duplicates form
one group, and a group never sits on two sides of a split.

Groups come from the layout (patient / case id), from the audit's exact and near-duplicate
clusters and, for numbered image/mask sets without patient ids (Figshare), from runs of
neighbouring numbers with the same label; they are merged transitively.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

from braintumor.atomic import write_text_atomic
from braintumor.data.audit import AuditReport
from braintumor.data.hashing import connected_groups, near_pairs, sha256_groups
from braintumor.data.layouts_base import DetectedLayout, normalise_split_name
from braintumor.data.near_confirm import confirm_near_duplicates
from braintumor.data.samples import Sample
from braintumor.errors import DataError

TRAIN, VAL, TEST, EXCLUDED = "train", "val", "test", "excluded"
# Candidate splits tried when carving a grouped part; the best stratified one is kept.
CARVE_TRIALS = 64
_NUMBER = re.compile(r"^\d+$")


def duplicate_groups(
    samples: Sequence[Sample],
    report_or_hashes: AuditReport | Mapping[str, tuple[str, int | None]] | None,
    phash_threshold: int = 6,
    extra_groups: Sequence[str | None] | None = None,
) -> list[str]:
    """A group id per sample that merges, transitively, the layout's ``group`` (patient/case),
    the exact and near-duplicate clusters, and ``extra_groups`` (e.g.
    :func:`figshare_number_groups`).

    ``report_or_hashes`` is an :class:`AuditReport` (its clusters are used) or a mapping
    sample id -> (sha256, 64-bit pHash or None), clustered here with ``phash_threshold``.
    Group ids are ``g00000``, ``g00001``... in order of each group's first sample.
    """
    n = len(samples)
    index = {sample.id: i for i, sample in enumerate(samples)}
    edges: list[tuple[int, int]] = []
    for keys in ([s.group for s in samples], extra_groups or []):
        edges.extend(_chain(_members_by_key(keys)))
    if isinstance(report_or_hashes, AuditReport):
        for summary in (report_or_hashes.exact, report_or_hashes.near):
            clusters = [[index[i] for i in g.ids if i in index] for g in summary.groups]
            edges.extend(_chain(clusters))
    elif report_or_hashes is not None:
        edges.extend(_hash_edges(samples, report_or_hashes, phash_threshold))
    labels = connected_groups(n, np.array(edges, dtype=np.int64).reshape(-1, 2))
    names: dict[int, str] = {}
    return [names.setdefault(int(lab), f"g{len(names):05d}") for lab in labels]


def _members_by_key(keys: Sequence[str | None]) -> list[list[int]]:
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        if key:
            members.setdefault(key, []).append(i)
    return list(members.values())


def _chain(groups: list[list[int]]) -> list[tuple[int, int]]:
    """Edges linking each group's members in a chain (enough for connectivity)."""
    return [(g[k], g[k + 1]) for g in groups for k in range(len(g) - 1)]


def _hash_edges(
    samples: Sequence[Sample], hashes: Mapping[str, tuple[str, int | None]], threshold: int
) -> list[tuple[int, int]]:
    digests = [hashes.get(s.id, ("", None))[0] or None for s in samples]
    edges = _chain(sha256_groups(digests))
    with_phash = [i for i, s in enumerate(samples) if hashes.get(s.id, ("", None))[1] is not None]
    values = np.array([hashes[samples[i].id][1] for i in with_phash], dtype=np.uint64)
    pairs, _ = near_pairs(values, threshold)
    edges.extend((with_phash[a], with_phash[b]) for a, b in pairs.tolist())
    return edges


def figshare_number_groups(samples: Sequence[Sample], max_gap: int = 2) -> list[str | None]:
    """Group numbered slices that are probably the same patient.

    Figshare's files are numbered so that neighbouring numbers are mostly neighbouring
    slices of one patient, and no patient ids are given. Samples whose file stem is a number
    are sorted by number; a run continues while the next number is at most ``max_gap`` away
    and has the same label. Returns ``num<first number>`` per sample in a run of two or more,
    else None. This is a heuristic: it cannot split two patients of the same class whose
    numbers touch, which only makes groups larger (safe for leakage).
    """
    numbered = sorted(
        (int(Path(s.image).stem), i) for i, s in enumerate(samples) if _is_number(s.image)
    )
    result: list[str | None] = [None] * len(samples)
    run: list[tuple[int, int]] = []
    for number, i in [*numbered, (None, None)]:
        if run and (
            number is None
            or number - run[-1][0] > max_gap
            or samples[i].label != samples[run[-1][1]].label
        ):
            if len(run) > 1:
                for _, member in run:
                    result[member] = f"num{run[0][0]}"
            run = []
        if number is not None:
            run.append((number, i))
    return result


def _is_number(path: str) -> bool:
    return bool(_NUMBER.match(Path(path).stem))


def layout_split_groups(
    layout: DetectedLayout,
    report: AuditReport | None,
    phash_threshold: int = 6,
    number_gap: int = 2,
) -> list[str]:
    """The groups a split of ``layout`` keeps whole: its patients or cases, the exact and near
    duplicate clusters of ``report`` (near links of weak-pHash sources such as LGG confirmed by
    pixel correlation: :mod:`braintumor.data.near_confirm`), and numbered neighbours of
    numbered image-mask sets (:func:`layout_extra_groups`). Every split path uses this."""
    if report is not None:
        report = confirm_near_duplicates(report, layout)
    extra = layout_extra_groups(layout.samples, layout.name, number_gap)
    return duplicate_groups(layout.samples, report, phash_threshold, extra_groups=extra)


def layout_extra_groups(
    samples: Sequence[Sample], layout_name: str | None, max_gap: int = 2
) -> list[str | None] | None:
    """Extra grouping a layout needs: number runs for numbered, labelled image-mask sets."""
    numbered = samples and all(_is_number(s.image) and s.label for s in samples)
    if layout_name in ("image-mask", "figshare-mat") and numbered:
        return figshare_number_groups(samples, max_gap)
    return None


def _labels(samples: Sequence[Sample]) -> np.ndarray:
    return np.array([s.label or "-" for s in samples])


def kfold_splits(samples: Sequence[Sample], k: int, seed: int, groups: Sequence[str]) -> list[str]:
    """Fold index (``"0"``..``"k-1"``) per sample: stratified by label, grouped by ``groups``
    (sklearn's StratifiedGroupKFold with shuffling)."""
    n_groups = len(set(groups))
    if k < 2 or n_groups < k:
        raise DataError(f"cannot make {k} folds from {n_groups} groups of samples")
    _check_stratifiable(_labels(samples), k, f"a split into {k} folds")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [""] * len(samples)
    for fold, (_, held) in enumerate(
        splitter.split(np.zeros(len(samples)), _labels(samples), groups)
    ):
        for i in held:
            folds[i] = str(fold)
    return folds


def train_val_test_split(
    samples: Sequence[Sample],
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    groups: Sequence[str] | None = None,
    respect_given_test: bool = False,
) -> list[str]:
    """``train`` / ``val`` / ``test`` per sample, grouped and as stratified as the groups allow.

    With ``respect_given_test`` the dataset's own ``test`` samples stay the test split and
    the fractions of train and val are renormalised over the rest; other samples whose group
    reaches into that test split are marked ``excluded`` (count them with
    ``assignment.count("excluded")``).
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise DataError(f"split fractions must be three numbers >= 0 summing to 1, not {fractions}")
    groups = np.asarray(groups if groups is not None else [s.id for s in samples])
    labels = _labels(samples)
    assignment = np.full(len(samples), TRAIN, dtype=object)
    pool = np.arange(len(samples))
    f_train, f_val, f_test = fractions
    if respect_given_test:
        given = np.array([s.split == TEST for s in samples])
        if not given.any():
            raise DataError("--respect-given-test: the dataset has no test split of its own")
        assignment[given] = TEST
        leaked = ~given & np.isin(groups, groups[given])
        assignment[leaked] = EXCLUDED
        pool = np.flatnonzero(~given & ~leaked)
    elif f_test > 0:
        chosen = _carve(pool, labels, groups, f_test, seed)
        assignment[chosen] = TEST
        pool = np.setdiff1d(pool, chosen)
    if f_val > 0:
        chosen = _carve(pool, labels, groups, f_val / (f_train + f_val), seed + 1)
        assignment[chosen] = VAL
    return assignment.tolist()


def _carve(
    pool: np.ndarray, labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Indices (from ``pool``) of whole groups making about ``fraction`` of it, chosen among
    StratifiedGroupKFold folds and repeated GroupShuffleSplit draws by size and label balance."""
    n_groups = len(set(groups[pool].tolist()))
    if n_groups < 2 or fraction >= 1:
        raise DataError(f"cannot carve {fraction:.0%} out of {n_groups} group(s) of samples")
    x, y, g = np.zeros(len(pool)), labels[pool], groups[pool]
    candidates = [
        held
        for _, held in GroupShuffleSplit(CARVE_TRIALS, test_size=fraction, random_state=seed).split(
            x, y, g
        )
    ]
    folds = min(n_groups, max(2, round(1 / fraction)))
    _check_stratifiable(y, folds, f"carving a {fraction:.0%} part (stratified over {folds} folds)")
    kfold = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    candidates.extend(held for _, held in kfold.split(x, y, g))
    classes, overall = np.unique(y, return_counts=True)
    overall = overall / len(y)

    def score(held: np.ndarray) -> float:
        size_error = abs(len(held) / len(pool) - fraction)
        shares = np.array([np.sum(y[held] == c) for c in classes]) / max(len(held), 1)
        return size_error + 0.5 * float(np.abs(shares - overall).sum())

    best = min(candidates, key=score)
    return pool[best]


def _check_stratifiable(labels: np.ndarray, n_splits: int, what: str) -> None:
    """Raise a :class:`DataError` naming the counts where StratifiedGroupKFold would raise
    its own ValueError: every class has fewer members than ``n_splits``."""
    classes, counts = np.unique(labels, return_counts=True)
    if counts.size and counts.max() < n_splits:
        pairs = zip(classes.tolist(), counts.tolist(), strict=True)
        found = ", ".join(f"{c} {n}" for c, n in pairs)
        raise DataError(
            f"too few images to split: {len(labels)} images ({found}); {what} needs "
            f"at least {n_splits} images of one class"
        )


def check_no_leak(
    samples: Sequence[Sample], assignment: Sequence[str], groups: Sequence[str]
) -> None:
    """Raise :class:`DataError` if any group has samples on two sides (``excluded`` aside)."""
    sides: dict[str, dict[str, list[str]]] = {}
    for sample, side, group in zip(samples, assignment, groups, strict=True):
        if side != EXCLUDED:
            sides.setdefault(group, {}).setdefault(side, []).append(sample.id)
    for group, by_side in sides.items():
        if len(by_side) > 1:
            detail = "; ".join(f"{side}: {', '.join(ids[:3])}" for side, ids in by_side.items())
            raise DataError(f"split leaks: group {group} is on {len(by_side)} sides ({detail})")


def split_counts(samples: Sequence[Sample], assignment: Sequence[str]) -> dict[str, dict[str, int]]:
    """Samples per label on each side of a split."""
    counts: dict[str, Counter[str]] = {}
    for sample, side in zip(samples, assignment, strict=True):
        counts.setdefault(side, Counter())[sample.label or "-"] += 1
    return {side: dict(sorted(c.items())) for side, c in sorted(counts.items())}


@dataclass
class SplitTable:
    """A splits.csv: ``column`` is ``split`` or ``fold``; values and groups by sample id."""

    column: str
    assignment: dict[str, str]
    groups: dict[str, str]


def write_splits(
    path: str | Path,
    samples: Sequence[Sample],
    assignment: Sequence[str],
    groups: Sequence[str],
    column: str = "split",
) -> None:
    """Write ``id,<column>,group`` rows atomically (``column`` is ``split`` or ``fold``)."""
    if column not in ("split", "fold"):
        raise DataError(f"splits column must be 'split' or 'fold', not {column!r}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", column, "group"])
    for sample, side, group in zip(samples, assignment, groups, strict=True):
        writer.writerow([sample.id, side, group])
    write_text_atomic(path, buffer.getvalue())


def read_splits(path: str | Path) -> SplitTable:
    """Read a file written by :func:`write_splits`."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            fieldnames = reader.fieldnames or []
            column = next((c for c in ("split", "fold") if c in fieldnames), None)
            if "id" not in fieldnames or column is None or "group" not in fieldnames:
                raise DataError(f"{path}: not a splits file (needs columns id, split|fold, group)")
            rows = list(reader)
    except OSError as error:
        raise DataError(f"{path}: cannot read splits ({error.strerror})") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(
            f"{path}: not a splits file (not UTF-8 CSV text: {error}); "
            "give the splits.csv written by `braintumor data split` or a run"
        ) from error
    return SplitTable(
        column=column,
        assignment={row["id"]: row[column] for row in rows},
        groups={row["id"]: row["group"] for row in rows},
    )


def select_samples(
    samples: list[Sample], split: str | None, splits_csv: Path | None
) -> list[Sample]:
    """Apply a splits.csv (its split or fold per sample id) and keep only ``split``."""
    if splits_csv is not None:
        table = read_splits(splits_csv)
        matched = sum(s.id in table.assignment for s in samples)
        if matched == 0:
            raise DataError(
                f"{splits_csv}: none of its ids is a sample of this dataset; "
                "was it written for another folder?"
            )
        samples = [replace(s, split=table.assignment.get(s.id)) for s in samples]
    if split is None:
        return samples
    wanted = normalise_split_name(split) or split
    kept = [s for s in samples if s.split == wanted]
    if not kept:
        found = sorted({s.split for s in samples if s.split})
        raise DataError(
            f"no sample is in split {split!r}; splits found: {', '.join(found) or 'none'}"
            + ("" if splits_csv else " (pass --splits runs/<name>/splits.csv)")
        )
    return kept
