"""NIfTI-1/2 volumes (.nii, .nii.gz) through nibabel: read as float32, write atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from braintumor.errors import DataError, ImageReadError
from braintumor.io.base import LoadedImage
from braintumor.io.sniff import MAX_PIXELS, check_finite, check_pixels


def read_nifti(path: Path, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read a NIfTI file: float32 voxels (scaling applied), affine, spacing from the zooms.

    Trailing singleton axes beyond the third are dropped ((X, Y, Z, 1) -> (X, Y, Z)).
    The nibabel header is kept in ``meta["nifti_header"]`` for writing results back.
    """
    try:
        image = nib.load(str(path))
        shape = tuple(int(n) for n in image.shape)
        check_pixels(path, shape, max_pixels)
        array = image.get_fdata(dtype=np.float32)
    except ImageReadError:
        raise
    except Exception as exc:  # nibabel/gzip/zlib raise many types for broken files
        lines = str(exc).strip().splitlines()
        problem = lines[0] if lines else type(exc).__name__
        raise ImageReadError(path, f"corrupt NIfTI: {problem}") from None
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    check_finite(path, array)
    zooms = image.header.get_zooms()[: array.ndim]
    return LoadedImage(
        array=array,
        path=path,
        spacing=tuple(float(z) for z in zooms),
        affine=np.asarray(image.affine, dtype=np.float64),
        meta={"format": "nifti", "nifti_header": image.header},
    )


def _storable(array: np.ndarray) -> np.ndarray:
    """Map dtypes NIfTI-1 readers choke on to ones they take (bool, 64-bit ints)."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype in (np.int64, np.uint64):
        if array.size == 0 or (
            array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max
        ):
            return array.astype(np.int32)
        raise DataError("integer values do not fit NIfTI's int32")
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


def write_nifti(
    array: np.ndarray,
    path: str | Path,
    reference: LoadedImage | None = None,
    affine: np.ndarray | None = None,
) -> Path:
    """Write ``array`` as NIfTI at ``path`` (.nii or .nii.gz), atomically.

    The affine is ``affine`` if given, else the reference's, else the identity. The reference's
    NIfTI header is kept (orientation codes, units, description) with its data type set to the
    array's and its intensity scaling cleared. The file is written to a temporary name with the
    same ending in the same folder, then renamed over ``path``.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        suffix = ".nii.gz"
    elif name.endswith(".nii"):
        suffix = ".nii"
    else:
        raise DataError(f"{path}: a NIfTI file name must end with .nii or .nii.gz")
    array = _storable(np.asarray(array))
    if affine is None and reference is not None:
        affine = reference.affine
    if affine is None:
        affine = np.eye(4)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise DataError(f"{path}: affine must be 4x4, got {affine.shape}")
    header = None
    if reference is not None and isinstance(reference.meta.get("nifti_header"), nib.Nifti1Header):
        header = reference.meta["nifti_header"].copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(None, None)
    image_type = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    image = image_type(array, affine, header=header)
    if header is None:
        image.header.set_xyzt_units("mm")
    image.set_data_dtype(array.dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    # nibabel picks compression from the name, so the temporary file keeps the real ending.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        nib.save(image, tmp_name)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path
