"""Fit a model folder's out-of-distribution statistics (:mod:`~braintumor.inference.ood`).

Means and the shared covariance come from the training split; the thresholds from the
validation split, at its 95th percentile of each score. Classes are the model's own predicted
classes, not the labels, so that any folder of images the model was trained on (labelled or
not, with the model's class names or others) can calibrate it; on training images the two
nearly coincide.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from braintumor.atomic import write_text_atomic
from braintumor.data.samples import Sample
from braintumor.data.splits import (
    TEST,
    TRAIN,
    VAL,
    layout_split_groups,
    read_splits,
    train_val_test_split,
)
from braintumor.errors import DataError, ImageReadError
from braintumor.inference.inputs import DECODE_THREADS, is_volume
from braintumor.inference.ood import FeatureTap, energy_score, feature_layer, mahalanobis_score
from braintumor.inference.predictor import Predictor, spec_of
from braintumor.io import LoadedImage, read_image
from braintumor.models.folder import INFO_FILE, LoadedModel, load_model_dir
from braintumor.models.ood_stats import ACCEPT_RATE, OODStats
from braintumor.tasks.registry import CLASSES

#: training images used for the means and covariance (a random subset of larger splits)
MAX_FIT_IMAGES = 4000
#: fewer validation images than this cannot place a 95th percentile
MIN_VAL_IMAGES = 10
#: the score a classifier uses by default (benchmarks/ood.py compares the two)
CLASSIFIER_METHOD = "mahalanobis"


def read_slice(path: str) -> LoadedImage | None:
    """A 2D image, or None for unreadable files and volumes (they are left out of the fit)."""
    try:
        image = read_image(path)
    except (ImageReadError, DataError):
        return None
    return None if is_volume(image) else image


def extract(
    predictor: Predictor, tap: FeatureTap, paths: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (N, D) and raw outputs (N, ...) of the readable images among ``paths``."""
    batches = (
        [image for image in DECODE_THREADS.map(read_slice, chunk) if image is not None]
        for chunk in (
            paths[i : i + predictor.batch_size] for i in range(0, len(paths), predictor.batch_size)
        )
    )
    try:
        return extract_images(predictor, tap, batches)
    except DataError:
        raise DataError(f"none of the {len(paths)} images could be read") from None


def extract_images(
    predictor: Predictor, tap: FeatureTap, batches: Iterable[list[LoadedImage]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (N, D) and raw outputs (N, ...) of batches of images (TTA off)."""
    features, outputs = [], []
    for batch in batches:
        if not batch:
            continue
        with tap.attached(predictor.network.current()):
            outputs.append(predictor.raw_outputs(batch).cpu())
        features.append(tap.features.cpu())
    if not features:
        raise DataError("no image to take features from")
    return torch.cat(features), torch.cat(outputs)


def gaussian(features: torch.Tensor, classes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Class means (K, D) of the classes present, and the shared Ledoit-Wolf precision (D, D)."""
    z = features.double().numpy()
    present = sorted(set(classes.tolist()))
    means = np.stack([z[classes.numpy() == k].mean(axis=0) for k in present])
    centred = z - means[np.searchsorted(present, classes.numpy())]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    return means.astype(np.float32), precision.astype(np.float32)


def _classes(classifier: bool, outputs: torch.Tensor) -> torch.Tensor:
    """Predicted class per image (single-logit models: logit > 0); segmenters one class."""
    if not classifier:
        return torch.zeros(len(outputs), dtype=torch.long)
    if outputs.shape[1] == 1:
        return (outputs[:, 0] > 0).long()
    return outputs.argmax(dim=1)


def _sample_paths(samples: list[Sample], limit: int, seed: int) -> list[str]:
    paths = [s.image for s in samples]
    if len(paths) > limit:
        paths = sorted(random.Random(seed).sample(paths, limit))
    return paths


def fit_ood(
    loaded: LoadedModel,
    train: list[Sample],
    val: list[Sample],
    batch_size: int = 32,
    seed: int = 0,
) -> OODStats:
    """Fit means and covariance on ``train`` and set the thresholds on ``val``."""
    info = loaded.info
    device = str(next(loaded.model.parameters()).device)
    # A ModelFormatError for models that do not take 2D images (BraTS).
    predictor = Predictor(loaded, device=device, tta=False, batch_size=batch_size, ood=False)
    classifier = predictor.outputs == CLASSES
    if not train or len(val) < MIN_VAL_IMAGES:
        raise DataError(
            f"OOD statistics need training images and at least {MIN_VAL_IMAGES} validation "
            f"images; got {len(train)} and {len(val)}"
        )
    size = spec_of(info).image_size
    layer = feature_layer(loaded.model, classifier, info.in_channels, size)
    at_input = classifier
    tap = FeatureTap(loaded.model, layer, at_input)
    z_train, out_train = extract(predictor, tap, _sample_paths(train, MAX_FIT_IMAGES, seed))
    means, precision = gaussian(z_train, _classes(classifier, out_train))
    z_val, out_val = extract(predictor, tap, [s.image for s in val])
    val_scores = {
        "mahalanobis": mahalanobis_score(
            z_val, torch.from_numpy(means), torch.from_numpy(precision)
        )
    }
    if classifier:
        val_scores["energy"] = energy_score(out_val)
    thresholds = {
        name: float(np.quantile(scores.numpy(), ACCEPT_RATE)) for name, scores in val_scores.items()
    }
    method = CLASSIFIER_METHOD if classifier else "mahalanobis"
    accepted = float((val_scores[method].numpy() <= thresholds[method]).mean())
    details = {
        "n_train": len(z_train),
        "n_val": len(z_val),
        "val_accepted": round(accepted, 4),
        "covariance": "shared, Ledoit-Wolf shrinkage",
        "classes": "predicted" if classifier else "one (segmenter)",
    }
    return OODStats(method, layer, at_input, means, precision, thresholds, details)


def calibrate_model_dir(
    folder: str | Path, train: list[Sample], val: list[Sample], batch_size: int = 32
) -> OODStats:
    """Fit the statistics of a model folder and record them there (safetensors + model.json)."""
    loaded = load_model_dir(folder)
    stats = fit_ood(loaded, train, val, batch_size=batch_size)
    # Only the statistics and model.json change: the weights are not rewritten.
    loaded.info.ood = stats.save(folder)
    write_text_atomic(Path(folder) / INFO_FILE, loaded.info.to_json())
    return stats


def calibration_splits(
    layout: Any, splits_csv: Path | None = None, val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples of a dataset for :func:`calibrate_model_dir`.

    With ``splits_csv`` (a run's ``splits.csv``) its train and val splits are used as they
    are. Otherwise the dataset's own test samples are left out and the rest is split
    ``1 - val_fraction`` / ``val_fraction`` by patient and duplicate groups (the audit's exact
    and near copies), so no copy of a validation image helps fit the means.
    """
    samples: list[Sample] = layout.samples
    if splits_csv is not None:
        table = read_splits(splits_csv)
        if table.column != "split":
            raise DataError(f"{splits_csv}: a fold file; calibration needs train and val splits")
        chosen = {
            side: [s for s in samples if table.assignment.get(s.id) == side]
            for side in (TRAIN, VAL)
        }
        if not chosen[TRAIN]:
            raise DataError(f"{splits_csv}: no sample of {layout.root} is in its train split")
        return chosen[TRAIN], chosen[VAL]
    from braintumor.data.audit import audit_dataset  # hashes every file: only when needed

    pool = [s for s in samples if s.split != TEST]
    report = audit_dataset(pool, layout.root, progress=False)
    groups = layout_split_groups(dataclasses.replace(layout, samples=pool), report)
    assignment = train_val_test_split(pool, (1 - val_fraction, val_fraction, 0.0), seed, groups)
    train = [s for s, side in zip(pool, assignment, strict=True) if side == TRAIN]
    val = [s for s, side in zip(pool, assignment, strict=True) if side == VAL]
    return train, val
