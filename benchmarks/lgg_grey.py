"""How a grey tumour / no-tumour model should read LGG's three-sequence slices.

Each kaggle_3m TIFF holds pre-contrast, FLAIR and post-contrast. A grey model could read it as
the mean of the three (what a colour-to-grey conversion does) or as one sequence. This runs a
binary model that never saw LGG (the held-out-LGG fold of ``benchmarks/loso.py --setting
binary``) on every LGG slice read each way (``preprocess.channels`` set per way, everything
else the model's own preprocessing) and writes tumour AUC and balanced accuracy with bootstrap
95% intervals to ``results/lgg_grey_<name>.json``:

    python benchmarks/lgg_grey.py RUNS/binary-TAG-*/test-lgg-kaggle3m --name TAG
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from braintumor.atomic import write_text_atomic
from braintumor.data.lgg import LGG_CHANNELS
from braintumor.data.preprocess import normalise_batch, prepare_slice
from braintumor.data.sources import load_data
from braintumor.inference.predictor import spec_of
from braintumor.io import read_image
from braintumor.metrics.classification import classification_metrics
from braintumor.models.folder import load_model_dir
from braintumor.models.registry import logits_to_probs

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))
# The ways to read a slice: None = the mean of the three channels, else one channel.
READINGS: dict[str, list[int] | None] = {
    "mean of the three": None,
    **{name: [index] for index, name in enumerate(LGG_CHANNELS)},
}


def main() -> None:
    """Score the model on LGG read each way and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="A run folder whose model/ never saw LGG.")
    parser.add_argument("--data", type=Path, default=SHARED / "lgg-kaggle3m")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    loaded = load_model_dir(args.run / "model")
    classes = list(loaded.info.class_names)
    if classes != ["no_tumor", "tumor"]:
        raise SystemExit(f"error: {args.run}/model is not a tumour / no-tumour model: {classes}")
    spec = spec_of(loaded.info)
    if spec.color != "grey":
        raise SystemExit(f"error: {args.run}/model does not read grey slices")
    samples = load_data([f"lgg={args.data}"], "classify", classes).samples
    truth = np.array([classes.index(str(s.label)) for s in samples])
    arrays = [read_image(s.image).array for s in samples]
    start, results = time.perf_counter(), {}
    for reading, channels in READINGS.items():
        own = dataclasses.replace(spec, channels=channels)
        probs = []
        for begin in range(0, len(arrays), 64):
            batch = np.stack([prepare_slice(a, own) for a in arrays[begin : begin + 64]])
            with torch.inference_mode():
                logits = loaded.model(normalise_batch(torch.from_numpy(batch), own)).float()
            probs.append(logits_to_probs(logits).numpy())
        metrics = classification_metrics(truth, np.concatenate(probs), classes)
        results[reading] = {
            "channels": channels,
            "tumor_auc": metrics["macro"]["roc_auc"],
            "ci95_tumor_auc": metrics["ci95"].get("macro_roc_auc"),
            "balanced_accuracy": metrics["balanced_accuracy"],
        }
        print(f"{reading}: AUC {results[reading]['tumor_auc']:.3f}", flush=True)
    out = ROOT / "benchmarks" / "results" / f"lgg_grey_{args.name}.json"
    record = {
        "benchmark": "lgg_grey",
        "command": f"python benchmarks/lgg_grey.py RUN --name {args.name}",
        "model_run": f"{args.run.parent.name}/{args.run.name}",
        "n": len(samples),
        "tumour_slices": int(truth.sum()),
        "seconds": round(time.perf_counter() - start, 1),
        "readings": results,
    }
    write_text_atomic(out, json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
