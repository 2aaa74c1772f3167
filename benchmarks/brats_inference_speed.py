"""Time whole-case BraTS prediction on the CPU with the fast-cpu-brats network.

Runs ``predict_case`` (preprocessing, slice-by-slice network, paste-back, NIfTI, overlays) on a
full 240x240x155 case of the shared BraTS 2013 data (FLAIR + T1c) with freshly initialised
fast-cpu-brats weights: the time depends on the network and the grid, not on what it learned.
Writes ``benchmarks/results/brats_inference_speed.json``.

    .venv/bin/python benchmarks/brats_inference_speed.py [--data DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from braintumor.atomic import write_text_atomic
from braintumor.brats.inference import predict_case
from braintumor.brats.task import brats_model_info, build_brats_task
from braintumor.config import load_recipe
from braintumor.data.layouts import detect_layout
from braintumor.models.folder import load_model_dir, save_model_dir

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Build the model folder, predict one case ``--repeats`` times, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "brats2013-4cases"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tta", action="store_true")
    args = parser.parse_args()
    samples = sorted(detect_layout(args.data).samples, key=lambda s: s.id)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = load_recipe(
            "fast-cpu-brats", ["extra.modalities=[flair, t1ce]", f"extra.cache_dir={tmp}/cache"]
        )
        module, _, pre = build_brats_task(recipe, {"train": samples[:1]})
        info = brats_model_info(recipe, pre)
        loaded = load_model_dir(save_model_dir(module.model, info, Path(tmp) / "model"))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            predict_case(loaded, samples[0], Path(tmp) / "out", tta=args.tta)
            times.append(time.perf_counter() - start)
    result = {
        "benchmark": "brats_inference_speed",
        "case": samples[0].id,
        "grid": [240, 240, 155],
        "recipe": "fast-cpu-brats",
        "modalities": ["flair", "t1ce"],
        "tta": args.tta,
        "seconds": [round(t, 2) for t in times],
        "median_seconds": round(statistics.median(times), 2),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "bar_seconds": 60,
    }
    out = ROOT / "benchmarks" / "results" / "brats_inference_speed.json"
    write_text_atomic(out, json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
