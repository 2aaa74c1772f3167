"""Head mask and intensity standardisation: remove how a slice was exported, keep the anatomy.

Public brain MRI slices come from converters that each window, scale and encode differently
(min-max per slice, a fixed range, a darker window, a grey or black background). A model that
sees the raw grey levels can learn the converter instead of the anatomy. Standardising inside
the head and fixing the background level takes that fingerprint away, the same way at
training and prediction time (the choice is part of :class:`~.preprocess.PreprocessSpec`).

- ``percentile``: the head's ``percentiles`` (1-99 % by default) are mapped linearly to the
  full range and clipped, as MONAI's ``ScaleIntensityRangePercentiles`` does; removes any
  linear change (window/level, min-max against fixed scaling, darker exports).
- ``equalize``: histogram equalisation inside the head (scikit-image's ``equalize_hist`` with
  a mask); removes any monotone change, gamma included, at the price of the absolute contrast.

Both need the head's outline first, and the outline must not move with the export either
(``HeadOutline``): ``otsu`` is system 004's contour crop, ``range`` a threshold a fixed share
of the way from the background to the bright end, ``gamma-normalised`` the same threshold
taken after a per-slice gamma that undoes the export's gamma.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from skimage.exposure import cumulative_distribution

Intensity = Literal["none", "percentile", "equalize"]
INTENSITY_MODES: tuple[str, ...] = ("none", "percentile", "equalize")
HeadOutline = Literal["otsu", "range", "gamma-normalised"]
HEAD_OUTLINES: tuple[str, ...] = ("otsu", "range", "gamma-normalised")

#: A head smaller than this share of the image is taken as a failed detection (whole image).
MIN_HEAD_FRACTION = 0.05
#: The head threshold: this share of the way from the background level to the bright end.
HEAD_THRESHOLD = 0.08
#: ``gamma-normalised``: the gamma brings this quantile of the pixels brighter than the
#: background to this share of the bright end. Chosen on 300 real slices (Sartaj JPEGs and
#: Figshare PNGs, docs/benchmarks.md "Head outline"): the outline stays closest to itself
#: under gamma 0.5 and 2.0 re-exports while staying where ``range`` puts it on the originals.
NORMALISED_QUANTILE = 0.7
NORMALISED_LEVEL = 0.4
#: The per-slice gamma is kept in this range (a flat or empty slice has no meaningful one).
GAMMA_RANGE = (0.25, 4.0)
#: ``gamma-normalised`` closes gaps narrower than this share of the image's longer side (the
#: dark skull between scalp and brain), so a thin scalp ring never breaks apart.
CLOSE_FRACTION = 0.03
#: ...and keeps every blob at least this share of the largest one's area (a head cut in two).
KEEP_FRACTION = 0.1
#: A border whose median stands this many grey levels above its 10th percentile is partly
#: head (:func:`border_background`).
MIXED_BORDER_GAP = 20


def head_contour(
    grey: np.ndarray, outline: HeadOutline = "range", side: int | None = None
) -> np.ndarray | None:
    """The outline of the head in a uint8 grey slice (in its pixel coordinates), or None when
    none is found; ``side``: found on a copy resized so that its longer side is ``side``
    (:func:`_contour_at_side`), None: at the slice's own size.

    ``range``: smooth (median, then Gaussian), threshold at ``HEAD_THRESHOLD`` of the way from
    the background level (:func:`border_background`) to the 99th percentile, open, take
    the largest external contour. Measured on re-exports of real slices (gamma 0.5-2, windows,
    darker, dark-grey background, JPEG 50), this threshold moves the head outline less than
    Otsu's, which jumps between tissue classes when the gamma changes; a gamma still moves it
    (background noise brightened above the threshold, a scalp ring broken apart).

    ``gamma-normalised``: the threshold of :func:`gamma_normalised_level`, which a gamma
    re-export leaves where it was; then gaps narrower than ``CLOSE_FRACTION`` are closed and
    the outline is the convex hull of every blob of at least ``KEEP_FRACTION`` of the largest.

    ``otsu``: :func:`otsu_head_contour`. A blob under ``MIN_HEAD_FRACTION`` of the image
    counts as not found.
    """
    if side is not None and side != max(grey.shape):
        return _contour_at_side(grey, outline, side)
    if outline == "otsu":
        return otsu_head_contour(grey)
    if outline not in HEAD_OUTLINES:
        raise ValueError(f"unknown head outline {outline!r}; known: {', '.join(HEAD_OUTLINES)}")
    smooth = smoothed_for_outline(grey)
    histogram = grey_histogram(smooth)  # counted once: both levels below read it
    background = border_background(smooth)
    bright = percentile_uint8(smooth, 99, histogram)
    if outline == "range":
        level = background + HEAD_THRESHOLD * max(bright - background, 1.0)
    else:
        level = gamma_normalised_level(smooth, background, bright, histogram)
    binary: np.ndarray = (smooth > level).astype(np.uint8)
    if outline == "gamma-normalised":
        side = max(3, int(CLOSE_FRACTION * max(grey.shape)) | 1)
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, disc)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8), iterations=2)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    if outline == "gamma-normalised":
        largest_area = max(cv2.contourArea(c) for c in contours)
        kept = [c for c in contours if cv2.contourArea(c) >= KEEP_FRACTION * largest_area]
        head = cv2.convexHull(np.concatenate(kept))
    else:
        head = max(contours, key=cv2.contourArea)
    return head if _large_enough(head, grey.shape) else None


def smoothed_for_outline(grey: np.ndarray) -> np.ndarray:
    """A uint8 grey slice smoothed as the head outline reads it (median 5, then Gaussian 5)."""
    return cv2.GaussianBlur(cv2.medianBlur(grey, 5), (5, 5), 0)


def border_pixels(image: np.ndarray) -> np.ndarray:
    """The pixels of the image's 3-pixel border, flattened (corners counted twice)."""
    edges = (image[:3], image[-3:], image[:, :3], image[:, -3:])
    return np.concatenate([edge.ravel() for edge in edges])


def border_background(smooth: np.ndarray) -> float:
    """The background grey level of a smoothed uint8 slice, read on its 3-pixel border.

    The border's median, unless the border is partly head: an export that framed the head
    tightly cuts through it, most of the border is then head, and its median a tissue level
    (the outline shrank to the brightest tissue; on 240 slices of four sources cropped by 20%,
    14.6% of the heads found overlapped the original's by IoU < 0.9). A median more than
    ``MIXED_BORDER_GAP`` grey levels above the border's 10th percentile marks such a border,
    and the 10th percentile, the part of it outside the head, is taken instead (3.7%). Borders
    that are all background keep their median, so most slices' outlines do not move.
    """
    border = border_pixels(smooth)
    # The median is numpy's 50th percentile to the bit (both average the middle two values).
    median = percentile_uint8(border, 50)
    darker_part = percentile_uint8(border, 10)
    return darker_part if median - darker_part > MIXED_BORDER_GAP else median


def _contour_at_side(grey: np.ndarray, outline: HeadOutline, side: int) -> np.ndarray | None:
    """:func:`head_contour` of ``grey`` resized to a longer side of ``side``, mapped back.

    The smoothing and morphology work in pixels and the threshold's percentiles shift with the
    resampling, so the outline of one file decoded whole and decoded reduced (libjpeg's DCT
    scaling) differed; on one working size they agree, which lets predict decode reduced.
    """
    height, width = grey.shape
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    contour = head_contour(cv2.resize(grey, size, interpolation=interpolation), outline, side)
    if contour is None:
        return None
    # Pixel centres map as (x + 0.5) / scale - 0.5, on each axis with its own rounded scale.
    factors = np.array([width / size[0], height / size[1]])
    back = np.round((contour + 0.5) * factors - 0.5)
    return np.clip(back, 0, [width - 1, height - 1]).astype(np.int32)


def gamma_normalised_level(
    smooth: np.ndarray, background: float, bright: float, histogram: np.ndarray | None = None
) -> float:
    """The ``range`` threshold of ``smooth`` (uint8) taken on ``(smooth / bright) ** gamma``
    and mapped back to grey levels, with the gamma that brings the ``NORMALISED_QUANTILE`` of
    the pixels brighter than ``background`` to ``NORMALISED_LEVEL``.

    A re-export with gamma g turns every quantile q (relative to ``bright``) into q ** g, as
    quantiles follow any monotone map; the gamma found becomes gamma / g, so the normalised
    slice, and the threshold with it, stay where they were. ``histogram``: the
    :func:`grey_histogram` of ``smooth``, when the caller has it already.
    """
    bright = max(bright, 1.0)
    histogram = (grey_histogram(smooth) if histogram is None else histogram).copy()
    histogram[: int(np.floor(background)) + 1] = 0
    gamma = 1.0
    if histogram.sum() > 0:
        cumulative = np.cumsum(histogram)
        quantile = float(np.searchsorted(cumulative, NORMALISED_QUANTILE * cumulative[-1]))
        ratio = min(max(quantile / bright, 1e-3), 0.999)
        gamma = float(np.clip(np.log(NORMALISED_LEVEL) / np.log(ratio), *GAMMA_RANGE))
    normalised_background = min(background / bright, 1.0) ** gamma
    level = normalised_background + HEAD_THRESHOLD * max(1.0 - normalised_background, 1e-3)
    return bright * level ** (1.0 / gamma)


def _large_enough(contour: np.ndarray, shape: tuple[int, ...]) -> bool:
    _, _, w, h = cv2.boundingRect(contour)
    return w * h >= MIN_HEAD_FRACTION * shape[0] * shape[1]


def grey_histogram(values: np.ndarray) -> np.ndarray:
    """The count of each of the 256 grey levels of a uint8 array (int64), ``np.bincount``'s
    answer; OpenCV counts a 2D slice about twice as fast."""
    if values.ndim == 2 and values.size < 2**24:  # float32 counts are exact below 2**24
        return cv2.calcHist([values], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    return np.bincount(values.ravel(), minlength=256)


def percentile_uint8(values: np.ndarray, q: float, histogram: np.ndarray | None = None) -> float:
    """``np.percentile(values, q)`` of a uint8 array, the same float, mostly from its histogram.

    numpy sorts (partitions) every pixel; for uint8 the order statistics around the percentile
    come from the cumulative histogram. When those either side of it are equal, that value is
    numpy's answer exactly (its interpolation between equal values); otherwise numpy decides.
    ``histogram``: the values' :func:`grey_histogram`, when the caller has it already.
    """
    flat = values.ravel()
    position = q / 100.0 * (flat.size - 1)
    # One order statistic of margin on each side: numpy's index arithmetic may round apart.
    first, last = (
        max(int(np.floor(position)) - 1, 0),
        min(int(np.ceil(position)) + 1, flat.size - 1),
    )
    cumulative = np.cumsum(grey_histogram(values) if histogram is None else histogram)
    low, high = np.searchsorted(cumulative, [first, last], side="right")
    if low == high:
        return float(low)
    return float(np.percentile(values, q))


def equalized(plane: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """scikit-image's ``equalize_hist(plane, nbins=256, mask=mask)`` of a uint8 plane, bit for
    bit: the same cumulative distribution of the masked pixels, interpolated once per grey
    level (256 values) and looked up, instead of interpolated once per pixel."""
    cdf, centers = cumulative_distribution(plane[mask], 256)
    table = np.interp(np.arange(256), centers, cdf)
    return table[plane]


def otsu_head_contour(grey: np.ndarray) -> np.ndarray | None:
    """System 004's "brain extraction by contour crop" (blur, Otsu, open, largest contour):
    the head outline of specs without intensity standardisation, kept for their models."""
    blurred = cv2.GaussianBlur(grey, (5, 5), 0)
    _, binary = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8), iterations=2)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    return largest if _large_enough(largest, grey.shape) else None


def fill_contour(contour: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the inside of ``contour`` (a :func:`head_contour`); all True if None.

    Hand-written with OpenCV: MONAI's ``CropForeground``/``NormalizeIntensity(nonzero=True)``
    take "foreground" as non-zero pixels, which a dark-grey or JPEG-noisy background defeats.
    """
    if contour is None:
        return np.ones(shape, dtype=bool)
    filled = np.zeros(shape, dtype=np.uint8)
    cv2.drawContours(filled, [contour], -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def head_mask(
    grey: np.ndarray, outline: HeadOutline = "range", side: int | None = None
) -> np.ndarray:
    """Boolean (H, W) mask of the head of a uint8 grey slice (all True when none is found)."""
    return fill_contour(head_contour(grey, outline, side), grey.shape)


def standardise(
    image: np.ndarray,
    mask: np.ndarray,
    mode: Intensity,
    percentiles: tuple[float, float] = (1.0, 99.0),
    background: int = 0,
) -> np.ndarray:
    """uint8 (H, W[, C]) -> uint8 of the same shape, standardised inside ``mask``.

    Each channel is scaled on its own head pixels; pixels outside the mask become
    ``background``. ``none`` returns the image unchanged.
    """
    if mode == "none":
        return image
    if mode not in INTENSITY_MODES:
        raise ValueError(f"unknown intensity mode {mode!r}; known: {', '.join(INTENSITY_MODES)}")
    planes = image[..., None] if image.ndim == 2 else image
    out = np.full(planes.shape, background, dtype=np.uint8)
    if not mask.any():
        return image
    for channel in range(planes.shape[-1]):
        plane = planes[..., channel]
        if mode == "percentile":
            # MONAI's ScaleIntensityRangePercentiles has no mask: the percentiles of the head
            # pixels alone are wanted, or the background's share of the image would set them.
            low, high = np.percentile(plane[mask], percentiles)
            scaled = (plane.astype(np.float32) - low) / max(float(high - low), 1e-6)
        else:
            scaled = equalized(plane, mask)
        values = np.clip(scaled, 0.0, 1.0) * 255.0
        out[..., channel] = np.where(mask, values.round(), background).astype(np.uint8)
    return out if image.ndim == 3 else out[..., 0]
