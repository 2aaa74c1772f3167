"""Evaluation with batch-norm statistics adapted to each test source (``evaluate --adapt-bn``).

With adaptation on, the samples are evaluated source by source: before the first batch of a
source, the predictor re-estimates its batch-norm statistics on that source's images
(:meth:`Predictor.adapt_bn`, labels unused), so every source is adapted on its own images from
the same trained network. The adapted statistics of each source are kept, so that pictures
drawn after the scoring pass (segmentation panels) use their source's; the trained statistics
are put back at the end. Out-of-distribution scores are not computed under adaptation: the
statistics they compare with describe the unadapted network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from braintumor.data.samples import Sample
from braintumor.evaluation.common import batches
from braintumor.inference.adapt_bn import NO_BATCHNORM, batchnorm_layers, bn_state, load_bn_state
from braintumor.inference.predictor import Predictor
from braintumor.io import LoadedImage

#: The record's name for the samples of an unnamed source (a single dataset folder).
ALL_SAMPLES = "all"
#: Added to a report's title when the statistics were adapted.
ADAPTED_TITLE = ", batch norm adapted to each source"
METHOD = "AdaBN: batch-norm statistics re-estimated on each test source's images"

#: Reads one sample's image for the adaptation pass; None when it cannot be read.
Reader = Callable[[Sample], LoadedImage | None]


def wants_ood(adapt_bn: bool, model: torch.nn.Module) -> bool:
    """Whether an evaluation scores out-of-distribution: not when batch norm is adapted."""
    return not (adapt_bn and batchnorm_layers(model))


class SourceAdaptation:
    """Sample batches for an evaluation, with the predictor adapted to each batch's source."""

    def __init__(
        self, predictor: Predictor, samples: list[Sample], read: Reader, enabled: bool
    ) -> None:
        self.predictor = predictor
        self.samples = samples
        self.read = read
        self.layers = len(batchnorm_layers(predictor.model)) if enabled else 0
        self.enabled = enabled
        self.trained = bn_state(predictor.model) if self.layers else {}
        self.adapted: dict[str, dict[str, torch.Tensor]] = {}
        self.images: dict[str, int] = {}

    def chunks(self, batch_size: int) -> Iterator[list[int]]:
        """Index batches of the samples; with adaptation, one source after another."""
        if not self.layers:
            yield from batches(list(range(len(self.samples))), batch_size)
            return
        by_source: dict[str, list[int]] = {}
        for index, sample in enumerate(self.samples):
            by_source.setdefault(_source(sample), []).append(index)
        try:
            for source, indices in by_source.items():
                images = (self.read(self.samples[i]) for i in indices)
                self.images[source] = self.predictor.adapt_bn(i for i in images if i is not None)
                self.adapted[source] = bn_state(self.predictor.model)
                yield from batches(indices, batch_size)
        finally:
            load_bn_state(self.predictor.model, self.trained)

    @contextmanager
    def applied(self, sample: Sample) -> Iterator[None]:
        """Predict ``sample`` with its source's adapted statistics (after :meth:`chunks`)."""
        state = self.adapted.get(_source(sample))
        if state is None:
            yield
            return
        load_bn_state(self.predictor.model, state)
        try:
            yield
        finally:
            load_bn_state(self.predictor.model, self.trained)

    def record(self) -> dict[str, Any] | None:
        """What ``metrics.json`` says of the adaptation (None when it was not asked for)."""
        if not self.enabled:
            return None
        if not self.layers:
            return {"method": METHOD, "layers": 0, "note": f"the model {NO_BATCHNORM}"}
        return {
            "method": METHOD,
            "layers": self.layers,
            "images": dict(self.images),
            "ood": "not scored: its statistics describe the unadapted network",
        }


def _source(sample: Sample) -> str:
    return str(sample.source) if sample.source else ALL_SAMPLES
