"""Near-duplicate clusters confirmed by pixel correlation, for layouts where pHash is weak.

On LGG's dark, similarly shaped slices pHash pairs hundreds of slices of different patients
(the shared data's README: 289 such slices, yet only 13 pairs reach a pixel correlation of 0.9,
and those looked at were different brains). Merged transitively, these loose pairs chain most
patients into a few groups and no patient-grouped k-fold is possible. For such layouts a
near-duplicate link between two different patients is kept only when the two images also
correlate at ``min_correlation`` or more (grey, 64x64); links inside a patient cost nothing,
the patient is one group anyway. Exact copies are never touched.

In a table over several sources the same holds for every link with a slice of such a source
at one end: pHash also pairs LGG's dark slices with other sets' slices (a held-out Figshare
fold once lost 707 of LGG's 776 slices to such chains). Links between two samples of other
sources stay as pHash found them.

Why 0.98: a re-saved, rescaled or contrast-changed copy keeps a correlation near 1 (a linear
intensity change keeps it exactly), while on the 20 shared LGG patients the closest pair of
different patients reaches 0.957 (top-of-head slices of different brains) and neighbouring
slices of one patient reach 0.978 at their 99th percentile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from PIL import Image

from braintumor.data.audit import AuditReport, DuplicateGroup
from braintumor.data.hashing import connected_groups, groups_of, to_grey
from braintumor.data.layouts_base import DetectedLayout
from braintumor.data.samples import Sample

#: Layouts whose patient ids are given and whose slices defeat pHash.
WEAK_PHASH_LAYOUTS = frozenset({"lgg-kaggle-3m"})
THUMBNAIL = 64
#: A near link to a weak-pHash sample of another patient stands at this pixel correlation.
MIN_CORRELATION = 0.98


def _thumbnail(path: str) -> np.ndarray:
    """Zero-mean, unit-norm grey 64x64 pixels (so a dot product is Pearson's correlation)."""
    with Image.open(path) as image:
        small = to_grey(image).resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
    vector = np.asarray(small, dtype=np.float64).ravel()
    vector -= vector.mean()
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def weak_phash_ids(layout: DetectedLayout) -> set[str]:
    """Ids of the samples whose near-duplicate links need a pixel correlation to stand:
    every sample of a weak-pHash layout, or of such a source in a multi-source table."""
    if layout.name in WEAK_PHASH_LAYOUTS:
        return {s.id for s in layout.samples}
    weak = {name for name, kind in layout.source_layouts.items() if kind in WEAK_PHASH_LAYOUTS}
    return {s.id for s in layout.samples if s.source in weak}


def _needs_correlation(pairs: np.ndarray, samples: Sequence[Sample], weak: set[str]) -> np.ndarray:
    """Links (index pairs into ``samples``) between two patients with a weak-pHash sample at
    one end: only these need a pixel correlation to stand."""
    patient = np.array([s.group or s.id for s in samples], dtype=object)
    is_weak = np.array([s.id in weak for s in samples], dtype=bool)
    first, second = pairs[:, 0], pairs[:, 1]
    return (patient[first] != patient[second]) & (is_weak[first] | is_weak[second])


def links_that_stand(
    pairs: np.ndarray, samples: Sequence[Sample], weak: set[str], threshold: float
) -> np.ndarray:
    """Which near links (index pairs into ``samples``, shape (m, 2)) stand: same patient, two
    samples of strong-pHash sources, or different patients correlating >= ``threshold``."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    check = np.flatnonzero(_needs_correlation(pairs, samples, weak))
    keep = np.ones(len(pairs), dtype=bool)
    if not check.size:
        return keep
    needed, inverse = np.unique(pairs[check], return_inverse=True)
    vectors = np.stack([_thumbnail(samples[k].image) for k in needed.tolist()])
    first, second = inverse.reshape(-1, 2).T
    keep[check] = np.einsum("ij,ij->i", vectors[first], vectors[second]) >= threshold
    return keep


def near_link_filter(layout: DetectedLayout) -> Callable[[np.ndarray], np.ndarray] | None:
    """:func:`links_that_stand` bound to ``layout``'s samples (the ``keep_near`` of
    :func:`braintumor.data.audit.audit_results` and
    :func:`braintumor.data.cross_sources.cross_source_report`); None without weak-pHash
    samples, where every pHash link stands."""
    weak = weak_phash_ids(layout)
    if not weak:
        return None
    return partial(links_that_stand, samples=layout.samples, weak=weak, threshold=MIN_CORRELATION)


def _confirmed(
    group: DuplicateGroup, by_id: dict[str, Sample], weak: set[str], threshold: float
) -> list[list[str]]:
    """The cluster re-linked as :func:`links_that_stand` says, every pair of its members
    considered (one correlation matrix: clusters run to ~1000 slices)."""
    members = [by_id[i] for i in group.ids]
    vectors = np.stack([_thumbnail(s.image) for s in members])
    a, b = np.triu_indices(len(members), k=1)
    pairs = np.stack([a, b], axis=1)
    keep = ~_needs_correlation(pairs, members, weak) | ((vectors @ vectors.T)[a, b] >= threshold)
    labels = connected_groups(len(members), pairs[keep])
    return [[group.ids[k] for k in found] for found in groups_of(labels)]


def confirm_near_duplicates(
    report: AuditReport, layout: DetectedLayout, min_correlation: float = MIN_CORRELATION
) -> AuditReport:
    """``report`` with its near clusters re-linked as described above where they hold a sample
    of a weak-pHash layout or source (:func:`weak_phash_ids`); otherwise it is returned
    unchanged."""
    weak = weak_phash_ids(layout)
    if not weak:
        return report
    by_id = {s.id: s for s in layout.samples}
    groups: list[DuplicateGroup] = []
    for group in report.near.groups:
        present = [i for i in group.ids if i in by_id]
        if len({by_id[i].group for i in present}) <= 1 or not weak.intersection(present):
            groups.append(group)
            continue
        trimmed = dataclasses.replace(group, ids=present)
        for ids in _confirmed(trimmed, by_id, weak, min_correlation):
            groups.append(dataclasses.replace(group, ids=ids))
    near = dataclasses.replace(report.near, groups=groups, n_groups=len(groups))
    return dataclasses.replace(report, near=near)


def near_groups_across_patients(report: AuditReport, layout: DetectedLayout) -> tuple[int, int]:
    """(near clusters inside one patient, near clusters spanning patients) among those holding
    a weak-pHash sample: inside one patient they are neighbouring slices of a stack, not
    copies."""
    weak = weak_phash_ids(layout)
    patient = {s.id: s.group or s.id for s in layout.samples}
    inside = across = 0
    for group in report.near.groups:
        if weak.intersection(group.ids):
            if len({patient.get(i, i) for i in group.ids}) == 1:
                inside += 1
            else:
                across += 1
    return inside, across
