"""One training run, end to end: data -> leak-free splits -> fit -> model folder -> test report.

The run folder (``runs/<name>/``) holds the resolved recipe, ``splits.csv``, logs, resume
checkpoints, the best model as a model folder, and the test-set evaluation with its report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
from rich.console import Console

from braintumor.atomic import write_text_atomic
from braintumor.config import Recipe
from braintumor.data.layouts import detect_layout
from braintumor.data.samples import Sample
from braintumor.engine.inference_choice import choose_inference
from braintumor.engine.model_io import LoadedModel, ModelInfo, load_model_dir, save_model_dir
from braintumor.engine.run_splits import resolve_splits
from braintumor.engine.tasks import TaskSetup, build_task
from braintumor.engine.trainer import fit, load_best_weights, resolve_compile
from braintumor.errors import DataError

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
    """What the model was trained on, without copying any data: ids hash and counts."""
    ids = "\n".join(sorted(s.id for s in samples)).encode()
    labels: dict[str, int] = {}
    for sample in samples:
        labels[str(sample.label)] = labels.get(str(sample.label), 0) + 1
    return {
        "root": str(root),
        "layout": layout_name,
        "n_samples": len(samples),
        "labels": labels,
        "ids_sha256": hashlib.sha256(ids).hexdigest(),
    }


def _launched_by_ddp() -> bool:
    """True in the extra processes Lightning's DDP launcher starts (they share the run folder)."""
    return int(os.environ.get("LOCAL_RANK", 0)) > 0 or int(os.environ.get("NODE_RANK", 0)) > 0


def _write_run_header(run_dir: Path, recipe: Recipe, resume: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "recipe.yaml"
    if resume and saved.is_file():
        return
    write_text_atomic(saved, recipe.to_yaml())


def train_run(
    recipe: Recipe,
    data: Path,
    run_dir: Path,
    test_data: Path | None = None,
    splits_csv: Path | None = None,
    resume: bool = False,
    devices: Any = "auto",
    nodes: int = 1,
    accelerator: str = "auto",
    progress: bool = True,
) -> RunResult:
    """Train ``recipe`` on the dataset at ``data`` and evaluate the best model on the test split."""
    # Decided once, so the saved recipe and the model record say what the run did.
    recipe = dataclasses.replace(recipe, compile=resolve_compile(recipe, accelerator))
    layout = detect_layout(data)
    if not resume and not _launched_by_ddp() and run_dir.exists() and any(run_dir.iterdir()):
        raise DataError(f"{run_dir}: run folder exists; pass --resume or choose another --run-dir")
    _write_run_header(run_dir, recipe, resume)
    splits = resolve_splits(layout, recipe, run_dir, splits_csv=splits_csv, resume=resume)
    setup: TaskSetup = build_task(recipe, layout, splits)
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
    )
    if not trainer.is_global_zero:
        return RunResult(run_dir=run_dir, model_dir=None, metrics={})
    if best is None:
        raise DataError(f"{run_dir}: training ended before the first checkpoint")
    load_best_weights(setup.module, best)
    info = ModelInfo(
        task=recipe.task,
        architecture=recipe.model,
        num_outputs=setup.num_outputs,
        in_channels=recipe.in_channels,
        class_names=setup.class_names,
        image_size=recipe.image_size,
        model_args=recipe.model_args,
        preprocessing=setup.preprocessing,
        recipe=recipe.to_dict(),
        data_fingerprint=data_fingerprint(layout.root, layout.name, layout.samples),
        metrics={"best_" + recipe.monitor.replace("/", "_"): _best_score(trainer)},
    )
    model_dir = save_model_dir(setup.module.model.cpu(), info, run_dir / "model")
    if recipe.task == "segment":
        _choose_inference(model_dir, info, recipe, splits.get("val", []))
    metrics = _evaluate_splits(model_dir, splits, layout, run_dir, test_data)
    _record_metrics(model_dir, info, metrics)
    return RunResult(run_dir=run_dir, model_dir=model_dir, metrics=metrics)


def _choose_inference(model_dir: Path, info: ModelInfo, recipe: Recipe, val: list[Sample]) -> None:
    """Decide TTA and largest-component on the validation split; record it in model.json."""
    info.inference = choose_inference(load_model_dir(model_dir), val, recipe.inference)
    write_text_atomic(model_dir / "model.json", info.to_json())
    scores = ", ".join(f"{k} {v:.4f}" for k, v in info.inference["val_dice"].items())
    if scores:
        console.print(
            f"inference settings by validation Dice ({scores}): "
            f"tta={info.inference['tta']}, keep_largest={info.inference['keep_largest']}"
        )


def _best_score(trainer: L.Trainer) -> float | None:
    for callback in trainer.checkpoint_callbacks:
        if callback.best_model_score is not None:
            return float(callback.best_model_score)
    return None


def _evaluate_splits(
    model_dir: Path,
    splits: dict[str, list[Sample]],
    layout: Any,
    run_dir: Path,
    test_data: Path | None,
) -> dict[str, Any]:
    """Evaluate on the held-out test split and on ``--test-data`` (cross-dataset)."""
    loaded = load_model_dir(model_dir)
    curves = run_dir / "logs" / "metrics.csv"
    results: dict[str, Any] = {}
    if splits.get("test"):
        results["test"] = evaluate_any(loaded, splits["test"], run_dir / "test", curves)
        report = run_dir / "test" / "report.html"
        if report.is_file():
            shutil.copyfile(report, run_dir / "report.html")
    if test_data is not None:
        other = detect_layout(test_data)
        out = run_dir / f"test-{Path(test_data).name}"
        results["external"] = evaluate_any(loaded, other.samples, out, curves)
    return results


def evaluate_any(
    loaded: LoadedModel, samples: list[Sample], out_dir: Path, curves: Path | None = None
) -> dict[str, Any]:
    """Evaluate a 2D model (slices) or a BraTS model (cases) and write its report."""
    if loaded.info.task.startswith("brats"):
        from braintumor.brats.evaluate import evaluate_cases

        return evaluate_cases(loaded, samples, out_dir)
    from braintumor.engine.evaluation import evaluate_model

    return evaluate_model(loaded, samples, out_dir, curves_csv=curves)


def _record_metrics(model_dir: Path, info: ModelInfo, metrics: dict[str, Any]) -> None:
    """Headline test metrics go into model.json (the model card) and metrics.json."""
    headline = {}
    for split, values in metrics.items():
        for key in ("accuracy", "macro_f1", "macro_auc", "dice", "iou", "hd95", "wt_dice"):
            value = values.get(key) if isinstance(values, dict) else None
            if isinstance(value, dict):
                value = value.get("mean")
            if isinstance(value, int | float):
                headline[f"{split}_{key}"] = value
    info.metrics.update(headline)
    write_text_atomic(model_dir / "model.json", info.to_json())
    write_text_atomic(model_dir.parent / "metrics.json", json.dumps(metrics, indent=2, default=str))
