"""A reference model's inputs as its build used them: the data arguments and the recipe, and
its test split rebuilt from them (checked against the model's data fingerprint).

One place for this, so the build, ``--retune`` and the benchmarks that evaluate a shipped
model on its own test split can never disagree about which images that split holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from braintumor.config import Recipe, load_recipe
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.zoo.specs import REFERENCE_MODELS, ReferenceSpec


@dataclass(frozen=True)
class BuildInputs:
    """What ``braintumor train`` is given for one reference model."""

    data: list[str]  # ``--data`` arguments (``NAME=PATH`` when several sources)
    overrides: list[str]  # the spec's overrides, the time budget, then the caller's
    recipe: Recipe


def build_inputs(
    spec: ReferenceSpec,
    data_root: Path,
    minutes: float | None = None,
    extra_overrides: list[str] | None = None,
) -> BuildInputs:
    """The data arguments and recipe the build of ``spec`` uses (``minutes`` defaults to the
    spec's budget)."""
    alone = len(spec.sources) == 1
    data = [source.data_arg(data_root, alone) for source in spec.sources]
    budget = spec.minutes if minutes is None else minutes
    overrides = [*spec.overrides, f"max_minutes={budget}", *(extra_overrides or [])]
    return BuildInputs(data, overrides, load_recipe(spec.recipe, overrides))


def reference_test_split(
    name: str, data_root: Path, run_dir: Path, fingerprint: dict[str, Any]
) -> tuple[Recipe, list[Sample]]:
    """The recipe and test samples of reference model ``name``, rebuilt as its build made
    them from the sources under ``data_root`` (split files go to ``run_dir``).

    Raises :class:`DataError` unless the sources' sample ids hash to ``fingerprint`` (the
    model's ``data_fingerprint``): other data would give a split that can hold training images.
    """
    from braintumor.data.sources import load_data
    from braintumor.tasks.registry import get_task
    from braintumor.training.run import data_fingerprint
    from braintumor.training.splits import resolve_splits

    inputs = build_inputs(REFERENCE_MODELS[name], data_root)
    recipe = inputs.recipe
    layout = load_data(inputs.data, get_task(recipe.task).data_kinds[0], recipe.classes)
    ids = data_fingerprint(layout.root, layout.name, layout.samples)["ids_sha256"]
    if ids != fingerprint.get("ids_sha256"):
        raise DataError(
            f"zoo:{name}: the sources under {data_root} are not the ones it was built on "
            "(sample ids differ from its fingerprint), so its test split cannot be rebuilt"
        )
    return recipe, resolve_splits(layout, recipe, run_dir)["test"]
