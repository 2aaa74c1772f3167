"""What each source contributes to each class, and sampling weights that balance them.

Pooling datasets adds a shortcut: when one class comes from one source only, a network can
learn the source's look (scanner, export, curator's windowing) instead of the class. The
contribution table shows it, :func:`shortcut_warnings` names it, and
:func:`source_class_weights` draws every class equally often and, within a class, every
source equally often.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from braintumor.data.coarse_labels import coarse_members
from braintumor.data.samples import Sample

SAMPLING_MODES = ("auto", "shuffle", "balanced")


def contributions(samples: Sequence[Sample]) -> dict[str, dict[str, int]]:
    """Samples per source and class: ``{source: {class: count}}``, sources in order seen."""
    table: dict[str, Counter[str]] = {}
    for sample in samples:
        table.setdefault(sample.source or "-", Counter())[sample.label or "-"] += 1
    return {source: dict(sorted(counts.items())) for source, counts in table.items()}


def shortcut_warnings(table: dict[str, dict[str, int]]) -> list[str]:
    """One line per class that a single source provides while several sources are pooled."""
    if len(table) < 2:
        return []
    providers: dict[str, list[str]] = {}
    for source, counts in table.items():
        for label, count in counts.items():
            if count:
                providers.setdefault(label, []).append(source)
    return [
        f"class {label} comes only from source {sources[0]}: the model may learn that "
        "source's look instead of the class (shortcut risk)"
        for label, sources in sorted(providers.items())
        if len(sources) == 1
    ]


def source_class_weights(samples: Sequence[Sample]) -> np.ndarray:
    """A sampling weight per sample: each class gets the same total weight, shared equally by
    the sources that provide it, and within a (source, class) cell equally by its samples.

    Tumours of unknown type (:mod:`~braintumor.data.coarse_labels`) draw from the tumour
    types' share, as one more cell beside each type, so adding them leaves the balance of
    tumour against no tumour as it was. Weights sum to the number of samples, so an epoch of
    ``len(samples)`` weighted draws (with replacement) sees as many images as a plain epoch.
    """
    cells = Counter((s.source or "-", s.label or "-") for s in samples)
    sources_per_class = Counter(label for _, label in cells)
    coarse = coarse_members(sources_per_class)
    fine = [label for label in sources_per_class if label not in coarse]
    class_share = {label: 1.0 / len(fine) for label in fine}
    for label, members in coarse.items():
        # The members' share, split evenly between them and the coarse label.
        part = sum(class_share[m] for m in members) / (len(members) + 1)
        class_share.update({m: part for m in (*members, label)})
    weights = np.array(
        [
            class_share[s.label or "-"]
            / (sources_per_class[s.label or "-"] * cells[(s.source or "-", s.label or "-")])
            for s in samples
        ],
        dtype=np.float64,
    )
    return weights * (len(samples) / weights.sum()) if len(samples) else weights


def sampling_plan(samples: Sequence[Sample], mode: str) -> tuple[np.ndarray | None, dict]:
    """Sample weights for ``mode`` and the record of it for the run output and model.json.

    ``auto`` balances over source x class when the training samples come from several
    sources and shuffles plainly otherwise; ``balanced`` always balances (over classes alone
    for one source); ``shuffle`` never does. The record holds, per source and class, the
    count and the share of draws it gets.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, not {mode!r}")
    table = contributions(samples)
    balanced = mode == "balanced" or (mode == "auto" and len(table) > 1)
    weights = source_class_weights(samples) if balanced else None
    shares: dict[str, dict[str, float]] = {}
    total = float(len(samples)) or 1.0
    for i, sample in enumerate(samples):
        cell = shares.setdefault(sample.source or "-", {})
        draw = float(weights[i]) if weights is not None else 1.0
        cell[sample.label or "-"] = cell.get(sample.label or "-", 0.0) + draw / total
    record = {
        "mode": "source x class balanced" if balanced else "shuffle",
        "counts": table,
        "draw_share": {
            source: {label: round(v, 4) for label, v in sorted(cells.items())}
            for source, cells in shares.items()
        },
        "warnings": shortcut_warnings(table),
    }
    return weights, record
