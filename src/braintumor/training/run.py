"""One training run, end to end: data -> leak-free splits -> fit -> model folder -> test report.

The run folder (``runs/<name>/``, :class:`~braintumor.runfolder.RunFolder`) holds the resolved
recipe, ``splits.csv``, logs, resume checkpoints, the best model as a model folder, and the
test-set evaluation with its report. The recipe's task (:func:`braintumor.tasks.get_task`)
builds the data and the module, chooses inference settings and evaluates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from rich.console import Console

from braintumor.atomic import write_text_atomic
from braintumor.brats.modalities import fit_recipe_modalities
from braintumor.config import Recipe
from braintumor.data.balance import contributions
from braintumor.data.layouts import DetectedLayout
from braintumor.data.lgg import lgg_preprocess
from braintumor.data.samples import Sample
from braintumor.data.sources import load_data
from braintumor.errors import DataError
from braintumor.inference.ood_fit import fit_ood
from braintumor.models.card import write_card
from braintumor.models.folder import LoadedModel, ModelInfo, build_network, save_model_dir
from braintumor.models.ood_stats import OODStats
from braintumor.preflight import removed_on_user_error
from braintumor.runfolder import RunFolder
from braintumor.tasks.registry import IMAGES, EvaluateOptions, Task, get_task
from braintumor.training.checks import check_train_inputs
from braintumor.training.interrupt import raise_if_interrupted
from braintumor.training.splits import resolve_splits
from braintumor.training.trainer import fit, load_best_weights, resolve_compile

console = Console(stderr=True)


@dataclass
class RunResult:
    """Where a finished run put its outputs, and its test metrics (rank zero only)."""

    run_dir: Path
    model_dir: Path | None
    metrics: dict[str, Any]


def default_run_dir(recipe: Recipe, root: Path = Path("runs")) -> Path:
    """``runs/<recipe>-<timestamp>``."""
    return root / f"{recipe.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def data_fingerprint(root: Path, layout_name: str, samples: list[Sample]) -> dict[str, Any]:
    """What the model was trained on, without copying any data: name, ids hash and counts.

    The dataset is named by its folder's name, never by its path: model folders travel.
    """
    ids = "\n".join(sorted(s.id for s in samples)).encode()
    labels: dict[str, int] = {}
    for sample in samples:
        labels[str(sample.label)] = labels.get(str(sample.label), 0) + 1
    return {
        "name": root.name,
        "layout": layout_name,
        "n_samples": len(samples),
        "labels": labels,
        "sources": contributions(samples),
        "ids_sha256": hashlib.sha256(ids).hexdigest(),
    }


def launched_by_ddp() -> bool:
    """True in the extra processes Lightning's DDP launcher starts (they share the run folder)."""
    return int(os.environ.get("LOCAL_RANK", 0)) > 0 or int(os.environ.get("NODE_RANK", 0)) > 0


def _write_recipe(run: RunFolder, recipe: Recipe, resume: bool) -> None:
    """``recipe.yaml``, written once: a resumed run keeps the one it started with."""
    if resume and run.recipe.is_file():
        return
    write_text_atomic(run.recipe, recipe.to_yaml())


def check_fits(task: Task, recipe: Recipe, layout: DetectedLayout) -> None:
    """A DataError unless the dataset's kind is one the recipe's task trains on."""
    if layout.task not in task.data_kinds:
        raise DataError(
            f"{layout.root}: recipe {recipe.name!r} is a {recipe.task} recipe but the data is a "
            f"{layout.task} layout ({layout.name})"
        )


def train_run(
    recipe: Recipe,
    data: Path | str | Sequence[Path | str],
    run_dir: Path,
    test_data: Path | None = None,
    splits_csv: Path | None = None,
    resume: bool = False,
    devices: Any = "auto",
    nodes: int = 1,
    accelerator: str = "auto",
    progress: bool = True,
    name: str | None = None,
) -> RunResult:
    """Train ``recipe`` on the dataset at ``data`` (one folder, or several ``--data`` values:
    see :mod:`braintumor.data.sources`) and evaluate the best model on the test split.

    ``name`` is the model's readable name (web page, cards); default: the run folder's name.
    """
    started = time.monotonic()
    # Decided once, so the saved recipe and the model record say what the run did.
    recipe = dataclasses.replace(recipe, compile=resolve_compile(recipe, accelerator))
    task = get_task(recipe.task)
    run = RunFolder(run_dir)
    layout = load_data(data, task.data_kinds[0], recipe.classes)
    recipe, note = fit_recipe_modalities(recipe, layout.samples)
    if note:
        console.print(f"note: {note}", markup=False)
    if not resume and not launched_by_ddp() and not run.is_empty():
        raise DataError(f"{run_dir}: run folder exists; pass --resume or choose another --run-dir")
    check_fits(task, recipe, layout)
    preprocess, note = lgg_preprocess(layout.name, recipe.preprocess)
    if note:  # a grey recipe on LGG takes FLAIR rather than a mix of three sequences
        console.print(f"[yellow]{note}")
        recipe = dataclasses.replace(recipe, preprocess=preprocess)
    check_train_inputs(recipe, run_dir, test_data, splits_csv, resume)
    with removed_on_user_error(run_dir):  # a run that cannot start leaves no folder behind
        run.root.mkdir(parents=True, exist_ok=True)
        splits = resolve_splits(layout, recipe, run_dir, splits_csv=splits_csv, resume=resume)
        # Saved only once the task has fixed what the data decides: recipe.yaml and model.json
        # then describe the same run, and nothing changes the recipe after this point.
        recipe = task.resolve(recipe, splits)
        _write_recipe(run, recipe, resume)
        setup = task.build(recipe, splits)
    trainer, best = fit(
        recipe,
        setup.module,
        setup.datamodule,
        run_dir,
        resume=resume,
        devices=devices,
        nodes=nodes,
        accelerator=accelerator,
        progress=progress,
        started=started,
    )
    raise_if_interrupted(trainer, run_dir)
    if not trainer.is_global_zero:
        return RunResult(run_dir=run_dir, model_dir=None, metrics={})
    if best is None:
        raise DataError(f"{run_dir}: training ended before the first checkpoint")
    load_best_weights(setup.module, best)
    info = ModelInfo(
        name=name or run_dir.resolve().name,
        task=recipe.task,
        architecture=recipe.model,
        num_outputs=setup.num_outputs,
        in_channels=recipe.in_channels,
        class_names=setup.class_names,
        image_size=recipe.image_size,
        model_args=recipe.model_args,
        preprocessing=setup.preprocessing,
        recipe=recipe.to_dict(),
        data_fingerprint=data_fingerprint(layout.root, layout.name, layout.samples)
        | ({"sampling": setup.sampling} if setup.sampling else {}),
        metrics={"best_" + recipe.monitor.replace("/", "_"): _best_score(trainer)},
    )
    # The best weights in a fresh (uncompiled, eval-mode) network: inference settings and the
    # test evaluation use it, and the model folder is written once, with all of model.json.
    network = build_network(info)
    trained = setup.module.model
    assert isinstance(trained, torch.nn.Module)  # every task's module keeps its network here
    network.load_state_dict(trained.state_dict())
    loaded = LoadedModel(model=network.eval(), info=info, path=run.model)
    try:
        info.inference = task.tune(loaded, recipe, splits.get("val", []))
        _report_inference(info.inference)
        loaded.ood = _fit_ood(task, loaded, splits)
        metrics = evaluate_splits(task, loaded, splits, run, test_data)
        info.metrics.update(headline_metrics(metrics))
    finally:  # a failed evaluation still leaves the trained model behind
        # The predictor made the weights channels_last; safetensors stores contiguous tensors.
        network = network.cpu().to(memory_format=torch.contiguous_format)
        model_dir = save_model_dir(network, info, run.model, ood=loaded.ood)
    write_text_atomic(run.metrics_json, json.dumps(metrics, indent=2, default=str))
    write_card(model_dir, info, metrics)
    return RunResult(run_dir=run_dir, model_dir=model_dir, metrics=metrics)


def _report_inference(inference: dict[str, Any]) -> None:
    scores = ", ".join(f"{k} {v:.4f}" for k, v in inference.get("val_dice", {}).items())
    if scores:
        console.print(
            f"inference settings by validation Dice ({scores}): "
            f"tta={inference['tta']}, keep_largest={inference['keep_largest']}, "
            f"stack_components={inference.get('stack_components', False)}"
        )


def _fit_ood(task: Task, loaded: LoadedModel, splits: dict[str, list[Sample]]) -> OODStats | None:
    """What the training inputs looked like, thresholded on validation (inference/ood_fit)."""
    if task.inputs != IMAGES:  # BraTS cases: no out-of-distribution statistics yet
        return None
    try:
        stats = fit_ood(loaded, splits.get("train", []), splits.get("val", []))
    except DataError as error:
        console.print(f"[yellow]no out-of-distribution statistics: {error}")
        return None
    console.print(
        f"out-of-distribution statistics: {stats.method} on {stats.layer!r}, threshold "
        f"{stats.threshold:.4g} ({stats.details['val_accepted']:.1%} of validation accepted)"
    )
    return stats


def _best_score(trainer: L.Trainer) -> float | None:
    for callback in trainer.checkpoint_callbacks:
        score = getattr(callback, "best_model_score", None)  # a ModelCheckpoint's
        if score is not None:
            return float(score)
    return None


def evaluate_splits(
    task: Task,
    loaded: LoadedModel,
    splits: dict[str, list[Sample]],
    run: RunFolder,
    test_data: Path | None,
) -> dict[str, Any]:
    """Evaluate on the held-out test split and on ``--test-data`` (cross-dataset); the test
    split's report becomes the run's ``report.html``."""
    results: dict[str, Any] = {}
    options = EvaluateOptions(curves_csv=run.curves())
    if splits.get("test"):
        results["test"] = task.evaluate(loaded, splits["test"], run.test, options)
        report = run.test / "report.html"
        if report.is_file():
            shutil.copyfile(report, run.report)
    if test_data is not None:
        other = load_data(test_data, task.data_kinds[0], loaded.info.class_names)
        results["external"] = task.evaluate(loaded, other.samples, run.external(test_data), options)
    return results


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Headline test metrics for model.json (the model card)."""
    headline = {}
    for split, values in metrics.items():
        for key in ("accuracy", "macro_f1", "macro_auc", "dice", "iou", "hd95", "wt_dice"):
            value = values.get(key) if isinstance(values, dict) else None
            if isinstance(value, dict):
                value = value.get("mean")
            if isinstance(value, int | float):
                headline[f"{split}_{key}"] = value
    return headline
