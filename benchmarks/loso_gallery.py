"""Slices of one true class from a leave-one-source-out fold, right and wrong side by side.

A fold's ``predictions.csv`` says which slices were missed, not what they look like. This
draws up to 24 slices, evenly spaced in file order, of the slices of class ``--true`` that the
model got wrong and of those it got right, one grid each, so a pattern (a plane, a sequence, a
scanner) shows at a glance:

    python benchmarks/loso_gallery.py RUN/test-sartaj-4class/test/predictions.csv \\
        --true no_tumor --name sartaj-healthy
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from PIL import Image

from braintumor.errors import DataError

RESULTS = Path(__file__).resolve().parent / "results"
TILE, COLUMNS, MOST = 128, 8, 24


def grid(paths: list[str], out: Path) -> None:
    """Up to :data:`MOST` of ``paths``, evenly spaced, as grey tiles in one PNG."""
    step = max(1, len(paths) // MOST)
    chosen = paths[::step][:MOST]
    rows = max(1, -(-len(chosen) // COLUMNS))
    canvas = Image.new("L", (TILE * COLUMNS, TILE * rows))
    for i, path in enumerate(chosen):
        with Image.open(path) as image:
            tile = image.convert("L").resize((TILE, TILE))
        canvas.paste(tile, ((i % COLUMNS) * TILE, (i // COLUMNS) * TILE))
    canvas.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("predictions", type=Path, help="a fold's test/predictions.csv")
    parser.add_argument("--true", required=True, help="the true class to draw")
    parser.add_argument("--name", required=True, help="file stem under benchmarks/results")
    args = parser.parse_args()
    if not args.predictions.is_file():
        raise SystemExit(f"error: {args.predictions}: no such predictions file")
    with args.predictions.open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["true"] == args.true]
    if not rows:
        raise DataError(f"{args.predictions}: no slice of class {args.true}")
    for verdict, keep in (("wrong", "0"), ("right", "1")):
        paths = [r["path"] for r in rows if r["correct"] == keep]
        out = RESULTS / f"loso_gallery_{args.name}-{verdict}.png"
        grid(paths, out)
        print(f"{len(paths)} {verdict}: {out}")


if __name__ == "__main__":
    main()
