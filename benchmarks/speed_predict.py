"""Predict on a folder of real JPEGs: a plain PyTorch loop against ``braintumor predict``'s path.

Three parts, written to ``results/predict_speed.json`` (``--only`` runs some of them):

- ``speed``: slices/s on ``--files`` JPEGs of sartaj-4class/Training (every k-th file, sorted),
  decode included, for ``zoo:4class`` and ``zoo:seg2d``. The plain loop is what a notebook
  does: PIL open, full decode, grey, resize to 128 px, fp32 model, plain batches in one
  process (the U-Net's probability map resized back to the image's size). Ours is
  :func:`~braintumor.tasks.predict.predict_images` (reduced JPEG decode in threads, read
  ahead, bf16 where the CPU has it); for the U-Net also up to the probability maps alone
  (what the plain loop gives, no files written). Variants run whole passes over the files in
  ``--rounds`` rounds of alternating order.
- ``parity``: on the reference models' own test splits (rebuilt with the toolkit's
  leak-free split, checked against the ids fingerprint in ``model.json``): full decode fp32
  (how the models were evaluated) against predict's reduced decode in fp32 and in bf16:
  accuracy or Dice, agreement, probability and pixel differences.
- ``cpu``: the ``speed`` variants again with one PyTorch thread (``--cpu-files`` files, one
  round), for their CPU time per slice: on a machine shared with other work the wall clock
  of two-thread runs swings with the others' load, and OpenMP threads spinning at their
  barriers inflate CPU time; one thread does not spin.
- ``latency``: the web app's pipeline (:func:`~braintumor.serve.pipeline.predict_upload`) on
  one uploaded JPEG at a time: p50 / p95 milliseconds.

    python benchmarks/speed_predict.py [--files 500] [--rounds 2] [--only speed parity latency cpu]

Each part run replaces its entry in the JSON and keeps the others.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from braintumor.atomic import write_text_atomic
from braintumor.data.preprocess import prepare_slice
from braintumor.data.samples import Sample
from braintumor.inference.predictor import Predictor
from braintumor.inference.prefetch import load_prepared, prefetched
from braintumor.io import read_image, read_mask
from braintumor.metrics.classification import classification_metrics
from braintumor.models.folder import LoadedModel, load_model_dir
from braintumor.tasks.predict import predict_images
from braintumor.tasks.registry import PredictOptions, task_of
from braintumor.zoo import resolve_model_ref
from braintumor.zoo.inputs import reference_test_split
from speed_common import RESULTS, command_line, load_average, machine_info, shared_data_root

MODELS = {"classify": "zoo:4class", "segment": "zoo:seg2d"}


def pick_files(root: Path, count: int) -> list[Path]:
    """``count`` JPEGs spread evenly over sartaj-4class/Training (sorted, every k-th)."""
    every = sorted((root / "sartaj-4class" / "Training").glob("*/*.jpg"))
    step = max(1, len(every) // count)
    return every[::step][:count]


def plain_loop(model: torch.nn.Module, segment: bool, batch: int) -> Callable[[list[Path]], int]:
    """The notebook loop: PIL full decode, grey, 128 px, fp32 batches (the U-Net's map back at
    the image's size). Mean 0.5 / std 0.25, as the reference models normalise."""

    def load(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        with Image.open(path) as image:
            grey = image.convert("L")
        small = grey.resize((128, 128), Image.BILINEAR)
        return np.asarray(small, dtype=np.float32) / 255.0, (grey.height, grey.width)

    def run(paths: list[Path]) -> int:
        done = 0
        for start in range(0, len(paths), batch):
            loaded = [load(p) for p in paths[start : start + batch]]
            x = torch.from_numpy(np.stack([a for a, _ in loaded]))[:, None]
            with torch.inference_mode():
                out = model((x - 0.5) / 0.25)
                if segment:
                    maps = torch.sigmoid(out[:, 0]).numpy()
                    for prob, (h, w) in zip(maps, [s for _, s in loaded], strict=True):
                        cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
                else:
                    torch.softmax(out, dim=1)
            done += len(loaded)
        return done

    return run


def ours_predict(
    model_ref: str,
    precision: str,
    batch: int,
    out: Path,
    overlays: bool = True,
    tta: bool | None = None,
) -> Callable[..., int]:
    """``predict_images`` as the CLI runs it (records; the U-Net's masks, localisations and,
    unless ``overlays`` is off (``--no-overlays``), overlays written). ``tta=None`` keeps the
    model folder's setting (``zoo:4class`` and ``zoo:seg2d``: mirror TTA), ``False`` is
    ``--no-tta``."""
    loaded = load_model_dir(resolve_model_ref(model_ref))
    task = task_of(loaded)
    options = PredictOptions(batch_size=batch, precision=precision, overlays=overlays, tta=tta)
    predictor = task.predictor(loaded, options, "cpu")

    def run(paths: list[Path]) -> int:
        records, failures = predict_images(task, predictor, paths, out, options)
        if failures:
            raise RuntimeError(f"predict failed on {failures[0]}")
        return len(records)

    return run


def ours_maps(
    model_ref: str, precision: str, batch: int, tta: bool | None = None
) -> Callable[[list[Path]], int]:
    """The U-Net's probability maps at each image's size through predict's reading, nothing
    written: the same output as the plain loop. ``tta=None`` keeps the model folder's choice
    (``zoo:seg2d``: mirror TTA, twice the network's work); ``False`` is the plain loop's work."""
    predictor = Predictor(
        load_model_dir(resolve_model_ref(model_ref)),
        batch_size=batch,
        precision=precision,
        tta=tta,
    )

    def run(paths: list[Path]) -> int:
        chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
        done = 0
        for images in prefetched(chunks, lambda p: load_prepared(p, predictor.spec)):
            done += len(predictor.segment(images))
        return done

    return run


def time_variants(
    variants: dict[str, Callable[[list[Path]], int]], paths: list[Path], rounds: int
) -> dict[str, dict[str, Any]]:
    """Whole passes over ``paths`` per variant and round, alternating the order each round.

    Besides wall time, the CPU time of the process (all its threads) per slice: other work on
    a shared machine slows the wall clock more than it adds CPU time."""
    names = list(variants)
    for name in names:  # warm-up: first-batch allocations, oneDNN kernels for bf16
        variants[name](paths[:64])
    seconds: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, float] = dict.fromkeys(names, 0.0)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            done = variants[name](paths)
            seconds[name].append(time.perf_counter() - start)
            cpu[name] += time.process_time() - start_cpu
            assert done == len(paths), (name, done)
    return {
        name: {
            "slices_per_s": round(len(paths) * rounds / sum(s), 1),
            "round_slices_per_s": [round(len(paths) / x, 1) for x in s],
            "cpu_ms_per_slice": round(1000 * cpu[name] / (len(paths) * rounds), 2),
        }
        for name, s in seconds.items()
    }


def speed(root: Path, count: int, rounds: int, batch: int) -> dict[str, Any]:
    """The ``speed`` part: plain loop vs ours for the classifier and the U-Net."""
    paths = pick_files(root, count)
    sizes = [Image.open(p).size for p in paths]
    result: dict[str, Any] = {
        "files": len(paths),
        "source": "sartaj-4class/Training, every k-th JPEG (sorted)",
        "share_512px_or_more": round(float(np.mean([max(s) >= 512 for s in sizes])), 3),
        "batch": batch,
        "torch_threads": torch.get_num_threads(),
    }
    for task, ref in MODELS.items():
        segment = task == "segment"
        model = load_model_dir(resolve_model_ref(ref)).model.eval()
        with tempfile.TemporaryDirectory() as tmp:
            variants = {
                "plain_loop_fp32": plain_loop(model, segment, batch),
                "ours_predict": ours_predict(ref, "auto", batch, Path(tmp)),
            }
            if segment:  # the plain loop's output: maps, no files
                variants["ours_predict_no_overlays"] = ours_predict(
                    ref, "auto", batch, Path(tmp), overlays=False
                )
                variants["ours_maps"] = ours_maps(ref, "auto", batch)
                variants["ours_maps_no_tta"] = ours_maps(ref, "auto", batch, tta=False)
                variants["ours_maps_no_tta_fp32"] = ours_maps(ref, "fp32", batch, tta=False)
            else:
                variants["ours_predict_no_tta"] = ours_predict(
                    ref, "auto", batch, Path(tmp), tta=False
                )
                variants["ours_predict_fp32"] = ours_predict(ref, "fp32", batch, Path(tmp))
            rows = time_variants(variants, paths, rounds)
        base = rows["plain_loop_fp32"]["slices_per_s"]
        for row in rows.values():
            row["vs_plain_loop"] = round(row["slices_per_s"] / base, 2)
        result[task] = {"model": ref, "variants": rows}
        print(task, rows)
    return result


def quiet_test_split(name: str, root: Path, work: Path, loaded: LoadedModel) -> list[Sample]:
    """The reference model's test samples, rebuilt as its build made them (its fingerprint
    checked), without the split's report on stderr."""
    fingerprint = loaded.info.data_fingerprint
    with contextlib.redirect_stderr(None):
        _, test = reference_test_split(name, root, work / f"{name}-run", fingerprint)
    return test


def _pixels(samples: list[Any], predictor: Predictor) -> dict[str, Any]:
    """Predict's reduced-decode input against a full decode's, per image."""
    means, over16, reduced = [], [], 0
    for sample in samples:
        fast = load_prepared(Path(sample.image), predictor.spec)
        full = prepare_slice(read_image(sample.image).array, predictor.spec)
        diff = np.abs(full.astype(int) - fast.network_input.astype(int))
        reduced += "full_shape" in fast.meta
        means.append(diff.mean())
        over16.append((diff > 16).mean())
    return {
        "images_decoded_reduced": reduced,
        "mean_abs_diff": round(float(np.mean(means)), 3),
        "p95_image_mean_abs_diff": round(float(np.percentile(means, 95)), 3),
        "max_image_mean_abs_diff": round(float(np.max(means)), 3),
        "share_pixels_over_16": round(float(np.mean(over16)), 5),
    }


def parity_classify(root: Path, work: Path) -> dict[str, Any]:
    """zoo:4class on its test split: full decode fp32 vs predict's inputs in fp32 and bf16."""
    loaded = load_model_dir(resolve_model_ref("zoo:4class"))
    samples = quiet_test_split("4class", root, work, loaded)
    names = list(loaded.info.class_names)
    y = np.array([names.index(s.label) for s in samples])
    fp32 = Predictor(loaded, batch_size=32, precision="fp32")
    bf16 = Predictor(loaded, batch_size=32, precision="bf16")
    full = fp32.classify([read_image(s.image) for s in samples])
    fast_inputs = [load_prepared(Path(s.image), fp32.spec) for s in samples]
    runs = {"full_decode_fp32": full}
    runs["predict_fp32"] = fp32.classify(fast_inputs)
    runs["predict_bf16"] = bf16.classify(fast_inputs)
    out: dict[str, Any] = {
        "model": "zoo:4class",
        "n": len(samples),
        "pixels": _pixels(samples, fp32),
    }
    for name, probs in runs.items():
        metrics = classification_metrics(y, probs, names, n_bootstrap=1000, seed=0)
        out[name] = {
            "accuracy": round(float(metrics["accuracy"]), 4),
            "ci95_accuracy": [round(float(v), 4) for v in metrics["ci95"]["accuracy"]],
            "same_class_as_full_fp32": round(float((probs.argmax(1) == full.argmax(1)).mean()), 4),
            "max_abs_prob_diff": round(float(np.abs(probs - full).max()), 4),
            "mean_abs_prob_diff": round(float(np.abs(probs - full).mean()), 5),
        }
    bf16_vs_fp32 = np.abs(runs["predict_bf16"] - runs["predict_fp32"])
    agree = runs["predict_bf16"].argmax(1) == runs["predict_fp32"].argmax(1)
    out["bf16_vs_fp32_same_input"] = {
        "same_class": round(float(agree.mean()), 4),
        "max_abs_prob_diff": round(float(bf16_vs_fp32.max()), 4),
        "mean_abs_prob_diff": round(float(bf16_vs_fp32.mean()), 5),
    }
    return out


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * (pred & truth).sum() / total)


def parity_segment(root: Path, work: Path) -> dict[str, Any]:
    """zoo:seg2d on its test split (PNG: read whole either way): fp32 vs bf16 masks."""
    loaded = load_model_dir(resolve_model_ref("zoo:seg2d"))
    samples = quiet_test_split("seg2d", root, work, loaded)
    masks = {}
    for precision in ("fp32", "bf16"):
        predictor = Predictor(loaded, batch_size=32, precision=precision)
        images = [load_prepared(Path(s.image), predictor.spec) for s in samples]
        masks[precision] = [p >= 0.5 for p in predictor.segment(images)]
    truth = [read_mask(s.mask, like=read_image(s.image)) > 0 for s in samples]
    dice = {k: [_dice(m, t) for m, t in zip(v, truth, strict=True)] for k, v in masks.items()}
    agreement = [_dice(a, b) for a, b in zip(masks["fp32"], masks["bf16"], strict=True)]
    return {
        "model": "zoo:seg2d",
        "n": len(samples),
        "mean_dice_fp32": round(float(np.mean(dice["fp32"])), 4),
        "mean_dice_bf16": round(float(np.mean(dice["bf16"])), 4),
        "dice_bf16_mask_vs_fp32_mask_mean": round(float(np.mean(agreement)), 4),
        "dice_bf16_mask_vs_fp32_mask_min": round(float(np.min(agreement)), 4),
        "pixels_differing": round(
            float(np.mean([(a != b).mean() for a, b in zip(*masks.values(), strict=True)])), 6
        ),
    }


def latency(root: Path, uploads: int) -> dict[str, Any]:
    """The web app's pipeline on one uploaded JPEG at a time (p50 / p95 ms)."""
    from braintumor.serve.pipeline import load_models, predict_upload

    paths = pick_files(root, uploads)
    out: dict[str, Any] = {"uploads": len(paths)}
    for task, ref in MODELS.items():
        served = next(iter(load_models([resolve_model_ref(ref)]).values()))
        times = []
        for n, path in enumerate([paths[0], *paths]):  # the first is a warm-up
            with tempfile.TemporaryDirectory() as tmp:
                upload = Path(tmp) / "upload"
                shutil.copy(path, upload)
                start = time.perf_counter()
                predict_upload(served, upload, "jpeg", Path(tmp), path.name)
                if n:
                    times.append(time.perf_counter() - start)
        ms = np.array(times) * 1000
        out[task] = {
            "model": ref,
            "precision": served.predictor.precision,
            "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "mean_ms": round(float(statistics.mean(ms)), 1),
        }
        print(task, out[task])
    return out


def main() -> None:
    """Parse the command line, run the chosen parts, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--uploads", type=int, default=30)
    parser.add_argument("--data-root", type=Path, default=shared_data_root())
    parser.add_argument("--cpu-files", type=int, default=200)
    parser.add_argument("--only", nargs="+", default=["speed", "parity", "latency"])
    args = parser.parse_args()
    root = args.data_root.resolve()
    path = RESULTS / "predict_speed.json"
    machine = machine_info()
    result: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    result["benchmark"] = "predict_speed"
    for part in args.only:  # each part keeps the command and the machine state it ran with
        result.setdefault("commands", {})[part] = command_line()
        result.setdefault("machines", {})[part] = machine
    if "speed" in args.only:
        result["speed"] = speed(root, args.files, args.rounds, args.batch)
    if "cpu" in args.only:
        torch.set_num_threads(1)
        result["cpu"] = speed(root, args.cpu_files, 1, args.batch)
    if "parity" in args.only:
        with tempfile.TemporaryDirectory() as tmp:
            result["parity"] = {
                "classify": parity_classify(root, Path(tmp)),
                "segment": parity_segment(root, Path(tmp)),
            }
        print(result["parity"])
    if "latency" in args.only:
        result["latency"] = latency(root, args.uploads)
    machine["load_average_end"] = load_average()
    write_text_atomic(path, json.dumps(result, indent=1) + "\n")
    print(path)


if __name__ == "__main__":
    main()
