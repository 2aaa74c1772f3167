"""What ``predict`` writes: classification records, and per-image masks, overlays, localisations.

Every file is written atomically; records are plain dicts ready for CSV and JSON.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from skimage.measure import label

from braintumor.atomic import write_text_atomic
from braintumor.data.lgg import flair_view
from braintumor.io import LoadedImage, to_grey, to_rgb, write_png
from braintumor.localize import draw_overlay, localize, to_json
from braintumor.models.folder import ModelInfo

#: (output stem, input path, slice index of a volume or None, the 2D image)
Item = tuple[str, Path, int | None, LoadedImage]


def classification_records(
    items: list[Item], probs: np.ndarray, info: ModelInfo, threshold: float = 0.5
) -> list[dict]:
    """One record per image: id, path, slice, predicted class, its probability, all probabilities.

    With two classes the second one is predicted when its probability reaches ``threshold``;
    with more, the most probable class is.
    """
    names = list(info.class_names)
    records = []
    for (stem, path, index, _), row in zip(items, probs, strict=True):
        binary = len(names) == 2
        chosen = int(row[1] >= threshold) if binary else int(np.argmax(row))
        records.append(
            {
                "id": stem,
                "path": str(path),
                "slice": index,
                "status": "ok",
                "predicted": names[chosen],
                "confidence": float(row[chosen]),
                "probabilities": {name: float(p) for name, p in zip(names, row, strict=True)},
            }
        )
    return records


# MONAI's RemoveSmallObjects and KeepLargestConnectedComponent are not used for these two:
# the first also removes a component of exactly ``min_area`` pixels (unlike localize), the second
# keeps the last of equally large components, and both were slower on figshare-seg predictions
# (benchmarks/library_parity.py, docs/benchmarks.md).


def drop_small_components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Remove 8-connected components under ``min_area`` pixels (the rule :func:`localize` uses)."""
    if min_area <= 1 or not mask.any():
        return mask
    labels = label(mask, connectivity=2)
    keep = np.bincount(labels.ravel()) >= min_area
    keep[0] = False
    return keep[labels]


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """Only the largest 8-connected component of ``mask`` (ties: the first in scan order)."""
    if not mask.any():
        return mask
    labels = label(mask, connectivity=2)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def tumour_mask(
    prob: np.ndarray, threshold: float = 0.5, min_area: int = 0, keep_largest: bool = False
) -> np.ndarray:
    """The binary mask of a probability map: threshold, small components dropped, and
    (``keep_largest``) only the largest one kept. Evaluate, predict and serve all use this."""
    mask = drop_small_components(prob >= threshold, min_area)
    return keep_largest_component(mask) if keep_largest else mask


def _display(array: np.ndarray) -> np.ndarray:
    """An (H, W) or (H, W, 3) view of the image for the overlay."""
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        return to_rgb(array)
    return to_grey(array) if array.ndim == 3 else array


def segmentation_record(
    item: Item,
    prob: np.ndarray,
    mask: np.ndarray,
    out: Path,
    threshold: float = 0.5,
    min_area: int = 0,
    keep_largest: bool = False,
    flair: bool = False,
    overlay: bool = True,
) -> dict:
    """Write ``<stem>_mask.png``, ``<stem>_overlay.png`` (when ``overlay``) and
    ``<stem>_localization.json``.

    ``mask`` is the post-processed mask of the probability map ``prob`` at the image's original
    size (:func:`tumour_mask` with ``threshold``, ``min_area`` and ``keep_largest``, which the
    localisation records, and for a stack's slice the 3D rule, :mod:`.stack_filter`); areas are in
    mm² too when the image has a pixel spacing. ``flair``: the overlay shows an LGG slice's
    FLAIR channel rather than its three sequences as a colour picture.
    """
    stem, path, index, image = item
    spacing = image.spacing if image.spacing is not None and len(image.spacing) == 2 else None
    found = localize(mask, spacing=spacing, min_area=min_area)
    write_png(mask, out / f"{stem}_mask.png")
    if overlay:
        shown = _display(flair_view(image.array) if flair else image.array)
        write_png(draw_overlay(shown, mask, found), out / f"{stem}_overlay.png")
    height, width = mask.shape
    details = {
        "id": stem,
        "path": str(path),
        "slice": index,
        "height": height,
        "width": width,
        "threshold": threshold,
        "min_area": min_area,
        "keep_largest": keep_largest,
        **to_json(found),
    }
    write_text_atomic(out / f"{stem}_localization.json", json.dumps(details, indent=2))
    return {
        "id": stem,
        "path": str(path),
        "slice": index,
        "status": "ok",
        "height": height,
        "width": width,
        "tumor": bool(found.components),
        "n_components": len(found.components),
        "area_px": found.total_area_px,
        "area_mm2": found.total_area_mm2,
        "boxes": [list(c.bbox) for c in found.components],
        "max_probability": float(prob.max()) if prob.size else 0.0,
        "mask": f"{stem}_mask.png",
        "overlay": f"{stem}_overlay.png" if overlay else None,
        "localization": f"{stem}_localization.json",
    }


def csv_text(rows: list[dict]) -> str:
    """CSV of dict rows; columns are the union of keys in first-seen order; None is empty.

    Lists (boxes) are written as JSON text in their cell.
    """
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: ""
                if value is None
                else json.dumps(value)
                if isinstance(value, list)
                else value
                for key, value in row.items()
            }
        )
    return buffer.getvalue()
