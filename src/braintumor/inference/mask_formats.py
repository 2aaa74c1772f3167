"""Mask file formats ``predict --format`` writes beside the PNG mask and overlay.

``png`` is the default (a 0/255 PNG per input); ``dicom-seg`` adds a DICOM SEG over the DICOM
input each mask was predicted from, for 3D Slicer, OHIF and PACS. The extra files are made
from the written PNG masks, so every task's prediction path stays as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from braintumor.errors import DataError, ImageReadError
from braintumor.inference.inputs import axial_slice, is_dicom_path, read_input
from braintumor.io.dicom_seg import SEG_SUFFIX, source_frames, write_dicom_seg
from braintumor.tasks.registry import MASK, Task

MASK_FORMATS = ("png", "dicom-seg")


def check_mask_format(mask_format: str, task: Task, paths: list[Path]) -> None:
    """Raise a one-line DataError when ``mask_format`` does not fit the model's task (a 2D mask
    per image) or an input."""
    if mask_format not in MASK_FORMATS:
        raise DataError(f"--format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
    if mask_format != "dicom-seg":
        return
    if task.outputs != MASK:
        raise DataError(f"--format dicom-seg is for segmentation models; this one is {task.name}")
    for path in paths:
        if not (path.is_dir() or is_dicom_path(path)):
            raise DataError(f"{path}: --format dicom-seg needs DICOM input (a file or a series)")


def write_dicom_segs(
    records: list[dict], failures: list[dict], out: Path, algorithm: str
) -> list[dict]:
    """A DICOM SEG per segmentation record (``<id>_seg.dcm``, named in ``dicom_seg``).

    The input is read again (the slice the record names) for its geometry; a record whose SEG
    cannot be made moves to ``failures`` with the reason. Returns the records kept.
    """
    kept = []
    for record in records:
        try:
            image = read_input(Path(record["path"]))
            if record.get("slice") is not None:
                image = axial_slice(image, str(record["slice"]))[0]
            mask = np.asarray(Image.open(out / record["mask"])) > 0
            seg = out / f"{record['id']}{SEG_SUFFIX}"
            write_dicom_seg(source_frames(image, mask), None, seg, algorithm)
        except (DataError, ImageReadError) as error:
            failures.append({"id": record["id"], "path": record["path"], "error": str(error)})
            continue
        kept.append(record | {"dicom_seg": seg.name})
    return kept
