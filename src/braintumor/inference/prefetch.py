"""Inputs read and prepared ahead of the network: decode at the size the model needs, in threads,
a bounded number of batches ahead, so that decoding overlaps the forward pass.

:func:`load_prepared` is what ``predict``, the web app and ``evaluate`` (classification) read
an input with: :func:`~braintumor.io.read_image` with the spec's
:func:`~braintumor.data.preprocess.decode_side` (a JPEG decoded reduced, as the training
cache decodes it), a volume's chosen slice, then :func:`~braintumor.data.preprocess.prepare_slice`.
The :class:`PreparedImage` it returns carries the network input and the crop to the head, so
the predictor neither prepares it again nor finds the head again to put a mask back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from braintumor.data.lgg import slice_spec
from braintumor.data.preprocess import PreprocessSpec, decode_side, prepare_slice_and_box
from braintumor.errors import DataError
from braintumor.inference.inputs import DECODE_THREADS, axial_slice, is_volume, read_input
from braintumor.io import read_image
from braintumor.io.base import LoadedImage

#: Batches read ahead of the one the network runs: one keeps both cores busy (the decode
#: threads release the GIL); more would only hold more decoded images in memory.
PREFETCH_BATCHES = 1

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class PreparedImage(LoadedImage):
    """A :class:`LoadedImage` with its network input: uint8 (C, S, S) for ``spec``.

    ``array`` may be smaller than the file (a JPEG decoded reduced): :func:`full_shape` gives
    the file's (height, width), the size predicted masks are restored to.
    """

    network_input: np.ndarray | None = None
    spec: PreprocessSpec | None = None
    #: the brain crop taken of ``array`` (y0, y1, x0, x1); None when ``spec`` does not crop
    crop_box: tuple[int, int, int, int] | None = None


def full_shape(image: LoadedImage) -> tuple[int, int]:
    """(height, width) of the image as stored, whatever size it was decoded at."""
    shape = image.meta.get("full_shape") or image.array.shape[:2]
    return int(shape[0]), int(shape[1])


def as_stored(image: LoadedImage) -> LoadedImage:
    """The image at the size it is stored at: read again, whole, when it was decoded reduced
    (masks and overlays are written at the input's own size)."""
    if "full_shape" not in image.meta:
        return image
    return read_image(image.path)


def check_raster(image: LoadedImage) -> None:
    """Raise :class:`DataError` unless the image is a 2D raster (grey, or up to 4 channels)."""
    array = image.array
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] > 4):
        raise DataError(
            f"{image.path}: array of shape {array.shape} is not a 2D image; "
            "pick a slice of a volume first (--slice)"
        )


def prepared(image: LoadedImage, spec: PreprocessSpec) -> PreparedImage:
    """``image`` with its network input for ``spec`` (a :class:`DataError` if not 2D)."""
    check_raster(image)
    network_input, crop_box = prepare_slice_and_box(
        image.array, slice_spec(image.path, image.array, spec)
    )
    return PreparedImage(
        array=image.array,
        path=image.path,
        spacing=image.spacing,
        affine=image.affine,
        meta=image.meta,
        network_input=network_input,
        spec=spec,
        crop_box=crop_box,
    )


def load_prepared(path: Path, spec: PreprocessSpec, slice_: str = "mid") -> PreparedImage:
    """Read one input at the size ``spec`` needs (a volume as its chosen axial slice) and
    prepare it. Raises the reader's :class:`~braintumor.errors.ImageReadError` or a
    :class:`DataError`."""
    image = read_input(path, min_side=decode_side(spec))
    if is_volume(image):
        image, _ = axial_slice(image, slice_)
    return prepared(image, spec)


def prefetched(
    batches: Iterable[list[In]], load: Callable[[In], Out], depth: int = PREFETCH_BATCHES
) -> Iterator[list[Out]]:
    """``load`` of every item, batch by batch in order, run in the decode threads up to
    ``depth`` batches ahead of the batch the caller is working on. ``load`` should return
    failures rather than raise them; an exception it raises surfaces with its batch."""
    pending: deque[list[Future[Out]]] = deque()
    source = iter(batches)

    def submit() -> None:
        batch = next(source, None)
        if batch is not None:
            pending.append([DECODE_THREADS.submit(load, item) for item in batch])

    for _ in range(depth + 1):
        submit()
    while pending:
        futures = pending.popleft()
        yield [future.result() for future in futures]
        submit()  # the caller is done with that batch: read one more
