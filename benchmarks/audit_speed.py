"""Time ``braintumor data audit`` on every shared dataset and keep each audit report.

Usage: ``python benchmarks/audit_speed.py [DATA_ROOT] [--workers 2]``. Writes
``benchmarks/results/audit_speed.json`` (seconds and images per second per dataset, for the
default draft decoding and for full decoding) and ``benchmarks/results/audit_<dataset>.json``
(the report of the default audit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from braintumor.atomic import write_text_atomic
from braintumor.data.audit import audit_dataset
from braintumor.data.audit_html import write_audit_json
from braintumor.data.layouts import detect_layout

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _near_figures(report) -> dict[str, object]:
    near = report.near
    return {
        "near_groups": near.n_groups,
        "near_pairs": near.pairs,
        "near_cross_split_pairs": near.cross_split_pairs,
        "near_files_with_copy_elsewhere": near.files_with_copy_elsewhere,
        "near_label_conflict_pairs": near.label_conflict_pairs,
    }


def time_dataset(folder: Path, workers: int) -> dict[str, object]:
    """Audit ``folder`` with draft and with full JPEG decoding; save the draft report."""
    layout = detect_layout(folder)
    row: dict[str, object] = {
        "dataset": folder.name,
        "layout": layout.name,
        "samples": len(layout.samples),
    }
    for mode, use_draft in (("draft", True), ("full_decode", False)):
        start = time.perf_counter()
        report = audit_dataset(layout.samples, layout.root, 6, workers, False, use_draft)
        seconds = time.perf_counter() - start
        report.layout = layout.name
        row[mode] = {
            "seconds": round(seconds, 2),
            "images_per_s": round(len(layout.samples) / seconds, 1),
            **_near_figures(report),
        }
        if use_draft:
            write_audit_json(report, RESULTS / f"audit_{folder.name}.json")
        if layout.task == "brats":
            break  # volumes have no JPEG decoding to compare
    return row


def main() -> None:
    """Time every dataset folder under the data root."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        rows.append(time_dataset(folder, args.workers))
        print(json.dumps(rows[-1]))
    result = {
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        # The machine may be shared: a load above cpu_count means the figures are pessimistic.
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "datasets": rows,
    }
    write_text_atomic(RESULTS / "audit_speed.json", json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
