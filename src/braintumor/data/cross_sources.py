"""The cross-dataset part of the audit: copies between sources, and labels they disagree on.

Public brain-MRI sets copy each other (Br35H holds most of Navoneel's set; Br35H and Sartaj's
share hundreds of slices), so "train on one, test on another" can still test on training
images. For every pair of sources this counts the files of one that have an exact (SHA-256)
or near (pHash, Hamming distance <= threshold) copy in the other, and the copies whose
labels disagree. Counts are of direct pairs, not of transitive clusters; clusters that span
sources are counted separately (they are what a split merges). A near pair with a slice of a
weak-pHash source (LGG) at one end counts only where the pixels confirm it
(:mod:`braintumor.data.near_confirm`), as it does when a split groups duplicates.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations

import numpy as np

from braintumor.data.audit_checks import ItemResult
from braintumor.data.hashing import connected_groups, near_pairs, sha256_groups
from braintumor.data.samples import NO_TUMOR, Sample

TUMOR = "tumor"
MAX_EXAMPLES = 20


@dataclass
class SourcePair:
    """Copies between sources ``a`` and ``b`` (a before b in the order given)."""

    a: str
    b: str
    exact_pairs: int = 0
    near_pairs: int = 0
    a_files_with_exact_copy: int = 0
    b_files_with_exact_copy: int = 0
    a_files_with_near_copy: int = 0
    b_files_with_near_copy: int = 0
    label_conflict_pairs: int = 0


@dataclass
class CrossSourceReport:
    """What the sources share. ``near_matrix[a][b]``: files of ``a`` with an exact or near
    copy in ``b`` (the diagonal: within ``a``); ``exact_matrix`` the same for byte copies."""

    sources: list[str]
    phash_threshold: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    pairs: list[SourcePair] = field(default_factory=list)
    near_matrix: dict[str, dict[str, int]] = field(default_factory=dict)
    exact_matrix: dict[str, dict[str, int]] = field(default_factory=dict)
    unconfirmed_near_pairs: int = 0
    cross_source_groups: int = 0
    files_in_cross_source_groups: int = 0
    label_conflicts: list[dict[str, str | int]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """Plain dict, ready for JSON."""
        return asdict(self)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(self.to_dict(), indent=1)


def labels_conflict(a: str | None, b: str | None) -> bool:
    """Two harmonised labels that cannot both be right for one image (``tumor`` agrees with
    any tumour type; missing labels agree with anything)."""
    if not a or not b or a == b:
        return False
    if TUMOR in (a, b):
        return NO_TUMOR in (a, b)
    return True


def _hashes(done: Sequence[ItemResult], n: int) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    digests: list[str | None] = [None] * n
    indices, values = [], []
    for result in done:
        fp = result.fingerprint
        if fp is None or fp.error:
            continue
        digests[result.index] = fp.sha256
        if fp.phash is not None:
            indices.append(result.index)
            values.append(fp.phash)
    return digests, np.asarray(indices, dtype=np.int64), np.asarray(values, dtype=np.uint64)


def duplicate_pairs(
    done: Sequence[ItemResult], n: int, threshold: int
) -> tuple[np.ndarray, np.ndarray]:
    """(exact pairs, near pairs) as sample-index arrays of shape (m, 2); near includes exact
    copies (distance 0) as pHash finds them."""
    digests, indices, values = _hashes(done, n)
    exact = [pair for group in sha256_groups(digests) for pair in combinations(group, 2)]
    local, _ = near_pairs(values, threshold)
    near = indices[local] if len(local) else np.zeros((0, 2), dtype=np.int64)
    exact_array = np.asarray(exact, dtype=np.int64).reshape(-1, 2)
    both = np.sort(np.concatenate([near.reshape(-1, 2), exact_array]), axis=1)
    return exact_array, np.unique(both, axis=0)


def count_cross_source_groups(samples: Sequence[Sample], groups: Sequence[str]) -> int:
    """How many of ``groups`` (one id per sample) hold samples of more than one source."""
    sources: dict[str, set[str]] = {}
    for sample, group in zip(samples, groups, strict=True):
        sources.setdefault(group, set()).add(sample.source or "-")
    return sum(len(found) > 1 for found in sources.values())


def cross_source_report(
    samples: Sequence[Sample],
    done: Sequence[ItemResult],
    phash_threshold: int = 6,
    start: float | None = None,
    keep_near: Callable[[np.ndarray], np.ndarray] | None = None,
) -> CrossSourceReport:
    """Overlaps between every pair of sources, label conflicts, and cross-source clusters,
    from :func:`braintumor.data.audit.check_samples`' results for ``samples``. ``keep_near``
    says which near pairs stand (:func:`braintumor.data.near_confirm.near_link_filter`: LGG's
    pairs of two patients only where the pixels confirm them); the others are counted in
    ``unconfirmed_near_pairs`` and left out."""
    start = time.perf_counter() if start is None else start
    names = list(dict.fromkeys(s.source or "-" for s in samples))
    source = [s.source or "-" for s in samples]
    label = [s.label for s in samples]
    exact, near = duplicate_pairs(done, len(samples), phash_threshold)
    report = CrossSourceReport(sources=names, phash_threshold=phash_threshold)
    if keep_near is not None and len(near):
        stand = keep_near(near)
        report.unconfirmed_near_pairs = int((~stand).sum())
        near = near[stand]
    for name, lab in zip(source, label, strict=True):
        cell = report.counts.setdefault(name, {})
        cell[lab or "-"] = cell.get(lab or "-", 0) + 1
    report.near_matrix = _matrix(names, source, near)
    report.exact_matrix = _matrix(names, source, exact)
    for a, b in combinations(names, 2):
        report.pairs.append(_pair(a, b, source, label, exact, near))
    conflicts: Counter[tuple[str, str, str, str]] = Counter()
    examples: dict[tuple[str, str, str, str], str] = {}
    for i, j in near.tolist():
        if source[i] != source[j] and labels_conflict(label[i], label[j]):
            first, second = sorted((i, j), key=lambda k: names.index(source[k]))
            key = (source[first], str(label[first]), source[second], str(label[second]))
            conflicts[key] += 1
            examples.setdefault(key, f"{samples[first].id} ~ {samples[second].id}")
    report.label_conflicts = [
        {
            "source_a": k[0],
            "label_a": k[1],
            "source_b": k[2],
            "label_b": k[3],
            "pairs": n,
            "example": examples[k],
        }
        for k, n in conflicts.most_common()
    ]
    components = connected_groups(len(samples), near)
    by_component: dict[int, set[str]] = {}
    members: Counter[int] = Counter()
    for i, comp in enumerate(components.tolist()):
        by_component.setdefault(comp, set()).add(source[i])
        members[comp] += 1
    spanning = [c for c, found in by_component.items() if len(found) > 1]
    report.cross_source_groups = len(spanning)
    report.files_in_cross_source_groups = sum(members[c] for c in spanning)
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _matrix(names: list[str], source: list[str], pairs: np.ndarray) -> dict[str, dict[str, int]]:
    """Files of row source with a copy in column source."""
    having: dict[tuple[str, str], set[int]] = {}
    for i, j in pairs.tolist():
        having.setdefault((source[i], source[j]), set()).add(i)
        having.setdefault((source[j], source[i]), set()).add(j)
    return {a: {b: len(having.get((a, b), ())) for b in names} for a in names}


def _pair(
    a: str,
    b: str,
    source: list[str],
    label: list[str | None],
    exact: np.ndarray,
    near: np.ndarray,
) -> SourcePair:
    out = SourcePair(a, b)
    for kind, pairs in (("exact", exact), ("near", near)):
        in_a, in_b, count = set(), set(), 0
        for i, j in pairs.tolist():
            if {source[i], source[j]} != {a, b}:
                continue
            count += 1
            in_a.add(i if source[i] == a else j)
            in_b.add(j if source[j] == b else i)
            if kind == "near" and labels_conflict(label[i], label[j]):
                out.label_conflict_pairs += 1
        setattr(out, f"{kind}_pairs", count)
        setattr(out, f"a_files_with_{kind}_copy", len(in_a))
        setattr(out, f"b_files_with_{kind}_copy", len(in_b))
    return out
