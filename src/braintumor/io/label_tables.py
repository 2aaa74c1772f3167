"""Colour tables for label maps, so viewers show names and colours instead of bare numbers.

Two formats are written beside a label-map NIfTI: a 3D Slicer colour table (``.ctbl``:
``index name R G B A`` lines) and an ITK-SNAP label description file (``IDX R G B A VIS MSH
"LABEL"`` lines). Neither nibabel nor SimpleITK writes these, hence the few lines here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from braintumor.atomic import write_text_atomic


@dataclass(frozen=True)
class LabelEntry:
    """One label value, its name and its colour (RGB, 0-255)."""

    value: int
    name: str
    rgb: tuple[int, int, int]


def slicer_ctbl(entries: list[LabelEntry]) -> str:
    """3D Slicer colour-table text; background (0) is transparent, names have no spaces."""
    lines = [
        "# Color table file (3D Slicer .ctbl), written by braintumor",
        f"# {len(entries)} values",
    ]
    for entry in entries:
        alpha = 0 if entry.value == 0 else 255
        name = entry.name.replace(" ", "_")
        lines.append(f"{entry.value} {name} {entry.rgb[0]} {entry.rgb[1]} {entry.rgb[2]} {alpha}")
    return "\n".join(lines) + "\n"


def itksnap_labels(entries: list[LabelEntry]) -> str:
    """ITK-SNAP label description text (as its "Export Label Descriptions" writes)."""
    lines = [
        "################################################",
        "# ITK-SnAP Label Description File (written by braintumor)",
        "# Columns: IDX R G B A(0..1) VIS(0/1) MSH(0/1) LABEL",
        "################################################",
    ]
    for entry in entries:
        shown = 0 if entry.value == 0 else 1
        r, g, b = entry.rgb
        columns = f"{entry.value:5d} {r:5d} {g:4d} {b:4d} {shown:8d} {shown:2d} {shown:2d}"
        lines.append(f'{columns}    "{entry.name}"')
    return "\n".join(lines) + "\n"


def write_label_tables(label_map: Path, entries: list[LabelEntry]) -> list[Path]:
    """Write ``<stem>.ctbl`` and ``<stem>.itksnap.txt`` beside ``label_map`` (``.nii.gz`` aware)."""
    name = label_map.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else label_map.stem
    ctbl = label_map.with_name(f"{stem}.ctbl")
    snap = label_map.with_name(f"{stem}.itksnap.txt")
    write_text_atomic(ctbl, slicer_ctbl(entries))
    write_text_atomic(snap, itksnap_labels(entries))
    return [ctbl, snap]
