"""Time to accuracy: wall-clock minutes until a classifier first reaches a validation target,
``braintumor train`` against a plain PyTorch loop on the same network, data and split.

Usage::

    python benchmarks/time_to_accuracy.py [DATA] [--target 0.90] [--epochs 30]
        [--plain-epochs 30] [--plain-max-minutes 60] [--recipe fast-cpu-4class]

``DATA`` defaults to the shared ``sartaj-4class``. Both sides are timed from their start, so
reading and decoding the images count (ours runs with an empty cache of its own):

- ours: the ``braintumor train RECIPE`` command as a user runs it (a subprocess), with a fixed
  epoch count; its ``logs/metrics.csv`` gives ``val/balanced_acc`` and ``time/minutes`` per
  epoch. Its grouped, duplicate-aware split (``splits.csv``) is the split of both sides.
- plain: the usual notebook loop: ``PIL`` + torchvision transforms per item with the recipe's
  augmentation ranges, ``DataLoader`` with 2 workers, fp32, contiguous NCHW, AdamW with a
  one-cycle schedule (the schedule that suits a fixed short budget), the recipe's network,
  loss and label smoothing; validation balanced accuracy after every epoch.

Writes ``benchmarks/results/time_to_accuracy.json`` and ``time_to_accuracy.png`` (balanced
accuracy against minutes, both sides) and prints the minutes to the target and their ratio.
A side that never reaches the target within its budget is reported as such, and the ratio is
then a bound.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from sklearn.metrics import balanced_accuracy_score
from torch.utils.data import DataLoader, Dataset

from braintumor.config import Recipe, load_recipe
from braintumor.data.sources import load_data
from braintumor.data.splits import read_splits
from braintumor.models import build_model
from braintumor.training.augment import AugmentConfig
from braintumor.training.elapsed import ELAPSED_KEY
from braintumor.training.setup import preprocess_spec
from speed_classify import reference_transform
from speed_common import RESULTS, command_line, machine_info, shared_data_root, write_result

Curve = list[dict[str, float]]


def run_ours(recipe: str, data: Path, run_dir: Path, epochs: int, overrides: list[str]) -> Curve:
    """Train with the command line and read its per-epoch curve (minutes since the start)."""
    env = os.environ | {"BRAINTUMOR_CACHE": str(run_dir.parent / "cache-ours")}
    command = [sys.executable, "-m", "braintumor", "train", recipe, "--data", str(data)]
    command += ["--run-dir", str(run_dir)]
    for item in [f"max_epochs={epochs}", "max_minutes=null", *overrides]:
        command += ["--set", item]
    started = time.monotonic()
    subprocess.run(command, check=True, env=env)
    print(f"ours: {(time.monotonic() - started) / 60:.1f} min in all (training, test, report)")
    with open(run_dir / "logs" / "metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("val/balanced_acc")]
    return [
        {
            "epoch": int(r["epoch"]) + 1,
            "minutes": float(r[ELAPSED_KEY]),
            "balanced_accuracy": float(r["val/balanced_acc"]),
        }
        for r in rows
    ]


class FileDataset(Dataset):
    """Images read with PIL per item, as a notebook does."""

    def __init__(self, items: list[tuple[str, int]], transform: Any) -> None:
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label


def split_items(data: Path, splits_csv: Path) -> tuple[dict[str, list[tuple[str, int]]], list]:
    """(path, class index) of every sample by split side, with ours' split; the class names."""
    samples = load_data(data).samples
    sides = read_splits(splits_csv)
    classes = sorted({s.label for s in samples if s.label is not None})
    items: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for sample in samples:
        side = sides.assignment.get(sample.id)
        if side in items and sample.label is not None:
            items[side].append((sample.image, classes.index(sample.label)))
    return items, classes


def run_plain(
    recipe: Recipe,
    items: dict[str, list[tuple[str, int]]],
    n_classes: int,
    epochs: int,
    max_minutes: float,
    workers: int,
) -> Curve:
    """The plain loop; stops after ``epochs`` or once ``max_minutes`` have passed."""
    started = time.monotonic()
    spec = preprocess_spec(recipe)
    train_set = FileDataset(
        items["train"], reference_transform(spec, AugmentConfig.from_dict(recipe.augment))
    )
    val_set = FileDataset(items["val"], reference_transform(spec, None))
    train = DataLoader(
        train_set,
        recipe.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    val = DataLoader(val_set, 64, num_workers=workers, persistent_workers=workers > 0)
    torch.manual_seed(recipe.seed)
    model = build_model(
        recipe.model, num_classes=n_classes, in_channels=recipe.in_channels, **recipe.model_args
    )
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, recipe.lr, total_steps=epochs * len(train)
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing or 0.0)
    curve: Curve = []
    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in train:
            optimiser.zero_grad()
            loss_fn(model(x), y).backward()
            optimiser.step()
            schedule.step()
        model.eval()
        truth, predicted = [], []
        with torch.inference_mode():
            for x, y in val:
                predicted.append(model(x).argmax(1).numpy())
                truth.append(y.numpy())
        score = balanced_accuracy_score(np.concatenate(truth), np.concatenate(predicted))
        minutes = (time.monotonic() - started) / 60
        curve.append({"epoch": epoch, "minutes": minutes, "balanced_accuracy": float(score)})
        print(
            f"plain: epoch {epoch} at {minutes:.1f} min, balanced accuracy {score:.3f}", flush=True
        )
        if minutes >= max_minutes:
            break
    return curve


def first_reach(curve: Curve, target: float) -> float | None:
    """Minutes at the first epoch whose validation balanced accuracy reaches ``target``."""
    return next((p["minutes"] for p in curve if p["balanced_accuracy"] >= target), None)


def plot(curves: dict[str, Curve], target: float, path: Path) -> None:
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        ax.plot(
            [p["minutes"] for p in curve],
            [p["balanced_accuracy"] for p in curve],
            marker="o",
            ms=3,
            label=name,
        )
    ax.axhline(target, color="grey", ls="--", lw=1, label=f"target {target:.2f}")
    ax.set_xlabel("wall-clock minutes from start (decoding included)")
    ax.set_ylabel("validation balanced accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")


def measure(
    data: Path,
    recipe_name: str = "fast-cpu-4class",
    overrides: list[str] | None = None,
    target: float = 0.90,
    epochs: int = 30,
    plain_epochs: int = 30,
    plain_max_minutes: float = 60.0,
    workers: int = 2,
) -> dict[str, Any]:
    """Run both sides on ``data`` and return the result record (curves and minutes to target)."""
    overrides = list(overrides or [])
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="time-to-accuracy-") as tmp:
        run_dir = Path(tmp) / "ours"
        ours = run_ours(recipe_name, data, run_dir, epochs, overrides)
        items, classes = split_items(data, run_dir / "splits.csv")
        recipe = load_recipe(recipe_name, overrides)
        plain = run_plain(recipe, items, len(classes), plain_epochs, plain_max_minutes, workers)
    curves = {"ours": ours, "plain": plain}
    reached = {name: first_reach(curve, target) for name, curve in curves.items()}
    ours_min, plain_min = reached["ours"], reached["plain"]
    return {
        "benchmark": "time_to_accuracy",
        "command": command_line(),
        "machine": machine,
        "data": str(data),
        "recipe": recipe_name,
        "overrides": overrides,
        "split_sizes": {side: len(rows) for side, rows in items.items()},
        "target_balanced_accuracy": target,
        "minutes_to_target": reached,
        "ratio_plain_over_ours": plain_min / ours_min if ours_min and plain_min else None,
        "best": {name: max(p["balanced_accuracy"] for p in c) for name, c in curves.items()},
        "curves": curves,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=shared_data_root() / "sartaj-4class")
    parser.add_argument("--recipe", dest="recipe_name", default="fast-cpu-4class")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--epochs", type=int, default=30, help="ours: epochs (fixed)")
    parser.add_argument("--plain-epochs", type=int, default=30, help="plain: one-cycle length")
    parser.add_argument("--plain-max-minutes", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=2, help="plain: DataLoader workers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = vars(parser.parse_args())
    out = options.pop("out")
    result = measure(**options)
    path = write_result("time_to_accuracy.json", result, out)
    plot(result["curves"], result["target_balanced_accuracy"], out / "time_to_accuracy.png")
    for name, minutes in result["minutes_to_target"].items():
        said = f"{minutes:.1f} min" if minutes is not None else "not reached"
        print(f"{name}: {said} to balanced accuracy {result['target_balanced_accuracy']}")
    if result["ratio_plain_over_ours"]:
        print(f"plain / ours: {result['ratio_plain_over_ours']:.2f}x")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
