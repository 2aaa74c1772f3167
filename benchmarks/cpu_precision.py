"""What fp32 against bf16 autocast, and batch norm folded into the convolutions, buy on this CPU.

Usage: ``python benchmarks/cpu_precision.py [--threads 1 2] [--steps 12] [--rounds 4]``.
Writes ``benchmarks/results/cpu_precision.json``; ``precision: auto`` follows such figures
(:func:`braintumor.inference.precision.bf16_pays`).

Training: one optimiser step (forward, loss, backward, AdamW) of the default recipes' networks
(``fast-cpu-4class``: small ResNet, batch 16; ``fast-cpu-seg``: MONAI U-Net, batch 8; 128 px
grey, channels_last) in fp32 and in bf16 autocast, timed in interleaved rounds.

Inference, for ``zoo:4class`` and ``zoo:binary``: the network's forward on a batch of 64 grey 128 px
inputs (channels_last, ``torch.inference_mode``), as the model (the plain reference) and as
:class:`~braintumor.inference.fold_bn.FoldedNetwork` runs it, in fp32 and in bf16 autocast,
timed in interleaved rounds of alternating order; achieved GFLOP/s against this machine's
matmul peak, measured in the same run (:func:`matmul_peak.matmul_gflops`, 2048 px). Parity: the
probabilities of both on 128 real slices of sartaj-4class/Testing through the predictor.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from braintumor.config import load_recipe
from braintumor.inference.fold_bn import FoldedNetwork
from braintumor.inference.precision import autocast
from braintumor.inference.predictor import Predictor
from braintumor.io import read_image
from braintumor.models import build_model
from braintumor.models.folder import load_model_dir
from braintumor.zoo import resolve_model_ref
from matmul_peak import DTYPES, matmul_gflops
from speed_common import (
    Variant,
    command_line,
    count_flops,
    interleaved_timing,
    machine_info,
    shared_data_root,
    write_result,
)

MODELS = ("zoo:4class", "zoo:binary")
BATCH = 64
TRAINED = {"fast-cpu-4class": ("classify", 4), "fast-cpu-seg": ("segment", 1)}


def _parity(name: str, files: list[Path]) -> dict[str, Any]:
    """The predictor's probabilities with the folded network against the model's own."""
    loaded = load_model_dir(resolve_model_ref(name))
    images = [read_image(f) for f in files]
    out: dict[str, Any] = {"n": len(images)}
    for precision in ("fp32", "bf16"):
        probs = {}
        for folded in (False, True):
            predictor = Predictor(loaded, precision=precision, ood=False, tta=False, batch_size=32)
            if not folded:
                predictor.network = FoldedNetwork(predictor.model, fold=False)
            probs[folded] = predictor.classify(images)
        diff = np.abs(probs[True] - probs[False])
        out[precision] = {
            "max_abs_prob_diff": round(float(diff.max()), 5),
            "mean_abs_prob_diff": round(float(diff.mean()), 6),
            "same_class": float(np.mean(probs[True].argmax(1) == probs[False].argmax(1))),
        }
    return out


def _speed(name: str, steps: int, rounds: int, peak: dict[str, float]) -> dict[str, Any]:
    loaded = load_model_dir(resolve_model_ref(name))
    model = loaded.model.eval().to(memory_format=torch.channels_last)
    network = FoldedNetwork(model)
    folded = network.current()
    channels = next(model.parameters()).shape[1]
    x = torch.randn(BATCH, channels, 128, 128).to(memory_format=torch.channels_last)
    device = torch.device("cpu")

    def step(net: torch.nn.Module, precision: str) -> int:
        with torch.inference_mode(), autocast(precision, device):
            net(x)
        return BATCH

    variants = [
        Variant(f"{kind}-{precision}", lambda n=net, p=precision: step(n, p), precision)
        for precision in ("fp32", "bf16")
        for kind, net in (("plain", model), ("folded", folded))
    ]
    flops = count_flops(lambda: step(model, "fp32")) / BATCH
    timings = interleaved_timing(variants, warmup=2, steps=steps, rounds=rounds)
    rows: dict[str, Any] = {"pairs_folded": len(network.pairs), "gflop_per_image": flops / 1e9}
    for variant in variants:
        timing = timings[variant.name]
        gflops = timing.items_per_s * flops / 1e9
        rows[variant.name] = {
            "images_per_s": round(timing.items_per_s, 1),
            "images_per_s_median_step": round(timing.items_per_s_median, 1),
            "achieved_gflops": round(gflops, 1),
            "fraction_of_peak": round(gflops / peak[variant.precision], 4),
        }
    for precision in ("fp32", "bf16"):
        plain = rows[f"plain-{precision}"]["images_per_s"]
        rows[f"folded_vs_plain_{precision}"] = round(
            rows[f"folded-{precision}"]["images_per_s"] / plain, 3
        )
    return rows


def _training(recipe_name: str, steps: int, rounds: int) -> dict[str, Any]:
    """Images per second of one training step in fp32 and in bf16 autocast."""
    recipe = load_recipe(recipe_name)
    task, outputs = TRAINED[recipe_name]
    torch.manual_seed(0)
    net = build_model(
        recipe.model, num_classes=outputs, in_channels=recipe.in_channels, **recipe.model_args
    ).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    n, side = recipe.batch_size, recipe.image_size
    x = torch.randn(n, recipe.in_channels, side, side).to(memory_format=torch.channels_last)
    if task == "classify":
        y = torch.randint(0, outputs, (n,))
        loss_of = torch.nn.functional.cross_entropy
    else:
        y = (torch.rand(n, 1, side, side) > 0.9).float()
        loss_of = torch.nn.functional.binary_cross_entropy_with_logits

    def step(precision: str) -> int:
        with autocast(precision, torch.device("cpu")):
            loss = loss_of(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return n

    variants = [Variant(p, lambda p=p: step(p), p) for p in ("fp32", "bf16")]
    timings = interleaved_timing(variants, warmup=2, steps=steps, rounds=rounds)
    rows = {v.name: round(timings[v.name].items_per_s, 1) for v in variants}
    return {"images_per_s": rows, "bf16_vs_fp32": round(rows["bf16"] / rows["fp32"], 3)}


def main() -> None:
    """Time the networks at each thread count, check parity, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=12, help="timed batches per variant")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    result: dict[str, Any] = {"command": command_line(), "machine": machine_info()}
    files = sorted((shared_data_root() / "sartaj-4class" / "Testing").rglob("*.jpg"))[::3][:128]
    result["parity"] = {name: _parity(name, files) for name in MODELS}
    for threads in args.threads:
        torch.set_num_threads(threads)
        peak = {
            dtype: max(matmul_gflops(2048, DTYPES[dtype]) for _ in range(2)) for dtype in DTYPES
        }
        result[f"threads_{threads}"] = {
            "matmul_peak_gflops": {k: round(v, 1) for k, v in peak.items()},
            **{name: _speed(name, args.steps, args.rounds, peak) for name in MODELS},
            "training": {name: _training(name, args.steps, args.rounds) for name in TRAINED},
        }
        print(threads, result[f"threads_{threads}"])
    print(result["parity"])
    print(f"wrote {write_result('cpu_precision.json', result)}")


if __name__ == "__main__":
    main()
