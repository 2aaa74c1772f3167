"""DICOM through pydicom: one file (rescaled, spaced) or a folder holding one series (stacked)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset
from pydicom.pixels import apply_modality_lut

from braintumor.errors import ImageReadError
from braintumor.io.base import LoadedImage
from braintumor.io.sniff import MAX_BYTES, MAX_PIXELS, check_pixels, check_size

# DICOM patient space is LPS; NIfTI (and our affines) are RAS: flip the first two axes.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _dataset(path: Path, max_bytes: int = MAX_BYTES) -> FileDataset:
    check_size(path, max_bytes)
    try:
        ds = pydicom.dcmread(path, force=path.name.lower().endswith(".dcm"))
    except Exception as exc:  # InvalidDicomError, EOFError, struct.error...
        raise ImageReadError(path, f"corrupt DICOM: {_one_line(exc)}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ImageReadError(path, "DICOM file holds no pixel data")
    return ds


def _pixels(path: Path, ds: FileDataset, max_pixels: int) -> np.ndarray:
    """Decoded pixels after the modality LUT (rescale slope/intercept)."""
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    check_pixels(path, (frames, rows, cols, int(ds.get("SamplesPerPixel", 1) or 1)), max_pixels)
    try:
        raw = ds.pixel_array
    except Exception as exc:  # missing decoder for a compressed transfer syntax, bad length...
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        hint = f" (transfer syntax {syntax.name})" if syntax is not None else ""
        raise ImageReadError(path, f"cannot decode DICOM pixels{hint}: {_one_line(exc)}") from None
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        return raw  # colour: uint8 RGB as stored, no modality LUT
    array = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    if not np.isfinite(array).all():
        raise ImageReadError(path, "DICOM pixels hold NaN/infinite values after rescaling")
    return array


def _monochrome1_to_2(ds: FileDataset, array: np.ndarray) -> np.ndarray:
    """MONOCHROME1 shows the minimum as white; flip so bright means high signal everywhere."""
    if str(ds.get("PhotometricInterpretation", "")).upper() != "MONOCHROME1" or array.size == 0:
        return array
    return array.max() + array.min() - array


def _pixel_spacing(ds: FileDataset) -> tuple[float, float] | None:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing is None or len(spacing) < 2:
        return None
    return float(spacing[0]), float(spacing[1])


def read_dicom(path: Path, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read one DICOM file: float32 (rescaled) grey or uint8 RGB; frames go last.

    ``spacing`` is (row spacing, column spacing) from PixelSpacing, in millimetres.
    """
    ds = _dataset(path)
    array = _monochrome1_to_2(ds, _pixels(path, ds, max_pixels))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spacing = _pixel_spacing(ds)
    if frames > 1 and int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        array = np.moveaxis(array, 0, -1)
        thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
        if spacing is not None and thickness is not None:
            spacing = (*spacing, float(thickness))
        elif spacing is not None:
            spacing = None
    meta = {
        "format": "dicom",
        "modality": str(ds.get("Modality", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "patient_id": str(ds.get("PatientID", "")),
        "photometric": str(ds.get("PhotometricInterpretation", "")),
    }
    return LoadedImage(array=np.ascontiguousarray(array), path=path, spacing=spacing, meta=meta)


def _orientation(ds: FileDataset) -> tuple[np.ndarray, np.ndarray] | None:
    iop = ds.get("ImageOrientationPatient")
    if iop is None or len(iop) != 6:
        return None
    values = np.array([float(v) for v in iop])
    return values[:3], values[3:]


def read_dicom_series(
    folder: str | Path, series_uid: str | None = None, max_pixels: int = MAX_PIXELS
) -> LoadedImage:
    """Stack the DICOM files of one series in ``folder`` into a (rows, cols, slices) volume.

    Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product
    of the ImageOrientationPatient directions), or by InstanceNumber when positions are missing.
    The affine maps (row, col, slice) indices to RAS millimetres, like a NIfTI affine. A folder
    with several series needs ``series_uid``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageReadError(folder, "not a folder of DICOM files")
    datasets: list[tuple[Path, FileDataset]] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        path = Path(entry.path)
        with open(path, "rb") as handle:
            head = handle.read(132)
        if head[128:132] != b"DICM" and not entry.name.lower().endswith(".dcm"):
            continue
        datasets.append((path, _dataset(path)))
    if not datasets:
        raise ImageReadError(folder, "no DICOM files in folder")
    uids = sorted({str(ds.get("SeriesInstanceUID", "")) for _, ds in datasets})
    if series_uid is not None:
        datasets = [
            (p, ds) for p, ds in datasets if str(ds.get("SeriesInstanceUID", "")) == series_uid
        ]
        if not datasets:
            raise ImageReadError(folder, f"no slice of series {series_uid} (found {uids})")
    elif len(uids) > 1:
        raise ImageReadError(folder, f"holds {len(uids)} series {uids}; pass series_uid")

    first = datasets[0][1]
    orientation = _orientation(first)
    positions = [ds.get("ImagePositionPatient") for _, ds in datasets]
    by_position = orientation is not None and all(p is not None and len(p) == 3 for p in positions)
    if by_position:
        row_dir, col_dir = orientation
        normal = np.cross(row_dir, col_dir)
        xyz = np.array([[float(v) for v in p] for p in positions])
        keys = xyz @ normal
    else:
        keys = np.array(
            [float(ds.get("InstanceNumber", i) or i) for i, (_, ds) in enumerate(datasets)]
        )
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if len(keys) > 1 and np.any(np.diff(sorted_keys) == 0):
        raise ImageReadError(folder, "two slices share one position; not a single volume")
    datasets = [datasets[i] for i in order]

    shape = (int(first.get("Rows", 0)), int(first.get("Columns", 0)))
    check_pixels(folder, (*shape, len(datasets)), max_pixels)
    slices = []
    for path, ds in datasets:
        if (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != shape:
            raise ImageReadError(path, f"slice size differs from the series' {shape}")
        pixels = _pixels(path, ds, max_pixels)
        if pixels.ndim != 2:
            raise ImageReadError(path, "series slices must be single-frame grey images")
        slices.append(pixels.astype(np.float32, copy=False))
    # Inverted over the whole volume so every slice shares one grey scale.
    array = _monochrome1_to_2(first, np.stack(slices, axis=-1))

    pixel_spacing = _pixel_spacing(first) or (1.0, 1.0)
    if by_position and len(datasets) > 1:
        steps = np.diff(sorted_keys)
        slice_step = float(np.median(steps))
        step_vector = (xyz[order][-1] - xyz[order][0]) / (len(datasets) - 1)
    else:
        slice_step = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0)
        step_vector = None
    affine = None
    if by_position:
        row_dir, col_dir = orientation
        if step_vector is None:
            step_vector = np.cross(row_dir, col_dir) * slice_step
        lps = np.eye(4)
        # Row index i moves along the column direction cosine, column index j along the row one.
        lps[:3, 0] = col_dir * pixel_spacing[0]
        lps[:3, 1] = row_dir * pixel_spacing[1]
        lps[:3, 2] = step_vector
        lps[:3, 3] = xyz[order][0]
        affine = _LPS_TO_RAS @ lps
    meta = {
        "format": "dicom-series",
        "files": [str(p) for p, _ in datasets],
        "series_uid": str(first.get("SeriesInstanceUID", "")),
        "patient_id": str(first.get("PatientID", "")),
        "ordered_by": "ImagePositionPatient" if by_position else "InstanceNumber",
    }
    return LoadedImage(
        array=array,
        path=folder,
        spacing=(pixel_spacing[0], pixel_spacing[1], abs(slice_step)),
        affine=affine,
        meta=meta,
    )
