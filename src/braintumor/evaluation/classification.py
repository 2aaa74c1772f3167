"""Classifier evaluation: probabilities for every labelled sample, metrics with CIs, report."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from braintumor.data.preprocess import (
    PreprocessSpec,
    decode_side,
    pad_to_square,
    resize,
    to_grey_uint8,
)
from braintumor.data.samples import Sample
from braintumor.errors import DataError, ImageReadError
from braintumor.evaluation.adaptation import ADAPTED_TITLE, SourceAdaptation, wants_ood
from braintumor.evaluation.common import batches, label_indices, skip_record, write_outputs
from braintumor.inference.inputs import is_volume
from braintumor.inference.ood import ood_fields, ood_summary
from braintumor.inference.predictor import Predictor, model_device
from braintumor.inference.prefetch import PreparedImage, prefetched, prepared
from braintumor.io import LoadedImage, read_image
from braintumor.metrics.classification import classification_metrics
from braintumor.metrics.per_source import source_metrics
from braintumor.models.folder import LoadedModel
from braintumor.report.evaluation import classification_report

THUMBNAIL = 160
N_BOOTSTRAP = 1000


class Thumbnails(Sequence[np.ndarray]):
    """Grey square thumbnails read on demand, so the report's mistakes grid needs no copies."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        square, _ = pad_to_square(to_grey_uint8(read_image(self.paths[index]).array))
        return resize(square, THUMBNAIL)


def _read(sample: Sample, spec: PreprocessSpec) -> PreparedImage | ImageReadError | DataError:
    """The sample read and prepared as ``predict`` does it, or why it could not be."""
    try:
        image = read_image(sample.image, min_side=decode_side(spec))
        if is_volume(image):
            raise DataError(f"{sample.image}: a volume, not a slice")
        return prepared(image, spec)
    except (ImageReadError, DataError) as error:
        return error


def _read_batches(
    samples: list[Sample], adaptation: SourceAdaptation, spec: PreprocessSpec, batch_size: int
) -> Iterator[tuple[list[int], list[PreparedImage | ImageReadError | DataError]]]:
    """Index batches with their images read and prepared. Without adaptation the next batch
    is read in threads while the network runs on this one; with it, batches come source by
    source and are read in turn, since each source's adaptation must precede its batches."""
    if adaptation.layers:
        for chunk in adaptation.chunks(batch_size):
            yield chunk, [_read(samples[i], spec) for i in chunk]
        return
    chunks = list(batches(list(range(len(samples))), batch_size))
    read = prefetched(chunks, lambda i: _read(samples[i], spec))
    yield from zip(chunks, read, strict=True)


def evaluate_classifier(
    loaded: LoadedModel,
    samples: list[Sample],
    out_dir: Path,
    curves_csv: Path | None = None,
    batch_size: int = 32,
    adapt_bn: bool = False,
) -> dict:
    """Classifier evaluation (the ``classify`` task's :meth:`~braintumor.tasks.Task.evaluate`).

    ``adapt_bn`` re-estimates the batch-norm statistics on each source's images before
    predicting it (:mod:`braintumor.evaluation.adaptation`).
    """
    names = list(loaded.info.class_names)
    truth, renamed = label_indices(samples, names, loaded.path)
    predictor = Predictor(
        loaded,
        device=model_device(loaded),
        batch_size=batch_size,
        ood=wants_ood(adapt_bn, loaded.model),
    )

    def readable(sample: Sample) -> PreparedImage | None:
        outcome = _read(sample, predictor.spec)
        return None if isinstance(outcome, Exception) else outcome

    adaptation = SourceAdaptation(predictor, samples, readable, adapt_bn)
    kept: list[int] = []
    parts: list[np.ndarray] = []
    ood_parts: list[np.ndarray] = []
    skipped: list[dict] = []
    for chunk, outcomes in _read_batches(samples, adaptation, predictor.spec, batch_size):
        images: dict[int, LoadedImage] = {}
        for i, outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, Exception):
                skipped.append(skip_record(samples[i], outcome))
            else:
                images[i] = outcome
        ok = [i for i in chunk if i in images]
        if ok:
            probs, scores = predictor.classify_scored([images[i] for i in ok])
            parts.append(probs)
            ood_parts += [] if scores is None else [scores]
            kept += ok
    if not kept:
        raise DataError(f"none of the {len(samples)} samples could be read (first: {skipped[0]})")
    probs = np.concatenate(parts)
    ood_scores = np.concatenate(ood_parts) if ood_parts else None
    y = truth[kept]
    metrics = classification_metrics(y, probs, names, n_bootstrap=N_BOOTSTRAP, seed=0)
    metrics |= {
        "task": loaded.info.task,
        "model": str(loaded.path),
        "architecture": loaded.info.architecture,
        "n_samples": len(samples),
        "tta": predictor.tta,  # the model folder's setting (mirror TTA)
        "skipped": skipped,
        "label_mapping": renamed,
        "per_source": _per_source(samples, kept, y, probs, names),
    }
    ood = ood_summary(ood_scores, predictor.ood)
    if ood is not None:
        metrics["ood"] = ood
    adapted = adaptation.record()
    if adapted is not None:
        metrics["adapt_bn"] = adapted
    rows = []
    for n, (row_probs, index, label) in enumerate(zip(probs, kept, y, strict=True)):
        sample, predicted = samples[index], int(np.argmax(row_probs))
        rows.append(
            {
                "id": sample.id,
                "path": sample.image,
                "label": sample.label,
                "true": names[label],
                "predicted": names[predicted],
                "correct": int(predicted == label),
                **{f"prob_{name}": float(p) for name, p in zip(names, row_probs, strict=True)},
                **ood_fields(None if ood_scores is None else ood_scores[n], predictor.ood),
            }
        )
    write_outputs(out_dir, metrics, rows)
    classification_report(
        out_dir,
        metrics,
        names,
        y,
        probs,
        Thumbnails([samples[i].image for i in kept]),
        [samples[i].id for i in kept],
        curves_csv,
        title=f"Evaluation of {loaded.path.name} ({loaded.info.architecture})"
        + (ADAPTED_TITLE if adapted and adapted["layers"] else ""),
        per_source=metrics["per_source"],
    )
    return metrics


def _per_source(
    samples: list[Sample], kept: list[int], y: np.ndarray, probs: np.ndarray, names: list[str]
) -> dict[str, dict]:
    """:func:`source_metrics` for each source of the test samples (empty if none is named)."""
    sources = np.array([samples[i].source or "" for i in kept])
    return {
        source: source_metrics(y[sources == source], probs[sources == source], names)
        for source in dict.fromkeys(sources.tolist())
        if source
    }
