"""What the two 2D image tasks (classification, segmentation) share: the batched predictor and
the checks before an evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from braintumor.config import Recipe
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.inference.adapt_bn import batchnorm_layers
from braintumor.inference.predictor import Predictor
from braintumor.models.folder import LoadedModel
from braintumor.tasks.registry import IMAGES, EvaluateOptions, PredictOptions


class Evaluator(Protocol):
    """``evaluate_classifier`` / ``evaluate_segmenter``'s shared arguments."""

    def __call__(
        self,
        loaded: LoadedModel,
        samples: list[Sample],
        out_dir: Path,
        curves_csv: Path | None = ...,
        batch_size: int = ...,
        *,
        adapt_bn: bool = ...,
    ) -> dict: ...


class ImageTask:
    """Base of the tasks whose model takes one 2D image (or a slice of a volume) at a time."""

    inputs = IMAGES

    def predictor(self, loaded: LoadedModel, options: PredictOptions, device: str) -> Predictor:
        """A batched :class:`Predictor` with the model folder's settings unless overridden.

        With ``options.adapt_bn`` the predictor scores no out-of-distribution: the statistics
        describe the unadapted network.
        """
        predictor = Predictor(
            loaded,
            device=device,
            tta=options.tta,
            batch_size=options.batch_size,
            precision=options.precision,
            ood=not (options.adapt_bn and batchnorm_layers(loaded.model)),
        )
        if options.keep_largest is not None:
            predictor.keep_largest = options.keep_largest
        if options.stack_components is not None:
            predictor.stack_components = options.stack_components
        return predictor

    def resolve(self, recipe: Recipe, splits: dict[str, list[Sample]]) -> Recipe:
        """An image recipe is complete as loaded: nothing follows from the data."""
        return recipe

    def tune(self, loaded: LoadedModel, recipe: Recipe, val: list[Sample]) -> dict[str, Any]:
        """No inference choice to make by default."""
        return {}

    def evaluate(
        self,
        loaded: LoadedModel,
        samples: list[Sample],
        out_dir: Path,
        options: EvaluateOptions | None = None,
    ) -> dict[str, Any]:
        """The task's evaluation function (:meth:`_evaluator`) on ``samples``, written to
        ``out_dir``; an empty list is a :class:`DataError`."""
        options = options or EvaluateOptions()
        if not samples:
            raise DataError("nothing to evaluate: no samples")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        evaluate = self._evaluator()
        return evaluate(
            loaded,
            samples,
            out_dir,
            options.curves_csv,
            options.batch_size,
            adapt_bn=options.adapt_bn,
        )

    def _evaluator(self) -> Evaluator:
        """The evaluation function (imported when called: it draws with matplotlib)."""
        raise NotImplementedError
