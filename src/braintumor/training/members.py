"""Train several models of one recipe on one split and ship their ensemble (``train --members``).

Member ``k`` (1-based) is the recipe with ``seed + k - 1``, trained in ``RUN/member-k/``. The
first member draws the split; the others train on the same ``splits.csv``, so only the
initialisation, the sampling order and the augmentation differ, and the test split holds no
image any member trained on. The members are then combined
(:func:`braintumor.models.combine.combine_model_dirs`) into ``RUN/model`` and the ensemble is
evaluated on the test split (``RUN/test``, ``RUN/metrics.json``, ``RUN/report.html``).

``--resume`` keeps every finished member (its model folder exists), resumes the member that
was interrupted from its last checkpoint, and trains the rest.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from braintumor.atomic import write_text_atomic
from braintumor.config import Recipe
from braintumor.data.sources import load_data
from braintumor.data.splits import TEST, select_samples
from braintumor.errors import DataError
from braintumor.models.card import write_card
from braintumor.models.combine import combine_model_dirs
from braintumor.models.folder import INFO_FILE, load_model_dir
from braintumor.runfolder import RunFolder
from braintumor.tasks.registry import get_task
from braintumor.training.interrupt import TrainingInterrupted
from braintumor.training.run import (
    RunResult,
    evaluate_splits,
    headline_metrics,
    launched_by_ddp,
    train_run,
)

console = Console(stderr=True)


def member_dir(run_dir: Path, k: int) -> Path:
    """The run folder of member ``k`` (1-based) inside the ensemble's run folder."""
    return run_dir / f"member-{k}"


def train_members(
    recipe: Recipe,
    data: Path | str | Sequence[Path | str],
    run_dir: Path,
    members: int,
    splits_csv: Path | None = None,
    resume: bool = False,
    name: str | None = None,
    **fit_options: Any,
) -> RunResult:
    """Train ``members`` seeds of ``recipe`` on one split; write and evaluate their ensemble.

    ``fit_options`` go to every member's :func:`~braintumor.training.run.train_run` (devices,
    nodes, accelerator, progress). Returns the ensemble's run folder, model folder and test
    metrics. Under DDP every process trains every member (they share each one's steps) and
    only rank zero combines and evaluates; the others return no model folder.
    """
    if members < 2:
        raise DataError(f"--members trains two or more models, not {members}")
    run = RunFolder(run_dir)
    if not resume and not launched_by_ddp() and not run.is_empty():
        raise DataError(f"{run_dir}: run folder exists; pass --resume or choose another --run-dir")
    name = name or run.root.resolve().name
    model_dirs = []
    split_file = splits_csv
    for k in range(1, members + 1):
        folder = member_dir(run.root, k)
        if resume and (folder / "model" / INFO_FILE).is_file():
            console.print(f"member {k} of {members}: finished before, kept")
            model_dir: Path | None = folder / "model"
        else:
            console.print(f"member {k} of {members}: seed {recipe.seed + k - 1}")
            member = dataclasses.replace(recipe, seed=recipe.seed + k - 1)
            try:
                model_dir = train_run(
                    member,
                    data,
                    folder,
                    splits_csv=split_file,
                    resume=resume and not RunFolder(folder).is_empty(),
                    name=f"{name}-member-{k}",
                    **fit_options,
                ).model_dir
            except TrainingInterrupted as stop:
                stop.resume_dir = run.root  # the whole ensemble resumes, keeping what is done
                raise
        if model_dir is not None:
            model_dirs.append(model_dir)
        split_file = split_file or RunFolder(folder).splits
    if len(model_dirs) < members:  # a DDP process other than rank zero: rank zero combines
        return RunResult(run_dir=run.root, model_dir=None, metrics={})
    assert split_file is not None  # the first member wrote its splits.csv
    if split_file.resolve() != run.splits.resolve():  # --splits may name RUN/splits.csv itself
        shutil.copyfile(split_file, run.splits)
    combine_model_dirs(model_dirs, run.model, name=name)
    metrics = _evaluate_ensemble(recipe, data, run, split_file)
    return RunResult(run_dir=run.root, model_dir=run.model, metrics=metrics)


def _evaluate_ensemble(
    recipe: Recipe, data: Path | str | Sequence[Path | str], run: RunFolder, split_file: Path
) -> dict[str, Any]:
    """The ensemble on the members' shared test split; its headline goes into model.json and
    its card. No test split (a splits.csv without one): nothing to evaluate."""
    task = get_task(recipe.task)
    loaded = load_model_dir(run.model)
    layout = load_data(data, task.data_kinds[0], loaded.info.class_names)
    test = select_samples(layout.samples, TEST, split_file)
    if not test:
        console.print("[yellow]no test split: the ensemble is not evaluated")
        return {}
    metrics = evaluate_splits(task, loaded, {TEST: test}, run, test_data=None)
    write_text_atomic(run.metrics_json, json.dumps(metrics, indent=2, default=str))
    loaded.info.metrics.update(headline_metrics(metrics))
    write_text_atomic(run.model / INFO_FILE, loaded.info.to_json())
    write_card(run.model, loaded.info, metrics)
    return metrics
