"""A small, complete MR DICOM series made in the test (pydicom), as files or as a zip; and a
bare slice as bytes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

ROWS, COLS = 20, 24
PIXEL_SPACING = (0.5, 0.8)
SLICE_STEP = 2.0


def mr_dataset(rows: int, cols: int) -> Dataset:
    """An MR image dataset with its file meta and SOP UIDs, ``rows`` x ``cols`` 16-bit
    unsigned MONOCHROME2 pixels announced (the caller sets the rest and ``PixelData``)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def _slice(study: str, series: str, frame: str, index: int) -> Dataset:
    ds = mr_dataset(ROWS, COLS)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Case", "P1", "", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20260101", "120000", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.SeriesNumber, ds.InstanceNumber = 3, index + 1
    ds.PixelSpacing = list(PIXEL_SPACING)
    ds.SliceThickness = SLICE_STEP
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, SLICE_STEP * index]
    pixels = np.random.default_rng(index).integers(0, 300, size=(ROWS, COLS), dtype=np.uint16)
    pixels[6:12, 8:16] += 700  # a bright blob
    ds.PixelData = pixels.tobytes()
    return ds


def write_series(folder: Path, n: int = 4) -> list[str]:
    """Write ``n`` slices (``IM0000``...: no suffix, DICM magic) into ``folder``; their SOP
    Instance UIDs in slice order (bottom to top)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    uids = []
    for index in range(n):
        ds = _slice(study, series, frame, index)
        ds.save_as(folder / f"IM{index:04d}", enforce_file_format=True)
        uids.append(str(ds.SOPInstanceUID))
    return uids


def series_zip(folder: Path, n: int = 4) -> tuple[bytes, list[str]]:
    """The series of :func:`write_series` (written under ``folder``) as zip bytes, and its UIDs."""
    uids = write_series(folder, n)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"series/{path.name}")
    return buffer.getvalue(), uids


def dicom_slice_bytes(z: float, number: int) -> bytes:
    """One bare 20x24 MR slice of series 1.2.3.4 at height ``z`` (mm), as DICOM Part 10 bytes:
    no study or frame of reference UID (what a minimal exporter writes)."""
    ds = mr_dataset(20, 24)
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.InstanceNumber = number
    ds.PixelSpacing = [0.5, 0.8]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, z]
    pixels = np.random.default_rng(number).integers(0, 1000, size=(20, 24), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
