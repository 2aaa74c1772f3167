"""Build the reference models shipped in ``src/braintumor/zoo/`` (``zoo:NAME``).

Trains NAME with the toolkit on the shared public sources that fit its task (see
``braintumor.zoo.specs.REFERENCE_MODELS``), writes the model card, stores the weights in
float16 in the package's zoo folder with their SHA-256 in ``index.json``, and records the
figures in ``benchmarks/results/reference_models.json``. The cards of the classifiers show
the leave-one-source-out figures of their setting from ``benchmarks/loso.py``
(``ReferenceSpec.loso_results`` in ``benchmarks/results/``, or ``--loso-results FILE``);
``--card-only`` puts a new results file into an installed card without training;
``--retune KEY=VALUE`` gives an installed model new inference settings (its test split is
evaluated again with them and its card and index figures follow; ``braintumor.zoo.retune``):

    python benchmarks/train_reference.py 4class [--data-root ../shared/data] [--minutes 9]
    python benchmarks/train_reference.py all
    python benchmarks/train_reference.py seg2d --reuse   # re-card an existing run, no training
    python benchmarks/train_reference.py binary --resume # go on with an interrupted build
    python benchmarks/train_reference.py 4class --card-only --loso-results FILE
    python benchmarks/train_reference.py 4class --retune tta=true
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from braintumor.errors import BrainTumorError
from braintumor.training.interrupt import TrainingInterrupted
from braintumor.zoo.build import build_reference, write_build_record
from braintumor.zoo.recard import recard_loso
from braintumor.zoo.retune import parse_settings, retune_reference
from braintumor.zoo.specs import REFERENCE_MODELS, ReferenceSpec

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
RESULTS = RESULTS_DIR / "reference_models.json"
WORK_DIR = ROOT / "runs" / "reference"
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))


def loso_file(spec: ReferenceSpec, given: Path | None) -> Path | None:
    """The leave-one-source-out results for ``spec``'s card: ``given``, else its own file."""
    if given is not None:
        return given
    return RESULTS_DIR / spec.loso_results if spec.loso_results else None


def resume_command(name: str, args: argparse.Namespace) -> str:
    """The command that goes on with the interrupted build of ``name``."""
    words = ["python", "benchmarks/train_reference.py", name, "--resume"]
    if args.minutes is not None:
        words += ["--minutes", f"{args.minutes:g}"]
    if args.data_root != SHARED:
        words += ["--data-root", str(args.data_root)]
    if args.work_dir != WORK_DIR:
        words += ["--work-dir", str(args.work_dir)]
    return " ".join(words + [f"--set {override}" for override in args.overrides])


def main() -> None:
    """Parse the command line and build each requested reference model in turn."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=[*REFERENCE_MODELS, "all"])
    parser.add_argument("--data-root", type=Path, default=SHARED)
    parser.add_argument("--minutes", type=float, default=None, help="Training budget per model.")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--reuse", action="store_true", help="Keep a finished run; re-card it.")
    parser.add_argument(
        "--resume", action="store_true", help="Go on with an interrupted build of the model."
    )
    parser.add_argument(
        "--loso-results",
        type=Path,
        default=None,
        help="benchmarks/loso.py results for the card (default: the model's, in results/).",
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="Only replace the leave-one-source-out section of the installed card.",
    )
    parser.add_argument(
        "--retune",
        nargs="+",
        metavar="KEY=VALUE",
        help="Give the installed model these inference settings (e.g. tta=true), no training.",
    )
    args = parser.parse_args()
    names = list(REFERENCE_MODELS) if "all" in args.names else args.names
    if args.retune:
        for name in names:
            try:
                summary = retune_reference(
                    name,
                    parse_settings(args.retune),
                    args.data_root.resolve(),
                    args.work_dir.resolve(),
                    loso_results=loso_file(REFERENCE_MODELS[name], args.loso_results),
                )
            except BrainTumorError as error:
                sys.exit(f"error: {error}")
            write_build_record(RESULTS, summary)
            print(json.dumps({k: summary[k] for k in ("name", "test_before", "headline")}))
        return
    if args.card_only:
        if "all" in args.names:  # only the models that have a leave-one-source-out setting
            names = [n for n in names if REFERENCE_MODELS[n].loso_setting]
        for name in names:
            loso = loso_file(REFERENCE_MODELS[name], args.loso_results)
            if loso is None:
                sys.exit(f"error: zoo:{name} has no leave-one-source-out setting or results file")
            try:
                card = recard_loso(name, loso)
            except BrainTumorError as error:
                sys.exit(f"error: {error}")
            print(f"{card}: leave-one-source-out figures from {loso}")
        return
    for name in names:
        try:
            summary = build_reference(
                name,
                args.data_root.resolve(),
                args.work_dir.resolve(),
                minutes=args.minutes,
                extra_overrides=args.overrides,
                reuse=args.reuse,
                loso_results=loso_file(REFERENCE_MODELS[name], args.loso_results),
                resume=args.resume,
            )
        except TrainingInterrupted:
            sys.exit(f"interrupted; go on with: {resume_command(name, args)}")
        write_build_record(RESULTS, summary)
        print(json.dumps({k: summary[k] for k in ("name", "headline", "train_seconds")}))


if __name__ == "__main__":
    main()
