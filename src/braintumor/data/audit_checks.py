"""Per-sample checks the audit runs in worker processes: image fingerprint, mask facts,
multimodal case consistency. Each returns small facts, never pixels, and never raises for a
bad file (a problem is a finding)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from braintumor.data.hashing import ImageFingerprint, fingerprint_image, one_line_error

# A mask with more distinct values than this is reported with the first ones only.
MAX_VALUES_KEPT = 8


@dataclass
class MaskFacts:
    """Size and values of a 2D mask file."""

    width: int | None = None
    height: int | None = None
    values: list[float] = field(default_factory=list)
    n_values: int = 0
    error: str | None = None


@dataclass
class CaseFacts:
    """Consistency of one multimodal case (modalities + label volume)."""

    sha256: str
    shape: list[int] | None = None
    label_values: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class ItemTask:
    """One unit of work for a worker (paths already resolved)."""

    index: int
    image: str
    mask: str | None = None
    modalities: dict[str, str] = field(default_factory=dict)
    use_draft: bool = True


@dataclass
class ItemResult:
    """What a worker sends back for one sample."""

    index: int
    fingerprint: ImageFingerprint | None = None
    mask: MaskFacts | None = None
    case: CaseFacts | None = None


def check_item(task: ItemTask) -> ItemResult:
    """Run the checks that apply to ``task`` (top-level so that a process pool can pickle it)."""
    if task.modalities:
        return ItemResult(task.index, case=check_case(task.modalities, task.mask))
    result = ItemResult(task.index, fingerprint=fingerprint_image(task.image, task.use_draft))
    if task.mask is not None:
        result.mask = mask_facts(Path(task.mask))
    return result


def mask_facts(path: Path) -> MaskFacts:
    """Read a mask and keep its size and distinct values."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            array = np.asarray(image)
    except (UnidentifiedImageError, FileNotFoundError) as error:
        array = _array_with_reader(path)
        if array is None:
            return MaskFacts(error=one_line_error(error))
        height, width = array.shape[:2]
    except (OSError, ValueError, SyntaxError) as error:
        return MaskFacts(error=one_line_error(error))
    values = np.unique(array)
    return MaskFacts(
        width=int(width),
        height=int(height),
        values=[float(v) for v in values[:MAX_VALUES_KEPT]],
        n_values=int(values.size),
    )


def _array_with_reader(path: Path) -> np.ndarray | None:
    """Non-Pillow mask formats through the project's readers, when available."""
    if not path.is_file():
        return None
    try:
        from braintumor.io import read_image

        return np.asarray(read_image(path).array)
    except Exception:  # the Pillow error is the one reported
        return None


def check_case(modalities: dict[str, str], label: str | None) -> CaseFacts:
    """Shapes and affines must agree across the modalities and the label volume; the label's
    values are kept; a missing or unreadable file is a problem."""
    import nibabel as nib

    digest = hashlib.sha256()
    problems: list[str] = []
    geometry: dict[str, tuple[tuple[int, ...], np.ndarray]] = {}
    files = dict(sorted(modalities.items()))
    if label is not None:
        files["label"] = label
    label_values: list[float] = []
    for name, file in files.items():
        path = Path(file)
        if not path.is_file():
            problems.append(f"{name}: file missing ({path.name})")
            continue
        digest.update(name.encode())
        digest.update(_file_sha256(path).encode())
        try:
            volume = nib.load(path)
            geometry[name] = (tuple(int(s) for s in volume.shape[:3]), np.asarray(volume.affine))
            if name == "label":
                values = np.unique(np.asanyarray(volume.dataobj))
                label_values = [float(v) for v in values[: MAX_VALUES_KEPT * 4]]
        except Exception as error:  # nibabel raises many types for bad files
            problems.append(f"{name}: unreadable ({one_line_error(error)})")
    problems.extend(_geometry_problems(geometry))
    if label_values and any(v != int(v) for v in label_values):
        problems.append("label: non-integer values")
    shape = next(iter(geometry.values()))[0] if geometry else None
    return CaseFacts(
        sha256=digest.hexdigest(),
        shape=list(shape) if shape else None,
        label_values=label_values,
        problems=problems,
    )


def _geometry_problems(geometry: dict[str, tuple[tuple[int, ...], np.ndarray]]) -> list[str]:
    if not geometry:
        return []
    # The majority shape is the reference, so the odd file out is the one named.
    common = Counter(shape for shape, _ in geometry.values()).most_common(1)[0][0]
    ref_name = next(name for name, (shape, _) in geometry.items() if shape == common)
    ref_shape, ref_affine = geometry[ref_name]
    problems = []
    for name, (shape, affine) in geometry.items():
        if shape != ref_shape:
            problems.append(f"{name}: shape {shape} differs from {ref_name} {ref_shape}")
        elif not np.allclose(affine, ref_affine, atol=1e-3):
            problems.append(f"{name}: affine differs from {ref_name}")
    return problems


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mask_problems(fingerprint: ImageFingerprint | None, facts: MaskFacts) -> list[str]:
    """Problems of a 2D mask next to its image: unreadable, size mismatch, empty, non-binary."""
    if facts.error:
        return [f"unreadable mask: {facts.error}"]
    problems = []
    if fingerprint is not None and fingerprint.width is not None:
        image_size = (fingerprint.width, fingerprint.height)
        if (facts.width, facts.height) != image_size:
            problems.append(
                f"size {facts.width}x{facts.height} differs from image "
                f"{image_size[0]}x{image_size[1]}"
            )
    if facts.n_values == 0 or (facts.n_values == 1 and facts.values[0] == 0):
        problems.append("empty (all background)")
    if facts.n_values > 2:
        shown = ", ".join(f"{v:g}" for v in facts.values)
        more = ", ..." if facts.n_values > len(facts.values) else ""
        problems.append(f"non-binary: {facts.n_values} values ({shown}{more})")
    return problems
