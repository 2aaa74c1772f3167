"""The Figshare brain-tumour dataset's ``.mat`` files (Cheng et al.): one slice, mask, label, PID.

MATLAB v7.3 files are HDF5 (read with h5py; MATLAB stores arrays column-major, so each 2D
array is transposed back); older v5 files are read with ``scipy.io.loadmat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from braintumor.errors import ImageReadError
from braintumor.io.base import LoadedImage
from braintumor.io.sniff import MAX_PIXELS, check_finite, check_pixels, check_size

FIGSHARE_LABELS = {1: "meningioma", 2: "glioma", 3: "pituitary"}
_HDF5 = b"\x89HDF\r\n\x1a\n"


@dataclass
class FigshareRecord:
    """One Figshare slice: the image, its 0/1 tumour mask, the class name and the patient id."""

    image: LoadedImage
    mask: np.ndarray
    label: str
    patient_id: str


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(520)
    return head.startswith(_HDF5) or head[512:520] == _HDF5


def _label_name(path: Path, value: object) -> str:
    try:
        code = int(np.asarray(value, dtype=np.float64).ravel()[0])
    except (TypeError, ValueError, IndexError):
        raise ImageReadError(path, "cjdata.label is not a number") from None
    if code not in FIGSHARE_LABELS:
        raise ImageReadError(path, f"cjdata.label is {code}; expected 1, 2 or 3")
    return FIGSHARE_LABELS[code]


def _h5_text(dataset: h5py.Dataset) -> str:
    """MATLAB char arrays are uint16 code units in HDF5."""
    codes = np.asarray(dataset).ravel()
    return "".join(chr(int(c)) for c in codes if int(c) != 0)


def _read_hdf5(path: Path, with_pixels: bool, max_pixels: int) -> dict:
    with h5py.File(path, "r") as handle:
        if "cjdata" not in handle:
            raise ImageReadError(path, "no cjdata struct: not a Figshare brain-tumour .mat file")
        group = handle["cjdata"]
        missing = [k for k in ("image", "tumorMask", "label", "PID") if k not in group]
        if missing:
            raise ImageReadError(path, f"cjdata lacks {', '.join(missing)}")
        out = {"label": np.asarray(group["label"]), "pid": _h5_text(group["PID"])}
        if with_pixels:
            check_pixels(path, group["image"].shape, max_pixels)
            out["image"] = np.asarray(group["image"]).T
            out["mask"] = np.asarray(group["tumorMask"]).T
    return out


def _read_v5(path: Path, max_pixels: int) -> dict:
    try:
        content = scipy.io.loadmat(path, variable_names=["cjdata"], simplify_cells=True)
    except Exception as exc:  # scipy raises ValueError, MatReadError, zlib.error...
        raise ImageReadError(path, f"corrupt .mat: {_one_line(exc)}") from None
    cjdata = content.get("cjdata")
    if not isinstance(cjdata, dict):
        raise ImageReadError(path, "no cjdata struct: not a Figshare brain-tumour .mat file")
    missing = [k for k in ("image", "tumorMask", "label", "PID") if k not in cjdata]
    if missing:
        raise ImageReadError(path, f"cjdata lacks {', '.join(missing)}")
    image = np.asarray(cjdata["image"])
    check_pixels(path, image.shape, max_pixels)
    pid = cjdata["PID"]
    pid = pid if isinstance(pid, str) else "".join(np.asarray(pid).astype(str).ravel())
    return {"label": cjdata["label"], "pid": pid, "image": image, "mask": cjdata["tumorMask"]}


def _read(path: Path, with_pixels: bool, max_pixels: int = MAX_PIXELS) -> dict:
    check_size(path)
    if _is_hdf5(path):
        try:
            return _read_hdf5(path, with_pixels, max_pixels)
        except ImageReadError:
            raise
        except Exception as exc:  # h5py raises OSError/KeyError/TypeError for broken files
            raise ImageReadError(path, f"corrupt MATLAB v7.3 file: {_one_line(exc)}") from None
    return _read_v5(path, max_pixels)


def read_figshare_label(path: str | Path) -> tuple[str, str]:
    """Return (class name, patient id) of a Figshare ``.mat`` without reading its pixels."""
    path = Path(path)
    content = _read(path, with_pixels=False)
    return _label_name(path, content["label"]), content["pid"].strip()


def read_figshare_mat(path: str | Path, max_pixels: int = MAX_PIXELS) -> FigshareRecord:
    """Read a Figshare ``.mat``: ``cjdata.image`` (dtype as stored), ``cjdata.tumorMask`` as a
    0/1 uint8 array, ``cjdata.label`` (1 meningioma, 2 glioma, 3 pituitary), ``cjdata.PID``.
    """
    path = Path(path)
    content = _read(path, with_pixels=True, max_pixels=max_pixels)
    image = np.ascontiguousarray(content["image"])
    if image.ndim != 2:
        raise ImageReadError(path, f"cjdata.image has shape {image.shape}; expected 2D")
    if image.dtype == bool:
        image = image.astype(np.uint8)
    check_finite(path, image)
    mask = (np.asarray(content["mask"]) > 0).astype(np.uint8)
    if mask.shape != image.shape:
        raise ImageReadError(
            path, f"cjdata.tumorMask is {mask.shape} but cjdata.image is {image.shape}"
        )
    label = _label_name(path, content["label"])
    patient_id = content["pid"].strip()
    loaded = LoadedImage(
        array=image, path=path, meta={"format": "mat", "label": label, "patient_id": patient_id}
    )
    return FigshareRecord(
        image=loaded, mask=np.ascontiguousarray(mask), label=label, patient_id=patient_id
    )
