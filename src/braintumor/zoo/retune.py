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
from braintumor.errors import DataError, RecipeError
from braintumor.models.folder import load_model_dir, save_model_dir
from braintumor.zoo.build import build_reference
from braintumor.zoo.registry import verify_entry, zoo_entry
from braintumor.zoo.specs import REFERENCE_MODELS


def parse_settings(pairs: list[str]) -> dict[str, bool]:
    """``["tta=true"]`` as ``{"tta": True}``; only true/false values of known settings."""
    from braintumor.recipe_options import InferenceOptions

    known = set(InferenceOptions.__dataclass_fields__)
    settings = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in known or value.lower() not in ("true", "false"):
            raise RecipeError(
                f"inference setting {pair!r}: expected KEY=true|false with KEY one of "
                f"{', '.join(sorted(known))}"
            )
        settings[key] = value.lower() == "true"
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
    from braintumor.config import load_recipe
    from braintumor.data.sources import load_data
    from braintumor.tasks.registry import get_task
    from braintumor.training.run import data_fingerprint
    from braintumor.training.splits import resolve_splits

    spec = REFERENCE_MODELS[name]
    entry = zoo_entry(name, zoo_dir)
    before = dict(entry.headline)
    run_dir = work_dir / f"{name}-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    loaded = load_model_dir(verify_entry(entry))
    loaded.info.inference = {**loaded.info.inference, **settings}
    recipe = load_recipe(spec.recipe, [*spec.overrides, f"max_minutes={spec.minutes}"])
    task = get_task(recipe.task)
    data = [source.data_arg(data_root, len(spec.sources) == 1) for source in spec.sources]
    layout = load_data(data, task.data_kinds[0], recipe.classes)
    ids = data_fingerprint(layout.root, layout.name, layout.samples)["ids_sha256"]
    if ids != loaded.info.data_fingerprint.get("ids_sha256"):
        raise DataError(
            f"zoo:{name}: the sources under {data_root} are not the ones it was built on "
            "(sample ids differ from its fingerprint), so its test split cannot be rebuilt"
        )
    splits = resolve_splits(layout, recipe, run_dir)
    metrics = {"test": task.evaluate(loaded, splits["test"], run_dir / "test")}
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
