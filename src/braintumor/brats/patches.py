"""3D mode: random patches of cached cases for training, whole cases for validation.

Training draws ``samples_per_case`` patches per case and epoch with MONAI's
``RandCropByPosNegLabeld`` (tumour-centred and background-centred patches in the ratio
``pos_fraction``), then random flips along every axis and intensity scale/shift. Validation
feeds each whole cropped case; the module runs it through a Gaussian-weighted
``SlidingWindowInferer`` (see :func:`sliding_window_inferer`).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from monai.data import DataLoader
from monai.inferers import SlidingWindowInferer
from monai.transforms import Compose, RandCropByPosNegLabeld, RandFlipd, SpatialPadd
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset

from braintumor.brats.labels import target_channels
from braintumor.brats.preprocess import BratsPreprocess, CachedCase
from braintumor.brats.slices import cache_split, check_augment, intensity_transforms
from braintumor.data.samples import Sample
from braintumor.errors import DataError


def sliding_window_inferer(
    patch_size: list[int], overlap: float = 0.5, sw_batch_size: int = 2
) -> SlidingWindowInferer:
    """MONAI sliding window over whole volumes, Gaussian-weighted where windows overlap."""
    if not 0.0 <= overlap < 1.0:
        raise DataError(f"BraTS: sliding-window overlap must be in [0, 1), got {overlap}")
    return SlidingWindowInferer(
        roi_size=tuple(patch_size), sw_batch_size=sw_batch_size, overlap=overlap, mode="gaussian"
    )


class PatchDataset(Dataset):
    """``samples_per_case`` random patches per case: ``{"image": (C,P,P,P), "mask": (K,...)}``."""

    def __init__(
        self,
        cases: list[CachedCase],
        patch_size: list[int],
        label_mode: str,
        samples_per_case: int,
        augment: dict[str, float],
        pos_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.cases, self.label_mode = cases, label_mode
        self.samples_per_case = samples_per_case
        keys = ["image", "label"]
        steps: list = [
            SpatialPadd(keys=keys, spatial_size=patch_size),
            RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=patch_size,
                pos=pos_fraction,
                neg=1.0 - pos_fraction,
                num_samples=1,
                image_key="image",
                image_threshold=0,
                allow_smaller=True,
            ),
        ]
        if augment["flip"]:
            steps += [RandFlipd(keys=keys, prob=augment["flip"], spatial_axis=a) for a in range(3)]
        steps += intensity_transforms(augment)
        self.transform = Compose(steps)
        self.transform.set_random_state(seed=seed)

    def __len__(self) -> int:
        return len(self.cases) * self.samples_per_case

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        case = self.cases[i % len(self.cases)]
        labels = case.labels()
        if labels is None:
            raise DataError(f"case {case.id}: no label map to train on")
        data = {
            "image": np.array(case.image(), dtype=np.float32),
            "label": np.array(labels, dtype=np.float32)[None],
        }
        out = self.transform(data)
        out = out[0] if isinstance(out, list) else out
        image = convert_to_tensor(out["image"], track_meta=False).float()
        label = convert_to_tensor(out["label"], track_meta=False)
        return {"image": image, "mask": target_channels(label.round(), self.label_mode)}


class VolumeDataset(Dataset):
    """Whole cropped cases, for sliding-window validation (batch size 1)."""

    def __init__(self, cases: list[CachedCase], label_mode: str) -> None:
        self.cases, self.label_mode = cases, label_mode

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        case = self.cases[i]
        labels = case.labels()
        if labels is None:
            raise DataError(f"case {case.id}: no label map to validate on")
        image = torch.from_numpy(np.array(case.image(), dtype=np.float32))
        label = torch.from_numpy(np.array(labels, dtype=np.int64))
        return {"image": image, "mask": target_channels(label, self.label_mode)}


class BratsPatchDataModule(L.LightningDataModule):
    """3D patches for training, whole cases for validation and test."""

    def __init__(
        self,
        splits: dict[str, list[Sample]],
        settings: BratsPreprocess,
        cache_dir: str,
        patch_size: list[int],
        label_mode: str,
        batch_size: int,
        samples_per_case: int = 4,
        pos_fraction: float = 0.5,
        augment: dict[str, Any] | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(patch_size) != 3 or min(patch_size) < 8:
            raise DataError(f"BraTS: patch_size must be three sizes >= 8, got {patch_size}")
        if not 0.0 <= pos_fraction <= 1.0:
            raise DataError(f"BraTS: pos_fraction {pos_fraction} is not in [0, 1]")
        self.splits, self.settings, self.cache_dir = splits, settings, cache_dir
        self.patch_size, self.label_mode = list(patch_size), label_mode
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.samples_per_case, self.pos_fraction = samples_per_case, pos_fraction
        self.augment = check_augment(augment or {})
        self.datasets: dict[str, Dataset] = {}

    def prepare_data(self) -> None:
        """Preprocess and cache every case once."""
        for split, samples in self.splits.items():
            cache_split(samples, self.settings, self.cache_dir, split)

    def setup(self, stage: str | None = None) -> None:
        """Patch dataset for ``train``; whole-volume datasets for the other splits."""
        for split, samples in self.splits.items():
            if split in self.datasets or not samples:
                continue
            cases = cache_split(samples, self.settings, self.cache_dir, split)
            if split == "train":
                self.datasets[split] = PatchDataset(
                    cases,
                    self.patch_size,
                    self.label_mode,
                    self.samples_per_case,
                    self.augment,
                    self.pos_fraction,
                    self.seed,
                )
            else:
                self.datasets[split] = VolumeDataset(cases, self.label_mode)

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        if split not in self.datasets:
            raise DataError(f"BraTS patches: the {split} split is empty")
        return DataLoader(
            self.datasets[split],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        # Whole cases differ in shape, so they go one at a time.
        return self._loader("val", False, 1)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, 1)
