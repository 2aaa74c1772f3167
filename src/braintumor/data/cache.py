"""Decode every image once: an on-disk cache of preprocessed uint8 slices (and masks).

Decoding JPEGs is the slowest step of a CPU epoch, so training never decodes twice: the first
run decodes in a process pool and stores one ``.npy`` per dataset and preprocessing; later
epochs (and later runs on the same files) memory-map it.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from braintumor.atomic import atomic_path
from braintumor.data.lgg import is_lgg_slice, slice_spec
from braintumor.data.preprocess import (
    PreprocessSpec,
    brain_box,
    decode_side,
    prepare_mask,
    prepare_slice,
)
from braintumor.data.samples import Sample
from braintumor.errors import BrainTumorError


def default_cache_dir() -> Path:
    """``$BRAINTUMOR_CACHE`` or ``~/.cache/braintumor``."""
    env = os.environ.get("BRAINTUMOR_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "braintumor"


@dataclass
class DecodedSlices:
    """Preprocessed slices in the order of ``samples`` (failed ones removed)."""

    samples: list[Sample]
    images: np.ndarray  # uint8 (N, C, S, S)
    masks: np.ndarray | None  # uint8 (N, S, S) or None
    failures: list[tuple[str, str]]  # (sample id, one-line problem)


#: Raised whenever preprocessing changes what it produces for the same spec, so caches
#: written by an older braintumor are not reused (2: masks take the brain crop too; 3: JPEGs
#: decoded reduced, as prediction decodes them; 4: the head outline's background level on a
#: border that is partly head).
PREPROCESS_VERSION = 4


def _cache_key(samples: list[Sample], spec: PreprocessSpec, with_masks: bool) -> str:
    digest = hashlib.sha256()
    digest.update(f"preprocess-v{PREPROCESS_VERSION}".encode())
    digest.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
    digest.update(b"masks" if with_masks else b"images")
    # LGG slices under a grey spec without channels are read as FLAIR (data/lgg.py), which
    # caches from before that rule averaged: their entries get a key of their own.
    grey_any = spec.color == "grey" and spec.channels is None
    for sample in samples:
        if grey_any and is_lgg_slice(Path(sample.image)):
            digest.update(b"|flair")
        for path in (sample.image, sample.mask) if with_masks else (sample.image,):
            stat = os.stat(path) if path and os.path.exists(path) else None
            digest.update(
                f"{path}|{stat.st_size if stat else -1}|{stat.st_mtime_ns if stat else -1}".encode()
            )
    return digest.hexdigest()[:24]


def _decode_one(
    args: tuple[Sample, PreprocessSpec, bool],
) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    from braintumor.io import read_image, read_mask

    sample, spec, with_masks = args
    try:
        # The size prediction decodes at (inference/prefetch.py), so both see the same pixels;
        # a mask is read at the image's full size, which its image must then match.
        loaded = read_image(sample.image, min_side=None if with_masks else decode_side(spec))
        own_spec = slice_spec(loaded.path, loaded.array, spec)  # LGG: FLAIR, not a mix
        image = prepare_slice(loaded.array, own_spec)
        mask = None
        if with_masks:
            box = brain_box(loaded.array, own_spec)
            mask = prepare_mask(read_mask(sample.mask, like=loaded), spec, box)
    except BrainTumorError as exc:
        return None, None, str(exc)
    return image, mask, None


def decode_slices(
    samples: list[Sample],
    spec: PreprocessSpec,
    with_masks: bool = False,
    cache_dir: Path | None = None,
    workers: int | None = None,
    description: str = "decoding images",
) -> DecodedSlices:
    """Preprocess ``samples`` to uint8 arrays, reusing the on-disk cache when it matches."""
    cache_dir = (cache_dir or default_cache_dir()) / "decoded"
    key = _cache_key(samples, spec, with_masks)
    images_file, masks_file, index_file = (
        cache_dir / f"{key}.images.npy",
        cache_dir / f"{key}.masks.npy",
        cache_dir / f"{key}.json",
    )
    if images_file.exists() and index_file.exists() and (masks_file.exists() or not with_masks):
        index = json.loads(index_file.read_text())
        kept = set(index["kept"])
        return DecodedSlices(
            samples=[s for s in samples if s.id in kept],
            images=np.load(images_file, mmap_mode="r"),
            masks=np.load(masks_file, mmap_mode="r") if with_masks else None,
            failures=[tuple(f) for f in index["failures"]],
        )

    workers = workers or min(2, os.cpu_count() or 1)
    jobs = [(sample, spec, with_masks) for sample in samples]
    images, masks, kept, failures = [], [], [], []
    with Progress(transient=True) as progress, ProcessPoolExecutor(workers) as pool:
        task = progress.add_task(description, total=len(jobs))
        for sample, (image, mask, error) in zip(
            samples, pool.map(_decode_one, jobs, chunksize=16), strict=True
        ):
            progress.advance(task)
            if error is not None:
                failures.append((sample.id, error))
                continue
            images.append(image)
            masks.append(mask)
            kept.append(sample)
    if not kept:
        raise BrainTumorError(f"none of the {len(samples)} images could be read: {failures[0][1]}")
    image_array = np.stack(images)
    mask_array = np.stack(masks) if with_masks else None
    with atomic_path(images_file) as tmp, open(tmp, "wb") as handle:
        np.save(handle, image_array)
    if mask_array is not None:
        with atomic_path(masks_file) as tmp, open(tmp, "wb") as handle:
            np.save(handle, mask_array)
    with atomic_path(index_file) as tmp:
        tmp.write_text(json.dumps({"kept": [s.id for s in kept], "failures": failures}))
    return DecodedSlices(samples=kept, images=image_array, masks=mask_array, failures=failures)
