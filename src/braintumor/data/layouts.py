"""Recognise how a dataset folder is laid out and list its samples, from names alone.

No image is decoded here (3,000+ files list in well under a second); only small metadata is
read where the layout keeps labels inside files (Figshare ``.mat`` label/PID, COCO json,
nnU-Net ``dataset.json``, ``labels.csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from braintumor.data.layouts_base import (
    DATA_KINDS,
    DetectedLayout,
    list_dir,
    normalise_class_name,
    normalise_split_name,
)
from braintumor.data.layouts_brats import (
    MODALITIES,
    brats_file_role,
    canonical_modality,
    detect_brats,
    detect_nnunet_raw,
)
from braintumor.data.layouts_classes import detect_class_folders, detect_image_mask
from braintumor.data.layouts_hints import no_layout_reason
from braintumor.data.layouts_lgg import detect_lgg_kaggle_3m
from braintumor.data.layouts_segment import detect_coco, detect_figshare_mat
from braintumor.errors import LayoutError
from braintumor.io.coco import coco_polygons_to_mask

__all__ = [
    "DATA_KINDS",
    "LAYOUT_NAMES",
    "MODALITIES",
    "DetectedLayout",
    "brats_file_role",
    "canonical_modality",
    "coco_polygons_to_mask",
    "detect_layout",
    "normalise_class_name",
    "normalise_split_name",
]

Detector = Callable[[Path], DetectedLayout | None]

# Tried most specific first: a BraTS tree or an images/+masks/ pair would also pass for
# class folders, so the catch-all class-folders layout comes last.
_DETECTORS: dict[str, Detector] = {
    "nnunet-raw": detect_nnunet_raw,
    "brats": detect_brats,
    "lgg-kaggle-3m": detect_lgg_kaggle_3m,
    "coco": detect_coco,
    "figshare-mat": detect_figshare_mat,
    "image-mask": detect_image_mask,
    "class-folders": detect_class_folders,
}
#: Every layout's name, most general first; a new layout is one entry in ``_DETECTORS``.
LAYOUT_NAMES = tuple(reversed(_DETECTORS))
# Files a wrapping folder may hold beside the one real dataset folder.
_WRAPPER_FILES = (".txt", ".md", ".pdf", ".html", ".csv", ".json", ".yaml", ".yml")


def _try_all(root: Path) -> DetectedLayout | None:
    for detector in _DETECTORS.values():
        layout = detector(root)
        if layout is not None:
            return layout
    return None


def _check_unique(layout: DetectedLayout) -> DetectedLayout:
    ids = [s.id for s in layout.samples]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise LayoutError(
            f"{layout.root}: sample id {dup} appears twice in the {layout.name} layout"
        )
    return layout


def detect_layout(path: str | Path) -> DetectedLayout:
    """Detect the dataset layout of folder ``path`` and list its samples.

    Layouts: class-folders (``<class>/``, ``<split>/<class>/``, ``yes/``+``no/``), image-mask
    (``images/``+``masks/``, optional ``labels.csv``), lgg-kaggle-3m, figshare-mat, coco,
    brats (2013/2015, 2018-2021, 2023 naming) and nnunet-raw. A folder holding only one
    sub-folder (an unzipped archive's wrapper) is looked into. Raises
    :class:`~braintumor.errors.LayoutError` when nothing matches, naming the layouts tried.
    """
    root = Path(path).expanduser().absolute()
    if not root.exists():
        raise LayoutError(f"{root}: does not exist")
    if not root.is_dir():
        raise LayoutError(f"{root}: is a file, not a dataset folder")
    notes: list[str] = []
    start = root
    while True:
        layout = _try_all(root)
        if layout is not None:
            layout.notes = notes + layout.notes
            return _check_unique(layout)
        dirs, files = list_dir(root)
        data_files = [f for f in files if not f.lower().endswith(_WRAPPER_FILES)]
        if len(dirs) != 1 or data_files:
            break
        root = root / dirs[0]
        notes.append(f"looked into the only sub-folder {root.relative_to(start).as_posix()}/")
    dirs, files = list_dir(start)
    empty = "empty folder; " if not dirs and not files else ""
    reason = no_layout_reason(start)
    because = f"{reason}; " if reason else ""
    raise LayoutError(f"{start}: {empty}{because}matched none of: {', '.join(LAYOUT_NAMES)}")
