"""Wire a BraTS recipe (task ``brats2d`` or ``brats3d``) to a module, a datamodule and the
preprocessing record that prediction replays.

The recipe's BraTS settings are its ``extra`` section, :class:`~braintumor.recipe_options.
BratsOptions` (defaults there); ``preprocess`` holds ``crop`` (to the brain box, default true),
``crop_margin`` (voxels, 8), ``target_spacing`` (mm, default none) and ``normalisation``
(``zscore-brain`` | ``none``); 2D slices are ``image_size`` (recipe field) wide.

:func:`resolve_brats_recipe` fixes from the data what the recipe leaves open (the label
convention, ``in_channels`` = the number of modalities, the 3D network's ``model_args``, see
:func:`network_args`) before the run saves the recipe, so that ``recipe.yaml`` and the model
folder say the same and the model folder rebuilds the same network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import lightning as L
import numpy as np
import torch

from braintumor.brats.labels import CONVENTIONS, check_label_mode, class_names, num_outputs
from braintumor.brats.patches import BratsPatchDataModule, sliding_window_inferer
from braintumor.brats.preprocess import BratsPreprocess, default_cache_dir
from braintumor.brats.slices import BratsSliceDataModule
from braintumor.config import Recipe
from braintumor.data.samples import Sample
from braintumor.errors import DataError, RecipeError
from braintumor.io import read_image
from braintumor.metrics.brats import detect_convention
from braintumor.models.folder import ModelInfo
from braintumor.recipe_options import BratsOptions
from braintumor.tasks.registry import LABELS, get_task
from braintumor.training.module import SegmentationModule

#: The recipe's ``preprocess`` keys a BraTS task reads besides ``target_spacing``.
_PREPROCESS_KEYS = ("crop", "crop_margin", "normalisation")
Inferer = Callable[[torch.Tensor, torch.nn.Module], torch.Tensor]


def brats_task(recipe: Recipe) -> Any:
    """The recipe's task from the registry; a RecipeError unless it is a BraTS task (one whose
    model outputs a label volume per case)."""
    task = get_task(recipe.task)
    if task.outputs != LABELS or not isinstance(recipe.extra, BratsOptions):
        raise RecipeError(f"recipe {recipe.name!r}: task {recipe.task!r} is not a BraTS task")
    return task


def brats_options(recipe: Recipe) -> BratsOptions:
    """The recipe's BraTS settings; a RecipeError unless it is a BraTS recipe."""
    brats_task(recipe)
    assert isinstance(recipe.extra, BratsOptions)  # checked by brats_task
    return recipe.extra


def info_class_names(recipe: Recipe) -> list[str]:
    """Output channel names: WT/TC/ET for regions, background + 3 tumour labels for labels."""
    return class_names(brats_options(recipe).label_mode)


def brats_model_info(recipe: Recipe, preprocessing: dict[str, Any]) -> ModelInfo:
    """The ``model.json`` record of a network trained with a BraTS ``recipe`` on inputs
    prepared as ``preprocessing`` (the third value :func:`build_brats_task` returns)."""
    names = info_class_names(recipe)
    return ModelInfo(
        task=recipe.task,
        architecture=recipe.model,
        num_outputs=len(names),
        in_channels=len(preprocessing["modalities"]),
        class_names=names,
        image_size=recipe.image_size,
        model_args=recipe.model_args,
        preprocessing=preprocessing,
        recipe=recipe.to_dict(),
    )


def _target_spacing(recipe: Recipe) -> list[float] | None:
    """``preprocess.target_spacing``, else ``extra.target_spacing`` (mm), else None."""
    target = recipe.preprocess.get("target_spacing", brats_options(recipe).target_spacing)
    return [float(t) for t in target] if target else None


def preprocess_settings(recipe: Recipe) -> BratsPreprocess:
    """The preprocessing part of a recipe as :class:`BratsPreprocess`."""
    options = brats_options(recipe)
    if options.convention != "auto" and options.convention not in CONVENTIONS:
        raise RecipeError(
            f"recipe {recipe.name!r}: unknown BraTS convention {options.convention!r}"
        )
    # crop, crop_margin and normalisation default in BratsPreprocess.
    given = {k: recipe.preprocess[k] for k in _PREPROCESS_KEYS if k in recipe.preprocess}
    return BratsPreprocess(
        modalities=list(options.modalities),
        target_spacing=_target_spacing(recipe),
        convention=options.convention,
        **given,
    )


def network_args(recipe: Recipe) -> dict[str, Any]:
    """The recipe's ``model_args`` for its network, completed from the BraTS settings.

    The network must be a 2D segmenter for ``brats2d`` and a 3D one for ``brats3d``.
    ``dynunet`` derives its kernels and strides from the patch and the voxel spacing, so it gets
    ``extra.patch_size`` and ``preprocess.target_spacing`` (1 mm when unset) unless given.
    (A switched ``model`` starts without the recipe's old options: ``config.load_recipe``.)
    """
    from braintumor.models import get_spec, list_models  # imports every model library

    spec = get_spec(recipe.model)
    wanted = brats_task(recipe).network_kind
    if spec.task != wanted:
        names = ", ".join(s.name for s in list_models(wanted))
        raise RecipeError(
            f"recipe {recipe.name!r}: {recipe.task} needs a {wanted} network ({names}), "
            f"but {recipe.model!r} is a {spec.task} model"
        )
    args = dict(recipe.model_args)
    if recipe.model == "dynunet":
        args.setdefault("patch_size", [int(p) for p in brats_options(recipe).patch_size])
        args.setdefault("spacing", _target_spacing(recipe) or [1.0, 1.0, 1.0])
    return args


def dataset_convention(samples: list[Sample]) -> str:
    """The label convention of a whole dataset, from the labels present in all its label maps.

    Deciding per case would misread a 2013 case without enhancing tumour (3 but no 4) as
    brats2023, so the union over every case decides.
    """
    present: set[int] = set()
    for sample in samples:
        if sample.mask:
            present |= set(np.unique(np.rint(read_image(Path(sample.mask)).array)).astype(int))
    return detect_convention(np.array(sorted(present), dtype=np.int64))


def resolve_brats_recipe(recipe: Recipe, splits: dict[str, list[Sample]]) -> Recipe:
    """A copy of ``recipe`` with what the data decides filled in: the label convention (when
    ``auto``, from every labelled case of ``splits``), ``in_channels`` (one per modality) and
    the network's ``model_args``. Resolving a resolved recipe changes nothing."""
    options = brats_options(recipe)
    check_label_mode(options.label_mode)
    convention = preprocess_settings(recipe).convention
    if convention == "auto":
        labelled = [s for samples in splits.values() for s in samples if s.mask]
        if not labelled:
            raise DataError("BraTS: no case has a label map to train on")
        convention = dataset_convention(labelled)
    return dataclasses.replace(
        recipe,
        extra=dataclasses.replace(options, convention=convention),
        in_channels=len(options.modalities),
        model_args=network_args(recipe),
    )


def build_brats_task(
    recipe: Recipe, splits: dict[str, list[Sample]]
) -> tuple[L.LightningModule, L.LightningDataModule, dict[str, Any]]:
    """(SegmentationModule, datamodule, preprocessing dict for ``ModelInfo.preprocessing``) of
    ``recipe`` resolved (:func:`resolve_brats_recipe`); ``recipe`` itself is left as it is."""
    mode = brats_task(recipe).mode
    recipe = resolve_brats_recipe(recipe, splits)
    options = brats_options(recipe)
    label_mode = options.label_mode
    settings = preprocess_settings(recipe)
    module = SegmentationModule(
        recipe, num_outputs(label_mode), recipe.in_channels, multilabel=label_mode == "regions"
    )
    preprocessing: dict[str, Any] = {
        "kind": "brats",
        **settings.to_dict(),
        "mode": mode,
        "label_mode": label_mode,
        "class_names": class_names(label_mode),
    }
    common: dict[str, Any] = {
        "splits": splits,
        "settings": settings,
        "cache_dir": options.cache_dir or str(default_cache_dir()),
        "label_mode": label_mode,
        "batch_size": recipe.batch_size,
        "augment": recipe.augment,
        "num_workers": recipe.num_workers,
        "seed": recipe.seed,
    }
    if mode == "2d":
        datamodule: L.LightningDataModule = BratsSliceDataModule(
            image_size=recipe.image_size,
            min_tumour_pixels=options.min_tumour_pixels,
            empty_slice_fraction=options.empty_slice_fraction,
            **common,
        )
        preprocessing["image_size"] = recipe.image_size
    else:
        patch = [int(p) for p in options.patch_size]
        overlap, sw_batch = options.sw_overlap, options.sw_batch_size
        datamodule = BratsPatchDataModule(
            patch_size=patch,
            samples_per_case=options.samples_per_case,
            pos_fraction=options.pos_fraction,
            **common,
        )
        # A network with one output gives the inferer's one-tensor result.
        module.val_inferer = cast(Inferer, sliding_window_inferer(patch, overlap, sw_batch))
        preprocessing |= {"patch_size": patch, "sw_overlap": overlap, "sw_batch_size": sw_batch}
    return module, datamodule, preprocessing
