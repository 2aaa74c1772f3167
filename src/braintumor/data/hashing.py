"""Fingerprints of image files (SHA-256 of the bytes, pHash of the grey image) and the pairs
and clusters they form.

Exact duplicates share a SHA-256. Near duplicates are pairs whose 64-bit perceptual hashes
(imagehash's pHash) differ in at most ``threshold`` bits; clusters are the connected
components of those pairs, so "a~b and b~c" puts a, b and c in one cluster.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# pHash resizes to 32x32 before its DCT, so decoding a JPEG at 1/2..1/8 scale first loses
# nothing the hash uses and makes decoding several times faster. 64 px keeps a margin above
# 32 for the Lanczos resize.
DRAFT_SIZE = (128, 128)


@dataclass
class ImageFingerprint:
    """What the audit keeps of one image file: hashes and a little metadata, no pixels."""

    sha256: str
    phash: int | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    format: str | None = None
    error: str | None = None


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def phash_uint64(image: Image.Image) -> int:
    """imagehash's pHash of the grey image as an unsigned 64-bit integer (same bit order as
    ``str(imagehash.phash(image))``)."""
    grey = to_grey(image)
    bits = imagehash.phash(grey).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def to_grey(image: Image.Image) -> Image.Image:
    """An 8-bit grey copy; 16-bit and float images are min-max scaled rather than clipped."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float64)
        return Image.fromarray(array_to_uint8(array))
    return image.convert("L")


def array_to_uint8(array: np.ndarray) -> np.ndarray:
    """Min-max scale any numeric array to uint8 (a constant array becomes zeros)."""
    array = np.nan_to_num(np.asarray(array, dtype=np.float64))
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.round((array - low) * (255.0 / (high - low))).astype(np.uint8)


def fingerprint_image(path: str | Path, use_draft: bool = True) -> ImageFingerprint:
    """Hash one image file. Never raises for bad files: the problem goes into ``error``.

    Rasters are decoded with Pillow (JPEGs in draft mode, see :data:`DRAFT_SIZE`); other
    formats (DICOM, NIfTI, .mat ...) go through :func:`braintumor.io.read_image` when that
    reader is available.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        return ImageFingerprint(sha256="", error=one_line_error(error))
    digest = sha256_bytes(data)
    if not data:
        return ImageFingerprint(sha256=digest, error="empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Size, mode and format of the file as stored, before draft() shrinks it.
            width, height = image.size
            mode, fmt = image.mode, image.format
            if use_draft and fmt == "JPEG":
                image.draft("L", DRAFT_SIZE)
            image.load()
            phash = phash_uint64(image)
    except UnidentifiedImageError:
        return _fingerprint_with_reader(path, digest)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        return ImageFingerprint(sha256=digest, error=one_line_error(error))
    return ImageFingerprint(digest, phash, width, height, mode, fmt)


def _fingerprint_with_reader(path: Path, digest: str) -> ImageFingerprint:
    """Formats Pillow does not know: use the project's readers for pixels."""
    try:
        from braintumor.io import read_image
    except ImportError:
        return ImageFingerprint(sha256=digest, error="not an image Pillow can read")
    try:
        loaded = read_image(path)
    except Exception as error:  # any reader failure is a finding, not a crash
        return ImageFingerprint(sha256=digest, error=one_line_error(error))
    array = np.asarray(loaded.array)
    fmt = path.suffix.lstrip(".").upper() or None
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].mean(axis=-1)
    if array.ndim != 2:
        # A volume: shape is reported, a 2D perceptual hash would mean nothing.
        return ImageFingerprint(digest, None, array.shape[1], array.shape[0], str(array.dtype), fmt)
    phash = phash_uint64(Image.fromarray(array_to_uint8(array)))
    return ImageFingerprint(digest, phash, array.shape[1], array.shape[0], str(array.dtype), fmt)


def one_line_error(error: BaseException) -> str:
    """``Type: first line of the message``, for reports that keep one line per problem."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def popcount64(values: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1)


def near_pairs(
    hashes: np.ndarray, threshold: int, block: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with Hamming distance of ``hashes[i]`` and ``hashes[j]`` at most
    ``threshold``.

    Brute force in row blocks (XOR + popcount over a block x n matrix) keeps memory at
    ``block * n`` bytes and does the 5 million pairs of a 3,264-image set in well under a
    second. Returns ``(pairs, distances)`` with pairs of shape (m, 2), sorted.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    found_pairs: list[np.ndarray] = []
    found_dist: list[np.ndarray] = []
    for start in range(0, n, block):
        stop = min(start + block, n)
        # Compare the block with every later hash only (upper triangle).
        dist = popcount64(hashes[start:stop, None] ^ hashes[None, start:])
        rows, cols = np.nonzero(dist <= threshold)
        keep = cols > rows
        rows, cols = rows[keep], cols[keep]
        found_pairs.append(np.stack([rows + start, cols + start], axis=1))
        found_dist.append(dist[rows, cols].astype(np.int64))
    if not found_pairs:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(found_pairs).astype(np.int64), np.concatenate(found_dist)


def connected_groups(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component label per node of the undirected graph on ``n`` nodes with edges ``pairs``
    (union-find semantics: transitive)."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix(
        (np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
    )
    _, labels = connected_components(graph, directed=False)
    return labels


def groups_of(labels: np.ndarray, members: np.ndarray | None = None) -> list[list[int]]:
    """Indices sharing a component label, for components with at least two members.

    ``members`` maps positions in ``labels`` back to original indices (default: identity).
    Groups are ordered by their first member.
    """
    members = np.arange(len(labels)) if members is None else np.asarray(members)
    by_label: dict[int, list[int]] = {}
    for position, label in enumerate(labels.tolist()):
        by_label.setdefault(label, []).append(int(members[position]))
    groups = [sorted(g) for g in by_label.values() if len(g) > 1]
    return sorted(groups, key=lambda g: g[0])


def sha256_groups(digests: list[str | None]) -> list[list[int]]:
    """Indices of identical non-empty digests, for digests shared by at least two items."""
    by_digest: dict[str, list[int]] = {}
    for index, digest in enumerate(digests):
        if digest:
            by_digest.setdefault(digest, []).append(index)
    return sorted((g for g in by_digest.values() if len(g) > 1), key=lambda g: g[0])
