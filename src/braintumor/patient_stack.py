"""Per-patient summaries of predicted slice stacks (LGG patient folders).

A stack is a folder of slices named ``<folder>_<N>.<ext>`` (the kaggle_3m convention,
``TCGA_CS_4941_19960909/TCGA_CS_4941_19960909_12.tif``); ``..._N_mask.tif`` files beside
them are the reference masks, not inputs. For each stack: tumour volume (voxels, and mL when
the spacing is known or given), the slice with the largest predicted area, the volume Dice
against the reference masks when they are there, and a PNG strip of the tumour slices with
their outlines drawn on the FLAIR channel.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from braintumor.data.lgg import flair_view
from braintumor.errors import DataError
from braintumor.io import read_image, read_mask, write_png
from braintumor.localize import draw_overlay
from braintumor.metrics.patient import patient_rows, slice_counts

_STACK_SLICE = re.compile(r"^(?P<prefix>.+)_(?P<n>\d+)\.(?:tiff?|png|jpe?g)$", re.IGNORECASE)
_STACK_MASK = re.compile(r"^(?P<prefix>.+)_(?P<n>\d+)_mask\.(?:tiff?|png)$", re.IGNORECASE)
STRIP_TILE = 128
UNKNOWN_SPACING = (
    "slice spacing unknown (the TIFF slices carry none): volume in voxels only; "
    "pass --spacing DY,DX,DZ (mm) for millilitres"
)


def stack_slice(path: Path) -> tuple[str, int] | None:
    """(stack folder, slice number) when ``path`` is ``<folder>/<folder>_<N>.<ext>``."""
    match = _STACK_SLICE.match(path.name)
    if match is None or match["prefix"] != path.parent.name:
        return None
    return str(path.parent), int(match["n"])


def is_reference_mask(path: Path) -> bool:
    """True for ``<folder>/<folder>_<N>_mask.<ext>``: a stack's reference mask, not an input."""
    match = _STACK_MASK.match(path.name)
    return match is not None and match["prefix"] == path.parent.name


def _reference(path: Path) -> Path | None:
    found = path.with_name(f"{path.stem}_mask{path.suffix}")
    return found if found.is_file() else None


def _tile(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    overlay = draw_overlay(flair_view(image), mask, boxes=False)
    return cv2.resize(overlay, (STRIP_TILE, STRIP_TILE), interpolation=cv2.INTER_AREA)


def _strip(slices: list[tuple[dict, np.ndarray]], out: Path, name: str) -> str | None:
    """A row of the tumour slices (FLAIR, predicted outline), in slice order."""
    tiles = []
    for record, mask in slices:
        if record["area_px"] > 0:
            tiles.append(_tile(read_image(record["path"]).array, mask))
    if not tiles:
        return None
    write_png(np.concatenate(tiles, axis=1), out / name)
    return name


def summarise_stack(
    records: Sequence[dict],
    out: Path,
    spacing: Sequence[float] | None = None,
) -> dict:
    """One stack's summary from its slices' prediction records (``segmentation_record``).

    ``spacing`` is (dy, dx, dz) in mm; without it the slices' own 2-D pixel spacing is not
    enough (the gap between slices is unknown), so the volume stays in voxels.
    """
    ordered = sorted(records, key=lambda r: stack_slice(Path(r["path"]))[1])  # type: ignore[index]
    folder = Path(ordered[0]["path"]).parent
    masks = [np.asarray(read_image(out / r["mask"]).array) > 0 for r in ordered]
    voxels = int(sum(int(m.sum()) for m in masks))
    largest = max(ordered, key=lambda r: r["area_px"])
    summary: dict = {
        "patient": folder.name,
        "folder": str(folder),
        "n_slices": len(ordered),
        "tumour_slices": sum(r["area_px"] > 0 for r in ordered),
        "volume_voxels": voxels,
        "volume_ml": None,
        "spacing_mm": None,
        "spacing_note": UNKNOWN_SPACING,
        "largest_slice": stack_slice(Path(largest["path"]))[1] if largest["area_px"] else None,  # type: ignore[index]
        "largest_area_px": int(largest["area_px"]),
    }
    if spacing is not None:
        if len(spacing) != 3 or not all(float(s) > 0 for s in spacing):
            raise DataError(f"--spacing must be three positive numbers DY,DX,DZ, got {spacing}")
        dy, dx, dz = (float(s) for s in spacing)
        summary |= {
            "volume_ml": voxels * dy * dx * dz / 1000.0,
            "spacing_mm": [dy, dx, dz],
            "spacing_note": "spacing given with --spacing",
        }
    references = [_reference(Path(r["path"])) for r in ordered]
    if all(ref is not None for ref in references):
        counts = []
        for ref, mask, record in zip(references, masks, ordered, strict=True):
            truth = read_mask(ref, like=read_image(record["path"])) > 0
            counts.append(slice_counts(mask, truth))
        (scores,) = patient_rows(counts, [folder.name] * len(counts))
        summary |= {"reference_dice": scores["dice"], "reference_iou": scores["iou"]}
    summary["strip"] = _strip(
        list(zip(ordered, masks, strict=True)), out, f"{folder.name}_strip.png"
    )
    return summary


def stack_summaries(
    records: Sequence[dict], out: Path, spacing: Sequence[float] | None = None
) -> list[dict]:
    """:func:`summarise_stack` for every stack among ``records`` (other images are left out)."""
    stacks: dict[str, list[dict]] = {}
    for record in records:
        key = stack_slice(Path(record["path"]))
        if key is not None:
            stacks.setdefault(key[0], []).append(record)
    return [summarise_stack(members, out, spacing) for _, members in sorted(stacks.items())]
