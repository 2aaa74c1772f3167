"""Build the reference models shipped in ``src/braintumor/zoo/`` (``zoo:NAME``).

Trains NAME with the toolkit on the shared public sources that fit its task (see
``braintumor.zoo.build.REFERENCE_MODELS``), writes the model card, stores the weights in
float16 in the package's zoo folder with their SHA-256 in ``index.json``, and records the
figures in ``benchmarks/results/reference_models.json``:

    python benchmarks/train_reference.py 4class [--data-root ../shared/data] [--minutes 9]
    python benchmarks/train_reference.py all
    python benchmarks/train_reference.py seg2d --reuse   # re-card an existing run, no training
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from braintumor.zoo.build import REFERENCE_MODELS, build_reference, write_build_record

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "reference_models.json"
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main() -> None:
    """Parse the command line and build each requested reference model in turn."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=[*REFERENCE_MODELS, "all"])
    parser.add_argument("--data-root", type=Path, default=SHARED)
    parser.add_argument("--minutes", type=float, default=None, help="Training budget per model.")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "reference")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--reuse", action="store_true", help="Keep a finished run; re-card it.")
    args = parser.parse_args()
    names = list(REFERENCE_MODELS) if "all" in args.names else args.names
    for name in names:
        summary = build_reference(
            name,
            args.data_root.resolve(),
            args.work_dir.resolve(),
            minutes=args.minutes,
            extra_overrides=args.overrides,
            reuse=args.reuse,
        )
        write_build_record(RESULTS, summary)
        print(json.dumps({k: summary[k] for k in ("name", "headline", "train_seconds")}))


if __name__ == "__main__":
    main()
