"""Evaluation protocols beyond one train/val/test run: name -> runner.

A runner trains and evaluates several runs under one run folder and returns its summary
dict; it is called as ``runner(recipe, data, run_dir, **options)`` with the options of
``braintumor train`` (``test_sources``, ``val_sources``, ``copies``, ``folds``, ``splits_csv``,
``resume``, ``devices``, ``nodes``, ``accelerator``) and ignores the ones it has no use for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from braintumor.protocols.kfold import run_kfold
from braintumor.protocols.loso import run_loso

Runner = Callable[..., dict[str, Any]]

PROTOCOLS: dict[str, Runner] = {"loso": run_loso, "kfold": run_kfold}
