"""The arithmetic a network runs in at prediction time: fp32, or bf16 autocast where it pays.

On x86 CPUs with AMX or AVX512-BF16, bf16 autocast runs the convolutions of the project's
CPU models several times faster than fp32; the parity of its probabilities with fp32 on real
slices is measured in docs/benchmarks.md ("Predict on files"). Elsewhere bf16 would be emulated
(slower than fp32), so ``auto`` keeps fp32 there, and on GPUs, where fp32 is fast already.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from braintumor.errors import DataError

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX, where bf16 autocast is a real speed-up."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a CPU with bf16 instructions, else ``fp32``; others as given.

    Raises :class:`DataError` for a name outside :data:`PRECISIONS`.
    """
    if name not in PRECISIONS:
        raise DataError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"
    return name


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` for ``bf16``; nothing (plain fp32) otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
