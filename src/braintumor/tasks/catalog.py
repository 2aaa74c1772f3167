"""Every task's name, where its implementation lives, and the dataclass of its recipe options.

The lowest layer of the task registry: :mod:`braintumor.config` checks a recipe's task and
types its ``extra`` section against this table without importing any task (or the
:class:`~braintumor.tasks.registry.Task` protocol, which itself speaks of recipes).
:func:`braintumor.tasks.registry.get_task` turns an entry into the task.
"""

from __future__ import annotations

from braintumor.errors import RecipeError
from braintumor.recipe_options import BratsOptions, RunOptions

# name -> a Task instance, or "module:attribute" imported on first use (registry.get_task).
_TASKS: dict[str, object] = {}
# The dataclass a task's recipes hold their ``extra`` section in (braintumor.recipe_options).
_OPTIONS: dict[str, type[RunOptions]] = {}


def register_task(
    name: str, task: object, replace: bool = False, options: type[RunOptions] = RunOptions
) -> None:
    """Register ``task`` (a :class:`~braintumor.tasks.registry.Task` instance, or
    ``"module:attribute"`` imported on first use) and the dataclass of its recipes' ``extra``
    section (``options``, a :class:`RunOptions`)."""
    if name in _TASKS and not replace:
        raise RecipeError(f"task {name!r} is registered already")
    _TASKS[name] = task
    _OPTIONS[name] = options


def task_entry(name: str) -> object:
    """What ``name`` was registered with; an unknown name is a :class:`RecipeError`."""
    if name not in _TASKS:
        raise RecipeError(f"unknown task {name!r}; expected one of {', '.join(_TASKS)}")
    return _TASKS[name]


def cache_task(name: str, task: object) -> None:
    """Keep the task ``name``'s entry resolved to ``task`` (imported once)."""
    _TASKS[name] = task


def task_options(name: str) -> type[RunOptions]:
    """The ``extra`` dataclass of the task registered as ``name``."""
    task_entry(name)  # the error naming the known tasks
    return _OPTIONS[name]


def list_tasks() -> list[str]:
    """Names of every registered task, in registration order."""
    return list(_TASKS)


# The built-in tasks; a new task is one module plus one line here.
register_task("classify", "braintumor.tasks.classification:ClassificationTask")
register_task("segment", "braintumor.tasks.segmentation:SegmentationTask")
register_task("brats2d", "braintumor.tasks.brats:Brats2DTask", options=BratsOptions)
register_task("brats3d", "braintumor.tasks.brats:Brats3DTask", options=BratsOptions)
