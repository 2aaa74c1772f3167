"""LightningModules: one for slice classification, one for 2D/3D segmentation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer
from monai.metrics import compute_dice
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score

from braintumor.config import Recipe
from braintumor.data.preprocess import PreprocessSpec, normalise_batch
from braintumor.errors import RecipeError
from braintumor.recipe_options import BratsOptions
from braintumor.training.augment import AugmentConfig, augment_batch
from braintumor.training.coarse_loss import CoarseLabelLoss
from braintumor.training.consistency import two_view_loss
from braintumor.training.mixing import mix_batch
from braintumor.training.optim import build_optimizer, build_scheduler
from braintumor.training.progressive import shrink, training_side
from braintumor.training.trainer import resolve_compile
from braintumor.training.volume_dice import NO_GROUP, VolumeDice


class _RecipeModule(L.LightningModule):
    """Shared plumbing: the network, the recipe's optimiser and schedule, channels_last."""

    def __init__(self, recipe: Recipe, model: torch.nn.Module) -> None:
        super().__init__()
        self.recipe = recipe
        self.model = model
        if resolve_compile(recipe, "auto"):  # train_run has already turned auto into a bool
            # In place, so state_dict keys (checkpoints, model.safetensors) stay the plain ones.
            self.model.compile()
        # Plain types only, so resume files load with torch.load(weights_only=True).
        self.save_hyperparameters({"recipe": recipe.to_dict()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The network's input for a training batch, augmented as training augments it, at
        the side validation and inference see: batch-norm statistics re-estimated on it
        (:mod:`braintumor.training.averaging`) must fit those, not a smaller training side."""
        raise NotImplementedError

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.model, self.recipe)
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = build_scheduler(optimizer, self.recipe, total_steps, self._time_progress())
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _time_progress(self) -> Callable[[], float] | None:
        """Share of the ``max_minutes`` budget used, from Lightning's Timer (kept on resume)."""
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        if timer is None or timer.time_remaining() is None:
            return None

        def progress() -> float:
            elapsed = timer.time_elapsed("train")
            return elapsed / max(1e-9, elapsed + (timer.time_remaining("train") or 0.0))

        return progress


class ClassificationModule(_RecipeModule):
    """Slices in, class logits out; batches are ``{"image": uint8 (B,C,S,S), "label": long}``."""

    def __init__(
        self,
        recipe: Recipe,
        model: torch.nn.Module,
        class_names: list[str],
        spec: PreprocessSpec,
        class_weights: torch.Tensor | None = None,
        coarse_classes: Sequence[int] = (),
    ) -> None:
        """``coarse_classes``: the class indices a training label :data:`COARSE_INDEX` stands
        for (tumours of unknown type; :mod:`braintumor.training.coarse_loss`)."""
        # Weights in channels_last as well as inputs: oneDNN then skips layout conversions.
        super().__init__(recipe, model.to(memory_format=torch.channels_last))
        from braintumor.losses import CLASSIFY_KIND, build_loss

        self.class_names = list(class_names)
        self.spec = spec
        self.augment = AugmentConfig.from_dict(recipe.augment)
        self.mix_rng = np.random.default_rng(recipe.seed)
        # The image side of this epoch under progressive resizing (None: as cached).
        self.train_side: int | None = None
        if self.augment.consistency and (self.augment.mixup or self.augment.cutmix):
            raise RecipeError(
                f"recipe {recipe.name!r}: augment.consistency compares two views of one slice, "
                "which mixup / cutmix blend with other slices; use one or the other"
            )
        loss_args = dict(recipe.loss_args)
        if recipe.label_smoothing:
            loss_args.setdefault("label_smoothing", recipe.label_smoothing)
        if class_weights is not None:
            loss_args.setdefault("weight", class_weights)
        self.loss_fn = build_loss(recipe.loss, CLASSIFY_KIND, **loss_args)
        if coarse_classes:
            self.loss_fn = CoarseLabelLoss(self.loss_fn, coarse_classes)
        k = len(class_names)
        self.val_acc = MulticlassAccuracy(num_classes=k, average="micro")
        # Macro-averaged recall: balanced accuracy, the figure that an imbalanced split needs.
        self.val_balanced_acc = MulticlassAccuracy(num_classes=k, average="macro")
        self.val_f1 = MulticlassF1Score(num_classes=k, average="macro")
        self.val_auc = MulticlassAUROC(num_classes=k, average="macro")

    def on_train_epoch_start(self) -> None:
        """The epoch's image side under progressive resizing, from how far training is."""
        start = self.recipe.progressive_start
        if start is None:
            return
        progress = self.current_epoch / max(1, self.trainer.max_epochs or 1)
        timed = self._time_progress()
        self.train_side = training_side(
            start, self.recipe.image_size, max(progress, timed() if timed else 0.0)
        )

    def _inputs(self, images: torch.Tensor, train: bool, side: int | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)
        if train:
            if side is not None:  # before augmenting: that work shrinks too
                x = shrink(x, side)
            x, _ = augment_batch(x, None, self.augment)
        return normalise_batch(x, self.spec)

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._inputs(batch["image"], train=True)

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        from braintumor.models import logits_to_probs

        return logits_to_probs(logits.float())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.augment.consistency:
            # Each slice twice, each copy with its own random draw: twice the network's work.
            both = torch.cat([batch["image"], batch["image"]])
            images = self._inputs(both, train=True, side=self.train_side)
            loss = two_view_loss(
                self.loss_fn, self(images), batch["label"], self.augment.consistency
            )
        else:
            mixed = mix_batch(
                self._inputs(batch["image"], train=True, side=self.train_side),
                self.augment.mixup,
                self.augment.cutmix,
                self.mix_rng,
            )
            loss = mixed.loss(self.loss_fn, self(mixed.images), batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(self._inputs(batch["image"], train=False))
        labels = batch["label"]
        loss = self.loss_fn(logits, labels)
        probs = self._probs(logits)
        self.val_acc.update(probs, labels)
        self.val_balanced_acc.update(probs, labels)
        self.val_f1.update(probs, labels)
        self.val_auc.update(probs, labels)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        self.log("val/balanced_acc", self.val_balanced_acc, on_epoch=True)
        self.log("val/f1", self.val_f1, on_epoch=True)
        self.log("val/auc", self.val_auc, on_epoch=True)


def _start_at_prior(
    model: torch.nn.Module, recipe: Recipe, in_channels: int, multilabel: bool
) -> None:
    """Start ``model``'s sigmoid outputs at ``recipe.output_prior`` (models.output_prior).

    The probe input has the recipe's training size: ``image_size`` squared for a 2D network,
    ``extra.patch_size`` for a 3D one.
    """
    from braintumor.models import get_spec
    from braintumor.models.output_prior import set_output_prior

    assert recipe.output_prior is not None
    if not multilabel:
        raise RecipeError(
            f"recipe {recipe.name!r}: output_prior starts sigmoid outputs; a softmax label map "
            "has no single tumour prior"
        )
    if get_spec(recipe.model).task == "segment3d":
        # a 3D recipe's extra options always carry a patch size (BratsOptions' default)
        assert isinstance(recipe.extra, BratsOptions)
        size = [int(side) for side in recipe.extra.patch_size]
    else:
        size = [recipe.image_size] * 2
    # a seeded random probe: it leaves the global generator alone, and unlike zeros it
    # reaches every path of the network
    probe = torch.Generator().manual_seed(0)
    example = torch.randn(1, in_channels, *size, generator=probe)
    set_output_prior(model, recipe.output_prior, example)


class SegmentationModule(_RecipeModule):
    """Masks from slices (2D) or volumes (3D).

    Batches are ``{"image": ..., "mask": ...}``. uint8 2D images are augmented and normalised
    here (the fast slice path); float images (BraTS) arrive ready from their datamodule. Targets
    are (B, K, ...) floats: one channel for a binary mask, region channels when ``multilabel``,
    or one-hot labels (background first) for softmax label maps. Validation batches may carry
    ``"group"``, a patient index per sample (:mod:`.volume_dice`).

    Validation logs ``val/dice``, the mean slice (or volume) Dice under the empty-mask rule,
    and ``val/volume_dice``, the Dice of each patient's pooled pixels averaged over patients
    (all samples pooled when no patient is known), which an empty prediction on an empty
    slice does not raise: the monitor of the 2D segmentation recipes.
    """

    def __init__(
        self,
        recipe: Recipe,
        num_outputs: int,
        in_channels: int,
        multilabel: bool,
        model: torch.nn.Module | None = None,
        spec: PreprocessSpec | None = None,
    ) -> None:
        multilabel = multilabel or num_outputs == 1
        if model is None:
            from braintumor.models import build_model

            model = build_model(
                recipe.model,
                num_classes=num_outputs,
                in_channels=in_channels,
                pretrained=recipe.pretrained,
                weights=recipe.weights,
                **recipe.model_args,
            )
            if recipe.output_prior is not None:
                _start_at_prior(model, recipe, in_channels, multilabel)
        if spec is not None:  # the 2D slice path; 3D weights have no channels_last layout
            model = model.to(memory_format=torch.channels_last)
        super().__init__(recipe, model)
        from braintumor.losses import SEGMENT_KIND, build_loss

        self.num_outputs = num_outputs
        self.multilabel = multilabel
        self.spec = spec
        self.augment = AugmentConfig.from_dict(recipe.augment) if spec is not None else None
        if self.augment is not None and (self.augment.mixup or self.augment.cutmix):
            raise RecipeError(
                f"recipe {recipe.name!r}: augment.mixup / augment.cutmix apply to classifiers "
                "only (a blended mask has no single tumour outline)"
            )
        if self.augment is not None and self.augment.consistency:
            raise RecipeError(
                f"recipe {recipe.name!r}: augment.consistency applies to classifiers only"
            )
        if recipe.progressive_start is not None:
            raise RecipeError(
                f"recipe {recipe.name!r}: progressive_start applies to classifiers only"
            )
        self.loss_fn = build_loss(
            recipe.loss, SEGMENT_KIND, multilabel=self.multilabel, **recipe.loss_args
        )
        self.val_inferer: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor] | None = None
        self.val_volume_dice = VolumeDice()

    def _prepare(self, batch: dict[str, torch.Tensor], train: bool) -> tuple[torch.Tensor, ...]:
        images, masks = batch["image"], batch["mask"]
        if masks.ndim == images.ndim - 1:
            masks = masks.unsqueeze(1)
        masks = masks.float()
        if images.dtype == torch.uint8:
            # uint8 batches come from the 2D slice path, whose modules always have a spec.
            assert self.spec is not None
            x = images.float().div_(255.0)
            if train and self.augment is not None:
                x, augmented = augment_batch(x, masks, self.augment)
                masks = masks if augmented is None else augmented
            images = normalise_batch(x, self.spec)
        return images, masks

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._prepare(batch, train=True)[0]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, masks = self._prepare(batch, train=True)
        loss = self.loss_fn(self(images), masks)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def hard_prediction(self, logits: torch.Tensor) -> torch.Tensor:
        """Binary (B, K', ...) predictions for the foreground channels."""
        if self.multilabel:
            return (logits > 0).float()
        onehot = torch.nn.functional.one_hot(logits.argmax(1), self.num_outputs)
        return onehot.movedim(-1, 1)[:, 1:].float()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        images, masks = self._prepare(batch, train=False)
        if self.val_inferer is not None:
            logits = self.val_inferer(images, self.model)
        else:
            logits = self(images)
        loss = self.loss_fn(logits, masks)
        pred = self.hard_prediction(logits.float())
        truth = masks if self.multilabel else masks[:, 1:]
        # ignore_empty=False: empty truth and empty prediction count as a perfect 1 (the
        # documented empty rule; torchmetrics' Dice gives NaN there).
        dice = compute_dice(pred, truth, include_background=True, ignore_empty=False)
        groups = batch.get("group")
        if groups is None:  # no patient ids: the whole validation set is one pooled volume
            groups = torch.full((len(pred),), NO_GROUP, dtype=torch.long, device=pred.device)
        self.val_volume_dice.update(pred, truth, groups)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val/dice", dice.mean(), on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val/volume_dice", self.val_volume_dice, on_epoch=True, prog_bar=True)
