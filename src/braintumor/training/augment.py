"""Batched augmentation on the training device.

Per-item PIL transforms cost more than the network on a small CPU model, so augmentation runs
once per batch as tensor ops: one random affine per image (rotation, shift, zoom, shear, flips)
applied with a single ``grid_sample`` to the image (bilinear) and its mask (nearest), composed
with a narrower field of view when ``fov_cut`` asks for it, then intensity jitter.
torchvision.transforms.v2 and kornia both transform a batch with one shared parameter set or
loop per item; a per-item affine over a batch in one call is not in either.

The export-invariance families follow MONAI's intensity transforms (``RandAdjustContrast``,
``RandHistogramShift``, ``RandBiasField``, ``RandGaussianNoise``, ``RandGaussianSmooth`` /
``RandGaussianSharpen``) and a down-and-up resample, but draw one parameter set per image of
the batch in a single tensor expression: MONAI's transforms take one image per call, which
costs more than the network here. JPEG re-encoding cannot be batched; the dataset does it
per image (:mod:`braintumor.training.datamodule`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from braintumor.errors import RecipeError


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
    histogram_shift: float = 0.0  # probability of a random monotone intensity curve
    # Probability of a random non-monotone curve that reorders the tissues' grey levels as
    # another MRI sequence would (needs preprocess.intensity: equalize; see sequence_contrast).
    sequence_contrast: float = 0.0
    bias_field: float = 0.0  # largest coefficient of a smooth multiplicative field
    sharpen: float = 0.0  # unsharp-mask amount in [-sharpen, sharpen]; below 0 smooths
    resample: float = 0.0  # probability of a down-and-up resample by 1.5-3x
    jpeg: float = 0.0  # probability; JPEG re-encoding per item by the dataset
    jpeg_quality: tuple[int, int] = (30, 95)
    # Probability that a slice is re-framed as an export with a narrower field of view would be
    # after the crop to the head: each side cut by up to ``fov_cut_fraction`` of the frame.
    fov_cut: float = 0.0
    fov_cut_fraction: float = 0.12
    # Classifiers only (training/mixing.py): Beta alphas of mixup and CutMix; zero disables one.
    mixup: float = 0.0
    cutmix: float = 0.0
    # Classifiers only (training/consistency.py): weight of the Jensen-Shannon divergence between
    # two augmented views of each slice; zero trains on one view.
    consistency: float = 0.0
    # Multi-sequence inputs only: the probability that each other channel is replaced by the
    # channel ``missing_sequence_fill`` (LGG's kaggle_3m stores FLAIR where a sequence was not
    # acquired, so some patients arrive with two or three identical channels).
    missing_sequence: float = 0.0
    missing_sequence_fill: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.fov_cut_fraction < 0.5:
            raise RecipeError(
                f"augment.fov_cut_fraction must be in [0, 0.5), got {self.fov_cut_fraction}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Build from a recipe's ``augment`` mapping, rejecting unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RecipeError(f"unknown augment keys {unknown}; known: {sorted(known)}")
        if "jpeg_quality" in data:
            data = {**data, "jpeg_quality": tuple(int(q) for q in data["jpeg_quality"])}
        return cls(**data)

    @property
    def has_geometry(self) -> bool:
        """Whether any spatial transform is enabled."""
        geometry = (self.hflip, self.vflip, self.rotate, self.translate, self.zoom, self.shear)
        return any(geometry) or bool(self.fov_cut)


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


def narrow_field_of_view(
    theta: torch.Tensor, probability: float, fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose ``theta`` (n, 2, 3) with a cut of the field of view: ``(theta', box)``.

    An export that frames the head tightly loses the head's edges, and the crop to the head
    (``preprocess.brain_crop``) then pads what is left to a square and fills the frame with it:
    the slice arrives cut and enlarged. For each chosen slice every side is cut by U(0,
    ``fraction``) of the frame and the remaining box re-framed the same way (its longer side
    filling the frame, centred). ``box`` (n, 4) holds x0, x1, y0, y1 in ``affine_grid``
    coordinates; sampled points outside it are the cut-away part, to be set to 0. Slices not
    chosen keep the whole frame.
    """
    n, device = theta.shape[0], theta.device
    cuts = _uniform(4 * n, 0.0, 2 * fraction, device).view(n, 4)
    cuts[torch.rand(n, device=device) >= probability] = 0.0
    box = torch.stack((-1 + cuts[:, 0], 1 - cuts[:, 1], -1 + cuts[:, 2], 1 - cuts[:, 3]), dim=1)
    half_side = torch.maximum(box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]) / 2
    centre = torch.stack(((box[:, 0] + box[:, 1]) / 2, (box[:, 2] + box[:, 3]) / 2), dim=1)
    # Output point u -> v = A u + t (the random affine) -> centre + half_side * v.
    framed = theta * half_side.view(n, 1, 1)
    framed[:, :, 2] += centre
    return framed, box


def _inside(grid: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """(n, 1, H, W) float: 1 where the sampling ``grid`` (n, H, W, 2) falls inside ``box``."""
    x, y = grid[..., 0], grid[..., 1]
    b = box.view(-1, 4, 1, 1)
    keep = (x >= b[:, 0]) & (x <= b[:, 1]) & (y >= b[:, 2]) & (y <= b[:, 3])
    return keep.unsqueeze(1).to(grid.dtype)


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor | None, cfg: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Float images in [0, 1] (B, C, H, W) and optional masks (B, K, H, W) -> augmented."""
    if cfg.has_geometry:
        theta = random_affine(images.shape[0], cfg, images.device)
        box = None
        if cfg.fov_cut:
            theta, box = narrow_field_of_view(theta, cfg.fov_cut, cfg.fov_cut_fraction)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        if masks is not None:
            masks = F.grid_sample(masks.float(), grid, mode="nearest", align_corners=False)
        if box is not None:
            inside = _inside(grid, box)
            images = images * inside
            masks = None if masks is None else masks * inside
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
    # Before the export perturbations: an export changes whatever sequence the slice is.
    if cfg.sequence_contrast:
        images = sequence_contrast(images, cfg.sequence_contrast)
    if cfg.gamma:
        images = images.pow(
            torch.exp(_uniform(n, -cfg.gamma, cfg.gamma, images.device)).view(shape)
        )
    if cfg.histogram_shift:
        images = histogram_shift(images, cfg.histogram_shift)
    if cfg.bias_field:
        images = bias_field(images, cfg.bias_field)
    if cfg.sharpen:
        images = sharpen(images, cfg.sharpen)
    if cfg.resample:
        images = resample(images, cfg.resample)
    if cfg.noise:
        images = (images + torch.randn_like(images) * cfg.noise).clamp(0, 1)
    if cfg.missing_sequence:
        images = missing_sequence(images, cfg.missing_sequence, cfg.missing_sequence_fill)
    return images, masks


def _chosen(n: int, probability: float, device: torch.device) -> torch.Tensor:
    """Indices of the images of the batch a transform applies to, drawn with ``probability``."""
    return torch.nonzero(torch.rand(n, device=device) < probability).flatten()


def _through_knots(knots: torch.Tensor, size: int) -> torch.Tensor:
    """(n, k) knot heights, evenly spaced, -> (n, size) curve, linear between the knots."""
    return F.interpolate(knots[:, None], size=size, mode="linear", align_corners=True)[:, 0]


def _look_up(images: torch.Tensor, chosen: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The chosen images' grey levels replaced through their (n_chosen, 256) tables."""
    n = len(chosen)
    index = (images[chosen].reshape(n, -1) * 255).round().long()
    out = images.clone()
    out[chosen] = torch.gather(table, 1, index).view_as(images[chosen])
    return out


def histogram_shift(images: torch.Tensor, probability: float, points: int = 8) -> torch.Tensor:
    """A random monotone piecewise-linear grey-level curve per chosen image, 0 and 1 fixed.

    As MONAI's ``RandHistogramShift``: the interior control points move to sorted random
    levels, here blended with the identity by a random share so that mild curves are common.
    The curve is tabulated at 256 levels and looked up, one gather for the batch.
    """
    chosen = _chosen(images.shape[0], probability, images.device)
    if len(chosen) == 0:
        return images
    n, device = len(chosen), images.device
    xs = torch.linspace(0, 1, points, device=device)
    moved = torch.sort(torch.rand(n, points - 2, device=device), dim=1).values
    ys = xs.expand(n, -1).clone()
    share = torch.rand(n, 1, device=device)
    ys[:, 1:-1] = (1 - share) * ys[:, 1:-1] + share * moved
    return _look_up(images, chosen, _through_knots(ys, 256))


def sequence_contrast(images: torch.Tensor, probability: float, knots: int = 4) -> torch.Tensor:
    """A random non-monotone grey-level curve per chosen image, then re-equalised.

    Between T1, T2 and FLAIR the tissues change the order of their grey levels (fluid dark on
    one, bright on another). Histogram equalisation at preprocessing removes any monotone
    change of the levels but not a change of their order, so a model trained on one sequence
    meets that change unprepared. The curve runs through ``knots`` levels, random ones blended
    with the identity's by a random share (linear between them, so up to ``knots - 1`` rising
    or falling stretches); each head level is then replaced by its rank under the curve, which
    keeps an equalised slice equalised (its head levels are near uniform), as the preprocessing
    would leave the new sequence. Level 0, the air outside the head, stays 0. MONAI's
    ``RandIntensityRemap`` draws a non-monotone curve too, one image per call and without the
    re-equalisation; this draws one per image in a batched lookup.
    """
    chosen = _chosen(images.shape[0], probability, images.device)
    if len(chosen) == 0:
        return images
    n, device = len(chosen), images.device
    # blended with the identity by a random share, so that mild reorderings are common
    share = torch.rand(n, 1, device=device)
    heights = (1 - share) * torch.linspace(0, 1, knots, device=device) + share * torch.rand(
        n, knots, device=device
    )
    curve = _through_knots(heights, 255)  # head levels 1..255
    ranks = curve.argsort(dim=1).argsort(dim=1).to(images.dtype)
    table = torch.cat([ranks.new_zeros(n, 1), (ranks + 1) / 255], dim=1)  # (n, 256)
    return _look_up(images, chosen, table)


def _legendre_basis(size: int, degree: int, device: torch.device) -> torch.Tensor:
    """(terms, size, size) products P_i(y) P_j(x) of Legendre polynomials, 0 < i + j <= degree."""
    coords = torch.linspace(-1, 1, size, device=device)
    legendre = [torch.ones_like(coords), coords]
    for k in range(1, degree):
        legendre.append(((2 * k + 1) * coords * legendre[k] - k * legendre[k - 1]) / (k + 1))
    terms = [
        legendre[i][:, None] * legendre[j][None, :]
        for i in range(degree + 1)
        for j in range(degree + 1 - i)
        if i + j > 0
    ]
    return torch.stack(terms)


def bias_field(images: torch.Tensor, strength: float, degree: int = 3) -> torch.Tensor:
    """Multiply each image by exp(a smooth random polynomial field), MONAI's ``RandBiasField``
    (Legendre basis of degree 3, coefficients uniform in [-strength, strength])."""
    n, _, height, width = images.shape
    basis = _legendre_basis(max(height, width), degree, images.device)[:, :height, :width]
    coeffs = _uniform(n * basis.shape[0], -strength, strength, images.device).view(n, -1)
    field = torch.exp(torch.einsum("nt,thw->nhw", coeffs, basis)).unsqueeze(1)
    return (images * field).clamp(0, 1)


def sharpen(images: torch.Tensor, amount: float) -> torch.Tensor:
    """Unsharp masking with a random amount per image in [-amount, amount]: negative values
    blend towards a 3x3 box blur (smoothing), positive ones sharpen."""
    n = images.shape[0]
    factor = _uniform(n, -amount, amount, images.device).view(n, 1, 1, 1)
    blurred = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    return (images + factor * (images - blurred)).clamp(0, 1)


def missing_sequence(images: torch.Tensor, probability: float, fill: int) -> torch.Tensor:
    """Replace each channel other than ``fill`` by channel ``fill`` with ``probability``, drawn
    per image and channel: a sequence that was not acquired, stored as a copy of another one."""
    n, channels = images.shape[:2]
    if channels < 2:
        return images
    if not 0 <= fill < channels:  # a recipe's fill is checked at load against in_channels
        raise RecipeError(
            f"augment.missing_sequence_fill={fill} but the input has {channels} channels"
        )
    replace = torch.rand(n, channels, 1, 1, device=images.device) < probability
    replace[:, fill] = False
    return torch.where(replace, images[:, fill : fill + 1], images)


def resample(images: torch.Tensor, probability: float) -> torch.Tensor:
    """Down-sample the chosen images by one random factor in [1.5, 3] (area) and back up
    (bilinear): the softness of a slice exported at a lower resolution."""
    chosen = _chosen(images.shape[0], probability, images.device)
    if len(chosen) == 0:
        return images
    height, width = images.shape[2:]
    factor = float(torch.empty(1).uniform_(1.5, 3.0))
    small = (max(2, round(height / factor)), max(2, round(width / factor)))
    low = F.interpolate(images[chosen], size=small, mode="area")
    out = images.clone()
    out[chosen] = F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    return out
