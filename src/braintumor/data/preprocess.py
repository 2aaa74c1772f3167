"""Deterministic preprocessing of a 2D slice, shared by training, evaluation and prediction.

Every model folder stores its :class:`PreprocessSpec` so prediction redoes exactly the steps
training did: colour handling, optional brain crop, pad to square, resize, optional intensity
standardisation inside the head (:mod:`braintumor.data.intensity`), normalisation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import torch

from braintumor.data.intensity import (
    HEAD_OUTLINES,
    INTENSITY_MODES,
    HeadOutline,
    Intensity,
    fill_contour,
    head_contour,
    standardise,
)
from braintumor.errors import DataError, RecipeError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PreprocessSpec:
    """How a raw slice becomes a network input.

    ``color``: ``grey`` converts to one grey channel and repeats it ``in_channels`` times (MRI
    slices are grey even when stored as RGB); ``keep`` keeps the file's channels (LGG's
    pre-contrast/FLAIR/post-contrast TIFFs carry three different sequences).

    ``intensity`` (``none``, ``percentile``, ``equalize``) standardises the grey levels inside
    the head after resizing, with ``percentiles`` for ``percentile``; pixels outside the head
    (and the padding) are set to ``background``. ``brain_crop`` crops to the head's box,
    keeping the aspect ratio (the crop is padded to a square).

    ``head_outline`` is how the head is found for both (:func:`~.intensity.head_contour`):
    ``None``, as model folders from before the choice existed, takes ``range`` with intensity
    standardisation and system 004's ``otsu`` without. ``outline_side``: the head is found on a
    copy of the slice resized to this longer side, so that the outline does not depend on the
    file's resolution or on a reduced JPEG decode; ``None`` (model folders from before it):
    at the decoded size.

    ``channels``: the file channels to use (0-based, in order), taken before the colour step;
    ``None`` takes them all. ``[1]`` on an LGG slice is FLAIR alone, so ``grey`` with one chosen
    channel is that sequence, never a mix of sequences.
    """

    image_size: int = 224
    in_channels: int = 3
    color: Literal["grey", "keep"] = "grey"
    brain_crop: bool = False
    channels: list[int] | None = None
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.25])
    intensity: Intensity = "none"
    percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])
    background: int = 0
    head_outline: HeadOutline | None = None
    outline_side: int | None = None

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_MODES:
            raise RecipeError(
                f"preprocess.intensity must be one of {', '.join(INTENSITY_MODES)}, "
                f"got {self.intensity!r}"
            )
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise RecipeError(f"preprocess.percentiles must be 0 <= low < high <= 100: {low, high}")
        if not 0 <= self.background <= 255:
            raise RecipeError(f"preprocess.background must be 0..255, got {self.background}")
        if self.head_outline is not None and self.head_outline not in HEAD_OUTLINES:
            raise RecipeError(
                f"preprocess.head_outline must be one of {', '.join(HEAD_OUTLINES)}, "
                f"got {self.head_outline!r}"
            )
        if self.outline_side is not None and (
            not isinstance(self.outline_side, int) or self.outline_side < MIN_OUTLINE_SIDE
        ):
            raise RecipeError(
                f"preprocess.outline_side must be an integer >= {MIN_OUTLINE_SIDE} or null, "
                f"got {self.outline_side!r}"
            )

    @property
    def outline(self) -> HeadOutline:
        """The head outline in effect (``head_outline``, or the default for the intensity)."""
        if self.head_outline is not None:
            return self.head_outline
        return "otsu" if self.intensity == "none" else "range"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessSpec:
        """Rebuild from a dict saved in a model folder (unknown keys ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for ``model.json``."""
        return dataclasses.asdict(self)


#: JPEGs are decoded reduced (libjpeg's DCT-domain scaling) to no less than this many times
#: the network's input side, and area-resized from there: measured against a full decode on
#: real slices in docs/benchmarks.md ("Predict on files").
DRAFT_MARGIN = 2
#: ``outline_side`` below this loses the thin scalp ring the outline closes over.
MIN_OUTLINE_SIDE = 64


def decode_side(spec: PreprocessSpec) -> int | None:
    """The longest side a JPEG must keep when decoded for ``spec`` (``read_image``'s
    ``min_side``); None decodes it whole.

    Without ``outline_side``, a head outline found at the decoded size moves with it
    (measured: a 256 px decode of a 512 px Sartaj JPEG moved the equalised ``gamma-normalised``
    input by 6.4 grey levels, against 1.4 with ``range``), so a brain crop or that outline
    decodes whole. With it, the outline is the same at any decode (the working copy is
    resampled from whatever was decoded).
    """
    moves_with_decode = spec.brain_crop or spec.outline == "gamma-normalised"
    if moves_with_decode and spec.outline_side is None:
        return None
    return DRAFT_MARGIN * spec.image_size


def to_grey_uint8(array: np.ndarray) -> np.ndarray:
    """Any raster (H,W), (H,W,1), (H,W,3/4), 8 or 16 bit -> (H,W) uint8.

    Colour is the channel mean, min-max scaled to 0..255.
    """
    if array.ndim == 3:
        array = array[..., :3]
        if array.shape[-1] == 1:
            array = array[..., 0]
        elif array.dtype == np.uint8:
            return _grey_of_uint8_colour(array)
        else:
            array = array.astype(np.float32).mean(axis=-1)
    return rescale_to_uint8(array)


def _grey_of_uint8_colour(rgb: np.ndarray) -> np.ndarray:
    """The float32 channel mean + min-max scaling of an 8-bit colour image, bit for bit.

    The result depends only on each pixel's channel sum (0..765 in uint16), so the float
    arithmetic runs once per possible sum in a lookup table instead of once per pixel: about
    ten times faster on 512 px JPEGs, and exactly the values training cached.
    """
    channel_sum = rgb[..., 0].astype(np.uint16)  # added plane by plane: numpy's sum over a
    for channel in range(1, rgb.shape[-1]):  # short last axis is several times slower
        channel_sum += rgb[..., channel]
    means = np.arange(3 * 255 + 1, dtype=np.float32) / np.float32(rgb.shape[-1])
    low, high = float(means[channel_sum.min()]), float(means[channel_sum.max()])
    if high <= low:
        return np.zeros(channel_sum.shape, dtype=np.uint8)
    table = ((means - low) * (255.0 / (high - low))).round().astype(np.uint8)
    return np.take(table, channel_sum)


def rescale_to_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 stays; anything else is min-max scaled to 0..255 (16-bit TIFF, float NIfTI)."""
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return ((array - low) * (255.0 / (high - low))).round().astype(np.uint8)


def brain_bbox(
    grey: np.ndarray, outline: HeadOutline = "otsu", side: int | None = None
) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1) of the head of a uint8 grey slice, found the ``outline``
    way (:func:`~.intensity.head_contour`, at ``side``); the whole image when none is found."""
    return _contour_box(head_contour(grey, outline, side), grey.shape)


def _contour_box(contour: np.ndarray | None, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if contour is None:
        return 0, shape[0], 0, shape[1]
    x, y, w, h = cv2.boundingRect(contour)
    return y, y + h, x, x + w


def pad_to_square(array: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad (H,W[,C]) to a square, centred; returns the array and (top, left) padding."""
    height, width = array.shape[:2]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    pad = [(top, side - height - top), (left, side - width - left)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad), (top, left)


def resize(array: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Square resize with area averaging when shrinking (no aliasing), linear when growing."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    if nearest:
        interpolation = cv2.INTER_NEAREST
    elif array.shape[0] > size:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_LINEAR
    return cv2.resize(array, (size, size), interpolation=interpolation)


def select_channels(array: np.ndarray, channels: list[int] | None) -> np.ndarray:
    """The chosen file channels of a raster, (H, W, len(channels)); all of them for ``None``.

    Raises :class:`DataError` when the raster has fewer channels than the choice needs.
    """
    if channels is None:
        return array
    image = array if array.ndim == 3 else array[..., None]
    if not channels or max(channels) >= image.shape[-1] or min(channels) < 0:
        raise DataError(
            f"preprocess.channels {list(channels)} does not fit an image with "
            f"{image.shape[-1]} channel(s)"
        )
    return image[..., list(channels)]


def _as_uint8_channels(array: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The raster as uint8 (H, W, C): grey, or the spec's first ``in_channels`` rescaled."""
    array = select_channels(array, spec.channels)
    if spec.color == "grey":
        return to_grey_uint8(array)[..., None]
    image = array if array.ndim == 3 else array[..., None]
    return rescale_to_uint8(image[..., : spec.in_channels])


def _grey_of(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else to_grey_uint8(image)


def brain_box(array: np.ndarray, spec: PreprocessSpec) -> tuple[int, int, int, int] | None:
    """The brain crop (y0, y1, x0, x1) :func:`prepare_slice` takes of ``array``; None when the
    spec does not crop. Masks and predicted maps use the same box."""
    if not spec.brain_crop:
        return None
    return brain_bbox(_grey_of(_as_uint8_channels(array, spec)), spec.outline, spec.outline_side)


def box_in_frame(
    box: tuple[int, int, int, int], decoded: tuple[int, int], stored: tuple[int, int]
) -> tuple[int, int, int, int]:
    """``box`` (y0, y1, x0, x1), found on an image decoded at ``decoded`` (height, width), in
    the coordinates of the image as stored (``stored``): a JPEG decoded reduced has its crop
    found on the reduced copy, and its mask is restored to the stored size."""
    if decoded == stored:
        return box
    fy, fx = stored[0] / decoded[0], stored[1] / decoded[1]
    y0, y1, x0, x1 = box
    return (
        round(y0 * fy),
        min(stored[0], max(round(y1 * fy), round(y0 * fy) + 1)),
        round(x0 * fx),
        min(stored[1], max(round(x1 * fx), round(x0 * fx) + 1)),
    )


def prepare_slice(array: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Raw raster -> uint8 (C, S, S) at the spec's size, before normalisation.

    The uint8 result is what the decoded-image cache stores; :func:`normalise` turns it into
    the float network input.
    """
    return prepare_slice_and_box(array, spec)[0]


def prepare_slice_and_box(
    array: np.ndarray, spec: PreprocessSpec
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """:func:`prepare_slice`, and the brain crop it took of ``array`` (:func:`brain_box`; None
    when the spec does not crop), so that a predicted map can be put back without finding the
    head again."""
    image = _as_uint8_channels(array, spec)
    standardised = spec.intensity != "none"
    needs_head = spec.brain_crop or standardised
    contour = head_contour(_grey_of(image), spec.outline, spec.outline_side) if needs_head else None
    head = fill_contour(contour, image.shape[:2]) if standardised else None
    box = None
    if spec.brain_crop:
        box = y0, y1, x0, x1 = _contour_box(contour, image.shape)
        image = image[y0:y1, x0:x1]
        head = head[y0:y1, x0:x1] if head is not None else None
    square, _ = pad_to_square(image)
    resized = resize(square, spec.image_size)
    if resized.ndim == 2:
        resized = resized[..., None]
    if head is not None:
        # Standardised after resizing: fewer pixels, and area averaging has already evened
        # out JPEG noise and resampling differences between exports.
        head_square, _ = pad_to_square(head.astype(np.uint8))
        small_head = resize(head_square, spec.image_size, nearest=True).astype(bool)
        low, high = spec.percentiles
        resized = standardise(resized, small_head, spec.intensity, (low, high), spec.background)
    return np.ascontiguousarray(resized.transpose(2, 0, 1)), box


def prepare_mask(
    mask: np.ndarray, spec: PreprocessSpec, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """A mask made to match :func:`prepare_slice`: ``box`` is its image's :func:`brain_box`."""
    binary = (mask > 0).astype(np.uint8)
    if box is not None:
        y0, y1, x0, x1 = box
        binary = binary[y0:y1, x0:x1]
    square, _ = pad_to_square(binary)
    return resize(square, spec.image_size, nearest=True)


def restore_mask_size(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """Undo pad-to-square + resize on a (S,S) probability map -> (height, width)."""
    side = max(height, width)
    full = cv2.resize(prob.astype(np.float32), (side, side), interpolation=cv2.INTER_LINEAR)
    top, left = (side - height) // 2, (side - width) // 2
    return full[top : top + height, left : left + width]


def normalise_batch(batch: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 (B, C, S, S), or float in [0, 1], -> float network input, channels_last."""
    x = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch
    if x.shape[1] == 1 and spec.in_channels > 1:
        x = x.expand(-1, spec.in_channels, -1, -1)
    mean = torch.tensor(spec.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)
