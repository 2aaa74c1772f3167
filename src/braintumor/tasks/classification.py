"""The ``classify`` task: one class per 2D image (tumour type, or tumour / no tumour)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from braintumor.config import Recipe
from braintumor.data.layouts_base import CLASSIFY_DATA, SEGMENT_DATA
from braintumor.data.samples import Sample
from braintumor.evaluation.tables import classification_table
from braintumor.inference.ood import ood_fields
from braintumor.inference.outputs import Item, classification_records
from braintumor.models.folder import LoadedModel
from braintumor.models.registry import CLASSIFIER
from braintumor.tasks.images import Evaluator, ImageTask
from braintumor.tasks.registry import CLASSES, PredictOptions, TaskSetup


class ClassificationTask(ImageTask):
    """Decoded slices + a timm (or own) classifier; evaluated with CIs; predicts classes."""

    name = "classify"
    description = "one class per 2D image"
    title = "classification of a slice"
    # A segmentation dataset with class labels (Figshare) trains a classifier too.
    data_kinds = (CLASSIFY_DATA, SEGMENT_DATA)
    network_kind = CLASSIFIER
    outputs = CLASSES
    table = "predictions"

    def build(self, recipe: Recipe, splits: dict[str, list[Sample]]) -> TaskSetup:
        """See :func:`braintumor.training.setup.build_classification`."""
        from braintumor.training.setup import build_classification  # Lightning: slow to import

        return build_classification(recipe, splits)

    def tune(self, loaded: LoadedModel, recipe: Recipe, val: list[Sample]) -> dict[str, Any]:
        """Mirror TTA when the recipe asks for it (``inference.tta: true``); nothing is chosen
        on validation for a classifier."""
        return {"tta": True} if recipe.inference.tta is True else {}

    def _evaluator(self) -> Evaluator:
        """:func:`braintumor.evaluation.classification.evaluate_classifier`."""
        from braintumor.evaluation.classification import evaluate_classifier  # matplotlib

        return evaluate_classifier

    def summary_table(self, metrics: dict[str, Any]) -> Table:
        """Accuracy, macro F1 / AUC and ECE with their 95% intervals."""
        return classification_table(metrics)

    def predict(
        self, predictor: Any, items: Sequence[Item], out: Path, options: PredictOptions
    ) -> list[dict]:
        """One record per image: the predicted class, its probability and all probabilities,
        and the out-of-distribution flag and score when the model has statistics."""
        probs, scores = predictor.classify_scored([image for _, _, _, image in items])
        records = classification_records(list(items), probs, predictor.info, options.threshold)
        for n, record in enumerate(records):
            record.update(ood_fields(None if scores is None else scores[n], predictor.ood))
        return records
