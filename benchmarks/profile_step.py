"""Where a training step's CPU time goes: torch.profiler on the default recipes' steps.

Usage: ``python benchmarks/profile_step.py [--recipe fast-cpu-4class] [--recipe fast-cpu-seg]
[--steps 12] [--warmup 4]``. Writes ``benchmarks/results/profile_step.json`` and prints one
markdown table per recipe (the one in ``docs/benchmarks.md``).

Each step is the one :mod:`speed_pipelines` times for "ours" (and Lightning runs in
``training_step``): a uint8 batch of the recipe's size, batched augmentation and
normalisation, forward and loss under bf16 autocast where the CPU has it, backward, and the
recipe's optimiser. The batch holds random pixels: the operators' cost does not depend on the
content. Time is the profiler's self CPU time of each operator, summed by category, so nothing
is counted twice; the phases (augment, forward, backward, optimiser) come from
``record_function`` ranges. The achieved rate divides the FLOPs of the convolutions and matrix
products (PyTorch's counter, see :func:`speed_common.count_flops`) by the step's wall time,
against the bf16 peak of ``results/matmul_peak.json``. The network runs eagerly: the profile
names the operators a compiled graph fuses (the U-Net recipe compiles for long runs).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from braintumor.config import load_recipe
from braintumor.data.preprocess import normalise_batch
from braintumor.losses import CLASSIFY_KIND, SEGMENT_KIND, build_loss
from braintumor.models import build_model
from braintumor.training.augment import AugmentConfig, augment_batch
from braintumor.training.optim import build_optimizer
from braintumor.training.setup import preprocess_spec
from matmul_peak import peak_for_this_cpu
from speed_common import command_line, count_flops, machine_info, write_result
from speed_pipelines import autocast, resolve_precision

#: Operator-name fragments -> category; the first match wins (names are aten:: operators).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("convolution", "conv2d", "conv_transpose")),
    ("matrix products (linear)", ("addmm", "matmul", "::mm", "bmm", "linear")),
    ("normalisation", ("batch_norm", "instance_norm", "layer_norm", "group_norm")),
    ("activation", ("relu", "threshold_backward", "gelu", "silu", "sigmoid", "prelu")),
    ("optimiser", ("adam", "_foreach", "lerp", "addcdiv", "addcmul", "sqrt")),
    ("augmentation (grid sample)", ("grid_sampler", "affine_grid")),
    ("pooling", ("pool",)),
    ("loss", ("cross_entropy", "nll_loss", "log_softmax", "_softmax", "binary_cross")),
    ("copies and casts", ("copy_", "_to_copy", "::to", "clone", "contiguous", "empty_like")),
]


def category(name: str) -> str:
    """The category of an operator name (``other`` when none matches)."""
    lowered = name.lower()
    for label, fragments in CATEGORIES:
        if any(fragment in lowered for fragment in fragments):
            return label
    return "other element-wise and bookkeeping"


def _step(recipe_name: str, batch_size: int | None) -> tuple[Any, dict[str, Any]]:
    """A closure running one training step of the recipe, and what it trains."""
    recipe = load_recipe(recipe_name)
    spec = preprocess_spec(recipe)
    classify = recipe.task == "classify"
    outputs = 4 if classify else 1
    net = build_model(
        recipe.model, num_classes=outputs, in_channels=recipe.in_channels, **recipe.model_args
    ).to(memory_format=torch.channels_last)
    net.train()
    optimizer = build_optimizer(net, recipe)
    kind = CLASSIFY_KIND if classify else SEGMENT_KIND
    extra = {} if classify else {"multilabel": True}
    loss_fn = build_loss(recipe.loss, kind, **extra, **recipe.loss_args)
    augment = AugmentConfig.from_dict(recipe.augment)
    precision = resolve_precision("auto")
    n = batch_size or recipe.batch_size
    size = recipe.image_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, recipe.in_channels, size, size), generator=generator)
    images = images.to(torch.uint8)
    labels = torch.randint(0, outputs, (n,), generator=generator)
    masks = (torch.rand(n, 1, size, size, generator=generator) > 0.9).float()

    def step() -> None:
        with record_function("augment + normalise"):
            x = images.float().div_(255.0)
            x, y = augment_batch(x, None if classify else masks, augment)
            x = normalise_batch(x, spec)
        with record_function("forward + loss"), autocast(precision):
            out = net(x)
            loss = loss_fn(out, labels) if classify else loss_fn(out, y)
        with record_function("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("optimiser"):
            optimizer.step()

    about = {
        "recipe": recipe_name,
        "model": recipe.model,
        "model_args": recipe.model_args,
        "image_size": size,
        "batch_size": n,
        "precision": precision,
        "optimizer": recipe.optimizer,
    }
    return step, about


def profile_recipe(recipe_name: str, steps: int, warmup: int, batch_size: int | None) -> dict:
    """The profile of ``steps`` training steps of ``recipe_name`` after ``warmup`` steps."""
    step, about = _step(recipe_name, batch_size)
    for _ in range(warmup):
        step()
    flops = count_flops(step)
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = (time.perf_counter() - started) / steps
    self_us: dict[str, float] = defaultdict(float)
    phases: dict[str, float] = {}
    top: list[tuple[str, float]] = []
    for event in prof.key_averages():
        if event.key in ("augment + normalise", "forward + loss", "backward", "optimiser"):
            phases[event.key] = event.cpu_time_total / steps / 1e3
            continue
        self_us[category(event.key)] += event.self_cpu_time_total
        top.append((event.key, event.self_cpu_time_total))
    total = sum(self_us.values())
    peak = peak_for_this_cpu()
    achieved = flops / wall / 1e9
    peak_key = "bf16_gflops" if about["precision"] == "bf16" else "fp32_gflops"
    return {
        **about,
        "steps": steps,
        "step_ms": round(wall * 1e3, 1),
        "step_ms_profiled_note": "profiler overhead included (a few percent at these sizes)",
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflops": round(achieved, 1),
        "peak_gflops": peak[peak_key],
        "fraction_of_peak": round(achieved / peak[peak_key], 4),
        "phases_ms": {k: round(v, 1) for k, v in phases.items()},
        "categories": {
            k: {"ms_per_step": round(v / steps / 1e3, 2), "share": round(v / total, 4)}
            for k, v in sorted(self_us.items(), key=lambda kv: -kv[1])
        },
        "top_operators": [
            {"name": name, "ms_per_step": round(us / steps / 1e3, 2)}
            for name, us in sorted(top, key=lambda kv: -kv[1])[:12]
        ],
    }


def markdown(result: dict[str, Any]) -> str:
    """One table per profiled recipe: categories with their share of the step."""
    lines = []
    for entry in result["recipes"]:
        lines += [
            f"**{entry['recipe']}** ({entry['model']}, {entry['image_size']} px, batch "
            f"{entry['batch_size']}, {entry['precision']}): {entry['step_ms']} ms a step, "
            f"{entry['gflop_per_step']} GFLOP, {entry['achieved_gflops']} GFLOP/s = "
            f"{100 * entry['fraction_of_peak']:.1f}% of the {entry['peak_gflops']} GFLOP/s peak",
            "",
            "| where | ms a step | share |",
            "|---|---|---|",
        ]
        for name, cell in entry["categories"].items():
            lines.append(f"| {name} | {cell['ms_per_step']} | {100 * cell['share']:.1f}% |")
        phases = ", ".join(f"{k} {v} ms" for k, v in entry["phases_ms"].items())
        lines += ["", f"Phases (inclusive): {phases}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append", help="default: fast-cpu-4class, fast-cpu-seg")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    machine = machine_info()
    recipes = [
        profile_recipe(name, args.steps, args.warmup, args.batch_size)
        for name in args.recipe or ["fast-cpu-4class", "fast-cpu-seg"]
    ]
    result = {
        "benchmark": "profile_step",
        "command": command_line(),
        "machine": machine,
        "recipes": recipes,
    }
    write_result("profile_step.json", result)
    print(markdown(result))


if __name__ == "__main__":
    main()
