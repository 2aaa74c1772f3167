"""A BraTS run saves its recipe once, resolved: ``recipe.yaml`` and ``model.json`` agree."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from braintumor.config import load_recipe
from braintumor.data.synthetic import write_brats_dataset
from braintumor.training.run import train_run


@pytest.mark.slow  # one epoch of a tiny 2D U-Net, then the test-split evaluation
def test_recipe_yaml_and_model_json_agree_on_the_resolved_fields(tmp_path):
    data = write_brats_dataset(tmp_path / "data", n_cases=6, shape=(32, 32, 16), seed=0)
    recipe = load_recipe(
        "fast-cpu-brats",
        [
            f"extra.cache_dir={tmp_path / 'cache'}",
            "extra.modalities=[flair, t1ce]",  # in_channels stays 4 in the shipped recipe
            "model_args={channels: [4, 8], num_res_units: 0}",
            "image_size=32",
            "max_epochs=1",
            "batch_size=8",
        ],
    )
    assert recipe.in_channels == 4 and recipe.extra.convention == "auto"
    run_dir = tmp_path / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_run(recipe, data, run_dir, accelerator="cpu", devices=1, progress=False)
    finally:
        torch.set_num_threads(threads)
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    info = json.loads((run_dir / "model" / "model.json").read_text())
    assert saved == info["recipe"]
    # The fields the task fixed from the data, the same in both files.
    assert saved["in_channels"] == info["in_channels"] == 2
    assert saved["model_args"] == info["model_args"]
    assert saved["extra"]["convention"] == info["preprocessing"]["convention"] == "brats2017"
    assert saved["extra"]["modalities"] == info["preprocessing"]["modalities"] == ["flair", "t1ce"]
