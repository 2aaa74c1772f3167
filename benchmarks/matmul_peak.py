"""Measure this machine's fp32 and bf16 matrix-multiply speed with torch (GFLOP/s).

Usage: ``python benchmarks/matmul_peak.py [--sizes 2048 3072 4096] [--repeats 5]``. Writes
``benchmarks/results/matmul_peak.json``, or ``matmul_peak-<cpu>.json`` when that file holds
another CPU model's figures (machines of this project have changed CPU between sessions).
The best square ``torch.mm`` over the sizes is the practical peak the speed benchmarks divide
their achieved GFLOP/s by: no network layer runs faster than a large, cache-friendly matrix
product on the same cores and dtype.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from speed_common import RESULTS, command_line, cpu_identity, machine_info, write_result

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PEAK_FILE = RESULTS / "matmul_peak.json"


def matmul_gflops(n: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Best GFLOP/s of ``repeats`` timed (n x n) @ (n x n) products, after one warm-up."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(dtype)
    b = torch.randn(n, n, generator=generator).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: thread pool, packing buffers, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


def measure_matmul_peak(
    sizes: tuple[int, ...] = (2048, 3072, 4096), repeats: int = 5
) -> dict[str, Any]:
    """GFLOP/s per dtype and size, and the best per dtype (``fp32_gflops``, ``bf16_gflops``)."""
    per_size: dict[str, dict[str, float]] = {}
    for name, dtype in DTYPES.items():
        per_size[name] = {str(n): round(matmul_gflops(n, dtype, repeats), 1) for n in sizes}
    return {
        "fp32_gflops": max(per_size["fp32"].values()),
        "bf16_gflops": max(per_size["bf16"].values()),
        "per_size": per_size,
        "sizes": list(sizes),
        "repeats": repeats,
    }


def peak_file(results: Path = RESULTS) -> Path:
    """Where this CPU's peak is (to be) stored: ``matmul_peak.json`` unless that file holds
    another CPU's figures (:func:`~speed_common.cpu_identity`: name and bf16 units), then
    ``matmul_peak-<cpu model>-<units>.json``."""
    shared = results / PEAK_FILE.name
    if not shared.is_file() or _cpu_of(shared) == cpu_identity():
        return shared
    slug = "".join(c if c.isalnum() else "-" for c in cpu_identity().lower())
    slug = "-".join(part for part in slug.split("-") if part)
    return results / f"matmul_peak-{slug}.json"


def _cpu_of(path: Path) -> str:
    return cpu_identity(json.loads(path.read_text()).get("machine", {}))


def peak_for_this_cpu(path: Path | None = None) -> dict[str, Any]:
    """The stored peak of this CPU (:func:`peak_file`), else a short measurement.

    The speed benchmarks divide their achieved GFLOP/s by these figures.
    """
    path = path or peak_file()
    if path.is_file():
        stored = json.loads(path.read_text())
        if cpu_identity(stored.get("machine", {})) == cpu_identity():
            return {
                "fp32_gflops": stored["fp32_gflops"],
                "bf16_gflops": stored["bf16_gflops"],
                "source": f"{path.name} (load average at start "
                f"{stored['machine'].get('load_average_start', [])[:1]})",
            }
    quick = measure_matmul_peak((2048,), 3)
    return {
        "fp32_gflops": quick["fp32_gflops"],
        "bf16_gflops": quick["bf16_gflops"],
        "source": "measured in this run at n=2048 (no matmul_peak.json for this CPU)",
    }


def main() -> None:
    """Measure, print and write ``matmul_peak.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 3072, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    machine = machine_info()
    result = {
        "command": command_line(),
        "machine": machine,
        **measure_matmul_peak(tuple(args.sizes), args.repeats),
    }
    path = write_result(peak_file(args.out).name, result, args.out)
    for name in DTYPES:
        sizes = ", ".join(f"{n}: {g:.1f}" for n, g in result["per_size"][name].items())
        print(f"{name}: best {result[f'{name}_gflops']:.1f} GFLOP/s ({sizes})")
    print(f"load average at start {machine['load_average_start']}; wrote {path}")


if __name__ == "__main__":
    main()
