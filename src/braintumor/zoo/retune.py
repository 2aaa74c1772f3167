"""Give an installed reference model new inference settings without training it again.

A test-time setting (mirror TTA) changes what a model answers, not its weights. The installed
folder is copied into a run folder and its ``model.json`` given the settings; the test split is
rebuilt as the build made it (the sample ids must hash to the model's fingerprint, else the
split could hold training images) and evaluated with the settings; then
:func:`~braintumor.zoo.build.build_reference` re-cards and re-installs the model from that run
folder, as it does for a finished build.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from braintumor.atomic import write_text_atomic
from braintumor.errors import RecipeError
from braintumor.models.folder import load_model_dir, save_model_dir
from braintumor.zoo.build import build_reference
from braintumor.zoo.inputs import reference_test_split
from braintumor.zoo.registry import verify_entry, zoo_entry


def parse_settings(pairs: list[str]) -> dict[str, bool]:
    """``["tta=true"]`` as ``{"tta": True}``: values parsed as ``--set`` parses them, checked
    as a recipe's ``inference`` section is. ``auto`` is refused: nothing is chosen here."""
    from braintumor.config import parse_override
    from braintumor.recipe_options import InferenceOptions, options_from_dict

    settings = {}
    for pair in pairs:
        keys, value = parse_override(pair)
        where = f"--retune {pair}"
        options_from_dict(InferenceOptions, {".".join(keys): value}, where, "inference")
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected KEY=true|false (nothing is chosen on retune)")
        settings[".".join(keys)] = value
    return settings


def retune_reference(
    name: str,
    settings: dict[str, bool],
    data_root: Path,
    work_dir: Path,
    zoo_dir: Path | None = None,
    loso_results: Path | None = None,
) -> dict[str, Any]:
    """Install ``zoo:NAME`` again with ``settings`` merged into its inference settings, its
    card and headline figures from its test split evaluated with them. Returns the build
    summary (:func:`build_reference`) with ``test_before``: the headline the index had.

    Raises :class:`DataError` when the rebuilt split's ids do not match the model's fingerprint.
    """
    from braintumor.tasks.registry import get_task

    entry = zoo_entry(name, zoo_dir)
    before = dict(entry.headline)
    run_dir = work_dir / f"{name}-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    loaded = load_model_dir(verify_entry(entry))
    loaded.info.inference = {**loaded.info.inference, **settings}
    recipe, test = reference_test_split(name, data_root, run_dir, loaded.info.data_fingerprint)
    metrics = {"test": get_task(recipe.task).evaluate(loaded, test, run_dir / "test")}
    # The predictor made the weights channels_last; safetensors stores contiguous tensors.
    network = loaded.model.to(memory_format=torch.contiguous_format)
    save_model_dir(network, loaded.info, run_dir / "model", ood=loaded.ood)
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=str))
    given = " ".join(f"{k}={str(v).lower()}" for k, v in settings.items())
    summary = build_reference(
        name,
        data_root,
        work_dir,
        zoo_dir=zoo_dir,
        reuse=True,
        loso_results=loso_results,
        retuned=f"python benchmarks/train_reference.py {name} --retune {given}",
    )
    return {**summary, "test_before": before}
