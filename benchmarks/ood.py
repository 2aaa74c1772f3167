"""Out-of-distribution benchmark: does a model's OOD score tell its MRI slices from foreign images?

    python benchmarks/ood.py runs/sartaj-ood/model --data sartaj-4class --inside val test \
        --other figshare-seg lgg-kaggle3m

The in-distribution sets are splits of the model's run (``splits.csv`` beside the model
folder; else the dataset's own): ``val`` was held out from the means and covariance but set
the threshold (AUROC does not depend on the threshold), ``test`` was held out from both. Each
is compared, by the area under the ROC curve (AUROC, "OOD" the positive class), with:

* ``natural``: the photographs and micrographs bundled with scikit-image, in random crops;
* ``texture``: scikit-image's textures (brick, grass, gravel...) and generated noise
  (uniform, Gaussian, smoothed, stripes, checkerboards);
* ``ct_like``: the Shepp-Logan head phantom (a CT test object), rotated, scaled and cropped;
* ``corrupted``: the in-distribution test slices with heavy damage (strong noise, scrambled
  16-pixel tiles, inverted intensities);
* each ``--other`` shared MRI source the model was not trained on.

For every set the JSON holds the AUROC of each score (Mahalanobis and energy for classifiers,
Mahalanobis for segmenters) and the share flagged at the model folder's own threshold, next to
the share of in-distribution test slices accepted. Results go to
``benchmarks/results/ood_<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from skimage import data as skdata
from skimage.filters import gaussian
from skimage.transform import resize, rotate
from sklearn.metrics import roc_auc_score

from braintumor.atomic import write_text_atomic
from braintumor.data.layouts import detect_layout
from braintumor.data.samples import Sample
from braintumor.data.splits import read_splits
from braintumor.errors import DataError
from braintumor.inference.ood import FeatureTap
from braintumor.inference.ood_fit import extract_images, read_slice
from braintumor.inference.predictor import Predictor
from braintumor.io import LoadedImage
from braintumor.models.folder import load_model_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))

NATURAL = [
    "astronaut",
    "camera",
    "cat",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
    "cell",
    "microaneurysms",
    "logo",
]
TEXTURES = ["brick", "grass", "gravel", "checkerboard", "binary_blobs"]
CROPS_PER_IMAGE = 6


def _uint8(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    low, high = float(array.min()), float(array.max())
    return (
        np.zeros(array.shape, np.uint8)
        if high <= low
        else ((array - low) / (high - low) * 255).astype(np.uint8)
    )


def _crop(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random square crop (40-100% of the short side), possibly mirrored, resized to 256."""
    height, width = array.shape[:2]
    side = int(min(height, width) * rng.uniform(0.4, 1.0))
    y, x = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    crop = array[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = crop.astype(np.float64)  # some bundled images are boolean
    return _uint8(resize(crop, (256, 256, *crop.shape[2:]), anti_aliasing=True))


def _image(array: np.ndarray, name: str) -> LoadedImage:
    return LoadedImage(array=np.ascontiguousarray(array), path=Path(name))


def natural_images(rng: np.random.Generator) -> list[LoadedImage]:
    """Random crops of scikit-image's bundled photographs and micrographs."""
    out = []
    for name in NATURAL:
        array = getattr(skdata, name)()
        if array.ndim == 3 and array.shape[2] == 4:
            array = array[..., :3]
        out += [_image(_crop(array, rng), f"{name}-{i}") for i in range(CROPS_PER_IMAGE)]
    return out


def _generated_texture(kind: str, rng: np.random.Generator, size: int = 256) -> np.ndarray:
    if kind == "uniform":
        return rng.random((size, size))
    if kind == "gaussian":
        return rng.normal(size=(size, size))
    if kind == "smooth":
        return gaussian(rng.normal(size=(size, size)), sigma=rng.uniform(2, 12))
    yy, xx = np.mgrid[0:size, 0:size]
    period = rng.uniform(6, 40)
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        return np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    return ((xx // period + yy // period) % 2).astype(float)  # checkers


def textures(rng: np.random.Generator) -> list[LoadedImage]:
    """scikit-image textures in random crops, and generated noise and patterns."""
    out = []
    for name in TEXTURES:
        array = getattr(skdata, name)()
        out += [_image(_crop(array, rng), f"{name}-{i}") for i in range(CROPS_PER_IMAGE)]
    for kind in ("uniform", "gaussian", "smooth", "stripes", "checkers"):
        out += [_image(_uint8(_generated_texture(kind, rng)), f"{kind}-{i}") for i in range(12)]
    return out


def ct_like(rng: np.random.Generator, n: int = 40) -> list[LoadedImage]:
    """The Shepp-Logan head phantom, rotated, scaled, cropped and a little noisy."""
    phantom = skdata.shepp_logan_phantom()
    out = []
    for i in range(n):
        array = rotate(phantom, rng.uniform(-30, 30), mode="constant")
        array = array + rng.normal(scale=rng.uniform(0.0, 0.05), size=array.shape)
        out.append(_image(_crop(array, rng), f"shepp-logan-{i}"))
    return out


def _scramble(grey: np.ndarray, rng: np.random.Generator, tile: int = 16) -> np.ndarray:
    height, width = (grey.shape[0] // tile) * tile, (grey.shape[1] // tile) * tile
    tiles = grey[:height, :width].reshape(height // tile, tile, width // tile, tile)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(-1, tile, tile)
    tiles = tiles[rng.permutation(len(tiles))]
    grid = tiles.reshape(height // tile, width // tile, tile, tile).transpose(0, 2, 1, 3)
    return grid.reshape(height, width)


CORRUPTIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "noise": lambda g, r: _uint8(g / 255.0 + r.normal(scale=0.6, size=g.shape)),
    "scrambled": _scramble,
    "inverted": lambda g, r: 255 - g,
}


def corrupted(images: list[LoadedImage], rng: np.random.Generator) -> dict[str, list[LoadedImage]]:
    """Each in-distribution test slice damaged in each of :data:`CORRUPTIONS`."""
    out: dict[str, list[LoadedImage]] = {}
    for name, damage in CORRUPTIONS.items():
        out[name] = []
        for image in images:
            array = image.array if image.array.ndim == 2 else image.array[..., :3].mean(axis=2)
            out[name].append(_image(damage(_uint8(array), rng), f"{image.path.name}-{name}"))
    return out


def split_samples(model_dir: Path, data: Path, split: str) -> list[Sample]:
    """A split of the model's run (``splits.csv`` beside the model), else the dataset's own."""
    samples = detect_layout(data).samples
    pinned = model_dir.parent / "splits.csv"
    if pinned.is_file():
        table = read_splits(pinned)
        chosen = [s for s in samples if table.assignment.get(s.id) == split]
    else:
        chosen = [s for s in samples if s.split == split]
    if not chosen:
        raise DataError(f"{data}: no {split} samples (no splits.csv beside {model_dir})")
    return chosen


def read_all(paths: list[str]) -> list[LoadedImage]:
    return [image for image in map(read_slice, paths) if image is not None]


def _batched(images: list[LoadedImage], size: int) -> Iterator[list[LoadedImage]]:
    for start in range(0, len(images), size):
        yield images[start : start + size]


def scores_of(
    predictor: Predictor, tap: FeatureTap, images: list[LoadedImage]
) -> dict[str, np.ndarray]:
    """Every OOD score the model's statistics support, per image."""
    features, outputs = extract_images(predictor, tap, _batched(images, predictor.batch_size))
    assert predictor.ood is not None
    return predictor.ood.scores(features, outputs)


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """AUROC of a score (higher = more foreign) separating ``outside`` from ``inside``."""
    truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(truth, np.r_[inside, outside]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    loaded = load_model_dir(args.model)
    if not loaded.info.ood:
        raise DataError(f"{args.model}: no OOD statistics; run `braintumor models calibrate-ood`")
    predictor = Predictor(loaded, tta=False, batch_size=32)
    assert predictor.ood is not None
    tap = predictor.ood.tap
    inside_images = {
        split: read_all([s.image for s in split_samples(args.model, SHARED / args.data, split)])
        for split in args.inside
    }
    main_split = args.inside[0]
    sets: dict[str, list[LoadedImage]] = {
        "natural": natural_images(rng),
        "texture": textures(rng),
        "ct_like": ct_like(rng),
    }
    chosen = random.Random(args.seed).sample(
        inside_images[main_split], min(100, len(inside_images[main_split]))
    )
    sets |= {f"corrupted_{name}": images for name, images in corrupted(chosen, rng).items()}
    for other in args.other:
        paths = [s.image for s in detect_layout(SHARED / other).samples]
        paths = random.Random(args.seed).sample(paths, min(args.n_other, len(paths)))
        sets[f"mri_{other}"] = read_all(paths)
    start = time.perf_counter()
    inside = {split: scores_of(predictor, tap, images) for split, images in inside_images.items()}
    threshold = predictor.ood.threshold
    method = predictor.ood.method
    results: dict[str, Any] = {}
    for name, images in sets.items():
        outside = scores_of(predictor, tap, images)
        results[name] = {
            "n": len(images),
            "flagged_at_threshold": round(float((outside[method] > threshold).mean()), 4),
        }
        for split, scores in inside.items():
            results[name][f"auroc_vs_{split}"] = {
                score: round(auroc(scores[score], outside[score]), 4) for score in scores
            }
        shown = results[name][f"auroc_vs_{main_split}"]
        print(
            f"{name:26s} n={len(images):4d} " + "  ".join(f"{k} {v:.3f}" for k, v in shown.items())
        )
    non_mri = [k for k in results if not k.startswith("mri_")]
    summary = {
        split: {
            score: round(
                float(np.mean([results[k][f"auroc_vs_{split}"][score] for k in non_mri])), 4
            )
            for score in inside[split]
        }
        for split in inside
    }
    return {
        "benchmark": "ood",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": str(args.model),
        "model_info": {
            "architecture": loaded.info.architecture,
            "task": loaded.info.task,
            "test_metrics": {k: v for k, v in loaded.info.metrics.items() if k.startswith("test_")},
            "ood": loaded.info.ood,
        },
        "in_distribution": {
            split: {
                "data": args.data,
                "n": len(inside_images[split]),
                "accepted_at_threshold": round(float((scores[method] <= threshold).mean()), 4),
            }
            for split, scores in inside.items()
        },
        "method": method,
        "threshold": threshold,
        "sets": results,
        "mean_auroc_non_mri": summary,
        "seconds": round(time.perf_counter() - start, 1),
        "load_average_at_start": os.getloadavg()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="model folder with OOD statistics")
    parser.add_argument("--data", required=True, help="its training source under the shared data")
    parser.add_argument(
        "--inside",
        nargs="+",
        default=["test"],
        help="in-distribution split(s) of the run; the first is the AUROC headline and the "
        "source of the corrupted slices (val: held out from the fit, but it set the threshold)",
    )
    parser.add_argument("--other", nargs="*", default=[], help="other shared MRI sources")
    parser.add_argument("--n-other", type=int, default=300, help="images drawn per other source")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="results/ood_<name>.json [default: --data]")
    args = parser.parse_args()
    result = run(args)
    out = RESULTS / f"ood_{args.name or args.data}.json"
    write_text_atomic(out, json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
