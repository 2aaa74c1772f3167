"""The model card the web page shows: readable rows built from ``model.json``, never raw JSON.

Task, classes, the training data by dataset name with counts (a path in an older
``model.json`` is cut to its last folder name), the headline metrics with their 95% intervals
(from the run's ``metrics.json`` beside a model folder that ``train`` wrote), the recipe in one
line, the creation date and the intended use.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from braintumor.models.folder import ModelInfo
from braintumor.runfolder import RunFolder
from braintumor.tasks.registry import model_task

INTENDED_USE = (
    "Research and teaching only; not a medical device and not for diagnosis or any clinical "
    "decision."
)
_METRIC_NAMES = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "macro_auc": "macro ROC-AUC",
    "dice": "Dice (per slice)",
    "iou": "IoU (per slice)",
    "hd95": "HD95 (mm)",
    "patient_dice": "Dice (per patient)",
    "wt_dice": "WT Dice",
}
_SPLITS = {"test": "test", "external": "external test"}
# Where the evaluation keeps the bootstrap interval of each headline metric.
_CI_PATHS = {
    "accuracy": ("ci95", "accuracy"),
    "macro_f1": ("ci95", "macro_f1"),
    "macro_auc": ("ci95", "macro_roc_auc"),
    "dice": ("summary", "per_image", "dice", "ci95"),
    "iou": ("summary", "per_image", "iou", "ci95"),
    "hd95": ("summary", "per_image", "hd95", "ci95"),
    "patient_dice": ("summary", "per_group", "dice", "ci95"),
}
_RECIPE_KEYS = ("optimizer", "lr", "batch_size", "max_epochs", "loss", "image_size")


def _dig(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _run_metrics(folder: Path) -> dict[str, Any]:
    """The evaluations of the run the model folder was saved in (its ``metrics.json``), or {}."""
    run = RunFolder.of_model(folder)
    try:
        data = json.loads(run.metrics_json.read_text()) if run is not None else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _interval(value: Any) -> list[float] | None:
    ok = isinstance(value, list | tuple) and len(value) == 2
    if ok and all(isinstance(v, int | float) and math.isfinite(v) for v in value):
        return [float(value[0]), float(value[1])]
    return None


def metric_rows(info: ModelInfo, folder: Path) -> list[dict[str, Any]]:
    """Headline metrics: readable name, value and 95% interval (None when not recorded)."""
    evaluated = _run_metrics(folder)
    rows = []
    for key, value in info.metrics.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        split, _, metric = key.partition("_")
        if split in _SPLITS and metric in _METRIC_NAMES:
            name = f"{_SPLITS[split]} {_METRIC_NAMES[metric]}"
            ci = info.metrics.get(f"{key}_ci95")
            if ci is None and metric in _CI_PATHS:
                ci = _dig(evaluated.get(split), _CI_PATHS[metric])
        elif key.startswith("best_val_"):
            name, ci = f"best validation {key[len('best_val_') :].replace('_', ' ')}", None
        else:
            continue
        rows.append({"name": name, "value": float(value), "interval": _interval(ci)})
    return rows


def training_data(info: ModelInfo) -> list[dict[str, Any]]:
    """One entry per training dataset: its name, sample count and per-label counts."""
    fingerprint = info.data_fingerprint or {}
    sources = fingerprint.get("sources")
    listed = sources if isinstance(sources, list) else [fingerprint]
    data = []
    for source in listed:
        if not isinstance(source, dict) or not source:
            continue
        # Older model.json files keep the folder's absolute path: show only its name.
        name = source.get("name") or Path(str(source.get("root") or "")).name or "unnamed"
        labels = source.get("labels") if isinstance(source.get("labels"), dict) else {}
        data.append({"name": str(name), "samples": source.get("n_samples"), "labels": labels})
    return data


def recipe_text(recipe: dict[str, Any]) -> str:
    """The recipe in one line: its name, then the settings a reader compares first."""
    if not recipe:
        return "unknown"
    shown = [f"{k.replace('_', ' ')} {recipe[k]}" for k in _RECIPE_KEYS if k in recipe]
    name = str(recipe.get("name") or "custom")
    return f"{name} ({', '.join(shown)})" if shown else name


def model_card(name: str, info: ModelInfo, folder: Path) -> dict[str, Any]:
    """What ``GET /api/models`` answers for one model (see the module docstring)."""
    size = (
        info.image_size if isinstance(info.image_size, int) else "x".join(map(str, info.image_size))
    )
    return {
        "name": name,
        "task": info.task,
        "task_text": model_task(info.task, folder).title,
        "architecture": info.architecture,
        "members": info.members,
        "class_names": list(info.class_names),
        "image_size": info.image_size,
        "input_text": f"{size} px, {info.in_channels} channel(s)",
        "training_data": training_data(info),
        "metrics": metric_rows(info, folder),
        "recipe": recipe_text(info.recipe or {}),
        "created": info.created[:10] if info.created else None,
        "intended_use": INTENDED_USE,
    }
