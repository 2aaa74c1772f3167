"""Batched augmentation on the training device.

Per-item PIL transforms cost more than the network on a small CPU model, so augmentation runs
once per batch as tensor ops: one random affine per image (rotation, shift, zoom, shear, flips)
applied with a single ``grid_sample`` to the image (bilinear) and its mask (nearest), then
intensity jitter. torchvision.transforms.v2 and kornia both transform a batch with one shared
parameter set or loop per item; a per-item affine over a batch in one call is not in either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Ranges of the random transforms; zero disables one. Angles in degrees."""

    hflip: float = 0.5
    vflip: float = 0.0
    rotate: float = 0.0
    translate: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0
    noise: float = 0.0
    histogram_match: float = 0.0  # probability; applied per item by the dataset (needs numpy)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Build from a recipe's ``augment`` mapping, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            from braintumor.errors import RecipeError

            raise RecipeError(f"unknown augment keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    @property
    def has_geometry(self) -> bool:
        """Whether any spatial transform is enabled."""
        return any((self.hflip, self.vflip, self.rotate, self.translate, self.zoom, self.shear))


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def random_affine(n: int, cfg: AugmentConfig, device: torch.device) -> torch.Tensor:
    """(n, 2, 3) matrices in affine_grid's normalised coordinates."""
    angle = _uniform(n, -cfg.rotate, cfg.rotate, device) * (math.pi / 180)
    shear = _uniform(n, -cfg.shear, cfg.shear, device) * (math.pi / 180)
    scale = _uniform(n, 1 - cfg.zoom, 1 + cfg.zoom, device)
    flip_x = torch.where(torch.rand(n, device=device) < cfg.hflip, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, device=device) < cfg.vflip, -1.0, 1.0)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # Sampling grid = inverse map; dividing by scale zooms in for scale > 1.
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = (cos - sin * tan) * flip_x / scale
    theta[:, 0, 1] = -sin / scale
    theta[:, 1, 0] = (sin + cos * tan) * flip_y / scale
    theta[:, 1, 1] = cos / scale
    theta[:, 0, 2] = _uniform(n, -2 * cfg.translate, 2 * cfg.translate, device)
    theta[:, 1, 2] = _uniform(n, -2 * cfg.translate, 2 * cfg.translate, device)
    return theta


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float images in [0, 1] (B, C, H, W) and optional masks (B, K, H, W) -> augmented."""
    if cfg.has_geometry:
        theta = random_affine(images.shape[0], cfg, images.device)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        if masks is not None:
            masks = F.grid_sample(masks.float(), grid, mode="nearest", align_corners=False)
    n = images.shape[0]
    shape = (n, 1, 1, 1)
    if cfg.brightness:
        images = images * _uniform(n, 1 - cfg.brightness, 1 + cfg.brightness, images.device).view(
            shape
        )
    if cfg.contrast:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        factor = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, images.device).view(shape)
        images = (images - mean) * factor + mean
    images = images.clamp(0, 1)
    if cfg.gamma:
        images = images.pow(
            torch.exp(_uniform(n, -cfg.gamma, cfg.gamma, images.device)).view(shape)
        )
    if cfg.noise:
        images = (images + torch.randn_like(images) * cfg.noise).clamp(0, 1)
    return images, masks
