"""Head outline under gamma re-exports: how far the crop to the head moves the network input.

Usage::

    python benchmarks/head_outline.py [--per-source 100] [--seed 1] [--sources S ...]

For real slices drawn from each shared source, re-exports every slice with gamma 0.5 / 0.7 /
1.4 / 2.0 (an 8-bit lookup table, as another converter would write it) and prepares both with
the 4-class default's preprocessing (crop to the head, equalised inside it, 128 px) under each
head outline. Reports, per outline and gamma, the mean absolute difference of the network
inputs (grey levels), the mean IoU of the crop boxes and the share of slices whose box IoU
falls under 0.95. Writes ``benchmarks/results/head_outline.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import ops

from braintumor.config import load_recipe
from braintumor.data.intensity import HEAD_OUTLINES
from braintumor.data.preprocess import PreprocessSpec, brain_box, prepare_slice, to_grey_uint8
from braintumor.invariance.variants import regamma
from braintumor.io import read_image
from braintumor.training.setup import preprocess_spec
from speed_common import RESULTS, command_line, machine_info, shared_data_root, write_result

GAMMAS = (0.5, 0.7, 1.4, 2.0)
SOURCES = ("sartaj-4class", "figshare-seg", "br35h-binary")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def slices_of(source: Path, count: int, rng: random.Random) -> list[Path]:
    """``count`` image files of a source folder, masks left out, drawn with ``rng``."""
    files = sorted(
        p
        for p in source.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and "mask" not in p.as_posix().lower()
    )
    return rng.sample(files, min(count, len(files)))


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (y0, y1, x0, x1) boxes (torchvision's, which takes
    (x0, y0, x1, y1))."""
    first, second = (
        torch.tensor([[x0, y0, x1, y1]], dtype=torch.float64) for y0, y1, x0, x1 in (a, b)
    )
    return float(ops.box_iou(first, second)[0, 0])


def measure_outline(greys: list[np.ndarray], spec: PreprocessSpec) -> dict[str, Any]:
    """Per gamma: mean input difference, mean box IoU and the share of boxes that moved."""
    inputs = [prepare_slice(g, spec).astype(np.float32) for g in greys]
    boxes = [brain_box(g, spec) for g in greys]
    per_gamma = {}
    for gamma in GAMMAS:
        exports = [regamma(g, gamma) for g in greys]
        diffs = [
            np.abs(prepare_slice(e, spec) - x).mean() for e, x in zip(exports, inputs, strict=True)
        ]
        ious = np.array(
            [box_iou(b, brain_box(e, spec)) for e, b in zip(exports, boxes, strict=True)]
        )
        per_gamma[str(gamma)] = {
            "mean_input_difference": float(np.mean(diffs)),
            "p90_input_difference": float(np.percentile(diffs, 90)),
            "mean_box_iou": float(ious.mean()),
            "box_iou_under_0.95": float((ious < 0.95).mean()),
        }
    return per_gamma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES))
    parser.add_argument("--per-source", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = shared_data_root()
    files = [f for s in args.sources for f in slices_of(root / s, args.per_source, rng)]
    greys = [to_grey_uint8(read_image(f).array) for f in files]
    default = preprocess_spec(load_recipe("fast-cpu-4class"))
    outlines = {
        outline: measure_outline(greys, dataclasses.replace(default, head_outline=outline))
        for outline in HEAD_OUTLINES
    }
    for outline, per_gamma in outlines.items():
        cells = "  ".join(
            f"g{g}: {r['mean_input_difference']:5.2f} / {r['mean_box_iou']:.3f}"
            for g, r in per_gamma.items()
        )
        print(f"{outline:17s} mean input difference / box IoU  {cells}")
    result = {
        "benchmark": "head_outline",
        "command": command_line(),
        "machine": machine_info(),
        "sources": args.sources,
        "slices": len(files),
        "seed": args.seed,
        "preprocess": default.to_dict(),
        "outlines": outlines,
    }
    print(write_result("head_outline.json", result, args.out))


if __name__ == "__main__":
    main()
