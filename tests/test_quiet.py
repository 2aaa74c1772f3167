"""Third-party console noise is silenced; everything else still shows."""

from __future__ import annotations

import logging
import warnings

import pytest

from braintumor.quiet import quiet_third_party


def test_named_warnings_are_silenced_and_others_kept() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", stacklevel=1)
        warnings.warn("Checkpoint directory /x/checkpoints exists and is not empty.", stacklevel=1)
        warnings.warn("The number of training batches (2) is smaller than ...", stacklevel=1)
    assert [str(w.message)[:14] for w in caught] == ["The number of "]


@pytest.mark.parametrize(
    ("logger", "message", "shown"),
    [
        ("lightning.pytorch.utilities.rank_zero", "💡 Tip: try installing [litlogger](...)", False),
        ("lightning.pytorch.utilities.rank_zero", "GPU available: False, used: False", True),
        ("torch.utils.cpp_extension", "No CUDA runtime is found, using CUDA_HOME='/usr'", False),
    ],
)
def test_named_log_records_are_dropped(logger, message, shown, caplog) -> None:
    quiet_third_party()
    quiet_third_party()  # idempotent: one filter per logger
    target = logging.getLogger(logger)
    assert len(target.filters) == 1
    with caplog.at_level(logging.INFO, logger=logger):
        target.info(message)
    assert (message in caplog.text) is shown
