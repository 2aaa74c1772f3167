"""Merge single-fold leave-one-source-out results into one results file.

Folds of one setting are often run one at a time (``benchmarks/loso.py --test-source S``, two
in parallel on a small machine); a model card shows them together. The merged file keeps each
fold as it was measured, recomputes the mean and worst over the held-out sources, and names
the files and commands it came from.

    python benchmarks/loso_merge.py --tag rcrop30 loso_4class_abl-rcrop-s.json \\
        loso_4class_abl-rcrop-fig.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from braintumor.atomic import write_text_atomic
from braintumor.errors import DataError
from braintumor.metrics.per_source import mean_and_worst
from braintumor.protocols.loso import headline_keys

RESULTS = Path(__file__).resolve().parent / "results"


def merge(parts: list[dict], names: list[str], tag: str) -> dict:
    """One results record from several of the same setting and recipe; a held-out source
    measured twice is an error."""
    first = parts[0]
    for name, part in zip(names[1:], parts[1:], strict=True):
        for key in ("setting", "recipe", "data"):
            if part[key] != first[key]:
                raise DataError(f"{name}: its {key} differs from {names[0]}'s; not one setting")
    folds = [fold for part in parts for fold in part["folds"]]
    per_source = {s: m for fold in folds for s, m in fold["metrics"].items()}
    if len(per_source) != sum(len(fold["metrics"]) for fold in folds):
        raise DataError("a held-out source appears in more than one file")
    return first | {
        "tag": tag,
        "command": " ; ".join(part["command"] for part in parts),
        "test_sources": [s for part in parts for s in part["test_sources"]],
        "wall_seconds": round(sum(part["wall_seconds"] for part in parts), 1),
        "folds": folds,
        "summary": mean_and_worst(per_source, headline_keys(first.get("task"))),
        "merged_from": names,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="results files (names in benchmarks/results)")
    parser.add_argument("--tag", required=True, help="the merged file's tag")
    args = parser.parse_args()
    parts = [json.loads((RESULTS / name).read_text()) for name in args.files]
    merged = merge(parts, list(args.files), args.tag)
    out = RESULTS / f"loso_{merged['setting']}_{args.tag}.json"
    write_text_atomic(out, json.dumps(merged, indent=2) + "\n")
    first_key = headline_keys(merged.get("task"))[0]
    print(f"wrote {out}: " + json.dumps(merged["summary"].get(first_key)))


if __name__ == "__main__":
    main()
