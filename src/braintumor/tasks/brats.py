"""The BraTS tasks: WT/TC/ET (or label) segmentation of multi-modal MRI cases, trained slice by
slice (``brats2d``) or on 3D patches (``brats3d``); predicted and evaluated case by case."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from braintumor.config import Recipe
from braintumor.data.layouts_base import BRATS_DATA
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.evaluation.tables import brats_table
from braintumor.models.folder import LoadedModel
from braintumor.models.registry import SEGMENTER_2D, SEGMENTER_3D
from braintumor.tasks.registry import CASES, LABELS, EvaluateOptions, PredictOptions, TaskSetup


class BratsTask:
    """Shared by both BraTS tasks; :attr:`mode` (``2d`` / ``3d``) tells them apart."""

    name = ""
    description = ""
    title = ""
    mode = ""
    data_kinds = (BRATS_DATA,)
    network_kind = ""
    inputs = CASES
    outputs = LABELS
    table = "summary"

    def resolve(self, recipe: Recipe, splits: dict[str, list[Sample]]) -> Recipe:
        """See :func:`braintumor.brats.task.resolve_brats_recipe` (convention, channels, net)."""
        from braintumor.brats.task import resolve_brats_recipe  # Lightning, MONAI

        return resolve_brats_recipe(recipe, splits)

    def build(self, recipe: Recipe, splits: dict[str, list[Sample]]) -> TaskSetup:
        """See :func:`braintumor.brats.task.build_brats_task`."""
        from braintumor.brats.task import build_brats_task, info_class_names  # Lightning, MONAI

        module, datamodule, preprocessing = build_brats_task(recipe, splits)
        names = info_class_names(recipe)
        return TaskSetup(module, datamodule, names, len(names), preprocessing)

    def tune(self, loaded: LoadedModel, recipe: Recipe, val: list[Sample]) -> dict[str, Any]:
        """Nothing is chosen on validation for BraTS models."""
        return {}

    def evaluate(
        self,
        loaded: LoadedModel,
        samples: list[Sample],
        out_dir: Path,
        options: EvaluateOptions | None = None,
    ) -> dict[str, Any]:
        """See :func:`braintumor.brats.evaluate.evaluate_cases` (curves are not drawn)."""
        options = options or EvaluateOptions()
        if options.adapt_bn:
            raise DataError(f"--adapt-bn: not available for {self.name} models (BraTS cases)")
        from braintumor.brats.evaluate import evaluate_cases  # Lightning, MONAI

        return evaluate_cases(loaded, samples, out_dir, tta=options.tta)

    def summary_table(self, metrics: dict[str, Any]) -> Table:
        """Mean WT/TC/ET Dice, HD95, sensitivity and precision."""
        return brats_table(metrics)

    def predictor(self, loaded: LoadedModel, options: PredictOptions, device: str) -> LoadedModel:
        """Case prediction runs the loaded model itself."""
        return loaded

    def predict(
        self, predictor: Any, items: Sequence[Sample], out: Path, options: PredictOptions
    ) -> list[dict]:
        """Segmentation NIfTI, overlays and region volumes per case (``predict_case``)."""
        from braintumor.brats.inference import predict_case  # MONAI

        return [
            predict_case(predictor, sample, out, tta=bool(options.tta), overlays=options.overlays)
            for sample in items
        ]


class Brats2DTask(BratsTask):
    """A 2D network over axial slices of every modality."""

    name = "brats2d"
    description = "BraTS regions, trained on axial slices, predicted per case"
    title = "BraTS tumour regions (2D, slice by slice)"
    mode = "2d"
    network_kind = SEGMENTER_2D


class Brats3DTask(BratsTask):
    """A 3D network over patches, sliding-window inference."""

    name = "brats3d"
    description = "BraTS regions, trained on 3D patches, predicted per case"
    title = "BraTS tumour regions (3D)"
    mode = "3d"
    network_kind = SEGMENTER_3D
