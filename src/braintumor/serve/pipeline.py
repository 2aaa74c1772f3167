"""From an uploaded file to the JSON the web app shows: the same records ``predict`` writes,
plus the pictures (base64 PNG) and, for volumes, a small stack of slices and the mask volume.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from braintumor.errors import DataError
from braintumor.inference.inputs import axial_slice, is_volume
from braintumor.inference.outputs import tumour_mask
from braintumor.inference.stack_filter import keep_stack_components
from braintumor.io import LoadedImage, read_dicom_series, read_image, write_nifti
from braintumor.models.folder import LoadedModel, load_model_dir
from braintumor.serve.card import model_card
from braintumor.serve.limits import (
    DEFAULT_MAX_PIXELS,
    VOLUME_FACTOR,
    check_pixels,
    header_shape,
)
from braintumor.serve.naming import default_name, parse_model_arg, unique_name
from braintumor.serve.outputs import (
    STACK_SIDE,
    area_fields,
    file_base64,
    file_download,
    mask_download,
    png_base64,
)
from braintumor.serve.patient_view import PatientUpload, patient_upload, predict_patient
from braintumor.serve.security import UploadError, safe_extract_zip
from braintumor.tasks.predict import takes_images
from braintumor.tasks.registry import CLASSES, PredictOptions, Task, task_of

STACK_SLICES = 24  # slices of a volume sent back for the slider


@dataclass
class ServedModel:
    """A loaded model, its task and predictor, and the lock that serialises its inference."""

    name: str
    loaded: LoadedModel
    task: Task
    predictor: Any
    lock: threading.Lock = field(default_factory=threading.Lock)

    def card(self) -> dict[str, Any]:
        """What the page shows about the model: task, classes, data, metrics, recipe, use, and
        what its results hold (``outputs``: the task's ``classes``, ``mask`` or ``labels``)."""
        card = model_card(self.name, self.loaded.info, self.loaded.path)
        return {**card, "outputs": self.task.outputs, "ood": _ood_card(self.loaded.info.ood)}


def _ood_card(block: dict[str, Any]) -> dict[str, Any] | None:
    """The out-of-distribution check as the page describes it (None: the model has none)."""
    if not block:
        return None
    keys = ("method", "threshold", "accept_rate", "val_accepted", "n_train", "n_val")
    return {key: block.get(key) for key in keys}


def load_models(model_args: list[str | Path]) -> dict[str, ServedModel]:
    """Load every model (``PATH`` or ``NAME=PATH``); see :mod:`braintumor.serve.naming`."""
    served: dict[str, ServedModel] = {}
    parsed = [parse_model_arg(str(arg)) for arg in model_args]
    chosen = [name for name, _ in parsed if name is not None]
    if len(chosen) != len(set(chosen)):
        raise DataError(f"serve: a NAME is given twice in {' '.join(map(str, model_args))}")
    for given, folder in parsed:
        loaded = load_model_dir(folder)
        # Names the user chose are kept as given; the others step aside.
        name = given or unique_name(default_name(folder, loaded.info), set(served) | set(chosen))
        task = task_of(loaded)
        predictor = task.predictor(loaded, PredictOptions(), "cpu")
        served[name] = ServedModel(name=name, loaded=loaded, task=task, predictor=predictor)
    if not served:
        raise DataError("serve needs at least one model folder")
    return served


def _display(array: np.ndarray) -> np.ndarray:
    from braintumor.data.preprocess import rescale_to_uint8, to_grey_uint8

    if array.ndim == 3 and array.shape[2] in (3, 4):
        return rescale_to_uint8(array[..., :3])
    return to_grey_uint8(array)


def read_upload(
    path: Path, kind: str, work: Path, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "upload"
) -> LoadedImage | Path | PatientUpload:
    """The uploaded image or volume; for a zip of a BraTS case, the folder it was unpacked to;
    for a zip of a patient folder (``<patient>/<patient>_N.tif``), its slices.

    Every file's header is checked against ``max_pixels`` before it is decoded (413 above).
    """
    if kind == "nifti":
        # nibabel tells .nii from .nii.gz by the name, so give the bytes a name that fits.
        with open(path, "rb") as handle:
            gz = handle.read(2) == b"\x1f\x8b"
        named = path.with_name("upload.nii.gz" if gz else "upload.nii")
        path.rename(named)
        check_pixels(named, "nifti", max_pixels, name)
        return read_image(named)
    if kind != "zip":
        check_pixels(path, kind, max_pixels, name)
        return read_image(path)
    folder = work / "unzipped"
    folder.mkdir()
    files = safe_extract_zip(path, folder)
    patient = patient_upload(files, work, max_pixels, name)
    if patient is not None:
        return patient
    if any(f.name.lower().endswith((".nii", ".nii.gz")) for f in files):
        for file in files:
            if file.name.lower().endswith((".nii", ".nii.gz")):
                check_pixels(file, "nifti", max_pixels, f"{name}: {file.name[6:]}")
        return folder
    slices = [header_shape(f, "dicom") or (0,) for f in files]
    voxels = sum(int(np.prod(s)) for s in slices)
    if voxels > max_pixels * VOLUME_FACTOR:
        raise UploadError(
            413,
            f"{name}: the series holds {voxels / 1e6:.1f} M voxels; this server takes at most "
            f"{max_pixels * VOLUME_FACTOR / 1e6:.1f} M (serve --max-pixels)",
        )
    return read_dicom_series(folder)


def _slice_items(volume: LoadedImage) -> list[LoadedImage]:
    first, _ = axial_slice(volume, "0")
    count = int(first.meta["volume_shape"][first.meta["slice_axis"]])
    return [first] + [axial_slice(volume, str(i))[0] for i in range(1, count)]


def _stack_indices(count: int) -> list[int]:
    return sorted({round(i) for i in np.linspace(0, count - 1, min(count, STACK_SLICES))})


def _mask_volume(volume: LoadedImage, slices: list[np.ndarray]) -> np.ndarray:
    """Per-slice 2D masks back into the volume's voxel order (undoing the display rotation)."""
    planes = [np.rot90(m, -1) if volume.meta.get("format") == "nifti" else m for m in slices]
    axis = int(axial_slice(volume, "0")[0].meta["slice_axis"])
    return np.moveaxis(np.stack(planes, axis=2), 2, axis).astype(np.uint8)


def _classify(served: ServedModel, item: tuple, target: str | None, volume: Any) -> dict:
    from braintumor.explain import explain_image

    image = item[3]
    predictor = served.predictor
    info = served.loaded.info
    record = served.task.predict(predictor, [item], Path("."), PredictOptions())[0]
    explained = explain_image(served.loaded, image, None, target=target, predictor=predictor)
    overlay = png_base64(explained["overlay"])  # one picture under two names: encoded once
    record.update(
        predicted_class=record["predicted"],
        target_class=explained["target_class"],
        gradcam_layer=explained["layer"],
        gradcam_png=overlay,
        overlay_png=overlay,
        image_png=png_base64(_display(image.array)),
    )
    if volume is not None:
        slices = _slice_items(volume)
        chosen = [slices[i] for i in _stack_indices(len(slices))]
        stack_probs = predictor.classify(chosen)
        record["stack"] = [
            {
                "index": int(s.meta["slice_index"]),
                "png": png_base64(_display(s.array), STACK_SIDE),
                "probabilities": dict(zip(info.class_names, map(float, p), strict=True)),
            }
            for s, p in zip(chosen, stack_probs, strict=True)
        ]
    return record


def _segment(served: ServedModel, item: tuple, work: Path, volume: Any) -> dict:
    from braintumor.localize import draw_overlay, localize

    stem, image = item[0], item[3]
    predictor = served.predictor
    out = work / "out"
    out.mkdir(exist_ok=True)
    record = served.task.predict(predictor, [item], out, PredictOptions())[0]
    record["localization"] = json.loads((out / record["localization"]).read_text())
    record["overlay_png"] = file_base64(out / record["overlay"])
    record["mask_png"] = file_base64(out / record["mask"])
    record["image_png"] = png_base64(_display(image.array))
    record |= area_fields(record)
    mask = np.asarray(Image.open(out / record["mask"])) > 0
    if volume is None:
        record["mask_download"] = mask_download(stem, out, image, mask, algorithm=served.name)
        return record
    slices = _slice_items(volume)
    masks: list[np.ndarray] = []
    for start in range(0, len(slices), predictor.batch_size):
        chunk = slices[start : start + predictor.batch_size]
        masks += [
            tumour_mask(p, keep_largest=predictor.keep_largest) for p in predictor.segment(chunk)
        ]
    if predictor.stack_components:  # a volume's slices are one stack
        masks = keep_stack_components(masks)
    mask_volume = _mask_volume(volume, masks)
    spacing = volume.spacing
    voxels = int(mask_volume.sum())
    record["volume_voxels"] = voxels
    record["volume_ml"] = (
        voxels * float(np.prod(spacing[:3])) / 1000.0 if spacing and len(spacing) >= 3 else None
    )
    nifti = write_nifti(mask_volume, out / f"{stem}_mask.nii.gz", reference=volume)
    record["mask_nifti"] = file_base64(nifti)
    record["mask_download"] = mask_download(
        stem, out, image, mask, volume, mask_volume, algorithm=served.name
    )
    stack = []
    for i in _stack_indices(len(slices)):
        plane, mask = slices[i], masks[i]
        found = localize(mask)
        picture = draw_overlay(_display(plane.array), mask, found)
        stack.append(
            {"index": i, "png": png_base64(picture, STACK_SIDE), "area_px": found.total_area_px}
        )
    record["stack"] = stack
    return record


def _brats(served: ServedModel, folder: Path, work: Path, stem: str) -> dict:
    from braintumor.data.layouts import detect_layout
    from braintumor.serve.brats_view import brats_stack

    samples = [s for s in detect_layout(folder).samples if s.modalities]
    if len(samples) != 1:
        raise UploadError(422, f"the zip should hold one BraTS case; found {len(samples)}")
    if samples[0].id == folder.name:  # named after the unpacking folder: use the upload's name
        samples[0] = dataclasses.replace(samples[0], id=stem)
    out = work / "out"
    out.mkdir(exist_ok=True)
    record = served.task.predict(served.predictor, samples[:1], out, PredictOptions())[0]
    overlays = [Path(p) for p in record.get("overlays", [])]
    return {
        "id": samples[0].id,
        "volumes_ml": record.get("volumes_ml", {}),
        "convention": record.get("convention"),
        "spacing_mm": record.get("spacing_mm"),
        "mask_nifti": file_base64(Path(record["segmentation"])),
        "mask_download": file_download("nifti", Path(record["segmentation"])),
        "overlay_png": file_base64(overlays[0]) if overlays else None,
        "stack": [
            {
                "index": s["index"],
                "png": png_base64(s["picture"], STACK_SIDE),
                "area_px": s["area_px"],
            }
            for s in brats_stack(
                samples[0], Path(record["segmentation"]), record["convention"], STACK_SLICES
            )
        ],
    }


def predict_upload(
    served: ServedModel,
    path: Path,
    kind: str,
    work: Path,
    filename: str,
    slice_: str = "mid",
    target: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Everything the page shows for one uploaded file, as a JSON-ready dict."""
    info = served.loaded.info
    # The page draws a result by what it holds (``outputs``), never by the task's name.
    head: dict[str, Any] = {
        "model": served.name,
        "task": info.task,
        "outputs": served.task.outputs,
        "filename": filename,
    }
    loaded = read_upload(path, kind, work, max_pixels, filename)
    if isinstance(loaded, PatientUpload):
        if not takes_images(served.task):
            raise UploadError(422, "a BraTS model wants a zip of one case's NIfTI modalities")
        return head | {"kind": kind} | predict_patient(served, loaded, work)
    if not takes_images(served.task):
        if not isinstance(loaded, Path):
            raise UploadError(422, "a BraTS model wants a zip of one case's NIfTI modalities")
        return head | _brats(served, loaded, work, Path(filename).name.split(".")[0] or "case")
    if isinstance(loaded, Path):
        raise UploadError(422, "a zip of NIfTI files is for BraTS models; upload the volume itself")
    stem = Path(filename).name.split(".")[0] or "upload"
    volume = loaded if is_volume(loaded) else None
    image, index = axial_slice(loaded, slice_) if volume is not None else (loaded, None)
    item = (stem, Path(filename), index, image)
    head |= {"kind": kind, "slice": index}
    if volume is not None:
        head["n_slices"] = int(image.meta["volume_shape"][image.meta["slice_axis"]])
    if served.task.outputs == CLASSES:
        record = _classify(served, item, target, volume)
    else:
        record = _segment(served, item, work, volume)
    scorer = getattr(served.predictor, "ood", None)
    if "ood" in record and scorer is not None:
        record["ood_threshold"] = scorer.threshold
    return head | record
