"""Optimisers (timm's factory: adam, adamw, sgd, rmsprop, adagrad, adopt...) and schedules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from timm.optim import create_optimizer_v2, get_optimizer_class

from braintumor.config import Recipe
from braintumor.errors import RecipeError

SCHEDULERS = ("none", "cosine", "warmup-linear", "plateau")

# torch optimisers with a fused (one kernel for all parameters) step, and the devices that
# have it. On a 2-core CPU the per-parameter loop of AdamW costs about 5% of a U-Net step.
_FUSED_DEVICES: dict[type, frozenset[str]] = {
    torch.optim.Adam: frozenset({"cpu", "cuda"}),
    torch.optim.AdamW: frozenset({"cpu", "cuda"}),
    torch.optim.SGD: frozenset({"cpu", "cuda"}),
    torch.optim.Adagrad: frozenset({"cpu"}),
}


def _fused_supported(name: str, params: list[torch.nn.Parameter]) -> bool:
    """Whether optimiser ``name`` has a fused step on the devices of ``params``."""
    try:
        opt_class = get_optimizer_class(name, bind_defaults=False)
    except ValueError:
        return False  # unknown names get create_optimizer_v2's own error
    devices = _FUSED_DEVICES.get(opt_class)
    return bool(params) and devices is not None and {p.device.type for p in params} <= devices


def build_optimizer(model: torch.nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimiser over the trainable parameters (frozen layers stay out).

    Uses torch's fused implementation where the optimiser and device have one (same update,
    fewer passes over memory). Call it after the model is on its training device.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    extra = {"fused": True} if _fused_supported(recipe.optimizer, trainable) else {}
    try:
        return create_optimizer_v2(
            trainable,
            opt=recipe.optimizer,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            **extra,
        )
    except (ValueError, AssertionError) as exc:
        raise RecipeError(f"optimizer {recipe.optimizer!r}: {exc}") from exc


def warmup_then_decay(
    total_steps: int,
    warmup_fraction: float,
    decay: str,
    time_progress: Callable[[], float] | None = None,
) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over the first fraction, then cosine or linear decay.

    With a time budget (``max_minutes``), ``time_progress`` gives the share of it used so far;
    the decay follows whichever of steps and time is further along, so a slow machine still
    anneals the learning rate before the budget ends instead of stopping at a high rate.
    """
    warmup = max(1, int(total_steps * warmup_fraction)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:
        used = min(1.0, time_progress()) if time_progress is not None else 0.0
        # The warm-up ends after its share of the steps or of the time budget, whichever
        # comes first: on a slow machine the step count alone would keep it warming up.
        if step < warmup and used < warmup_fraction:
            return max((step + 1) / warmup, used / warmup_fraction)
        progress = min(1.0, max(0.0, (step - warmup) / max(1, total_steps - warmup)))
        progress = max(progress, used)
        if decay == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    recipe: Recipe,
    total_steps: int,
    time_progress: Callable[[], float] | None = None,
) -> dict[str, Any] | None:
    """A Lightning ``lr_scheduler`` config for the recipe, or None."""
    name = recipe.scheduler
    if name == "none":
        return None
    if name in ("cosine", "warmup-linear"):
        decay = "linear" if name == "warmup-linear" else "cosine"
        lam = warmup_then_decay(total_steps, recipe.warmup_fraction, decay, time_progress)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lam)
        return {"scheduler": scheduler, "interval": "step"}
    if name == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=recipe.monitor_mode,
            factor=recipe.plateau_factor,
            patience=recipe.plateau_patience,
        )
        return {"scheduler": scheduler, "monitor": recipe.monitor, "interval": "epoch"}
    raise RecipeError(f"unknown scheduler {name!r}; choose from {SCHEDULERS}")
