"""Head outline speed: this tree's ``head_contour`` against another revision's, same slices.

Usage::

    python benchmarks/outline_speed.py --base REV [--per-source 80] [--rounds 8]

The head outline (``preprocess.head_outline``, found on a ``outline_side`` copy) is the largest
piece of the default classifier's preprocessing at prediction time. This loads
``src/braintumor/data/intensity.py`` as it is at git revision ``REV`` beside the working tree's,
checks that both find the same outline on every slice (both outlines, at 384 px and at the
decoded size), and times both on the ``gamma-normalised`` outline at 384 px in alternating
rounds (A B, B A, ...) in one process, one thread. Slices: every k-th file of each shared source.
Writes ``benchmarks/results/outline_speed.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import torch

from braintumor.data import intensity
from braintumor.data.preprocess import to_grey_uint8
from braintumor.io import read_image
from speed_common import RESULTS, command_line, machine_info, shared_data_root, write_result

SOURCES = {
    "sartaj-4class": "*/*/*.jpg",
    "br35h-binary": "*/*.jpg",
    "navoneel-binary": "*/*",
    "figshare-seg": "*/*.png",
    "lgg-kaggle3m": "*/*[0-9].tif",
}
SIDE = 384


def git(*args: str) -> str:
    """The output of a git command run in this repository."""
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def tree_revision() -> str:
    """The commit checked out, and whether ``src/`` differs from it."""
    changed = git("status", "--porcelain", "src").strip()
    return git("rev-parse", "--short", "HEAD").strip() + (" + changes" if changed else "")


def module_at(revision: str, folder: Path) -> ModuleType:
    """``braintumor.data.intensity`` as it is at git ``revision``, loaded under another name."""
    text = git("show", f"{revision}:src/braintumor/data/intensity.py")
    path = folder / "intensity_base.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("intensity_base", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def same_outline(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Both not found, or the same points."""
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument("--per-source", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    data = shared_data_root()
    files: list[Path] = []
    for source, pattern in SOURCES.items():
        found = sorted((data / source).glob(pattern))
        files += found[:: max(1, len(found) // args.per_source)][: args.per_source]
    greys = [to_grey_uint8(read_image(f).array) for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        base = module_at(args.base, Path(tmp))
        pairs = [
            same_outline(base.head_contour(g, o, s), intensity.head_contour(g, o, s))
            for g in greys
            for o in ("gamma-normalised", "range")
            for s in (SIDE, None)
        ]
        seconds = {"base": 0.0, "tree": 0.0}
        order = [("base", base), ("tree", intensity)]
        for r in range(args.rounds):
            for name, module in order if r % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                for grey in greys:
                    module.head_contour(grey, "gamma-normalised", SIDE)
                seconds[name] += time.perf_counter() - start
    calls = args.rounds * len(greys)
    result = {
        "benchmark": "outline_speed",
        "command": command_line(),
        "machine": machine_info(),
        "base": git("rev-parse", "--short", args.base).strip(),
        "tree": tree_revision(),
        "slices": len(greys),
        "identical_outlines": f"{sum(pairs)} of {len(pairs)}",
        "ms_per_slice": {k: round(v / calls * 1000, 3) for k, v in seconds.items()},
        "speedup": round(seconds["base"] / seconds["tree"], 3),
    }
    print(result)
    write_result("outline_speed.json", result, RESULTS)


if __name__ == "__main__":
    main()
