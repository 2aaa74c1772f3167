"""Training losses by name: MONAI / torch losses, plus the exponential logarithmic loss.

``build_loss(name, task, **kwargs)`` returns a module called as ``loss(logits, target)``.

Classification (``task="classify"``): logits ``(B, K)`` and integer labels ``(B,)``; the
single-logit binary models give ``(B, 1)`` logits with labels in {0, 1}.

* ``ce``: cross-entropy (``label_smoothing``, class ``weight``); ``bce``: single-logit binary
  cross-entropy, labels smoothed Keras-style to ``y (1 - s) + s / 2`` (``label_smoothing``,
  class ``weight`` of length 2); ``focal``: MONAI focal loss (``gamma``, ``alpha``, ``weight``).

Segmentation (``task`` ``"segment"``, ``"segment2d"`` or ``"segment3d"``): logits
``(B, C, H, W[, D])``. Targets are float ``(B, C, ...)``: one-hot (mutually exclusive labels,
background channel first; softmax), multi-label (e.g. BraTS regions WT/TC/ET; a sigmoid per
channel), or ``(B, 1, ...)`` binary masks for ``C == 1`` (sigmoid). An integer label map
``(B, ...)`` or ``(B, 1, ...)`` with ``C > 1`` is one-hot encoded first (see :func:`to_onehot`).
Pass ``multilabel=True/False`` to choose sigmoid or softmax; left unset, one channel means
sigmoid, and targets whose channels sum to one at every voxel mean softmax.

* ``dice``, ``soft-dice`` (squared denominators, V-Net), ``dice-ce``, ``dice-focal``, ``focal``,
  ``tversky`` (``alpha``, ``beta``): MONAI losses; extra keyword arguments go to them.
* ``bce-dice``: MONAI DiceCELoss with a sigmoid on every channel (BCE + Dice, as in Keras).
* ``weighted-ce``: torch cross-entropy (softmax) or BCE (sigmoid) with class ``weight``; left
  unset, weights are the inverse class frequencies of each batch.
* ``exp-log``: exponential logarithmic loss (:class:`ExpLogLoss`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, FocalLoss, TverskyLoss
from torch import nn

from braintumor.errors import DataError, RecipeError


def to_onehot(index_map: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float one-hot ``(B, C, ...)`` from an integer label map ``(B, 1, ...)`` or ``(B, ...)``.

    A map of 3 or more dimensions whose second has size 1 is read as ``(B, 1, ...)``.
    """
    labels = index_map.long()
    if labels.ndim >= 3 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"label map values {int(labels.min())}..{int(labels.max())} "
            f"do not fit {num_classes} classes"
        )
    return F.one_hot(labels, num_classes).movedim(-1, 1).float()


def _as_tensor(values: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    return None if values is None else torch.as_tensor(values, dtype=torch.float32)


class BinaryLogitLoss(nn.Module):
    """BCE on one logit per image with Keras-style label smoothing and optional class weights."""

    def __init__(
        self, label_smoothing: float = 0.0, weight: Sequence[float] | torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.label_smoothing = float(label_smoothing)
        class_weight = _as_tensor(weight)
        if class_weight is not None and class_weight.numel() != 2:
            raise RecipeError(f"bce: weight needs 2 class weights, got {class_weight.numel()}")
        self.register_buffer("class_weight", class_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy; ``logits`` ``(B, 1)`` or ``(B,)``, labels in {0, 1}."""
        if logits.ndim == 2 and logits.shape[1] != 1:
            raise DataError(f"bce needs one logit per image, got {logits.shape[1]} (use 'ce')")
        logits = logits.reshape(-1)
        labels = target.reshape(-1).to(logits.dtype)
        smoothed = labels * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        per_item = F.binary_cross_entropy_with_logits(logits, smoothed, reduction="none")
        if self.class_weight is not None:
            per_item = per_item * self.class_weight.to(logits)[labels.round().long()]
        return per_item.mean()


class ClassFocalLoss(nn.Module):
    """Focal loss (MONAI) for labels ``(B,)``: softmax for ``(B, K)``, sigmoid for ``(B, 1)``."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.softmax_loss = FocalLoss(use_softmax=True, **kwargs)
        self.sigmoid_loss = FocalLoss(use_softmax=False, **kwargs)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean focal loss over the batch."""
        if logits.shape[1] == 1:
            return self.sigmoid_loss(logits, target.reshape(-1, 1).to(logits.dtype))
        return self.softmax_loss(logits, F.one_hot(target.long(), logits.shape[1]).to(logits))


class WeightedCrossEntropy(nn.Module):
    """Class-weighted CE (softmax) or BCE (sigmoid, per channel) on dense targets.

    Without ``weight`` each batch is weighted by inverse class frequency (system 002's
    "weighted loss"): softmax weights ``N / (C * n_c)``, sigmoid ``pos_weight = n_neg / n_pos``.
    """

    def __init__(self, sigmoid: bool, weight: Sequence[float] | torch.Tensor | None = None):
        super().__init__()
        self.sigmoid = sigmoid
        self.register_buffer("weight", _as_tensor(weight))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted mean cross-entropy over every voxel."""
        dims = [0, *range(2, target.ndim)]
        counts = target.sum(dims)
        if self.sigmoid:
            pos_weight = self.weight
            if pos_weight is None:
                negatives = target.numel() / target.shape[1] - counts
                pos_weight = negatives / counts.clamp(min=1.0)
            shape = (1, -1) + (1,) * (target.ndim - 2)
            return F.binary_cross_entropy_with_logits(
                logits, target, pos_weight=pos_weight.to(logits).reshape(shape)
            )
        weight = self.weight
        if weight is None:
            present = counts > 0
            weight = torch.where(present, counts.sum() / (len(counts) * counts.clamp(min=1)), 0)
        if ((target == 0) | (target == 1)).all():
            # hard labels: torch's usual weighted mean (normalised by the weights in play)
            return F.cross_entropy(logits, target.argmax(1), weight=weight.to(logits))
        return F.cross_entropy(logits, target, weight=weight.to(logits))


class ExpLogLoss(nn.Module):
    """Exponential logarithmic loss for very unbalanced structure sizes.

    Reference: Wong, Moradi, Tang & Syeda-Mahmood 2018, "3D Segmentation with Exponential
    Logarithmic Loss for Highly Unbalanced Object Sizes" (MICCAI). No library ships it.

    ``L = weight * E_i[(-ln Dice_i)^gamma_dice] + (1 - weight) * E_x[w_l (-ln p_l(x))^gamma_ce]``

    with ``Dice_i = (2 sum_x t_i p_i + smooth) / (sum_x (t_i + p_i) + smooth)`` per image and
    class, ``l`` the true label at ``x`` and ``w_l = (sum_k f_k / f_l) ** 0.5`` from label
    frequencies ``f`` (``class_weights`` if given, else counted in the batch). With ``sigmoid``
    each channel is its own background/foreground problem. The paper used weight 0.8 and
    gammas 0.3; system 002 trained with weight 0.2 and 0.7.
    """

    def __init__(
        self,
        sigmoid: bool,
        weight: float = 0.7,
        gamma_dice: float = 0.3,
        gamma_ce: float = 0.3,
        smooth: float = 1.0,
        class_weights: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise RecipeError(f"exp-log: weight (Dice share) must be in [0, 1], got {weight}")
        self.sigmoid = sigmoid
        self.weight, self.gamma_dice, self.gamma_ce = weight, gamma_dice, gamma_ce
        self.smooth = smooth
        self.register_buffer("class_weights", _as_tensor(class_weights))

    @staticmethod
    def _power(negative_log: torch.Tensor, gamma: float) -> torch.Tensor:
        # x ** gamma has an infinite slope at 0 for gamma < 1: keep x off exact zero
        return negative_log.clamp(min=1e-6) ** gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The combined Dice and cross-entropy terms, averaged."""
        target = target.to(logits.dtype)
        spatial = tuple(range(2, logits.ndim))
        if self.sigmoid:
            probs = torch.sigmoid(logits)
            log_pos, log_neg = F.logsigmoid(logits), F.logsigmoid(-logits)
        else:
            probs = torch.softmax(logits, dim=1)
            log_pos = torch.log_softmax(logits, dim=1)
        dice = (2 * (target * probs).sum(spatial) + self.smooth) / (
            (target + probs).sum(spatial) + self.smooth
        )
        dice_term = self._power(-torch.log(dice), self.gamma_dice).mean()
        counts = target.sum(dim=(0, *spatial))  # f_l per channel (foreground, if sigmoid)
        total = target.numel() / target.shape[1]
        shape = (1, -1) + (1,) * len(spatial)
        if self.sigmoid:
            w_pos = ((total / counts.clamp(min=1)) ** 0.5).reshape(shape)
            w_neg = ((total / (total - counts).clamp(min=1)) ** 0.5).reshape(shape)
            ce = target * w_pos * self._power(-log_pos, self.gamma_ce) + (1 - target) * (
                w_neg * self._power(-log_neg, self.gamma_ce)
            )
            ce_term = ce.mean()
        else:
            if self.class_weights is not None:
                w = self.class_weights.to(logits)
            else:
                w = torch.where(counts > 0, (total / counts.clamp(min=1e-6)) ** 0.5, 0)
            ce = (target * w.reshape(shape) * self._power(-log_pos, self.gamma_ce)).sum(1)
            ce_term = ce.mean()
        return self.weight * dice_term + (1 - self.weight) * ce_term


class SegmentationLoss(nn.Module):
    """Shared front of every segmentation loss: target checks, one-hot, sigmoid vs softmax."""

    def __init__(
        self, name: str, factory: Callable[[bool], nn.Module], multilabel: bool | None = None
    ) -> None:
        super().__init__()
        self.name = name
        self.multilabel = multilabel
        # both variants hold no parameters; build them now so bad options fail at build time
        self.variants = nn.ModuleDict({"sigmoid": factory(True), "softmax": factory(False)})

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` ``(B, C, ...)`` against ``target`` (see the module docstring)."""
        channels = logits.shape[1]
        if target.ndim == logits.ndim - 1:
            target = target.unsqueeze(1)
        if channels > 1 and target.shape[1] == 1:
            target = to_onehot(target, channels)
        if target.shape != logits.shape:
            raise DataError(
                f"{self.name}: target shape {tuple(target.shape)} does not match "
                f"logits {tuple(logits.shape)}"
            )
        target = target.to(logits.dtype)
        if channels == 1:
            sigmoid = True
        elif self.multilabel is not None:
            sigmoid = self.multilabel
        else:
            sigmoid = not torch.allclose(target.sum(1), torch.ones_like(target[:, 0]))
        return self.variants["sigmoid" if sigmoid else "softmax"](logits, target)


def _act(sigmoid: bool) -> dict:
    return {"sigmoid": sigmoid, "softmax": not sigmoid}


def _cross_entropy(**kwargs: Any) -> nn.Module:
    return nn.CrossEntropyLoss(weight=_as_tensor(kwargs.pop("weight", None)), **kwargs)


#: Classification losses by name: ``factory(**options) -> module``. A new loss is one entry.
CLASSIFY_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "ce": _cross_entropy,
    "bce": BinaryLogitLoss,
    "focal": ClassFocalLoss,
}
#: Segmentation losses by name: ``factory(sigmoid, options) -> module``. A new loss is one entry.
SEGMENT_LOSSES: dict[str, Callable[[bool, dict], nn.Module]] = {
    "dice": lambda s, kw: DiceLoss(**_act(s), **kw),
    "soft-dice": lambda s, kw: DiceLoss(**_act(s), squared_pred=True, **kw),
    "bce-dice": lambda s, kw: DiceCELoss(sigmoid=True, **kw),
    "dice-ce": lambda s, kw: DiceCELoss(**_act(s), **kw),
    "dice-focal": lambda s, kw: DiceFocalLoss(**_act(s), **kw),
    "focal": lambda s, kw: FocalLoss(use_softmax=not s, **kw),
    "tversky": lambda s, kw: TverskyLoss(**_act(s), **kw),
    "weighted-ce": lambda s, kw: WeightedCrossEntropy(sigmoid=s, **kw),
    "exp-log": lambda s, kw: ExpLogLoss(sigmoid=s, **kw),
}
#: What a loss is for: the network kinds of :mod:`braintumor.models.registry`, or ``segment``
#: for any segmenter (2D or 3D).
CLASSIFY_KIND, SEGMENT_KIND = "classify", "segment"
SEGMENT_KINDS = (SEGMENT_KIND, "segment2d", "segment3d")


def build_loss(name: str, kind: str, **kwargs: object) -> nn.Module:
    """The loss ``name`` for a network of ``kind`` ("classify", or "segment"/"segment2d"/
    "segment3d").

    Keyword arguments configure it (see the module docstring); an unknown name or option
    raises RecipeError.
    """
    try:
        if kind == CLASSIFY_KIND:
            if name not in CLASSIFY_LOSSES:
                raise RecipeError(
                    f"unknown classification loss {name!r}; expected one of {list(CLASSIFY_LOSSES)}"
                )
            return CLASSIFY_LOSSES[name](**kwargs)
        if kind in SEGMENT_KINDS:
            if name not in SEGMENT_LOSSES:
                raise RecipeError(
                    f"unknown segmentation loss {name!r}; expected one of {sorted(SEGMENT_LOSSES)}"
                )
            multilabel = kwargs.pop("multilabel", None)
            if isinstance(kwargs.get("weight"), (list, tuple)):  # class weights from YAML
                kwargs["weight"] = _as_tensor(kwargs["weight"])
            factory = SEGMENT_LOSSES[name]
            return SegmentationLoss(name, lambda sigmoid: factory(sigmoid, kwargs), multilabel)
    except TypeError as exc:
        raise RecipeError(f"loss {name!r}: bad option: {exc}") from exc
    raise RecipeError(f"unknown task {kind!r}; expected classify or {', '.join(SEGMENT_KINDS)}")
