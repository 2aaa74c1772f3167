"""The cross-dataset audit of the shared folders: copies between every pair of sources.

Runs what ``braintumor data audit A B C ...`` runs (SHA-256 and pHash of every file, JPEGs
decoded in draft mode as by default) and keeps the cross-source part with the pooled
duplicate counts in ``benchmarks/results/audit_cross_sources.json``:

    python benchmarks/audit_cross_sources.py [--data ../shared/data] [--workers 2]

The same numbers, with the HTML overlap matrix, come from ``braintumor data audit`` given the
five folders of :data:`SOURCES` and ``--html cross.html``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from braintumor.atomic import write_text_atomic
from braintumor.data.audit import audit_results, check_samples
from braintumor.data.cross_sources import cross_source_report
from braintumor.data.near_confirm import near_link_filter
from braintumor.data.sources import load_data

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["navoneel-binary", "br35h-binary", "sartaj-4class", "figshare-seg", "lgg-kaggle3m"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--phash-threshold", type=int, default=6)
    args = parser.parse_args()
    start = time.perf_counter()
    layout = load_data([str(args.data / name) for name in SOURCES], task=None)
    results = check_samples(layout.samples, layout.root, args.workers, progress=False)
    stand = near_link_filter(layout)
    pooled = audit_results(
        layout.samples, layout.root, results, args.phash_threshold, start, keep_near=stand
    )
    cross = cross_source_report(layout.samples, results, args.phash_threshold, start, stand)
    out = {
        "benchmark": "audit_cross_sources",
        "command": "python benchmarks/audit_cross_sources.py " + shlex.join(sys.argv[1:]),
        "cli_equivalent": "braintumor data audit "
        + " ".join(f"../shared/data/{s}" for s in SOURCES),
        "seconds": round(time.perf_counter() - start, 1),
        "pooled_duplicates": {
            kind: {
                "groups": getattr(pooled, kind).n_groups,
                "files_in_groups": getattr(pooled, kind).n_files,
                "label_conflict_groups": getattr(pooled, kind).label_conflict_groups,
            }
            for kind in ("exact", "near")
        },
        **cross.to_dict(),
    }
    path = ROOT / "benchmarks" / "results" / "audit_cross_sources.json"
    write_text_atomic(path, json.dumps(out, indent=1) + "\n")
    for row, cells in cross.near_matrix.items():
        print(row, cells)
    print(f"{cross.cross_source_groups} clusters span sources; wrote {path}")


if __name__ == "__main__":
    main()
