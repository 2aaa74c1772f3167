"""Dataset audit: counts, image sizes and formats, unreadable files, exact and near
duplicates, duplicates that cross splits or carry different labels, mask and case problems.

Files are hashed in a process pool that sends back only hashes and small facts, so memory
stays bounded however large the dataset. Problems are findings in the report, never crashes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import combinations
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from braintumor.data.audit_checks import ItemResult, ItemTask, check_item, mask_problems
from braintumor.data.hashing import connected_groups, groups_of, near_pairs, sha256_groups
from braintumor.data.samples import Sample

NO_SPLIT = "-"
NO_LABEL = "-"


@dataclass
class DuplicateGroup:
    """Samples that are copies of each other (exact) or a near-duplicate cluster."""

    ids: list[str]
    labels: list[str]
    splits: list[str]
    max_distance: int = 0


@dataclass
class DuplicateSummary:
    """Duplicate groups of one kind (``exact``: same SHA-256; ``near``: pHash clusters) and
    what they mean for splits and labels.

    ``files_with_copy_elsewhere[s]`` counts files of split ``s`` with a direct duplicate pair
    partner in another split; ``pairs`` counts pairs (for near duplicates: Hamming distance
    at most the threshold, exact copies included).
    """

    kind: str
    groups: list[DuplicateGroup] = field(default_factory=list)
    n_groups: int = 0
    n_files: int = 0
    n_extra_copies: int = 0
    pairs: int = 0
    cross_split_groups: int = 0
    cross_split_files: int = 0
    cross_split_pairs: int = 0
    within_split_groups: dict[str, int] = field(default_factory=dict)
    files_with_copy_elsewhere: dict[str, int] = field(default_factory=dict)
    label_conflict_groups: int = 0
    label_conflict_pairs: int = 0


@dataclass
class AuditReport:
    """Everything the audit found; ``to_json()`` for files, ``write_audit_html`` for people."""

    root: str
    n_samples: int
    phash_threshold: int
    seconds: float = 0.0
    layout: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    sizes: dict[str, object] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    formats: dict[str, int] = field(default_factory=dict)
    unreadable: list[dict[str, str]] = field(default_factory=list)
    exact: DuplicateSummary = field(default_factory=lambda: DuplicateSummary("exact"))
    near: DuplicateSummary = field(default_factory=lambda: DuplicateSummary("near"))
    mask_problems: list[dict[str, str]] = field(default_factory=list)
    case_problems: list[dict[str, str]] = field(default_factory=list)
    label_values: list[float] = field(default_factory=list)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=1)


#: Mask problems of pairing (listed in full by ``data audit``; others are counted).
NO_MASK = "image without a mask"
NO_IMAGE = "mask without an image"


def audit_dataset(
    samples: list[Sample],
    root: Path,
    phash_threshold: int = 6,
    workers: int = 2,
    progress: bool = True,
    use_draft: bool = True,
    orphan_masks: list[str] | None = None,
) -> AuditReport:
    """Audit ``samples`` (paths relative to ``root``) and return what was found.

    ``workers`` processes hash the files (1 = in this process). ``use_draft`` decodes JPEGs
    at reduced scale for the perceptual hash (about twice as fast; the hash moves by a
    fraction of a bit on average, see docs/data.md); False gives exactly imagehash's pHash
    of the full image. ``orphan_masks`` (a layout's masks without an image) are listed as
    mask problems, as are the images of a segmentation set that have no mask.
    """
    start = time.perf_counter()
    done = check_samples(samples, root, workers, progress, use_draft)
    return audit_results(samples, root, done, phash_threshold, start, orphan_masks)


def check_samples(
    samples: list[Sample],
    root: Path,
    workers: int = 2,
    progress: bool = True,
    use_draft: bool = True,
) -> list[ItemResult]:
    """Hash and check every sample's files (the slow part of :func:`audit_dataset`); results
    carry the sample's index and its fingerprint (SHA-256, pHash)."""
    root = Path(root)
    tasks = [_task(index, sample, root, use_draft) for index, sample in enumerate(samples)]
    results: list[ItemResult | None] = [None] * len(samples)
    for result in _run_checks(tasks, workers, progress):
        results[result.index] = result
    return [r for r in results if r is not None]


def audit_results(
    samples: list[Sample],
    root: Path,
    done: list[ItemResult],
    phash_threshold: int = 6,
    start: float | None = None,
    orphan_masks: list[str] | None = None,
    keep_near: Callable[[np.ndarray], np.ndarray] | None = None,
) -> AuditReport:
    """The audit report of :func:`check_samples`' results (``orphan_masks``: see
    :func:`audit_dataset`). ``keep_near`` takes the near pairs (sample-index pairs, shape
    (m, 2)) and says which stand (e.g. :func:`braintumor.data.near_confirm.links_that_stand`
    for LGG's slices); the near clusters are built from those alone."""
    start = time.perf_counter() if start is None else start
    report = AuditReport(root=str(root), n_samples=len(samples), phash_threshold=phash_threshold)
    report.counts = count_by_split(samples)
    _summarize_images(report, samples, done)
    report.exact, report.near = _duplicates(samples, done, phash_threshold, keep_near)
    _summarize_masks_and_cases(report, samples, done, orphan_masks or [])
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _task(index: int, sample: Sample, root: Path, use_draft: bool) -> ItemTask:
    mask = str(root / sample.mask) if sample.mask else None
    modalities = {name: str(root / path) for name, path in sample.modalities.items()}
    return ItemTask(index, str(root / sample.image), mask, modalities, use_draft)


def _run_checks(tasks: list[ItemTask], workers: int, progress: bool):
    """Yield results as they come; a rich progress bar when asked."""
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not progress,
        transient=True,
    )
    with bar:
        tracked = bar.add_task("auditing", total=len(tasks))
        if workers <= 1 or len(tasks) < 2:
            for task in tasks:
                yield check_item(task)
                bar.advance(tracked)
            return
        chunksize = max(1, min(64, len(tasks) // (workers * 8)))
        with Pool(workers) as pool:
            for result in pool.imap_unordered(check_item, tasks, chunksize=chunksize):
                yield result
                bar.advance(tracked)


def count_by_split(samples: list[Sample]) -> dict[str, dict[str, int]]:
    """Samples per label for each split of the dataset and for ``all``."""
    counts: dict[str, Counter[str]] = {}
    for sample in samples:
        label = sample.label or NO_LABEL
        counts.setdefault(sample.split or NO_SPLIT, Counter())[label] += 1
        counts.setdefault("all", Counter())[label] += 1
    return {split: dict(sorted(c.items())) for split, c in counts.items()}


def _summarize_images(report: AuditReport, samples: list[Sample], done: list[ItemResult]) -> None:
    sizes: Counter[tuple[int, int]] = Counter()
    for result in done:
        fp = result.fingerprint
        if fp is None:
            if result.case and result.case.shape:
                sizes[tuple(result.case.shape)] += 1
            continue
        if fp.error:
            sample = samples[result.index]
            report.unreadable.append({"id": sample.id, "path": sample.image, "error": fp.error})
            continue
        sizes[(fp.width, fp.height)] += 1
        report.modes[fp.mode or "?"] = report.modes.get(fp.mode or "?", 0) + 1
        report.formats[fp.format or "?"] = report.formats.get(fp.format or "?", 0) + 1
    report.unreadable.sort(key=lambda row: row["id"])
    if sizes:
        keys = list(sizes)
        report.sizes = {
            "distinct": len(sizes),
            "min": [min(k[axis] for k in keys) for axis in range(len(keys[0]))],
            "max": [max(k[axis] for k in keys) for axis in range(len(keys[0]))],
            "most_common": [[*size, n] for size, n in sizes.most_common(3)],
        }


def _duplicates(
    samples: list[Sample],
    done: list[ItemResult],
    threshold: int,
    keep_near: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[DuplicateSummary, DuplicateSummary]:
    digests: list[str | None] = [None] * len(samples)
    hashed_index, hashes = [], []
    for result in done:
        fp = result.fingerprint
        if fp is not None and not fp.error:
            digests[result.index] = fp.sha256
            if fp.phash is not None:
                hashed_index.append(result.index)
                hashes.append(fp.phash)
        elif result.case is not None:
            digests[result.index] = result.case.sha256
    exact_groups = sha256_groups(digests)
    exact_pairs = np.array(
        [pair for group in exact_groups for pair in combinations(group, 2)], dtype=np.int64
    ).reshape(-1, 2)
    exact = summarize_duplicates("exact", samples, exact_groups, exact_pairs)

    members = np.asarray(hashed_index, dtype=np.int64)
    local_pairs, distances = near_pairs(np.array(hashes, dtype=np.uint64), threshold)
    if keep_near is not None and len(local_pairs):
        stand = keep_near(members[local_pairs])
        local_pairs, distances = local_pairs[stand], distances[stand]
    labels = connected_groups(len(members), local_pairs)
    near_groups = groups_of(labels, members)
    pairs = members[local_pairs] if len(local_pairs) else np.zeros((0, 2), dtype=np.int64)
    near = summarize_duplicates("near", samples, near_groups, pairs, distances)
    return exact, near


def summarize_duplicates(
    kind: str,
    samples: list[Sample],
    groups: list[list[int]],
    pairs: np.ndarray,
    distances: np.ndarray | None = None,
) -> DuplicateSummary:
    """Statistics of duplicate ``groups`` (sample indices) and their direct ``pairs``."""
    split = [s.split or NO_SPLIT for s in samples]
    label = [s.label or NO_LABEL for s in samples]
    summary = DuplicateSummary(kind, n_groups=len(groups), pairs=len(pairs))
    within: Counter[str] = Counter()
    worst = Counter()
    if distances is not None:
        # Largest pair distance inside each group, to show how loose a cluster is.
        group_of = {i: g for g, group in enumerate(groups) for i in group}
        for (a, _), d in zip(pairs.tolist(), distances.tolist(), strict=True):
            worst[group_of[a]] = max(worst[group_of[a]], d)
    for number, group in enumerate(groups):
        splits = sorted({split[i] for i in group})
        labels = sorted({label[i] for i in group})
        summary.groups.append(
            DuplicateGroup([samples[i].id for i in group], labels, splits, worst[number])
        )
        summary.n_files += len(group)
        if len(splits) > 1:
            summary.cross_split_groups += 1
            summary.cross_split_files += len(group)
        else:
            within[splits[0]] += 1
        summary.label_conflict_groups += len(labels) > 1
    summary.n_extra_copies = summary.n_files - summary.n_groups
    summary.within_split_groups = dict(sorted(within.items()))
    elsewhere: dict[str, set[int]] = {}
    for a, b in pairs.tolist():
        if split[a] != split[b]:
            summary.cross_split_pairs += 1
            elsewhere.setdefault(split[a], set()).add(a)
            elsewhere.setdefault(split[b], set()).add(b)
        summary.label_conflict_pairs += label[a] != label[b]
    summary.files_with_copy_elsewhere = {s: len(v) for s, v in sorted(elsewhere.items())}
    return summary


def _summarize_masks_and_cases(
    report: AuditReport, samples: list[Sample], done: list[ItemResult], orphan_masks: list[str]
) -> None:
    expected = set().union(*(s.modalities for s in samples)) if samples else set()
    if any(s.mask for s in samples):  # a segmentation set: every image needs its mask
        report.mask_problems.extend(
            {"id": s.id, "problem": NO_MASK} for s in samples if not s.mask and not s.modalities
        )
    report.mask_problems.extend({"id": m, "problem": NO_IMAGE} for m in orphan_masks)
    values: set[float] = set()
    for result in done:
        sample = samples[result.index]
        if result.mask is not None:
            for problem in mask_problems(result.fingerprint, result.mask):
                report.mask_problems.append({"id": sample.id, "problem": problem})
        if result.case is not None:
            problems = list(result.case.problems)
            missing = sorted(expected - set(sample.modalities))
            if missing:
                problems.insert(0, f"missing modalities: {', '.join(missing)}")
            report.case_problems.extend({"id": sample.id, "problem": p} for p in problems)
            values.update(result.case.label_values)
    report.mask_problems.sort(key=lambda row: row["id"])
    report.case_problems.sort(key=lambda row: row["id"])
    report.label_values = sorted(values)
