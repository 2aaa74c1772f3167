"""Write synthetic datasets to disk in the layouts of the real public ones.

- classify: ``<out>/<class>/<class>_NNNN.png`` (or ``Training/`` and ``Testing/`` above the
  class folders, 80/20), like the 4-class Kaggle sets;
- segment: ``<out>/images/NNNN.png``, ``<out>/masks/NNNN.png`` (0/255) and ``labels.csv``, like
  the Figshare set;
- brats: one folder per case with the four modalities and the label map as NIfTI, named as in
  BraTS 2013, 2021 or 2023.

Every image comes from its own random stream ``default_rng([seed, ...])``, so a dataset is
fully fixed by its seed, and growing ``n`` keeps the images already there. Each file is written
atomically.
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from braintumor.atomic import atomic_path, write_text_atomic
from braintumor.data.layouts_base import CLASSIFY_DATA, DATA_KINDS, SEGMENT_DATA
from braintumor.data.synth_2d import KINDS, TUMOUR_KINDS, make_slice
from braintumor.data.synth_3d import render_case
from braintumor.errors import DataError

TASKS: tuple[str, ...] = DATA_KINDS
NAMINGS: tuple[str, ...] = ("2013", "2021", "2023")


def _write_png(dest: Path, array: np.ndarray) -> None:
    """Save a uint8 grey array as PNG, atomically."""
    with atomic_path(dest) as tmp:
        Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(tmp, format="PNG")


def _check_count(name: str, value: int) -> None:
    if value < 1:
        raise DataError(f"synthetic dataset: {name} must be at least 1, got {value}")


def write_classification_dataset(
    out: Path, n_per_class: int = 40, size: int = 128, seed: int = 0, splits: bool = False
) -> Path:
    """Write ``n_per_class`` PNG slices per class under ``out/<class>/<class>_NNNN.png``.

    With ``splits`` the first 80% of each class go to ``out/Training/<class>/`` and the rest to
    ``out/Testing/<class>/``. Class folders: glioma, meningioma, pituitary, no_tumor.
    Returns ``out``.
    """
    _check_count("n_per_class", n_per_class)
    out = Path(out)
    n_train = round(0.8 * n_per_class)
    for k, kind in enumerate(KINDS):
        for i in range(n_per_class):
            image, _ = make_slice(kind, size, np.random.default_rng([seed, k, i]))
            folder = out / kind
            if splits:
                folder = out / ("Training" if i < n_train else "Testing") / kind
            _write_png(folder / f"{kind}_{i:04d}.png", image)
    return out


def write_segmentation_dataset(
    out: Path, n: int = 60, size: int = 128, seed: int = 0, empty_fraction: float = 0.0
) -> Path:
    """Write ``n`` image/mask pairs and ``labels.csv`` (number,label) under ``out``.

    Tumour kinds take turns (glioma, meningioma, pituitary); a share ``empty_fraction`` of
    the numbers, chosen at random, hold a no_tumor slice with an empty mask. Numbers start at 1
    and are written zero-padded (``0001``), as in the file names. Returns ``out``.
    """
    _check_count("n", n)
    if not 0.0 <= empty_fraction <= 1.0:
        raise DataError(f"synthetic dataset: empty_fraction {empty_fraction} is not in [0, 1]")
    out = Path(out)
    n_empty = round(empty_fraction * n)
    empty = set(np.random.default_rng([seed, 99]).permutation(n)[:n_empty].tolist())
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["number", "label"])
    for i in range(n):
        kind = "no_tumor" if i in empty else TUMOUR_KINDS[i % len(TUMOUR_KINDS)]
        image, mask = make_slice(kind, size, np.random.default_rng([seed, 7, i]))
        number = f"{i + 1:04d}"
        _write_png(out / "images" / f"{number}.png", image)
        _write_png(out / "masks" / f"{number}.png", mask * np.uint8(255))
        writer.writerow([number, kind])
    write_text_atomic(out / "labels.csv", rows.getvalue())
    return out


def _write_nifti(dest: Path, volume: np.ndarray) -> None:
    """Save a volume as gzipped NIfTI with a 1 mm isotropic affine, atomically.

    nibabel picks compression from the file name and stamps gzip headers with the clock, so
    the image is serialised to bytes and gzipped here with a fixed time: same data, same bytes.
    """
    image = nib.Nifti1Image(volume, np.eye(4))
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(np.eye(4), code=1)
    image.set_sform(np.eye(4), code=1)
    data = gzip.compress(image.to_bytes(), compresslevel=6, mtime=0)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def _case_files(naming: str, index: int) -> tuple[str, dict[str, str]]:
    """Case folder name and the file name of each of t1, t1ce, t2, flair, seg (and brainmask)."""
    if naming == "2013":
        case = f"brats_2013_syn{index:04d}_1"
        files = {m: f"{m.upper()}_subtrMeanDivStd.nii.gz" for m in ("t1", "t2")}
        files |= {"t1ce": "T1c_subtrMeanDivStd.nii.gz", "flair": "Flair_subtrMeanDivStd.nii.gz"}
        return case, files | {"seg": "OTMultiClass.nii.gz", "brainmask": "brainmask.nii.gz"}
    if naming == "2023":
        case = f"BraTS-SYN-{index:05d}-000"
        tags = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"}
        return case, {k: f"{case}-{t}.nii.gz" for k, t in tags.items()}
    case = f"BraTS2021_SYN_{index:04d}"
    return case, {k: f"{case}_{k}.nii.gz" for k in ("t1", "t1ce", "t2", "flair", "seg")}


def write_brats_dataset(
    out: Path,
    n_cases: int = 6,
    shape: tuple[int, int, int] = (64, 64, 48),
    seed: int = 0,
    naming: str = "2021",
) -> Path:
    """Write ``n_cases`` multimodal cases (t1, t1ce, t2, flair + labels) as NIfTI under ``out``.

    ``naming`` picks the file names of a BraTS release:

    - ``"2021"``: ``BraTS2021_SYN_0000/BraTS2021_SYN_0000_{t1,t1ce,t2,flair,seg}.nii.gz``,
      labels 1 necrotic core, 2 oedema, 4 enhancing;
    - ``"2023"``: ``BraTS-SYN-00000-000/BraTS-SYN-00000-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``,
      enhancing tumour labelled 3, as in the 2023 release;
    - ``"2013"``: ``brats_2013_syn0000_1/{T1,T1c,T2,Flair}_subtrMeanDivStd.nii.gz``,
      ``OTMultiClass.nii.gz`` and ``brainmask.nii.gz``, intensities scaled to zero mean and
      unit variance inside the brain, as in the DeepMedic copy of BraTS 2013.

    Images are float32, labels uint8, voxels 1 mm. Returns ``out``.
    """
    _check_count("n_cases", n_cases)
    if naming not in NAMINGS:
        raise DataError(f"unknown BraTS naming {naming!r}; expected one of {NAMINGS}")
    out = Path(out)
    for i in range(n_cases):
        phantom = render_case(shape, np.random.default_rng([seed, 21, i]))
        case, files = _case_files(naming, i)
        labels = phantom.labels.copy()
        if naming == "2023":
            labels[labels == 4] = 3
        for modality, volume in phantom.images.items():
            if naming == "2013":
                inside = volume[phantom.brain]
                volume = ((volume - inside.mean()) / inside.std()).astype(np.float32)
            _write_nifti(out / case / files[modality], volume)
        _write_nifti(out / case / files["seg"], labels)
        if "brainmask" in files:
            _write_nifti(out / case / files["brainmask"], phantom.brain.astype(np.uint8))
    return out


def write_synthetic_dataset(
    out: Path,
    task: str,
    n: int | None = None,
    size: int | None = None,
    seed: int = 0,
    splits: bool = False,
) -> Path:
    """Write a synthetic dataset for ``task`` (classify, segment or brats) under ``out``.

    ``n`` is images per class (classify, default 40), image/mask pairs (segment, default 60)
    or cases (brats, default 6). ``size`` is the slice side (default 128); for brats the volume
    is ``size x size x 3/4 size`` (default 64 x 64 x 48). ``splits`` adds Training/Testing
    folders for classify. Returns ``out``.
    """
    if task not in TASKS:
        raise DataError(f"unknown synthetic task {task!r}; expected one of {TASKS}")
    if size is not None and size < 32:
        raise DataError(f"synthetic dataset: size must be at least 32, got {size}")
    if task == CLASSIFY_DATA:
        return write_classification_dataset(out, n or 40, size or 128, seed, splits=splits)
    if task == SEGMENT_DATA:
        return write_segmentation_dataset(out, n or 60, size or 128, seed)
    shape = (size, size, size * 3 // 4) if size else (64, 64, 48)
    return write_brats_dataset(out, n or 6, shape, seed)
