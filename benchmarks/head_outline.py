"""Head outline under gamma re-exports: how far the crop to the head moves the network input.

Usage::

    python benchmarks/head_outline.py [--per-source 100] [--seed 1] [--sources S ...]

For real slices drawn from each shared source, re-exports every slice with gamma 0.5 / 0.7 /
1.4 / 2.0 (an 8-bit lookup table, as another converter would write it) and prepares both with
the 4-class default's preprocessing (crop to the head, equalised inside it, 128 px) under each
head outline. Reports, per outline and gamma, the mean absolute difference of the network
inputs (grey levels), the mean IoU of the crop boxes and the share of slices whose box IoU
falls under 0.95. The ``gamma-normalised`` outline is measured twice: found at the decoded
size and on a 256 px working copy (``preprocess.outline_side``).

Second part, for the JPEGs among the slices: the same file decoded whole and decoded reduced
(libjpeg's DCT scaling to a 256 px longer side, what predict does to save decoding time), the
mean input difference and the crop boxes' IoU, per outline. Writes
``benchmarks/results/head_outline.json``.
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
#: (outline, outline_side) pairs measured; the label is the outline, with "@side" when set.
OUTLINES = [(outline, None) for outline in HEAD_OUTLINES] + [
    ("gamma-normalised", side) for side in (256, 384, 512)
]
REDUCED_SIDE = 256
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


def measure_reduced_decode(jpegs: list[Path], spec: PreprocessSpec) -> dict[str, Any]:
    """Full against reduced JPEG decode of the same files: input difference and box IoU."""
    diffs, ious = [], []
    for path in jpegs:
        full = to_grey_uint8(read_image(path).array)
        reduced = to_grey_uint8(read_image(path, min_side=REDUCED_SIDE).array)
        first, second = (prepare_slice(g, spec).astype(np.float32) for g in (full, reduced))
        diffs.append(np.abs(first - second).mean())
        scale = full.shape[0] / reduced.shape[0]
        box, small_box = brain_box(full, spec), brain_box(reduced, spec)
        assert box is not None and small_box is not None  # the 4-class default crops
        y0, y1, x0, x1 = (round(v * scale) for v in small_box)
        ious.append(box_iou(box, (y0, y1, x0, x1)))
    return {
        "files": len(jpegs),
        "mean_input_difference": float(np.mean(diffs)),
        "p90_input_difference": float(np.percentile(diffs, 90)),
        "mean_box_iou": float(np.mean(ious)),
    }


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
    specs = {
        outline + (f"@{side}" if side else ""): dataclasses.replace(
            default, head_outline=outline, outline_side=side
        )
        for outline, side in OUTLINES
    }
    outlines = {label: measure_outline(greys, spec) for label, spec in specs.items()}
    for label, per_gamma in outlines.items():
        cells = "  ".join(
            f"g{g}: {r['mean_input_difference']:5.2f} / {r['mean_box_iou']:.3f}"
            for g, r in per_gamma.items()
        )
        print(f"{label:21s} mean input difference / box IoU  {cells}")
    jpegs = [f for f in files if f.suffix.lower() in {".jpg", ".jpeg"}]
    reduced = {label: measure_reduced_decode(jpegs, spec) for label, spec in specs.items()}
    for label, row in reduced.items():
        print(
            f"{label:21s} whole against reduced decode: input difference "
            f"{row['mean_input_difference']:5.2f}, box IoU {row['mean_box_iou']:.3f}"
        )
    result = {
        "benchmark": "head_outline",
        "command": command_line(),
        "machine": machine_info(),
        "sources": args.sources,
        "slices": len(files),
        "seed": args.seed,
        "preprocess": default.to_dict(),
        "outlines": outlines,
        "reduced_decode": reduced,
    }
    print(write_result("head_outline.json", result, args.out))


if __name__ == "__main__":
    main()
