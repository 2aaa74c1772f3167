"""The ``segment`` task: a binary tumour mask per 2D image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from braintumor.config import Recipe
from braintumor.data.layouts_base import SEGMENT_DATA
from braintumor.data.lgg import LGG_LAYOUT
from braintumor.data.samples import Sample
from braintumor.evaluation.tables import segmentation_table
from braintumor.inference.choice import choose_inference
from braintumor.inference.ood import ood_fields
from braintumor.inference.outputs import Item, segmentation_record, tumour_mask
from braintumor.inference.prefetch import as_stored
from braintumor.inference.stack_filter import filter_stacks
from braintumor.models.folder import LoadedModel
from braintumor.models.registry import SEGMENTER_2D
from braintumor.tasks.images import Evaluator, ImageTask
from braintumor.tasks.registry import MASK, PredictOptions, TaskSetup


class SegmentationTask(ImageTask):
    """Decoded slice/mask pairs + a binary segmenter; TTA, largest component and (patient
    stacks) the 3D component rule chosen on validation; masks, overlays and localisations per
    image."""

    name = "segment"
    description = "a binary tumour mask per 2D image"
    title = "tumour segmentation of a slice"
    data_kinds = (SEGMENT_DATA,)
    network_kind = SEGMENTER_2D
    outputs = MASK
    table = "summary"

    def build(self, recipe: Recipe, splits: dict[str, list[Sample]]) -> TaskSetup:
        """See :func:`braintumor.training.setup.build_segmentation`."""
        from braintumor.training.setup import build_segmentation  # Lightning: slow to import

        return build_segmentation(recipe, splits)

    def tune(self, loaded: LoadedModel, recipe: Recipe, val: list[Sample]) -> dict[str, Any]:
        """TTA, largest component and the stack rule, chosen by validation Dice
        (:mod:`.inference.choice`)."""
        return choose_inference(loaded, val, recipe.inference)

    def _evaluator(self) -> Evaluator:
        """:func:`braintumor.evaluation.segmentation.evaluate_segmenter`."""
        from braintumor.evaluation.segmentation import evaluate_segmenter  # matplotlib

        return evaluate_segmenter

    def summary_table(self, metrics: dict[str, Any]) -> Table:
        """Mean Dice, IoU, HD95... per image and per patient with their 95% intervals."""
        return segmentation_table(metrics)

    def predict(
        self, predictor: Any, items: Sequence[Item], out: Path, options: PredictOptions
    ) -> list[dict]:
        """Writes ``<stem>_mask.png``, ``_overlay.png`` (unless ``options.overlays`` is off) and
        ``_localization.json`` per image; records carry the out-of-distribution flag and score
        when the model has statistics."""
        probs, scores = predictor.segment_scored([image for _, _, _, image in items])
        masks = [
            tumour_mask(p, options.threshold, options.min_area, predictor.keep_largest)
            for p in probs
        ]
        if predictor.stack_components:  # predict_images batches by stack
            masks = filter_stacks(masks, [path for _, path, _, _ in items])
        if options.overlays:  # drawn on the image as stored, not as decoded for the network
            items = [(stem, path, index, as_stored(image)) for stem, path, index, image in items]
        info = getattr(predictor, "info", None)
        # Overlays of a model trained on LGG show FLAIR, not three sequences as colours.
        flair = info is not None and (info.data_fingerprint or {}).get("layout") == LGG_LAYOUT
        return [
            segmentation_record(
                item,
                prob,
                mask,
                out,
                options.threshold,
                options.min_area,
                predictor.keep_largest,
                flair,
                options.overlays,
            )
            | ood_fields(None if scores is None else scores[n], predictor.ood)
            for n, (item, prob, mask) in enumerate(zip(items, probs, masks, strict=True))
        ]
