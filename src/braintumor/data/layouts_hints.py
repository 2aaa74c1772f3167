"""Why a folder matched no dataset layout, in words a user can act on."""

from __future__ import annotations

from pathlib import Path

from braintumor.data.layouts_base import list_dir, normalise_split_name, walk_files
from braintumor.io.sniff import is_image_file


def _images_below(folder: Path) -> int:
    return sum(1 for path in walk_files(folder, max_depth=4) if is_image_file(path))


def no_layout_reason(root: Path) -> str:
    """A short reason for :func:`~braintumor.data.layouts.detect_layout`'s error, or ''.

    Names the one case users meet most (a single class folder: a classifier needs two
    classes) and otherwise the folders found and how many images each holds.
    """
    dirs, files = list_dir(root)
    loose = sum(1 for name in files if is_image_file(name))
    if len(dirs) == 1 and normalise_split_name(dirs[0]) is not None:
        root, (dirs, files) = root / dirs[0], list_dir(root / dirs[0])
    counts = {name: _images_below(root / name) for name in dirs}
    with_images = {name: n for name, n in counts.items() if n}
    if len(with_images) == 1 and not loose:
        ((name, n),) = with_images.items()
        return (
            f"one class folder found ({name}/, {n} images): a classifier needs at least two "
            "classes, one folder each; a segmenter needs images/ + masks/"
        )
    if loose and not with_images:
        return (
            f"{loose} images but no folders: put each class in its own folder, or images "
            "and their masks in images/ + masks/"
        )
    if counts:
        shown = ", ".join(f"{name}/ ({n} images)" for name, n in list(counts.items())[:8])
        return f"folders found: {shown}"
    return ""
