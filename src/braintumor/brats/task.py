"""Wire a BraTS recipe (task ``brats2d`` or ``brats3d``) to a module, a datamodule and the
preprocessing record that prediction replays.

Recipe settings read here (``extra`` unless said otherwise):

- ``modalities`` (default t1, t1ce, t2, flair), ``label_mode`` (``regions`` | ``labels``),
  ``convention`` (``auto`` or a name from :mod:`braintumor.metrics.brats`), ``cache_dir``;
- ``preprocess``: ``crop`` (to the brain box, default true), ``crop_margin`` (voxels, 8),
  ``target_spacing`` (mm, default none), ``normalisation`` (``zscore-brain`` | ``none``);
- 2D: ``image_size`` (recipe field), ``min_tumour_pixels`` (50), ``empty_slice_fraction``
  (0.1);
- 3D: ``patch_size`` ([128, 128, 128]), ``samples_per_case`` (4), ``pos_fraction`` (0.5),
  ``sw_overlap`` (0.5), ``sw_batch_size`` (2).

The recipe is completed in place before the network is built, so that the model folder written
from it rebuilds the same network: ``in_channels`` becomes the number of modalities, and
``model_args`` gets the 3D network's settings that follow from the data (see
:func:`network_args`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from braintumor.brats.labels import CONVENTIONS, check_label_mode, class_names, num_outputs
from braintumor.brats.patches import BratsPatchDataModule, sliding_window_inferer
from braintumor.brats.preprocess import DEFAULT_MODALITIES, BratsPreprocess, default_cache_dir
from braintumor.brats.slices import BratsSliceDataModule
from braintumor.config import Recipe
from braintumor.data.samples import Sample
from braintumor.errors import DataError, RecipeError
from braintumor.io import read_image
from braintumor.metrics.brats import detect_convention
from braintumor.tasks.registry import LABELS, get_task
from braintumor.training.module import SegmentationModule


def brats_task(recipe: Recipe) -> Any:
    """The recipe's task from the registry; a RecipeError unless it is a BraTS task (one whose
    model outputs a label volume per case)."""
    task = get_task(recipe.task)
    if task.outputs != LABELS:
        raise RecipeError(f"recipe {recipe.name!r}: task {recipe.task!r} is not a BraTS task")
    return task


def info_class_names(recipe: Recipe) -> list[str]:
    """Output channel names: WT/TC/ET for regions, background + 3 tumour labels for labels."""
    return class_names(recipe.extra.get("label_mode", "regions"))


def preprocess_settings(recipe: Recipe, convention: str | None = None) -> BratsPreprocess:
    """The preprocessing part of a recipe as :class:`BratsPreprocess`."""
    pre = recipe.preprocess
    target = pre.get("target_spacing", recipe.extra.get("target_spacing"))
    conv = convention or recipe.extra.get("convention", "auto")
    if conv != "auto" and conv not in CONVENTIONS:
        raise RecipeError(f"recipe {recipe.name!r}: unknown BraTS convention {conv!r}")
    return BratsPreprocess(
        modalities=list(recipe.extra.get("modalities", DEFAULT_MODALITIES)),
        crop=bool(pre.get("crop", True)),
        crop_margin=int(pre.get("crop_margin", 8)),
        target_spacing=[float(t) for t in target] if target else None,
        normalisation=str(pre.get("normalisation", "zscore-brain")),
        convention=conv,
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
        target = recipe.preprocess.get("target_spacing", recipe.extra.get("target_spacing"))
        args.setdefault("patch_size", [int(p) for p in recipe.extra.get("patch_size", [128] * 3)])
        args.setdefault("spacing", [float(t) for t in target] if target else [1.0, 1.0, 1.0])
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


def build_brats_task(
    recipe: Recipe, splits: dict[str, list[Sample]]
) -> tuple[L.LightningModule, L.LightningDataModule, dict[str, Any]]:
    """(SegmentationModule, datamodule, preprocessing dict for ``ModelInfo.preprocessing``)."""
    mode = brats_task(recipe).mode
    extra = recipe.extra
    label_mode = check_label_mode(extra.get("label_mode", "regions"))
    settings = preprocess_settings(recipe)
    if settings.convention == "auto":
        labelled = [s for samples in splits.values() for s in samples if s.mask]
        if not labelled:
            raise DataError("BraTS: no case has a label map to train on")
        settings.convention = dataset_convention(labelled)
    cache_dir = str(extra.get("cache_dir") or default_cache_dir())
    in_channels = len(settings.modalities)
    # Completed in place: the model folder is written from the recipe and must rebuild this net.
    recipe.model_args = network_args(recipe)
    recipe.in_channels = in_channels
    module = SegmentationModule(
        recipe, num_outputs(label_mode), in_channels, multilabel=label_mode == "regions"
    )
    preprocessing: dict[str, Any] = {
        "kind": "brats",
        **settings.to_dict(),
        "mode": mode,
        "label_mode": label_mode,
        "class_names": class_names(label_mode),
    }
    common = {
        "splits": splits,
        "settings": settings,
        "cache_dir": cache_dir,
        "label_mode": label_mode,
        "batch_size": recipe.batch_size,
        "augment": recipe.augment,
        "num_workers": recipe.num_workers,
        "seed": recipe.seed,
    }
    if mode == "2d":
        datamodule: L.LightningDataModule = BratsSliceDataModule(
            image_size=recipe.image_size,
            min_tumour_pixels=int(extra.get("min_tumour_pixels", 50)),
            empty_slice_fraction=float(extra.get("empty_slice_fraction", 0.1)),
            **common,
        )
        preprocessing["image_size"] = recipe.image_size
    else:
        patch = [int(p) for p in extra.get("patch_size", [128, 128, 128])]
        overlap = float(extra.get("sw_overlap", 0.5))
        sw_batch = int(extra.get("sw_batch_size", 2))
        datamodule = BratsPatchDataModule(
            patch_size=patch,
            samples_per_case=int(extra.get("samples_per_case", 4)),
            pos_fraction=float(extra.get("pos_fraction", 0.5)),
            **common,
        )
        module.val_inferer = sliding_window_inferer(patch, overlap, sw_batch)
        preprocessing |= {"patch_size": patch, "sw_overlap": overlap, "sw_batch_size": sw_batch}
    return module, datamodule, preprocessing
