"""DICOM SEG (through highdicom): a segmentation that 3D Slicer and OHIF open over its source.

The SEG references the source instances it was made from (same study, frame of reference and
geometry) and holds one binary segment per region. ``source_frames`` turns a mask on what
``braintumor`` read (one DICOM file, a slice of a DICOM series, or a whole series) into the
per-instance frames the writer wants.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from braintumor import __version__
from braintumor.atomic import write_bytes_atomic
from braintumor.errors import DataError
from braintumor.io.base import LoadedImage

SEG_SUFFIX = "_seg.dcm"
DICOM_FORMATS = ("dicom", "dicom-series")


@dataclass
class SegFrames:
    """The source DICOM files a mask lies on, and the mask as (frames, rows, cols) booleans."""

    files: list[Path]
    frames: np.ndarray


def is_dicom_image(image: LoadedImage) -> bool:
    """True when ``image`` (or the volume it was sliced from) was read from DICOM."""
    return image.meta.get("format") in DICOM_FORMATS


def source_frames(image: LoadedImage, mask: np.ndarray) -> SegFrames:
    """Place ``mask`` on the DICOM instances ``image`` came from.

    ``image`` is what the reader returned (a file, a series, a multi-frame file) or its axial
    slice from :func:`braintumor.inference.inputs.axial_slice`; ``mask`` has ``image.array``'s
    spatial shape. A slice of a series references only the instances the slice crosses, so
    the SEG does not claim "no tumour" on slices that were never segmented.
    """
    if not is_dicom_image(image):
        fmt = image.meta.get("format") or "unknown"
        raise DataError(f"{image.path}: DICOM SEG needs DICOM input, got {fmt}")
    mask = np.asarray(mask).astype(bool)
    files = [Path(f) for f in image.meta.get("files", [image.path])]
    shape = image.meta.get("volume_shape")
    if shape is None:  # the image as read: (rows, cols), or (rows, cols, frames/slices)
        volume = mask if mask.ndim == 3 else mask[:, :, None]
        return SegFrames(files, np.moveaxis(volume, 2, 0))
    # A slice: put it back into the (rows, cols, slices) volume at its index.
    axis, index = int(image.meta["slice_axis"]), int(image.meta["slice_index"])
    volume = np.zeros(tuple(shape[:3]), dtype=bool)
    np.moveaxis(volume, axis, 2)[:, :, index] = mask
    frames = np.moveaxis(volume, 2, 0)
    if len(files) == 1:  # one multi-frame instance
        return SegFrames(files, frames)
    crossed = [index] if axis == 2 else list(range(len(files)))
    return SegFrames([files[i] for i in crossed], frames[crossed])


def write_dicom_seg(
    frames: SegFrames,
    segments: dict[str, np.ndarray] | None,
    out: Path,
    algorithm: str = "braintumor",
) -> Path:
    """Write a binary DICOM SEG of ``frames`` (one segment, "Tumour") or of ``segments``.

    ``segments`` maps a segment label (e.g. ``WT``) to a (frames, rows, cols) mask over the
    same sources; None writes ``frames.frames`` as the single segment "Tumour". Raises
    :class:`DataError` naming the source when it lacks what a SEG must copy from it.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    masks = segments if segments is not None else {"Tumour": frames.frames}
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in frames.files]
    stacked = np.stack([np.asarray(m, dtype=bool) for m in masks.values()], axis=-1)
    algorithm_id = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm_id,
        )
        for number, label in enumerate(masks, start=1)
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=stacked.astype(np.uint8),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(sources[0].get("SeriesNumber") or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="braintumor",
            manufacturer_model_name=algorithm,
            software_versions=__version__,
            device_serial_number="0",
            series_description=f"{algorithm} segmentation",
            # Empty frames kept: a viewer shows "no tumour" on a segmented slice, not a gap.
            omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{frames.files[0]}: cannot make a DICOM SEG from it ({first})") from None
    write_bytes_atomic(out, _to_bytes(seg))
    return out


def _to_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
