"""Silence third-party console messages that are not the user's business, so that progress
bars, results and the warnings that matter stand out.

Each filter names one message; everything else (our warnings, Lightning's advice about the
data or the hardware) still shows.
"""

from __future__ import annotations

import logging
import re
import warnings

#: Warnings (by message) a user of the command line cannot act on.
NOISY_WARNINGS = (
    # torch deprecates a class Lightning's pytree helper still builds (Lightning's to fix).
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    # A resumed run reopens its own log and checkpoint folders; the history is kept.
    r"Experiment logs directory .* exists and is not empty",
    r"Checkpoint directory .* exists and is not empty",
)

#: Log records (logger name -> message pattern) that are advertising or machine trivia.
NOISY_LOGS = {
    "lightning.pytorch.utilities.rank_zero": re.compile(r"Tip: .*litlogger"),
    # A CPU machine with a CUDA toolkit folder: torch says it will not use CUDA.
    "torch.utils.cpp_extension": re.compile(r"No CUDA runtime is found"),
}


class _DropMatching(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def quiet_third_party() -> None:
    """Install the filters (idempotent: a filter is added once per logger)."""
    for message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name, pattern in NOISY_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMatching) for f in logger.filters):
            logger.addFilter(_DropMatching(pattern))
