"""Everything ``braintumor train`` is given, checked before anything is written or trained:
the run folder, ``--test-data``, ``--splits``, ``--weights`` and, on ``--resume``, the last
checkpoint. A failed check is a one-line error and the run folder is left as it was."""

from __future__ import annotations

from pathlib import Path

from braintumor.config import Recipe
from braintumor.data.layouts import detect_layout
from braintumor.data.splits import read_splits
from braintumor.errors import BrainTumorError, LayoutError
from braintumor.preflight import check_output_folder, check_resume_checkpoint
from braintumor.training.trainer import last_checkpoint


def check_train_inputs(
    recipe: Recipe,
    run_dir: Path,
    test_data: Path | None = None,
    splits_csv: Path | None = None,
    resume: bool = False,
) -> None:
    """Raise the error a run would otherwise meet later (after training, for ``--test-data``)."""
    check_output_folder(run_dir, "--run-dir")
    if test_data is not None:
        try:
            detect_layout(test_data)
        except BrainTumorError as error:
            raise LayoutError(f"--test-data {error}") from error
    if splits_csv is not None:
        read_splits(splits_csv)
    if recipe.weights:
        from braintumor.models.weights import read_state_dict  # imports timm

        read_state_dict(recipe.weights)
    last = last_checkpoint(run_dir) if resume else None
    if last is not None:
        check_resume_checkpoint(last)
