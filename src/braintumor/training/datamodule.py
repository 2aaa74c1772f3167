"""Datasets over decoded slices, fetched a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import lightning as L
import numpy as np
import torch
from skimage.exposure import match_histograms
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from braintumor.data.cache import DecodedSlices
from braintumor.data.samples import Sample
from braintumor.training.volume_dice import NO_GROUP


class SliceDataset(Dataset):
    """Decoded uint8 slices with labels or masks, and optionally a patient index per slice.

    Defines ``__getitems__`` so the DataLoader fetches a whole batch with one fancy index into
    the (memory-mapped) array instead of one Python call per image. ``groups`` (see
    :func:`group_indices`) adds ``"group"`` to each batch.
    """

    def __init__(
        self,
        decoded: DecodedSlices,
        labels: np.ndarray | None = None,
        histogram_match: float = 0.0,
        seed: int = 0,
        jpeg: float = 0.0,
        jpeg_quality: tuple[int, int] = (30, 95),
        groups: np.ndarray | None = None,
    ) -> None:
        self.images = decoded.images
        self.masks = decoded.masks
        self.labels = labels
        self.groups = groups
        self.histogram_match = histogram_match
        self.jpeg = jpeg
        self.jpeg_quality = jpeg_quality
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def _match_histograms(self, images: np.ndarray) -> np.ndarray:
        """System 004's augmentation: match an image's histogram to another training image's."""
        chosen = np.flatnonzero(self.rng.random(len(images)) < self.histogram_match)
        if len(chosen) == 0:
            return images
        images = images.copy()
        references = self.rng.integers(0, len(self.images), len(chosen))
        for i, ref in zip(chosen, references, strict=True):
            matched = match_histograms(images[i], np.asarray(self.images[ref]), channel_axis=0)
            images[i] = np.clip(matched, 0, 255).astype(np.uint8)
        return images

    def _reencode_jpeg(self, images: np.ndarray) -> np.ndarray:
        """Re-encode a random share of the uint8 (N, C, S, S) slices as JPEG at a random
        quality: the blocks and ringing of JPEG exports. One image per call (OpenCV)."""
        chosen = np.flatnonzero(self.rng.random(len(images)) < self.jpeg)
        if len(chosen) == 0:
            return images
        images = images.copy()
        low, high = self.jpeg_quality
        for i in chosen:
            quality = int(self.rng.integers(low, high + 1))
            plane = images[i].transpose(1, 2, 0)
            ok, data = cv2.imencode(".jpg", plane, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                decoded = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
                images[i] = decoded.reshape(plane.shape).transpose(2, 0, 1)
        return images

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        order = np.asarray(indices)
        images = np.asarray(self.images[np.sort(order)])[np.argsort(np.argsort(order))]
        if self.histogram_match:
            images = self._match_histograms(images)
        if self.jpeg:
            images = self._reencode_jpeg(images)
        batch = {"image": torch.from_numpy(images)}
        if self.labels is not None:
            batch["label"] = torch.from_numpy(self.labels[order]).long()
        if self.groups is not None:
            batch["group"] = torch.from_numpy(self.groups[order]).long()
        if self.masks is not None:
            masks = np.asarray(self.masks[np.sort(order)])[np.argsort(np.argsort(order))]
            batch["mask"] = torch.from_numpy(masks)
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([index])
        return {key: value[0] for key, value in batch.items()}


def group_indices(samples: Sequence[Sample]) -> np.ndarray:
    """A patient index per sample (in order of first appearance), ``NO_GROUP`` for samples
    without a patient id: the ``groups`` of a validation :class:`SliceDataset`."""
    index: dict[str, int] = {}
    return np.array(
        [NO_GROUP if s.group is None else index.setdefault(s.group, len(index)) for s in samples],
        dtype=np.int64,
    )


def tumour_weights(masks: np.ndarray, positive_fraction: float) -> np.ndarray:
    """Sampling weights that draw slices showing tumour ``positive_fraction`` of the time.

    LGG stacks are two-thirds empty slices; uniform draws spend most steps on them. Returns
    uniform weights when the masks are all empty or all positive.
    """
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(f"positive_fraction must lie in (0, 1), got {positive_fraction}")
    positive = np.asarray(masks).reshape(len(masks), -1).any(axis=1)
    n_pos = int(positive.sum())
    if n_pos in (0, len(positive)):
        return np.ones(len(positive))
    return np.where(
        positive, positive_fraction / n_pos, (1.0 - positive_fraction) / (len(positive) - n_pos)
    )


def _keep_batch(batch: Any) -> Any:
    """``__getitems__`` already returns a collated batch."""
    return batch


class SliceDataModule(L.LightningDataModule):
    """Train/val(/test) loaders over decoded slices."""

    def __init__(
        self,
        train: SliceDataset,
        val: SliceDataset,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        train_weights: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.train_set, self.val_set = train, val
        # Per-sample draw weights (data/balance.py); None draws a plain shuffle.
        self.train_weights = train_weights
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed

    def _loader(
        self, dataset: SliceDataset, shuffle: bool, weights: np.ndarray | None = None
    ) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        sampler = None
        if weights is not None:
            sampler = WeightedRandomSampler(
                torch.as_tensor(weights, dtype=torch.double),
                num_samples=len(dataset),
                replacement=True,
                generator=generator,
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            drop_last=shuffle and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_keep_batch,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True, weights=self.train_weights)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
