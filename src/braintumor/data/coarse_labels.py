"""Coarse labels: images known to show a tumour whose type nobody recorded.

Yes/no sets (Br35H, Navoneel) hold hundreds of tumour slices from scanners and sequences that
the typed sets (Figshare, Sartaj) lack. A four-class run can learn from them what a tumour
looks like without being told a type: such a sample keeps the generic label ``tumor``, and
training asks only that the types together be likely (:mod:`braintumor.training.coarse_loss`).
A coarse sample trains and is never scored: its run moves it out of validation and test.
Asked for explicitly per source (``--data br35h=PATH:no_tumor,tumor``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from braintumor.data.samples import TUMOR, TUMOUR_TYPES, Sample


def coarse_members(labels: Iterable[str | None]) -> dict[str, tuple[str, ...]]:
    """``{coarse label: the present classes it stands for}``: generic ``tumor`` beside tumour
    types (a binary run, whose types all became ``tumor``, has none)."""
    present = {label for label in labels if label}
    types = tuple(t for t in TUMOUR_TYPES if t in present)
    return {TUMOR: types} if TUMOR in present and types else {}


def is_coarse(sample: Sample, members: dict[str, tuple[str, ...]]) -> bool:
    """True for a sample whose label stands for several classes."""
    return sample.label in members


def fine_class_names(samples: Sequence[Sample]) -> list[str]:
    """The classes a network is trained to output: every label but the coarse ones, sorted."""
    labels = [s.label for s in samples]
    coarse = coarse_members(labels)
    return sorted({label for label in labels if label and label not in coarse})
