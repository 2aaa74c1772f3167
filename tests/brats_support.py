"""Shared set-up for the BraTS tests: synthetic cases, a quick training, a model folder."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch

from braintumor.brats.task import brats_model_info, build_brats_task
from braintumor.config import Recipe, load_recipe
from braintumor.data.layouts import detect_layout
from braintumor.data.samples import Sample
from braintumor.data.synthetic import write_brats_dataset
from braintumor.models.folder import LoadedModel, load_model_dir, save_model_dir


def synthetic_cases(folder: Path, n: int, naming: str = "2021", seed: int = 0) -> list[Sample]:
    """``n`` synthetic BraTS cases written under ``folder``, as listed by the layout detector."""
    write_brats_dataset(folder, n_cases=n, shape=(64, 64, 48), seed=seed, naming=naming)
    return sorted(detect_layout(folder).samples, key=lambda s: s.id)


def fast_recipe(cache: Path, overrides: list[str] | None = None) -> Recipe:
    """The fast-cpu-brats recipe with a test cache folder."""
    return load_recipe("fast-cpu-brats", [f"extra.cache_dir={cache}", *(overrides or [])])


def train(recipe: Recipe, splits: dict[str, list[Sample]], seconds: float) -> tuple:
    """Fit for at most ``seconds``; returns (module, preprocessing, wall seconds)."""
    L.seed_everything(recipe.seed, verbose=False)
    module, datamodule, preprocessing = build_brats_task(recipe, splits)
    # One thread: on a small shared CPU, two threads per op mostly wait for each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=recipe.max_epochs,
        max_time={"seconds": seconds},
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule)
    finally:
        torch.set_num_threads(threads)
    return module, preprocessing, time.perf_counter() - start


def model_folder(recipe: Recipe, module, preprocessing: dict, folder: Path) -> LoadedModel:
    """Save the trained network as a model folder and load it back (the prediction path)."""
    save_model_dir(
        module.model.to(torch.device("cpu")), brats_model_info(recipe, preprocessing), folder
    )
    return load_model_dir(folder)


def brats_model_and_zip(root: Path) -> tuple[Path, Path]:
    """A small seeded 2D BraTS model folder (untrained) and a zip of one synthetic case."""
    import zipfile

    cases = synthetic_cases(root / "data", 1)
    recipe = load_recipe(
        "fast-cpu-brats",
        [
            f"extra.cache_dir={root / 'cache'}",
            "image_size=64",
            "model_args={channels: [4, 8], num_res_units: 0}",
        ],
    )
    torch.manual_seed(0)
    module, _, pre = build_brats_task(recipe, {"train": cases})
    model_folder(recipe, module, pre, root / "brats-unet2d" / "model")
    case = Path(cases[0].modalities["flair"]).parent
    archive = root / "case.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(case.iterdir()):
            zipped.write(path, f"{case.name}/{path.name}")
    return root / "brats-unet2d" / "model", archive
