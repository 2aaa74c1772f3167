"""The task registry: one vocabulary of task names, each found by name and complete."""

from __future__ import annotations

import pytest

from braintumor.config import Recipe
from braintumor.data.layouts_base import DATA_KINDS
from braintumor.errors import ModelFormatError, RecipeError
from braintumor.models.registry import KINDS
from braintumor.recipe_options import BratsOptions, RunOptions
from braintumor.tasks import catalog as task_catalog
from braintumor.tasks.registry import (
    CASES,
    CLASSES,
    IMAGES,
    LABELS,
    MASK,
    Task,
    get_task,
    list_tasks,
    model_task,
    register_task,
    task_options,
)


def test_the_four_built_in_tasks_are_registered_and_complete():
    assert list_tasks() == ["classify", "segment", "brats2d", "brats3d"]
    for name in list_tasks():
        task = get_task(name)
        assert isinstance(task, Task)
        assert task.name == name and task.title  # the web page's card names it
        assert set(task.data_kinds) <= set(DATA_KINDS)
        assert task.network_kind in KINDS
        assert task.inputs in (IMAGES, CASES)
        assert task.outputs in (CLASSES, MASK, LABELS)
    assert get_task("brats3d").network_kind == "segment3d"


def test_unknown_task_names_are_clear_errors():
    with pytest.raises(RecipeError, match="unknown task 'detect'"):
        get_task("detect")
    with pytest.raises(ModelFormatError, match="model-x: unknown task"):
        model_task("detect", "model-x")
    with pytest.raises(RecipeError, match="task must be one of"):
        Recipe(name="r", task="detect", model="unet")


def test_a_fifth_task_is_one_registration(monkeypatch):
    monkeypatch.setattr(task_catalog, "_TASKS", dict(task_catalog._TASKS))
    monkeypatch.setattr(task_catalog, "_OPTIONS", dict(task_catalog._OPTIONS))

    class Detection:
        name = "detect"

    register_task("detect", Detection())
    assert "detect" in list_tasks()
    assert Recipe(name="r", task="detect", model="unet").task == "detect"
    assert task_options("detect") is RunOptions and task_options("brats3d") is BratsOptions
    with pytest.raises(RecipeError, match="registered already"):
        register_task("detect", Detection())
