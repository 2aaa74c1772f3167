"""2D rasters: JPEG/PNG/BMP through Pillow, TIFF through tifffile; grey/RGB conversion; PNG out
(encoded by OpenCV)."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageFile

from braintumor.atomic import write_bytes_atomic
from braintumor.errors import DataError, ImageReadError
from braintumor.io.base import LoadedImage
from braintumor.io.sniff import MAX_PIXELS, check_finite, check_pixels

# ITU-R 601 luma, the weights Pillow's convert("L") uses, so both paths agree.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_TO_RGB_MODES = {"P", "PA", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"}
_UINT16_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
# How written PNGs are encoded (by OpenCV's libpng): zlib level 1 and the "Up" filter on every
# row. Pillow at its default level 6 spent most of segmentation predict's time on masks and
# overlays; at level 1 its adaptive per-row filter choice still cost 8.6 ms a 490 px RGB
# overlay against 4.5 ms here (2.2 against 4.6 ms a grey slice, 0.4 against 0.5 a mask), for
# files about 5% larger and the same pixels (docs/benchmarks.md, "Predict on files").
PNG_PARAMS = [
    cv2.IMWRITE_PNG_COMPRESSION,
    1,
    cv2.IMWRITE_PNG_FILTER,
    cv2.IMWRITE_PNG_FILTER_UP,
]
_TO_BGR = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _pillow_array(path: Path, image: Image.Image) -> tuple[np.ndarray, dict]:
    """Convert a loaded Pillow image to uint8/uint16/float32 grey or RGB, as the file has it."""
    mode = image.mode
    meta: dict = {"mode": mode, "had_alpha": mode in {"RGBA", "LA", "PA", "RGBa"}}
    if mode == "P" and "transparency" in image.info:
        meta["had_alpha"] = True
    if mode == "L":
        return np.asarray(image, dtype=np.uint8), meta
    if mode in {"1", "LA"}:
        return np.asarray(image.convert("L"), dtype=np.uint8), meta
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8), meta
    if mode in _TO_RGB_MODES:
        # Alpha carries nothing in MRI; drop it rather than composite so pixels stay as stored.
        return np.asarray(image.convert("RGB"), dtype=np.uint8), meta
    if mode in _UINT16_MODES:
        return np.asarray(image).astype(np.uint16, copy=False), meta
    if mode == "I":
        array = np.asarray(image)
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise ImageReadError(path, "32-bit integer pixels outside 0..65535 are not supported")
        return array.astype(np.uint16), meta
    if mode == "F":
        array = np.asarray(image, dtype=np.float32)
        check_finite(path, array)
        return array, meta
    raise ImageReadError(path, f"unsupported Pillow mode {mode}")


def _truncated_jpeg(path: Path) -> bool:
    """True when a JPEG has no end-of-image marker near its end (a cut-off download)."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 4096))
        return b"\xff\xd9" not in handle.read()


def _draft(image: Image.Image, min_side: int) -> tuple[int, int] | None:
    """Let libjpeg scale a JPEG by 1/2, 1/4 or 1/8 while decoding (its DCT-domain scaling),
    as far as the longest side stays at least ``min_side``; the file's (height, width) when
    it did, None when the image keeps its size."""
    width, height = image.size
    longest = max(width, height)
    if longest < 2 * min_side:
        return None
    # draft() picks the largest reduction whose size still covers the request on both axes.
    wanted = (-(-width * min_side // longest), -(-height * min_side // longest))
    image.draft(image.mode, wanted)
    return (height, width) if image.size != (width, height) else None


def read_pillow(
    path: Path, fmt: str, max_pixels: int = MAX_PIXELS, min_side: int | None = None
) -> LoadedImage:
    """Read a JPEG/PNG/BMP (or a TIFF tifffile cannot decode) with a forced full decode.

    ``min_side``: a JPEG is decoded reduced (1/2, 1/4, 1/8) as long as its longest side stays
    at least this long; ``meta["full_shape"]`` then holds the file's (height, width). Other
    formats have no cheaper reduced decode and are read whole.
    """
    if fmt == "jpeg" and ImageFile.LOAD_TRUNCATED_IMAGES and _truncated_jpeg(path):
        # Another module switched Pillow to padding truncated files with grey; refuse anyway.
        raise ImageReadError(path, "truncated JPEG (no end-of-image marker)")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies below; Pillow's warning threshold is lower than it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_pixels(path, (image.size[1], image.size[0]), max_pixels)
                full_shape = _draft(image, min_side) if min_side and fmt == "jpeg" else None
                image.load()  # decode now: a truncated file must fail here, not later
                array, meta = _pillow_array(path, image)
                if full_shape is not None:
                    meta["full_shape"] = full_shape
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"decompression bomb refused ({_one_line(exc)})") from None
    except OSError as exc:
        problem = _one_line(exc)
        if "truncated" in problem:
            problem = f"truncated {fmt.upper()} file ({problem})"
        raise ImageReadError(path, f"corrupt {fmt.upper()}: {problem}") from None
    except Exception as exc:  # Pillow plugins raise SyntaxError, ValueError, struct.error...
        raise ImageReadError(path, f"corrupt {fmt.upper()}: {_one_line(exc)}") from None
    meta["format"] = fmt
    return LoadedImage(array=np.ascontiguousarray(array), path=path, meta=meta)


def _tiff_channels_last(path: Path, array: np.ndarray, axes: str) -> np.ndarray:
    """Squeeze singleton axes and move a sample/channel axis last; refuse stacks."""
    keep = [i for i, n in enumerate(array.shape) if n > 1 or axes[i] in "YX"]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    extra = [i for i, a in enumerate(axes) if a not in "YX"]
    if not extra:
        return array
    if len(extra) == 1 and array.shape[extra[0]] in (3, 4) and axes[extra[0]] in "SC":
        return np.moveaxis(array, extra[0], -1)
    raise ImageReadError(
        path, f"TIFF with axes {axes} and shape {array.shape}: only single 2D images are read"
    )


def read_tiff(path: Path, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read an 8/16-bit (or float) TIFF with 1, 3 or 4 channels; alpha is dropped."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            check_pixels(path, series.shape, max_pixels)
            array = series.asarray()
            axes = series.axes
    except ImageReadError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error...
        problem = _one_line(exc)
        if "imagecodecs" in problem:
            # Without imagecodecs tifffile cannot decode LZW/JPEG; Pillow can.
            loaded = read_pillow(path, "tiff", max_pixels)
            if loaded.array.ndim == 3 and loaded.array.shape[2] == 4:
                loaded.array = loaded.array[..., :3]
            return loaded
        raise ImageReadError(path, f"corrupt TIFF: {problem}") from None
    array = _tiff_channels_last(path, array, axes)
    meta = {"format": "tiff", "had_alpha": array.ndim == 3 and array.shape[2] == 4}
    if meta["had_alpha"]:
        array = array[..., :3]
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
        check_finite(path, array)
    elif not np.issubdtype(array.dtype, np.integer):
        raise ImageReadError(path, f"unsupported TIFF sample type {array.dtype}")
    return LoadedImage(array=np.ascontiguousarray(array), path=path, meta=meta)


def to_grey(array: np.ndarray) -> np.ndarray:
    """Return an (H, W) array: grey as is, RGB(A) by ITU-R 601 luma in the input's dtype.

    A colour image whose channels are equal (grey saved as RGB) gives its first channel exactly.
    """
    if array.ndim == 2:
        return array
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DataError(f"to_grey expects (H, W) or (H, W, 1|3|4), got shape {array.shape}")
    if array.shape[2] == 1:
        return array[..., 0]
    rgb = array[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0].copy()
    grey = rgb.astype(np.float32) @ _LUMA
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(array.dtype)
    return grey.astype(array.dtype, copy=False)


def to_rgb(array: np.ndarray) -> np.ndarray:
    """Return an (H, W, 3) array: grey repeated on three channels, alpha dropped."""
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DataError(f"to_rgb expects (H, W) or (H, W, 1|3|4), got shape {array.shape}")
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return array[..., :3]


def write_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 grey/RGB/RGBA, uint16 grey or boolean (as 0/255) array as PNG, atomically."""
    path = Path(path)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))
    if array.dtype == np.uint16:
        shape_ok = array.ndim == 2
    elif array.dtype != np.uint8:
        shape_ok = False
    if not shape_ok:
        raise DataError(
            f"{path}: PNG needs uint8 (H, W[, 3|4]) or uint16 (H, W); got {array.dtype} "
            f"{array.shape}"
        )
    write_bytes_atomic(path, encode_png(array))
    return path


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 grey/RGB/RGBA or uint16 grey array (checked by the caller)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, _TO_BGR[array.shape[2]])
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(array), PNG_PARAMS)
    if not ok:  # OpenCV reports no reason; the shapes and types were checked before
        raise DataError(f"PNG encoding failed for an array of shape {array.shape}")
    return encoded.tobytes()
