"""The arithmetic a network runs in: fp32, or bf16 autocast where it pays.

bf16 autocast is the default (``auto``) only on CPUs where it measured faster than fp32 for
this project's networks: with AMX tiles (a Xeon: inference 2.5x) and on AMD CPUs with
AVX512-BF16 (an EPYC: ``zoo:4class``'s whole ``predict`` 1.3x). On an Intel Xeon with
AVX512-BF16 but no AMX it was slower (training steps 0.87-0.93x, the classifiers' forward
0.80-0.92x with batch norm folded; docs/benchmarks.md, "Precision on a CPU without AMX"), and
elsewhere it would be emulated, so ``auto`` keeps fp32 there, and on GPUs for inference. The
parity of bf16 probabilities with fp32 on real slices is measured in docs/benchmarks.md
("Predict on files").
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

import torch

from braintumor.errors import DataError

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache  # read once per process: predictors and trainers ask repeatedly
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16() -> bool:
    """True on x86 CPUs with bf16 instructions (AVX512-BF16 or AMX)."""
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_pays() -> bool:
    """True on CPUs where bf16 autocast ran this project's networks faster than fp32: with
    AMX, or AMD with AVX512-BF16 (see the module's docstring for the measurements)."""
    info = _cpuinfo()
    return "amx_bf16" in info or ("avx512_bf16" in info and "AuthenticAMD" in info)


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on a CPU where it pays (:func:`bf16_pays`), else ``fp32``; others
    as given.

    Raises :class:`DataError` for a name outside :data:`PRECISIONS`.
    """
    if name not in PRECISIONS:
        raise DataError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name == "auto":
        return "bf16" if device.type == "cpu" and bf16_pays() else "fp32"
    return name


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` for ``bf16``; nothing (plain fp32) otherwise."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
