"""What a layout detector returns, name normalisation, and the quick folder listing they share."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from braintumor.data.samples import NO_TUMOR, Sample

#: What a dataset folder holds (``DetectedLayout.task``): class labels per image, masks per
#: image, or multi-modal BraTS cases. Tasks name the kinds they train on (``Task.data_kinds``).
DATA_KINDS = (CLASSIFY_DATA, SEGMENT_DATA, BRATS_DATA) = ("classify", "segment", "brats")
#: Each kind in words, for error messages.
DATA_DESCRIPTIONS = {
    CLASSIFY_DATA: "labelled images",
    SEGMENT_DATA: "images with masks",
    BRATS_DATA: "BraTS cases",
}

_CLASS_SYNONYMS = {
    "glioma": "glioma",
    "glioma_tumor": "glioma",
    "meningioma": "meningioma",
    "meningioma_tumor": "meningioma",
    "pituitary": "pituitary",
    "pituitary_tumor": "pituitary",
    "no_tumor": NO_TUMOR,
    "notumor": NO_TUMOR,
    "no": NO_TUMOR,
    "normal": NO_TUMOR,
    "healthy": NO_TUMOR,
    "yes": "tumor",
    "tumor": "tumor",
}
_SPLIT_SYNONYMS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Folders archive tools and OSes leave behind; never data.
_IGNORED_DIRS = {"__macosx", "__pycache__", ".ipynb_checkpoints"}


@dataclass
class DetectedLayout:
    """A recognised dataset: which layout, which task it serves, and its samples.

    ``classes`` holds the normalised class names found (empty when there are no labels);
    ``notes`` says what was skipped or inferred, for the user to read.
    """

    name: str
    task: str
    root: Path
    samples: list[Sample]
    classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: mask files (ids relative to ``root``) that match no image; the audit lists them
    orphan_masks: list[str] = field(default_factory=list)
    #: for a table over several sources: each source's own layout name
    source_layouts: dict[str, str] = field(default_factory=dict)


def _key(name: str) -> str:
    key = re.sub(r"[\s\-]+", "_", name.strip().lower()).replace("tumour", "tumor")
    return re.sub(r"_+", "_", key).strip("_")


def normalise_class_name(name: str) -> str:
    """Map the class folder names public datasets use onto one vocabulary.

    glioma_tumor -> glioma, meningioma_tumor -> meningioma, pituitary_tumor -> pituitary,
    no_tumor/notumor/no/normal/healthy -> no_tumor, yes/tumor -> tumor; other names are
    lower-cased with spaces and hyphens as underscores.
    """
    key = _key(name)
    return _CLASS_SYNONYMS.get(key, key)


def normalise_split_name(name: str) -> str | None:
    """Training/train -> train, validation/valid/val -> val, Testing/test -> test; else None."""
    return _SPLIT_SYNONYMS.get(_key(name))


def list_dir(path: Path) -> tuple[list[str], list[str]]:
    """Sorted (folder names, file names) of ``path``, without hidden or archive-tool entries."""
    dirs: list[str] = []
    files: list[str] = []
    try:
        entries = list(os.scandir(path))
    except (NotADirectoryError, FileNotFoundError, PermissionError):
        return dirs, files
    for entry in entries:
        if entry.name.startswith(".") or entry.name.lower() in _IGNORED_DIRS:
            continue
        if entry.is_dir():
            dirs.append(entry.name)
        elif entry.is_file():
            files.append(entry.name)
    return sorted(dirs), sorted(files)


def walk_files(path: Path, max_depth: int = 8) -> list[Path]:
    """All non-hidden files under ``path`` (depth-limited), sorted; names only, no reading."""
    found: list[Path] = []
    stack = [(path, 0)]
    while stack:
        folder, depth = stack.pop()
        dirs, files = list_dir(folder)
        found.extend(folder / name for name in files)
        if depth < max_depth:
            stack.extend((folder / name, depth + 1) for name in dirs)
    return sorted(found)


def relative_id(path: Path, root: Path) -> str:
    """The sample id: ``path`` relative to the dataset root, with forward slashes."""
    return path.relative_to(root).as_posix()


def strip_image_suffix(name: str) -> str:
    """File name without its image suffix (``.nii.gz`` counted as one)."""
    lower = name.lower()
    if lower.endswith(".nii.gz"):
        return name[:-7]
    return name.rsplit(".", 1)[0] if "." in name else name
