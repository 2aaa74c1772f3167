"""COCO segmentation annotations rasterised to masks (polygons and uncompressed RLE).

A mask reference is written ``coco:<annotation json>#<image id>`` in the samples table, so a
sample stays one row and the mask is drawn when it is read.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from skimage.draw import polygon as draw_polygon

from braintumor.errors import DataError

COCO_PREFIX = "coco:"


def coco_mask_ref(annotation_file: str | Path, image_id: int | str) -> str:
    """The ``coco:<json>#<id>`` string stored in ``Sample.mask``."""
    return f"{COCO_PREFIX}{annotation_file}#{image_id}"


def parse_coco_ref(ref: str) -> tuple[Path, str]:
    """Split ``coco:<json>#<id>`` into the json path and the image id (as text)."""
    body = ref[len(COCO_PREFIX) :]
    path, sep, image_id = body.rpartition("#")
    if not ref.startswith(COCO_PREFIX) or not sep or not path or not image_id:
        raise DataError(f"{ref}: not a COCO mask reference (coco:<json>#<image id>)")
    return Path(path), image_id


def _decode_uncompressed_rle(rle: dict[str, Any], height: int, width: int) -> np.ndarray:
    # COCO RLE runs alternate background/foreground over the column-major (Fortran) raster.
    counts = rle["counts"]
    flat = np.zeros(height * width, dtype=np.uint8)
    position, value = 0, 0
    for run in counts:
        if value:
            flat[position : position + int(run)] = 1
        position += int(run)
        value ^= 1
    return flat.reshape((width, height)).T


def coco_polygons_to_mask(
    annotation: dict[str, Any] | list[dict[str, Any]], height: int, width: int
) -> np.ndarray:
    """Rasterise one COCO annotation (or a list of them) into a 0/1 uint8 (height, width) mask.

    Polygons (``segmentation``: list of ``[x1, y1, x2, y2, ...]``) are filled with
    ``skimage.draw.polygon``; uncompressed RLE (``counts`` as a list) is decoded here because
    that takes ten lines and pycocotools is not a dependency. Compressed RLE raises DataError.
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    annotations = annotation if isinstance(annotation, list) else [annotation]
    for item in annotations:
        segmentation = item.get("segmentation")
        if isinstance(segmentation, dict):
            if not isinstance(segmentation.get("counts"), list):
                raise DataError(
                    f"annotation {item.get('id')}: compressed RLE needs pycocotools; "
                    "only polygons and uncompressed RLE are read"
                )
            mask |= _decode_uncompressed_rle(segmentation, height, width)
            continue
        for flat in segmentation or []:
            points = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
            if len(points) < 3:
                continue
            rows, cols = draw_polygon(points[:, 1], points[:, 0], shape=(height, width))
            mask[rows, cols] = 1
    return mask


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    with open(path) as handle:
        document = json.load(handle)
    images = {str(image["id"]): image for image in document.get("images", [])}
    by_image: dict[str, list[dict[str, Any]]] = {}
    for item in document.get("annotations", []):
        by_image.setdefault(str(item.get("image_id")), []).append(item)
    return {"images": images, "annotations": by_image, "categories": document.get("categories")}


def load_coco(path: str | Path) -> dict[str, Any]:
    """Parse a COCO json (cached while the file is unchanged): images and annotations by id."""
    path = Path(path)
    try:
        stat = path.stat()
        return _load_cached(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: unreadable COCO annotation file ({exc})") from None


def read_coco_mask(ref: str) -> np.ndarray:
    """Draw the 0/1 mask that ``coco:<json>#<image id>`` refers to, at the image's COCO size."""
    path, image_id = parse_coco_ref(ref)
    document = load_coco(path)
    image = document["images"].get(image_id)
    if image is None:
        raise DataError(f"{path}: no image with id {image_id}")
    height, width = int(image["height"]), int(image["width"])
    return coco_polygons_to_mask(document["annotations"].get(image_id, []), height, width)
