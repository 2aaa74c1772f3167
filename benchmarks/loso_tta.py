"""What mirror TTA does to classifiers on a source they never saw.

Each leave-one-source-out run (``benchmarks/loso.py``) keeps its held-out fold's model in
``<run>/test-<source>/model`` and the images it was tested on in ``.../test/predictions.csv``.
This predicts those images again with the model, once as trained and once averaged with each
image's left-right mirror (``predict --tta``), and reports per run the held-out metrics of both
(:func:`braintumor.metrics.per_source.source_metrics`, bootstrap intervals), the paired
bootstrap interval of the balanced accuracy's change, and the share of answers that changed.

    python benchmarks/loso_tta.py --source sartaj-4class --tag 4class-sartaj RUN_A RUN_B
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from braintumor.atomic import write_text_atomic
from braintumor.errors import BrainTumorError
from braintumor.inference.predictor import Predictor
from braintumor.io import read_image
from braintumor.metrics.per_source import balanced_accuracy, source_metrics
from braintumor.models.folder import load_model_dir
from loso_ensemble import RESULTS, prediction_rows, rounded_metrics


def held_out_images(fold: Path) -> tuple[list[str], list[str]]:
    """The paths and true classes of the images a fold's model was tested on."""
    rows = prediction_rows(fold / "test" / "predictions.csv")
    return [row["path"] for row in rows], [row["true"] for row in rows]


def balanced_accuracy_change(
    y: np.ndarray, plain: np.ndarray, mirrored: np.ndarray, n_bootstrap: int = 1000
) -> dict[str, Any]:
    """Balanced accuracy with TTA minus without, and its paired percentile bootstrap 95%
    interval (the same images drawn for both)."""

    def change(idx: np.ndarray) -> float:
        return balanced_accuracy(y[idx], mirrored[idx]) - balanced_accuracy(y[idx], plain[idx])

    rng = np.random.default_rng(0)
    draws = [change(rng.integers(0, len(y), len(y))) for _ in range(n_bootstrap)]
    return {
        "difference": round(change(np.arange(len(y))), 4),
        "ci95": [round(float(v), 4) for v in np.percentile(draws, [2.5, 97.5])],
    }


def tta_row(run: Path, source: str, batch_size: int) -> dict[str, Any]:
    """One run's held-out figures without and with mirror TTA."""
    fold = run / f"test-{source}"
    loaded = load_model_dir(fold / "model")
    names = list(loaded.info.class_names)
    paths, truths = held_out_images(fold)
    y = np.array([names.index(t) for t in truths])
    images = [read_image(p) for p in paths]
    probs = {
        tta: Predictor(loaded, tta=tta, batch_size=batch_size, ood=False).classify(images)
        for tta in (False, True)
    }
    plain, mirrored = probs[False].argmax(1), probs[True].argmax(1)
    row = {
        "run": run.name,
        "n": len(y),
        "without_tta": rounded_metrics(source_metrics(y, probs[False], names)),
        "with_tta": rounded_metrics(source_metrics(y, probs[True], names)),
        "balanced_accuracy_change": balanced_accuracy_change(y, plain, mirrored),
        "answers_changed": round(float(np.mean(plain != mirrored)), 4),
    }
    print(
        f"{run.name}: balanced accuracy {row['without_tta']['balanced_accuracy']} -> "
        f"{row['with_tta']['balanced_accuracy']}, {row['answers_changed']:.1%} answers changed",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="loso.py run folders")
    parser.add_argument("--source", required=True, help="the held-out source")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    try:
        rows = [tta_row(run, args.source, args.batch_size) for run in args.runs]
    except BrainTumorError as error:
        sys.exit(f"error: {error}")
    result = {
        "benchmark": "loso-tta",
        "command": "python benchmarks/loso_tta.py " + shlex.join(sys.argv[1:]),
        "source": args.source,
        "runs": rows,
    }
    out = RESULTS / f"loso_tta_{args.tag}.json"
    write_text_atomic(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
