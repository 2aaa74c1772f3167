"""2D layouts told by folder names: one folder per class, and images/ + masks/ pairs."""

from __future__ import annotations

import csv
from pathlib import Path

from braintumor.data.layouts_base import (
    CLASSIFY_DATA,
    SEGMENT_DATA,
    DetectedLayout,
    list_dir,
    normalise_class_name,
    normalise_split_name,
    relative_id,
    strip_image_suffix,
    walk_files,
)
from braintumor.data.samples import Sample
from braintumor.errors import LayoutError
from braintumor.io.sniff import is_image_file

_IMAGE_DIRS = {"images", "image", "imgs", "img"}
_MASK_DIRS = {"masks", "mask", "labels_png", "annotations_png"}
_MASK_SUFFIXES = ("_mask", "-mask", "_seg", "-seg", "_label")


def _class_dirs(folder: Path) -> dict[str, Path]:
    """Sub-folders of ``folder`` by name; each is a class if images lie below it."""
    dirs, _ = list_dir(folder)
    return {name: folder / name for name in dirs}


def detect_class_folders(root: Path) -> DetectedLayout | None:
    """``<class>/``, ``yes/`` + ``no/``, or ``<split>/<class>/`` with any depth of images below."""
    dirs, _ = list_dir(root)
    split_dirs = {name: normalise_split_name(name) for name in dirs}
    notes: list[str] = []
    groups: list[tuple[str | None, str, Path]] = []  # (split, folder name, folder)
    if dirs and any(split_dirs.values()):
        for name, split in split_dirs.items():
            if split is None:
                notes.append(f"ignored folder {name}/ beside the split folders")
                continue
            groups.extend((split, cls, path) for cls, path in _class_dirs(root / name).items())
    else:
        groups = [(None, name, root / name) for name in dirs]

    samples: list[Sample] = []
    seen_names: dict[str, set[str]] = {}
    skipped = 0
    for split, folder_name, folder in groups:
        label = normalise_class_name(folder_name)
        for path in walk_files(folder):
            if not is_image_file(path):
                skipped += 1
                continue
            seen_names.setdefault(label, set()).add(folder_name)
            samples.append(
                Sample(id=relative_id(path, root), image=str(path), label=label, split=split)
            )
    classes = sorted(seen_names)
    if len(classes) < 2:
        return None
    for label, names in sorted(seen_names.items()):
        if len({name.lower() for name in names}) > 1:
            notes.append(f"folders {sorted(names)} all mean class {label}")
    if skipped:
        notes.append(f"skipped {skipped} files that are not images")
    return DetectedLayout("class-folders", CLASSIFY_DATA, root, samples, classes, notes)


def _mask_key(name: str) -> str:
    stem = strip_image_suffix(name)
    for suffix in _MASK_SUFFIXES:
        if stem.lower().endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _read_labels_csv(path: Path) -> dict[str, str]:
    """``number,label`` (or any id column first and a label/class column) -> {id: class}."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            label_col = next((f for f in fields if f.strip().lower() in ("label", "class")), None)
            if not fields or label_col is None:
                raise LayoutError(f"{path}: needs an id column and a 'label' column")
            return {
                strip_image_suffix(row[fields[0]].strip()): normalise_class_name(row[label_col])
                for row in reader
                if row.get(fields[0]) and row.get(label_col)
            }
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LayoutError(f"{path}: unreadable labels file ({exc})") from None


def _pair_folder(
    root: Path, folder: Path, split: str | None, notes: list[str], orphans: list[str]
) -> list[Sample]:
    dirs, files = list_dir(folder)
    image_dir = next((d for d in dirs if d.lower() in _IMAGE_DIRS), None)
    mask_dir = next((d for d in dirs if d.lower() in _MASK_DIRS), None)
    if image_dir is None or mask_dir is None:
        return []
    images = {
        strip_image_suffix(p.name): p for p in walk_files(folder / image_dir) if is_image_file(p)
    }
    masks = {_mask_key(p.name): p for p in walk_files(folder / mask_dir) if is_image_file(p)}
    labels: dict[str, str] = {}
    csv_name = next((f for f in files if f.lower() == "labels.csv"), None)
    if csv_name is not None:
        labels = _read_labels_csv(folder / csv_name)
    samples = []
    for key, image in sorted(images.items()):
        mask = masks.get(key)
        samples.append(
            Sample(
                id=relative_id(image, root),
                image=str(image),
                label=labels.get(key),
                mask=None if mask is None else str(mask),
                split=split,
            )
        )
    where = relative_id(folder, root) if folder != root else "."
    unpaired = [s.id for s in samples if s.mask is None]
    if unpaired:
        notes.append(f"{where}: {len(unpaired)} images have no mask: {', '.join(unpaired)}")
    lone = sorted(relative_id(masks[key], root) for key in set(masks) - set(images))
    if lone:
        notes.append(f"{where}: {len(lone)} masks have no image (ignored): {', '.join(lone)}")
    orphans.extend(lone)
    if csv_name is not None:
        unlabelled = sum(1 for s in samples if s.label is None)
        if unlabelled:
            notes.append(f"{where}: {unlabelled} images are not in {csv_name}")
    return samples


def detect_image_mask(root: Path) -> DetectedLayout | None:
    """``images/`` + ``masks/`` with matching stems (mask stems may end ``_mask``), optionally
    under split folders; a ``labels.csv`` beside them fills the class labels.
    """
    notes: list[str] = []
    orphans: list[str] = []
    samples = _pair_folder(root, root, None, notes, orphans)
    if not samples:
        dirs, _ = list_dir(root)
        for name in dirs:
            split = normalise_split_name(name)
            if split is not None:
                samples.extend(_pair_folder(root, root / name, split, notes, orphans))
    if not samples:
        return None
    if all(s.mask is None for s in samples):
        raise LayoutError(f"{root}: images/ and masks/ found but no image has a mask of its stem")
    classes = sorted({s.label for s in samples if s.label is not None})
    notes.append("no patient ids in this layout: samples carry no group")
    return DetectedLayout("image-mask", SEGMENT_DATA, root, samples, classes, notes, orphans)
