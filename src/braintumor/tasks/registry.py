"""The task registry: every task a recipe or a model folder can name, found by name.

A task (:class:`Task`) knows how to build a run's data and Lightning module, how to evaluate
and predict with the model it trains, and what its outputs are. Tasks register by name, as
timm's models do, so that the CLI, serving, evaluation and training ask the registry instead
of comparing task names. A registration may name its implementation as ``"module:attribute"``:
it is imported on first use, so that reading a recipe does not import Lightning.

The names, and where each implementation lives, are in :mod:`.catalog` (the registrations);
this module adds the protocol and resolves names to tasks. It imports nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from braintumor.errors import ModelFormatError, RecipeError
from braintumor.tasks.catalog import (
    cache_task,
    list_tasks,
    register_task,
    task_entry,
    task_options,
)

__all__ = [
    "CASES",
    "CLASSES",
    "IMAGES",
    "LABELS",
    "MASK",
    "PredictOptions",
    "Task",
    "TaskSetup",
    "evaluate_model",
    "get_task",
    "list_tasks",
    "model_task",
    "register_task",
    "task_of",
    "task_options",
]

if TYPE_CHECKING:
    import lightning as L
    from rich.table import Table

    from braintumor.config import Recipe
    from braintumor.data.samples import Sample
    from braintumor.models.folder import LoadedModel


#: What a task's predict takes (:attr:`Task.inputs`).
IMAGES, CASES = "images", "cases"
#: What a task's model outputs (:attr:`Task.outputs`).
CLASSES, MASK, LABELS = "classes", "mask", "labels"


@dataclass
class TaskSetup:
    """What a run trains, and what its model folder must remember."""

    module: L.LightningModule
    datamodule: L.LightningDataModule
    class_names: list[str]
    num_outputs: int
    preprocessing: dict[str, Any]
    # How training draws were balanced over sources and classes (data/balance.py).
    sampling: dict[str, Any] = field(default_factory=dict)


@dataclass
class PredictOptions:
    """How ``predict`` turns outputs into answers (CLI flags; the web app uses the defaults)."""

    threshold: float = 0.5
    min_area: int = 0
    keep_largest: bool | None = None
    #: segmenters: the 3D rule across a patient's slice stack (inference/stack_filter.py)
    stack_components: bool | None = None
    tta: bool | None = None
    batch_size: int = 32
    # auto: bf16 autocast on CPUs with AMX/AVX512-BF16, else fp32 (inference/precision.py)
    precision: str = "auto"
    #: re-estimate batch-norm statistics on the inputs before predicting them (AdaBN)
    adapt_bn: bool = False
    #: segmenters: an overlay PNG per image (off: masks and localisations only, and a JPEG
    #: decoded reduced for the network is not decoded again whole for the picture)
    overlays: bool = True


@dataclass(frozen=True)
class EvaluateOptions:
    """How :meth:`Task.evaluate` scores a model (``evaluate``'s flags; training uses the
    defaults with its curves)."""

    #: the run's training curves, drawn in the report when given
    curves_csv: Path | None = None
    batch_size: int = 32
    #: BraTS models: average over mirrored inputs (a 2D model's TTA is its model.json's)
    tta: bool = False
    #: re-estimate the batch-norm statistics on each source's images first (2D image tasks;
    #: :mod:`braintumor.inference.adapt_bn`)
    adapt_bn: bool = False


@runtime_checkable
class Task(Protocol):
    """One kind of problem: its data, its module, its evaluation, its prediction, its outputs.

    Attributes:
        name: the name recipes and ``model.json`` use.
        description: one line for ``braintumor recipes`` and the docs.
        title: what the web page's model card calls the task.
        data_kinds: the layout kinds (:data:`braintumor.data.layouts_base.DATA_KINDS`) it trains
            and evaluates on.
        network_kind: the kind of network it needs (:data:`braintumor.models.registry.KINDS`).
        inputs: ``"images"`` (2D images and slices of volumes) or ``"cases"`` (BraTS case
            folders): what predict and serve hand it.
        outputs: ``"classes"`` (class probabilities per image), ``"mask"`` (a tumour mask per
            image) or ``"labels"`` (a tumour label volume per case).
        table: the name of predict's table (``predictions`` or ``summary``).
    """

    name: str
    description: str
    title: str
    data_kinds: tuple[str, ...]
    network_kind: str
    inputs: str
    outputs: str
    table: str

    def resolve(self, recipe: Recipe, splits: dict[str, list[Sample]]) -> Recipe:
        """``recipe`` with every setting the run will use fixed from the data (a new recipe;
        the run saves it once, then builds from it)."""
        ...

    def build(self, recipe: Recipe, splits: dict[str, list[Sample]]) -> TaskSetup:
        """Data module and Lightning module for training ``recipe`` (resolved) on ``splits``."""
        ...

    def tune(self, loaded: LoadedModel, recipe: Recipe, val: list[Sample]) -> dict[str, Any]:
        """Inference settings chosen on validation after training (``model.json`` ``inference``)."""
        ...

    def evaluate(
        self,
        loaded: LoadedModel,
        samples: list[Sample],
        out_dir: Path,
        options: EvaluateOptions | None = None,
    ) -> dict[str, Any]:
        """Score ``loaded`` on labelled ``samples``; writes metrics.json and report.html."""
        ...

    def summary_table(self, metrics: dict[str, Any]) -> Table:
        """The headline numbers of :meth:`evaluate`'s result, for the terminal."""
        ...

    def predictor(self, loaded: LoadedModel, options: PredictOptions, device: str) -> Any:
        """What :meth:`predict` runs (a batched predictor, or the model for case tasks)."""
        ...

    def predict(
        self, predictor: Any, items: Sequence[Any], out: Path, options: PredictOptions
    ) -> list[dict]:
        """Records for a batch of inputs (images: ``Item`` tuples; cases: samples)."""
        ...


def get_task(name: str) -> Task:
    """The task registered as ``name``; an unknown name is a :class:`RecipeError`."""
    entry = task_entry(name)
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        made = getattr(importlib.import_module(module), attribute)
        entry = made() if isinstance(made, type) else made
        cache_task(name, entry)
    return cast(Task, entry)


def evaluate_model(
    loaded: LoadedModel,
    samples: list[Sample],
    out_dir: Path,
    curves_csv: Path | None = None,
    batch_size: int = 32,
    tta: bool = False,
    adapt_bn: bool = False,
) -> dict[str, Any]:
    """Evaluate ``loaded`` with its task's evaluation (:meth:`Task.evaluate`)."""
    options = EvaluateOptions(curves_csv, batch_size, tta, adapt_bn)
    return task_of(loaded).evaluate(loaded, samples, out_dir, options)


def task_of(loaded: LoadedModel) -> Task:
    """The task of a loaded model folder; an unknown one is a :class:`ModelFormatError`."""
    return model_task(loaded.info.task, loaded.path)


def model_task(name: str, model_path: object) -> Task:
    """The task a model folder names; an unknown one is a :class:`ModelFormatError`."""
    try:
        return get_task(name)
    except RecipeError as error:
        raise ModelFormatError(f"{model_path}: {error}") from error
