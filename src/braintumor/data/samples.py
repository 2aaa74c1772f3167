"""The samples table: one row per image (or per multimodal case) of a dataset."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

NO_TUMOR = "no_tumor"


@dataclass
class Sample:
    """One unit of a dataset.

    ``id`` is unique within the dataset (the relative path: file names repeat across classes).
    ``image`` is the image file, or the case folder for multimodal cases whose files are in
    ``modalities`` (modality name -> file). ``group`` ties samples that must share a split side
    (patient id, duplicate cluster). ``split`` is the split the dataset's own layout gives
    (``train``/``val``/``test``) or None.
    """

    id: str
    image: str
    label: str | None = None
    mask: str | None = None
    group: str | None = None
    split: str | None = None
    modalities: dict[str, str] = field(default_factory=dict)


def write_samples(samples: list[Sample], path: str | Path) -> None:
    """Write samples as CSV (modalities as ``name=path;name=path``)."""
    names = [f.name for f in fields(Sample)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for sample in samples:
            row = asdict(sample)
            row["modalities"] = ";".join(f"{k}={v}" for k, v in sample.modalities.items())
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})


def read_samples(path: str | Path) -> list[Sample]:
    """Read a CSV written by :func:`write_samples`."""
    samples = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            modalities = dict(
                item.split("=", 1) for item in (row.get("modalities") or "").split(";") if item
            )
            samples.append(
                Sample(
                    id=row["id"],
                    image=row["image"],
                    label=row.get("label") or None,
                    mask=row.get("mask") or None,
                    group=row.get("group") or None,
                    split=row.get("split") or None,
                    modalities=modalities,
                )
            )
    return samples
