"""2D mode (system 002): axial slices of the modality stack, modalities as channels.

Slices come from cached, cropped cases (memory-mapped, so a dataset of hundreds of cases needs
little memory); each slice is padded to a square and resized to ``image_size`` on the fly.
Training keeps the slices whose tumour area reaches ``min_tumour_pixels`` (dropping the tiny
top and bottom tumour slices) plus a share ``empty_slice_fraction`` of the tumour-free slices
that hold brain.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from monai.data import DataLoader
from monai.transforms import RandScaleIntensityd, RandShiftIntensityd
from torch.utils.data import Dataset

from braintumor.brats.labels import target_channels
from braintumor.brats.preprocess import BratsPreprocess, CachedCase, cache_case
from braintumor.data.samples import Sample
from braintumor.errors import DataError, RecipeError
from braintumor.training.augment import AugmentConfig, random_affine

AUGMENT_KEYS = ("flip", "rotate", "intensity_scale", "intensity_shift")


def check_augment(augment: dict[str, Any]) -> dict[str, float]:
    """The recipe's BraTS augmentation settings, with unknown keys rejected.

    ``flip``: probability of a flip per axis; ``rotate``: in-plane rotation range in degrees
    (2D only); ``intensity_scale`` / ``intensity_shift``: ranges of the random intensity scale
    and shift (MONAI RandScaleIntensity / RandShiftIntensity, on z-scored values).
    """
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise RecipeError(f"unknown BraTS augment keys {unknown}; known: {list(AUGMENT_KEYS)}")
    return {key: float(augment.get(key, 0.0)) for key in AUGMENT_KEYS}


def intensity_transforms(aug: dict[str, float]) -> list:
    """MONAI random intensity scale/shift on the image, as configured."""
    out: list = []
    if aug["intensity_scale"]:
        out.append(RandScaleIntensityd(keys="image", factors=aug["intensity_scale"], prob=1.0))
    if aug["intensity_shift"]:
        out.append(RandShiftIntensityd(keys="image", offsets=aug["intensity_shift"], prob=1.0))
    return out


def select_slices(
    labels: np.ndarray,
    brain: np.ndarray,
    min_tumour_pixels: int,
    empty_fraction: float,
    rng: np.random.Generator,
) -> tuple[list[int], list[int]]:
    """Axial slice indices to keep: (tumour slices, tumour-free brain slices).

    Tumour slices have at least ``min_tumour_pixels`` tumour pixels (in the working grid);
    slices with fewer but some tumour are dropped. Of the slices without tumour whose brain area
    reaches ``min_tumour_pixels``, a random share ``empty_fraction`` is kept.
    """
    if not 0.0 <= empty_fraction <= 1.0:
        raise DataError(f"BraTS slices: empty_slice_fraction {empty_fraction} is not in [0, 1]")
    tumour = (labels > 0).sum(axis=(0, 1))
    brain_area = brain.sum(axis=(0, 1))
    keep = [int(z) for z in np.flatnonzero(tumour >= max(1, min_tumour_pixels))]
    empty = np.flatnonzero((tumour == 0) & (brain_area >= max(1, min_tumour_pixels)))
    n_empty = round(empty_fraction * len(empty))
    chosen = sorted(int(z) for z in rng.permutation(empty)[:n_empty])
    return keep, chosen


def to_plane(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """(N, C, X, Y) slices -> (N, C, size, size): zero-pad to a centred square, then resize."""
    n_x, n_y = x.shape[-2:]
    side = max(n_x, n_y)
    px, py = side - n_x, side - n_y
    x = F.pad(x, (py // 2, py - py // 2, px // 2, px - px // 2))
    if side == size:
        return x
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x, size=(size, size), mode=mode, **kwargs)


def from_plane(y: torch.Tensor, shape: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Inverse of :func:`to_plane`: (N, K, size, size) -> (N, K, X, Y)."""
    n_x, n_y = shape
    side = max(n_x, n_y)
    if y.shape[-1] != side:
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        y = F.interpolate(y, size=(side, side), mode=mode, **kwargs)
    x0, y0 = (side - n_x) // 2, (side - n_y) // 2
    return y[..., x0 : x0 + n_x, y0 : y0 + n_y]


def augment_slices(
    batch: dict[str, torch.Tensor], aug: dict[str, float]
) -> dict[str, torch.Tensor]:
    """Random flips, rotation and intensity scale/shift of a batch of slices and their targets.

    One random affine per slice (:func:`~braintumor.training.augment.random_affine`), applied
    with a single ``grid_sample`` to the images (bilinear) and targets (nearest): per-item
    MONAI transforms cost more than a small network on a CPU. Pixels rotated in from outside
    are 0, the background value of z-scored brains.
    """
    images, masks = batch["image"], batch["mask"]
    n, device = images.shape[0], images.device
    cfg = AugmentConfig(hflip=aug["flip"], vflip=aug["flip"], rotate=aug["rotate"])
    if cfg.has_geometry:
        grid = F.affine_grid(random_affine(n, cfg, device), list(images.shape), align_corners=False)
        images = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        masks = F.grid_sample(masks, grid, mode="nearest", align_corners=False)
    shape = (n, images.shape[1], 1, 1)
    if aug["intensity_scale"]:
        s = aug["intensity_scale"]
        images = images * torch.empty(shape, device=device).uniform_(1 - s, 1 + s)
    if aug["intensity_shift"]:
        o = aug["intensity_shift"]
        images = images + torch.empty(shape, device=device).uniform_(-o, o)
    return {**batch, "image": images, "mask": masks}


class CaseSliceDataset(Dataset):
    """Axial slices ``(case, z)`` of cached cases as ``{"image": (C,S,S), "mask": (K,S,S)}``.

    Not :class:`braintumor.training.datamodule.SliceDataset`: that one indexes one uint8 array
    of slices prepared once; a case here is a folder of memory-mapped float modalities and
    labels (``brats/preprocess.py``), each slice cut and resized when it is read, the way the
    3D patches are cut from the same files (``brats/patches.py``).
    """

    def __init__(
        self,
        cases: list[CachedCase],
        index: list[tuple[int, int]],
        image_size: int,
        label_mode: str,
    ) -> None:
        self.cases, self.index = cases, index
        self.image_size, self.label_mode = image_size, label_mode

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        case_i, z = self.index[i]
        case = self.cases[case_i]
        image = torch.from_numpy(np.array(case.image()[..., z], dtype=np.float32))
        labels = case.labels()
        if labels is None:
            raise DataError(f"case {case.id}: no label map to train on")
        label = torch.from_numpy(np.array(labels[..., z], dtype=np.float32))
        image = to_plane(image[None], self.image_size, "bilinear")[0]
        label = to_plane(label[None, None], self.image_size, "nearest-exact")[0]
        return {"image": image.float(), "mask": target_channels(label, self.label_mode)}


def cache_split(
    samples: list[Sample], settings: BratsPreprocess, cache_dir: str, split: str
) -> list[CachedCase]:
    """Cache every case of a split; a case without a label map is a DataError."""
    out = []
    for sample in samples:
        if not sample.mask:
            raise DataError(f"{sample.image}: case {sample.id} in the {split} split has no labels")
        out.append(cache_case(sample, settings, cache_dir))
    return out


class BratsSliceDataModule(L.LightningDataModule):
    """Train/val/test slice datasets from the ``splits`` dict (``train``, ``val``, ``test``)."""

    def __init__(
        self,
        splits: dict[str, list[Sample]],
        settings: BratsPreprocess,
        cache_dir: str,
        image_size: int,
        label_mode: str,
        batch_size: int,
        min_tumour_pixels: int = 50,
        empty_slice_fraction: float = 0.1,
        augment: dict[str, Any] | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.splits, self.settings, self.cache_dir = splits, settings, cache_dir
        self.image_size, self.label_mode = image_size, label_mode
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.min_tumour_pixels, self.empty_slice_fraction = min_tumour_pixels, empty_slice_fraction
        self.augment = check_augment(augment or {})
        self.datasets: dict[str, CaseSliceDataset] = {}
        self.statistics: dict[str, Any] = {}

    def prepare_data(self) -> None:
        """Preprocess and cache every case once (later runs only read the cache)."""
        for split, samples in self.splits.items():
            cache_split(samples, self.settings, self.cache_dir, split)

    def _index(self, cases: list[CachedCase], split: str) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, len(split)])
        index: list[tuple[int, int]] = []
        counts = np.zeros(4, dtype=np.int64)
        n_tumour = n_empty = 0
        for ci, case in enumerate(cases):
            labels, brain = np.asarray(case.labels()), np.asarray(case.brain())
            keep, empty = select_slices(
                labels, brain, self.min_tumour_pixels, self.empty_slice_fraction, rng
            )
            zs = sorted(keep + empty)
            index += [(ci, z) for z in zs]
            n_tumour, n_empty = n_tumour + len(keep), n_empty + len(empty)
            if zs:
                counts += np.bincount(labels[..., zs].ravel(), minlength=4)[:4]
        # Class pixel statistics of the kept slices (system 002 reports them).
        self.statistics[split] = {
            "cases": len(cases),
            "slices": len(index),
            "tumour_slices": n_tumour,
            "empty_slices": n_empty,
            "label_pixels": dict(
                zip(("background", "necrosis", "oedema", "enhancing"), counts.tolist(), strict=True)
            ),
        }
        return index

    def setup(self, stage: str | None = None) -> None:
        """Build the slice datasets of every split present."""
        for split, samples in self.splits.items():
            if split in self.datasets or not samples:
                continue
            cases = cache_split(samples, self.settings, self.cache_dir, split)
            self.datasets[split] = CaseSliceDataset(
                cases,
                self._index(cases, split),
                self.image_size,
                self.label_mode,
            )

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Augment training batches on the training device, one transform per slice."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            batch = augment_slices(batch, self.augment)
        return batch

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise DataError(f"BraTS slices: the {split} split is empty")
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
