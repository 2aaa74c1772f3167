"""A zip of one patient folder (LGG: ``<patient>/<patient>_N.tif``, reference masks
``<patient>_N_mask.tif`` optional) in the web app: every slice predicted as ``predict`` does
on the folder (the model's stack rule included), and the patient's summary, the slice with the
largest tumour and a slider over the slices shown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.measure import label

from braintumor.data.lgg import flair_view
from braintumor.inference.stack_filter import stack_labels, stacks_of
from braintumor.io import read_image
from braintumor.localize import draw_overlay, localize
from braintumor.patient_stack import is_reference_mask, stack_slice, stack_summaries
from braintumor.serve.limits import VOLUME_FACTOR, check_pixels, header_shape
from braintumor.serve.outputs import STACK_SIDE, png_base64
from braintumor.serve.security import UploadError
from braintumor.tasks.predict import predict_images
from braintumor.tasks.registry import MASK, PredictOptions

#: an unpacked slice or mask: ``<running number>_<patient>_<N>[_mask].<ext>``
_UNZIPPED = re.compile(
    r"^\d{5}_(?P<base>(?P<prefix>.+)_\d+(?:_mask)?\.(?:tiff?|png|jpe?g))$", re.IGNORECASE
)
#: summary fields the page reports (the unpacking folder's path is not one)
SUMMARY_KEYS = (
    "patient",
    "n_slices",
    "tumour_slices",
    "volume_voxels",
    "volume_ml",
    "spacing_note",
    "largest_slice",
    "largest_area_px",
    "reference_dice",
    "reference_iou",
)


@dataclass(frozen=True)
class PatientUpload:
    """The slices of the one patient folder an uploaded zip held, in slice order."""

    slices: list[Path]


def patient_upload(
    files: list[Path], work: Path, max_pixels: int, name: str
) -> PatientUpload | None:
    """The zip's patient folder when its files form one (None: not a patient folder); a
    422 when they form several, a 413 when a slice is too large.

    The zip was unpacked flat, each file behind a running number (:func:`safe_extract_zip`);
    a patient's slices and masks are moved back under ``work/patient/<patient>/`` so that they
    read as the patient folder they came from (the masks beside their slices)."""
    placed = {
        f: work / "patient" / m["prefix"] / m["base"]
        for f in files
        if (m := _UNZIPPED.match(f.name))
    }
    inputs = [p for p in placed.values() if stack_slice(p) is not None and not is_reference_mask(p)]
    stacks = stacks_of(inputs)
    if not stacks:
        return None
    for source, target in placed.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
    if len(stacks) > 1:
        raise UploadError(
            422, f"{name}: the zip should hold one patient folder; found {len(stacks)}"
        )
    slices = [inputs[i] for i in stacks[0]]
    voxels = 0
    for path in slices:
        check_pixels(path, "image", max_pixels, f"{name}: {path.name}")
        voxels += int(np.prod(header_shape(path, "image") or (0,)))
    if voxels > max_pixels * VOLUME_FACTOR:
        raise UploadError(
            413,
            f"{name}: the patient folder holds {voxels / 1e6:.1f} M pixels; this server takes "
            f"at most {max_pixels * VOLUME_FACTOR / 1e6:.1f} M (serve --max-pixels)",
        )
    return PatientUpload(slices)


def predict_patient(served: Any, upload: PatientUpload, work: Path) -> dict[str, Any]:
    """What the page shows for a patient folder: the summary (``patient``), the slice with the
    largest predicted tumour as picture and overlay, and a slider over every slice."""
    if served.task.outputs != MASK:
        raise UploadError(
            422, "a zip of a patient folder is for 2D segmenters; upload one slice to classify"
        )
    out = work / "out"
    out.mkdir(exist_ok=True)
    records, failures = predict_images(
        served.task, served.predictor, upload.slices, out, PredictOptions(overlays=False)
    )
    if failures:
        failed = failures[0]
        raise UploadError(422, f"{Path(failed['path']).name}: {failed['error']}")
    (summary,) = stack_summaries(records, out)
    numbered = [(stack_slice(Path(r["path"]))[1], r) for r in records]  # type: ignore[index]
    ordered = sorted(numbered, key=lambda pair: pair[0])
    pictures = {n: _overlay(r, out) for n, r in ordered}
    shown = summary["largest_slice"] or ordered[len(ordered) // 2][0]
    voxels = summary["volume_voxels"]
    slices = summary["tumour_slices"]
    return {
        "id": summary["patient"],
        "patient": {key: summary.get(key) for key in SUMMARY_KEYS},
        "tumor": voxels > 0,
        "n_components": _regions([pictures[n][2] for n, _ in ordered]),
        "area_px": voxels,
        "area_text": f"{voxels} voxels over {slices} of {len(records)} slices",
        "volume_ml": summary["volume_ml"],
        "slice": shown,
        "n_slices": len(records),
        "stack_components": served.predictor.stack_components,
        "image_png": png_base64(pictures[shown][0]),
        "overlay_png": png_base64(pictures[shown][1]),
        "stack": [
            {"index": n, "png": png_base64(pictures[n][1], STACK_SIDE), "area_px": r["area_px"]}
            for n, r in ordered
        ],
    }


def _overlay(record: dict, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A slice's FLAIR view, the same with the predicted outline, and the predicted mask."""
    image = flair_view(read_image(record["path"]).array)
    mask = np.asarray(read_image(out / record["mask"]).array) > 0
    return image, draw_overlay(image, mask, localize(mask)), mask


def _regions(masks: list[np.ndarray]) -> int:
    """Separate tumour regions in 3D (26-connected across adjacent slices); slices of
    different sizes are counted one by one."""
    labels = stack_labels(masks)
    if labels is not None:
        return int(labels.max())
    return sum(int(label(m, connectivity=2).max()) for m in masks)
