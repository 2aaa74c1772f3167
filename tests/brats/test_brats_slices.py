"""Slice selection, plane geometry, the 2D and 3D datamodules and the task wiring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from braintumor.brats.slices import augment_slices, from_plane, select_slices, to_plane
from braintumor.brats.task import (
    build_brats_task,
    info_class_names,
    network_args,
    resolve_brats_recipe,
)
from braintumor.config import load_recipe
from braintumor.errors import DataError, RecipeError
from brats_support import fast_recipe, synthetic_cases


def test_select_slices_counts():
    labels = np.zeros((10, 10, 8), np.uint8)
    labels[:5, :4, 1] = 1  # 20 tumour pixels: kept
    labels[:2, :2, 2] = 2  # 4 tumour pixels: too small, dropped
    labels[:, :, 3] = 2  # 100: kept
    brain = np.zeros_like(labels, bool)
    brain[..., :7] = True  # slice 7 has no brain
    rng = np.random.default_rng(0)
    keep, empty = select_slices(labels, brain, 10, 0.0, rng)
    assert keep == [1, 3] and empty == []
    keep, empty = select_slices(labels, brain, 10, 1.0, rng)
    assert empty == [0, 4, 5, 6]
    _, empty = select_slices(labels, brain, 10, 0.5, rng)
    assert len(empty) == 2 and set(empty) <= {0, 4, 5, 6}
    with pytest.raises(DataError):
        select_slices(labels, brain, 10, 1.5, rng)


def test_plane_round_trip_keeps_geometry():
    x = torch.zeros(1, 1, 30, 50)
    x[0, 0, 10:20, 5:15] = 1
    y = to_plane(x, 64, "nearest-exact")
    assert y.shape == (1, 1, 64, 64)
    back = from_plane(y, (30, 50), "nearest-exact")
    assert back.shape == x.shape and (back == x).float().mean() > 0.99


def test_augment_keeps_shapes_and_binary_targets():
    batch = {"image": torch.randn(4, 2, 32, 32), "mask": (torch.rand(4, 3, 32, 32) > 0.7).float()}
    aug = {"flip": 0.5, "rotate": 15.0, "intensity_scale": 0.1, "intensity_shift": 0.1}
    out = augment_slices(batch, aug)
    assert out["image"].shape == batch["image"].shape
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(out["image"], batch["image"])


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return synthetic_cases(tmp_path_factory.mktemp("brats"), 3)


@pytest.mark.parametrize("label_mode", ["regions", "labels"])
def test_slice_datamodule_batches(label_mode, cases, tmp_path):
    recipe = fast_recipe(tmp_path, ["image_size=64", f"extra.label_mode={label_mode}"])
    module, dm, pre = build_brats_task(recipe, {"train": cases[:2], "val": cases[2:]})
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    k = 3 if label_mode == "regions" else 4
    assert batch["image"].shape[1:] == (4, 64, 64) and batch["mask"].shape[1:] == (k, 64, 64)
    stats = dm.statistics["train"]
    assert (
        stats["slices"]
        == len(dm.datasets["train"])
        == stats["tumour_slices"] + stats["empty_slices"]
    )
    assert stats["label_pixels"]["oedema"] > 0
    assert pre["convention"] == "brats2017" and pre["mode"] == "2d"
    assert info_class_names(recipe) == pre["class_names"]
    assert module.multilabel == (label_mode == "regions")
    loss = module.training_step(batch, 0)
    assert torch.isfinite(loss)


def test_patch_datamodule_and_sliding_window_validation(cases, tmp_path):
    recipe = load_recipe(
        "segresnet-brats3d",
        [
            f"extra.cache_dir={tmp_path}",
            "model=unet3d",
            "model_args={channels: [4, 8, 16]}",
            "extra.patch_size=[32, 32, 32]",
            "num_workers=0",
            "batch_size=2",
        ],
    )
    module, dm, pre = build_brats_task(recipe, {"train": cases[:2], "val": cases[2:]})
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 4, 32, 32, 32) and batch["mask"].shape == (2, 3, 32, 32, 32)
    whole = next(iter(dm.val_dataloader()))
    assert whole["image"].shape[2:] == (64, 64, 48)  # phantoms have no zero background
    logits = module.val_inferer(whole["image"], module.model)
    assert logits.shape == (1, 3, 64, 64, 48)
    assert pre["patch_size"] == [32, 32, 32] and pre["sw_overlap"] == 0.5


def test_unknown_augment_key_and_wrong_task_are_refused(cases, tmp_path):
    with pytest.raises(RecipeError, match="augment"):
        build_brats_task(fast_recipe(tmp_path, ["augment.zoom=0.1"]), {"train": cases[:1]})
    with pytest.raises(RecipeError, match="not a BraTS task"):
        build_brats_task(load_recipe("fast-cpu-seg"), {"train": cases[:1]})


@pytest.mark.slow  # an optimiser step of a 3D network and a whole-volume validation
def test_dynunet_trains_one_step_and_validates_by_sliding_window(cases, tmp_path):
    recipe = load_recipe(
        "fast-cpu-brats3d", [f"extra.cache_dir={tmp_path}", "model=dynunet", "batch_size=1"]
    )
    torch.manual_seed(0)
    splits = {"train": cases[:1], "val": cases[2:]}
    module, dm, pre = build_brats_task(recipe, splits)
    # The segresnet-only init_filters is gone; kernels and strides follow the 32^3 patch.
    resolved = resolve_brats_recipe(recipe, splits)
    assert resolved.model_args == {"patch_size": [32, 32, 32], "spacing": [1.0, 1.0, 1.0]}
    assert type(module.model).__name__ == "DynUNet"
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    logged: dict[str, torch.Tensor] = {}
    module.log = lambda name, value, **kwargs: logged.__setitem__(name, value)  # no Trainer here
    optimizer = torch.optim.AdamW(module.model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in module.model.parameters()]
    loss = module.training_step(batch, 0)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(
        not torch.equal(a, b) for a, b in zip(before, module.model.parameters(), strict=True)
    )
    whole = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        module.validation_step(whole, 0)
    assert 0.0 <= float(logged["val/dice"]) <= 1.0 and torch.isfinite(logged["val/loss"])
    assert pre["patch_size"] == [32, 32, 32]


def test_network_must_match_the_mode_and_follow_the_modalities(cases, tmp_path):
    with pytest.raises(RecipeError, match="needs a segment3d network"):
        build_brats_task(
            load_recipe("fast-cpu-brats3d", [f"extra.cache_dir={tmp_path}", "model=unet"]),
            {"train": cases[:1]},
        )
    with pytest.raises(RecipeError, match="bad option"):  # a typo is not silently dropped
        build_brats_task(
            load_recipe(
                "fast-cpu-brats3d", [f"extra.cache_dir={tmp_path}", "model_args.filterz=8"]
            ),
            {"train": cases[:1]},
        )
    big = ["model=dynunet", "preprocess.target_spacing=[1.0, 1.0, 2.0]"]
    assert network_args(load_recipe("segresnet-brats3d", big)) == {
        "patch_size": [128, 128, 128],
        "spacing": [1.0, 1.0, 2.0],
    }
    assert network_args(load_recipe("segresnet-brats3d", ["model=swinunetr"])) == {}
    recipe = fast_recipe(tmp_path, ["extra.modalities=[flair, t1ce]"])
    module, _, pre = build_brats_task(recipe, {"train": cases[:1]})
    resolved = resolve_brats_recipe(recipe, {"train": cases[:1]})
    assert resolved.in_channels == 2 == len(pre["modalities"])  # the model folder rebuilds this
    first = next(m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 2
