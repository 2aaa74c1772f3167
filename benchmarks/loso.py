"""Leave one source out on the shared public datasets, per held-out source with 95% CIs.

Settings (the shared folders under ``--data``):

- ``4class``: sartaj-4class, figshare-seg (its labels.csv), and only the "no" images of
  br35h-binary and navoneel-binary; held out: sartaj-4class and figshare-seg.
- ``4class-coarse``: the same, with the tumour images of br35h-binary and navoneel-binary
  trained as tumours of unknown type (``NAME=PATH:no_tumor,tumor``).
- ``binary``: br35h-binary, navoneel-binary, sartaj-4class, figshare-seg (tumour only),
  lgg-kaggle3m (slices: empty mask = no tumour); every source held out in turn.
- ``baseline``: the single-source baseline, train on sartaj-4class alone, test on
  figshare-seg (sartaj's near copies of Figshare slices removed from training).
- ``seg2d``: the 2D segmenter ``zoo:seg2d``'s data and recipe (``fast-cpu-seg`` with the
  reference model's overrides): figshare-seg and lgg-kaggle3m, each held out in turn (per
  slice Dice and IoU, LGG's volume Dice per patient).

Each fold trains for at most ``--max-minutes``; near copies of the held-out source are
removed from training. ``--adapt-bn`` also evaluates each fold's model with its batch-norm
statistics re-estimated on the held-out source's images (``metrics_adapted`` per fold,
``summary_adapted``). ``--add-data NAME=FOLDER[:CLASSES]`` trains on one more source beside
the setting's (e.g. ``lgg=lgg-kaggle3m:tumor=glioma,no_tumor`` for ``4class``). Writes
``benchmarks/results/loso_<setting>_<tag>.json`` and prints a Markdown table row per source
(adapted rows say so).

    python benchmarks/loso.py --setting 4class --max-minutes 8 [--tag baseline] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from braintumor.atomic import write_text_atomic
from braintumor.config import load_recipe
from braintumor.models.card_loso import loso_columns
from braintumor.protocols.loso import run_loso
from braintumor.zoo.specs import REFERENCE_MODELS

ROOT = Path(__file__).resolve().parents[1]

SETTINGS: dict[str, dict] = {
    "4class": {
        "recipe": "fast-cpu-4class",
        "data": [
            "sartaj-4class",
            "figshare-seg",
            "br35h-no=br35h-binary:no_tumor",
            "navoneel-no=navoneel-binary:no_tumor",
        ],
        "test": ["sartaj-4class", "figshare-seg"],
    },
    "4class-coarse": {
        "recipe": "fast-cpu-4class",
        "data": [
            "sartaj-4class",
            "figshare-seg",
            "br35h=br35h-binary:no_tumor,tumor",
            "navoneel=navoneel-binary:no_tumor,tumor",
        ],
        "test": ["sartaj-4class", "figshare-seg"],
    },
    "binary": {
        "recipe": "fast-cpu-binary",
        "data": [
            "br35h-binary",
            "navoneel-binary",
            "sartaj-4class",
            "figshare-seg",
            "lgg-kaggle3m",
        ],
        "test": [
            "br35h-binary",
            "navoneel-binary",
            "sartaj-4class",
            "lgg-kaggle3m",
            "figshare-seg",
        ],
    },
    "baseline": {
        "recipe": "fast-cpu-4class",
        "data": ["sartaj-4class", "figshare-seg"],
        "test": ["figshare-seg"],
    },
    "seg2d": {
        "recipe": REFERENCE_MODELS["seg2d"].recipe,
        "overrides": list(REFERENCE_MODELS["seg2d"].overrides),
        "data": ["figshare-seg", "lgg-kaggle3m"],
        "test": ["figshare-seg", "lgg-kaggle3m"],
    },
}
#: Metric cells of a Markdown row: a segmenter's three fill the first of the four columns.
ROW_CELLS = 4


def _with_root(value: str, data_root: Path) -> str:
    """``NAME=FOLDER:CLASS`` with FOLDER made absolute under ``data_root``."""
    name, sep, rest = value.partition("=")
    if not sep:
        name, rest = "", value
    folder, colon, classes = rest.partition(":")
    text = str(data_root / folder) + (f":{classes}" if colon else "")
    return f"{name}={text}" if sep else text


def markdown_rows(result: dict) -> list[str]:
    """``| setting | held out | n | bal. acc | AUC | sensitivity | specificity | copies |
    minutes |``; a segmenter's rows hold Dice, IoU and volume Dice per patient instead."""
    keys: list[str | None] = [key for key, _ in loso_columns(result.get("task"))]
    keys += [None] * (ROW_CELLS - len(keys))

    def cell(m: dict, key: str | None) -> str:
        if key is None:
            return "-"
        value, ci = m.get(key), (m.get("ci95") or {}).get(key)
        if value is None:
            return "-"
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"

    rows = []
    for metrics_key, summary_key, suffix in (
        ("metrics", "summary", ""),
        ("metrics_adapted", "summary_adapted", ", BN adapted"),
    ):
        name = f"{result['setting']} ({result['tag']}{suffix})"
        for fold in result["folds"]:
            for source, m in fold.get(metrics_key, {}).items():
                rows.append(
                    f"| {name} | {source} | {m['n']} | "
                    + " | ".join(cell(m, key) for key in keys)
                    + f" | {sum(fold['excluded_copies'].values())} | {fold['seconds'] / 60:.1f} |"
                )
        for key in keys[:3]:
            s = result.get(summary_key, {}).get(key)
            if s:
                rows.append(
                    f"| {name} | {key}: mean {s['mean']:.3f}, "
                    f"worst {s['worst']:.3f} ({s['worst_source']}) | | | | | | | |"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--max-minutes", type=float, default=8.0)
    parser.add_argument("--tag", default="default")
    parser.add_argument("--recipe", default=None, help="Recipe instead of the setting's.")
    parser.add_argument("--test-source", action="append", default=None)
    parser.add_argument(
        "--add-data",
        action="append",
        default=[],
        help="A training source beside the setting's (NAME=FOLDER[:CLASSES], FOLDER under --data).",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench-loso")
    parser.add_argument(
        "--adapt-bn",
        action="store_true",
        help="Also report each held-out source with batch norm adapted to its images (AdaBN).",
    )
    args = parser.parse_args()

    setting = SETTINGS[args.setting]
    recipe_name = args.recipe or setting["recipe"]
    overrides = [*setting.get("overrides", ()), f"max_minutes={args.max_minutes}", *args.overrides]
    recipe = load_recipe(recipe_name, overrides)
    data_args = [*setting["data"], *args.add_data]
    data = [_with_root(v, args.data) for v in data_args]
    tests = args.test_source or setting["test"]
    run_dir = args.runs / f"{args.setting}-{args.tag}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.perf_counter()
    out = ROOT / "benchmarks" / "results" / f"loso_{args.setting}_{args.tag}.json"

    def write(summary: dict) -> None:
        """Results so far: a fold's numbers survive if a later fold is cut short."""
        result = {
            "benchmark": "loso",
            "setting": args.setting,
            "task": summary["task"],
            "tag": args.tag,
            "command": "python benchmarks/loso.py " + shlex.join(sys.argv[1:]),
            "recipe": recipe.to_dict(),
            "data": data_args,
            "test_sources": tests,
            "machine": {
                "platform": platform.platform(),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "note": "2-core CPU shared with other jobs; times are 2-4x a quiet machine's",
            },
            "wall_seconds": round(time.perf_counter() - start, 1),
            "adapt_bn": args.adapt_bn,
            **{k: summary[k] for k in ("sources", "cross_source_groups", "folds", "summary")},
            **(
                {"summary_adapted": summary["summary_adapted"]}
                if "summary_adapted" in summary
                else {}
            ),
        }
        write_text_atomic(out, json.dumps(result, indent=2) + "\n")
        print("\n".join(markdown_rows(result)), flush=True)

    run_loso(recipe, data, run_dir, test_sources=tests, on_fold=write, adapt_bn=args.adapt_bn)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
