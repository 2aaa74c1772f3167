"""Shared parts of the speed benchmarks: machine facts, interleaved timing, FLOPs, tables.

The speed scripts (``speed_classify.py``, ``speed_segment.py``) compare the project's training
and inference pipeline with a plain PyTorch reference on the same model, batch size and
machine, in one process. Each pipeline is a :class:`Variant` whose ``step`` runs one batch;
:func:`interleaved_timing` runs them in alternating order so that drift in machine load hits
every variant alike. Run ``python benchmarks/speed_common.py`` to print the table of every
``benchmarks/results/speed_*.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from braintumor.atomic import write_text_atomic
from braintumor.inference.precision import bf16_pays, cpu_has_bf16

RESULTS = Path(__file__).resolve().parent / "results"


def shared_data_root() -> Path:
    """``$BRAINTUMOR_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("BRAINTUMOR_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def cpu_model() -> str:
    """The CPU's marketing name from ``/proc/cpuinfo`` (or the platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_matrix_units() -> str:
    """The CPU's bf16 matrix instructions: ``amx``, ``avx512_bf16`` or ``none``. CPUs of one
    marketing name differ here (a virtual "Intel Xeon Processor" with and without AMX), and
    so do their bf16 peaks, by 10x or more."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "none"
    return "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "none"


def cpu_identity(machine: dict[str, Any] | None = None) -> str:
    """The CPU's name and bf16 units (:func:`cpu_matrix_units`): this machine's, or those a
    results file's ``machine`` record holds (``?`` where it predates the units field)."""
    if machine is None:
        return f"{cpu_model()} [{cpu_matrix_units()}]"
    return f"{machine.get('cpu_model')} [{machine.get('cpu_matrix_units', '?')}]"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages, rounded (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge the figures: CPU, cores, threads, versions, load."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = load_average()
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": cores,
        "cpu_bf16": cpu_has_bf16(),
        "cpu_matrix_units": cpu_matrix_units(),
        "bf16_by_default": bf16_pays(),  # what precision auto takes here
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        # A load above the core count means other work shared the machine: absolute figures
        # are then pessimistic, while the A/B ratios of one interleaved run stay comparable.
        "load_average_start": load,
        "shared_machine": bool(load) and load[0] > (cores or 1),
    }


def command_line() -> str:
    """The command that produced a result, for the JSON."""
    return shlex.join(["python", *sys.argv])


@dataclass
class Timing:
    """Accumulated timed steps of one variant."""

    steps: int = 0
    items: int = 0
    seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)

    def add(self, items: int, seconds: float) -> None:
        """Record one timed step."""
        self.steps += 1
        self.items += items
        self.seconds += seconds
        self.step_seconds.append(seconds)

    @property
    def items_per_s_median(self) -> float:
        """Throughput at the median step time: less sensitive to bursts of foreign load."""
        if not self.step_seconds:
            return 0.0
        return self.items / self.steps / statistics.median(self.step_seconds)

    @property
    def items_per_s(self) -> float:
        """Throughput over every timed step."""
        return self.items / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Variant:
    """One pipeline under test.

    ``step`` runs one batch and returns how many images it processed. ``precision`` is the
    arithmetic the network runs in (``fp32`` or ``bf16``). ``pause``, when given, runs after
    each block of steps: a DataLoader's worker processes must stop there, or they would keep
    preparing batches on the same cores while the next variant is timed. ``settle`` untimed
    steps run before each timed block, so restarted workers reach their steady state.
    """

    name: str
    step: Callable[[], int]
    precision: str = "fp32"
    settle: int = 0
    pause: Callable[[], None] | None = None

    def run_block(self, count: int, timing: Timing | None = None) -> None:
        """``settle`` untimed steps, then ``count`` steps (timed into ``timing`` if given)."""
        for _ in range(self.settle if timing is not None else 0):
            self.step()
        for _ in range(count):
            start = time.perf_counter()
            items = self.step()
            if timing is not None:
                timing.add(items, time.perf_counter() - start)
        if self.pause is not None:
            self.pause()


def interleaved_timing(
    variants: list[Variant], warmup: int, steps: int, rounds: int = 3
) -> dict[str, Timing]:
    """Time ``steps`` batches per variant after ``warmup`` untimed ones.

    The timed steps are split into ``rounds``; the order of the variants is reversed every
    round (A B C, C B A, ...) so slow drift in machine load does not favour one of them.
    """
    for variant in variants:
        variant.run_block(warmup)
    rounds = max(1, min(rounds, steps))
    per_round = [steps // rounds + (1 if r < steps % rounds else 0) for r in range(rounds)]
    timings = {v.name: Timing() for v in variants}
    for r, count in enumerate(per_round):
        for variant in variants if r % 2 == 0 else variants[::-1]:
            variant.run_block(count, timings[variant.name])
    return timings


def count_flops(run: Callable[[], object]) -> int:
    """Floating-point operations (multiply-add = 2) that ``run`` executes, by PyTorch's counter.

    Convolutions, matrix products and their backward passes are counted; element-wise work
    (activations, normalisation, the optimiser) is not, so achieved GFLOP/s is a lower bound.
    """
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def throughput(
    timing: Timing, flops_per_item: float, peak: dict[str, Any], precision: str
) -> dict[str, Any]:
    """One variant's figures: images/s, achieved GFLOP/s and its share of the matmul peaks."""
    gflops = timing.items_per_s * flops_per_item / 1e9
    return {
        "precision": precision,
        "steps": timing.steps,
        "images": timing.items,
        "seconds": round(timing.seconds, 3),
        "images_per_s": round(timing.items_per_s, 2),
        "images_per_s_median_step": round(timing.items_per_s_median, 2),
        "achieved_gflops": round(gflops, 2),
        "fraction_of_fp32_peak": round(gflops / peak["fp32_gflops"], 4),
        "fraction_of_bf16_peak": round(gflops / peak["bf16_gflops"], 4),
    }


def phase_figures(
    variants: list[Variant], timings: dict[str, Timing], flops_per_item: float, peak: dict[str, Any]
) -> dict[str, Any]:
    """Figures of one phase (train or infer) and the speed-up of ours over the best reference.

    Variants named ``reference*`` are the plain pipeline; the faster of them is the base of
    every ratio, so the reference gets its best loader setting.
    """
    figures = {
        v.name: throughput(timings[v.name], flops_per_item, peak, v.precision) for v in variants
    }
    references = [v.name for v in variants if v.name.startswith("reference")]
    best = max(references, key=lambda name: figures[name]["images_per_s"])
    base = figures[best]["images_per_s"]
    return {
        "variants": figures,
        "reference_best": best,
        "speedup": {
            name: round(row["images_per_s"] / base, 2) if base else None
            for name, row in figures.items()
            if name not in references
        },
    }


#: The phases both training-loop benchmarks time, in order.
PHASES = ("train", "infer", "data")


def time_phases(
    reference: tuple[list[Variant], ...],
    ours: tuple[list[Variant], ...],
    warmup: int,
    steps: int,
    rounds: int,
) -> dict[str, tuple[list[Variant], dict[str, Timing]]]:
    """Each of :data:`PHASES` timed with :func:`interleaved_timing`, the reference's variants
    and ours together, one phase after the other."""
    phases = {}
    for name, ref, our in zip(PHASES, reference, ours, strict=True):
        variants = [*ref, *our]
        phases[name] = (variants, interleaved_timing(variants, warmup, steps, rounds))
    return phases


def loop_setup(recipe: Any, warmup: int, steps: int, rounds: int) -> dict[str, Any]:
    """What a training-loop benchmark records of the recipe and of its timing."""
    return {
        "recipe": recipe.name,
        "model": recipe.model,
        "model_args": recipe.model_args,
        "image_size": recipe.image_size,
        "in_channels": recipe.in_channels,
        "batch_size": recipe.batch_size,
        "warmup": warmup,
        "steps": steps,
        "rounds": rounds,
        "our_loop": "plain loop calling braintumor's components (no Lightning)",
    }


def loop_result(
    benchmark: str,
    machine: dict[str, Any],
    setup: dict[str, Any],
    decode: dict[str, Any],
    flops: tuple[float, float],
    peak: dict[str, Any],
    phases: dict[str, tuple[list[Variant], dict[str, Timing]]],
) -> dict[str, Any]:
    """The record of a training-loop benchmark: its setup, the decode figures, the counted
    FLOPs per image (training step, forward) and each phase's figures against the peak."""
    train_flops, infer_flops = flops
    per_image = {"train": train_flops, "infer": infer_flops, "data": 0.0}
    result: dict[str, Any] = {
        "benchmark": benchmark,
        "command": command_line(),
        "machine": machine,
        "setup": setup,
        "decode": decode,
        "flops": {
            "train_gflop_per_image": round(train_flops / 1e9, 4),
            "infer_gflop_per_image": round(infer_flops / 1e9, 4),
        },
        "peak": peak,
    }
    for name, (variants, timings) in phases.items():
        result[name] = phase_figures(variants, timings, per_image[name], peak)
    return result


def write_result(name: str, result: dict[str, Any], results_dir: Path = RESULTS) -> Path:
    """Write ``results_dir/name`` atomically, closing the record with the load at the end."""
    result["machine"]["load_average_end"] = load_average()
    path = results_dir / name
    write_text_atomic(path, json.dumps(result, indent=1) + "\n")
    return path


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown_table(results: dict[str, Any] | list[dict[str, Any]]) -> str:
    """A markdown table of one or more speed results (the dicts the speed scripts write).

    One row per pipeline and phase (``train``, ``infer``, and ``data``: the input pipeline
    alone, where present): images/s, ratio to the faster reference loader, achieved GFLOP/s
    and its share of the fp32 and bf16 matmul peaks. Each benchmark is followed by a line
    naming its machine, load and peaks.
    """
    items = [results] if isinstance(results, dict) else list(results)
    header = (
        "| benchmark | phase | pipeline | precision | images/s | vs reference "
        "| GFLOP/s | % fp32 peak | % bf16 peak |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    rows, notes = [header], []
    for result in items:
        for phase in ("train", "infer", "data"):
            if phase not in result:
                continue
            figures = result[phase]
            best = figures["reference_best"]
            base = figures["variants"][best]["images_per_s"]
            for name, row in figures["variants"].items():
                ratio = row["images_per_s"] / base if base else 0.0
                label = f"**{name}**" if name == best else name
                compute = "| — | — | —"
                if row["achieved_gflops"]:
                    compute = (
                        f"| {row['achieved_gflops']:.1f} "
                        f"| {_percent(row['fraction_of_fp32_peak'])} "
                        f"| {_percent(row['fraction_of_bf16_peak'])}"
                    )
                rows.append(
                    f"| {result['benchmark']} | {phase} | {label} | {row['precision']} "
                    f"| {row['images_per_s']:.1f} | {ratio:.2f}x {compute} |"
                )
        machine, peak = result["machine"], result["peak"]
        notes.append(
            f"- {result['benchmark']}: {machine['cpu_model']}, {machine['usable_cores']} cores, "
            f"torch {machine['torch']}, load average at start "
            f"{machine['load_average_start'][:1]} (1 min); matmul peak fp32 "
            f"{peak['fp32_gflops']:.0f} / bf16 {peak['bf16_gflops']:.0f} GFLOP/s; "
            f"batch {result['setup']['batch_size']}, {result['setup']['image_size']} px, "
            f"{result['setup']['steps']} timed steps."
        )
    bold = "- **bold**: the faster reference loader, the base of the ratios."
    return "\n".join(rows) + "\n\n" + "\n".join([*notes, bold]) + "\n"


def script_main(description: str, run: Callable[..., dict[str, Any]], file_name: str) -> None:
    """Command line of a speed script: parse, ``run(**options)``, write ``file_name``, print."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("data", nargs="?", type=Path, default=None, help="dataset folder")
    parser.add_argument("--recipe", dest="recipe_name", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--limit", type=int, default=None, help="use a random subset")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    options = vars(parser.parse_args())
    out = options.pop("out")
    if options["recipe_name"] is None:
        del options["recipe_name"]
    options["workers"] = tuple(options["workers"])
    result = run(**options)
    path = write_result(file_name, result, out)
    print(markdown_table(result))
    print(f"wrote {path}")


def main() -> None:
    """Print the table of every stored speed result."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("speed_*.json"))]
    print(markdown_table(results) if results else f"no speed_*.json in {RESULTS}")


if __name__ == "__main__":
    main()
