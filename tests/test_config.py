"""Recipes: every shipped recipe loads, overrides apply, mistakes are clear errors."""

from __future__ import annotations

import pytest

from braintumor.config import load_recipe, recipe_names
from braintumor.errors import RecipeError
from braintumor.recipe_options import BratsOptions, RunOptions


def test_every_shipped_recipe_loads_and_names_itself() -> None:
    names = recipe_names()
    for expected in ("fast-cpu-4class", "hrnet-w48-4class", "resnet50-binary", "fast-cpu-seg"):
        assert expected in names
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name
        assert recipe.task in ("classify", "segment", "brats2d", "brats3d")


@pytest.mark.parametrize("kind", ["4class", "binary"])
def test_default_recipes_are_the_plain_ones_with_the_invariance_options(kind: str) -> None:
    from braintumor.zoo.specs import (
        CONSISTENCY_OVERRIDES,
        FIELD_OF_VIEW_OVERRIDES,
        INVARIANCE_OVERRIDES,
        MIRROR_TTA_OVERRIDES,
        NARROW_FIELD_OF_VIEW_OVERRIDES,
        WEIGHT_AVERAGING_OVERRIDES,
    )

    robust = load_recipe(f"fast-cpu-{kind}")
    own = {
        "binary": (*NARROW_FIELD_OF_VIEW_OVERRIDES, *WEIGHT_AVERAGING_OVERRIDES),
        "4class": MIRROR_TTA_OVERRIDES,
    }[kind]
    fast = load_recipe(
        f"plain-cpu-{kind}",
        [*INVARIANCE_OVERRIDES, *FIELD_OF_VIEW_OVERRIDES, *CONSISTENCY_OVERRIDES, *own],
    )
    assert robust.preprocess["brain_crop"] is True
    assert robust.preprocess["head_outline"] == "gamma-normalised"
    assert robust.preprocess["intensity"] == "equalize" and robust.augment["jpeg"] > 0
    mine, theirs = robust.to_dict(), fast.to_dict()
    for key in ("name", "description"):
        mine.pop(key), theirs.pop(key)
    assert mine == theirs


def test_overrides_parse_yaml_scalars_and_dotted_keys() -> None:
    recipe = load_recipe(
        "fast-cpu-4class", ["lr=1e-4", "pretrained=true", "augment.rotate=30", "batch_size=8"]
    )
    assert recipe.lr == pytest.approx(1e-4)
    assert recipe.pretrained is True
    assert recipe.augment["rotate"] == 30
    assert recipe.augment["hflip"] == 0.5  # untouched siblings survive
    assert recipe.batch_size == 8


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("no-such-recipe", [], "unknown recipe"),
        ("fast-cpu-4class", ["weight_decai=1"], "did you mean weight_decay"),
        ("fast-cpu-4class", ["lr"], "key=value"),
        ("fast-cpu-4class", ["batch_size=0"], "must be positive"),
        ("fast-cpu-4class", ["task=dance"], "task must be"),
        ("fast-cpu-seg", ["compile=sometimes"], "compile must be true, false or auto"),
        ("fast-cpu-brats", ["extra.patch_sise=[9]"], r"extra\.patch_sise is unknown; known: "),
        ("fast-cpu-brats", ["extra.patch_size=64"], r"extra\.patch_size must be list\[int\]"),
        ("fast-cpu-brats", ["extra.sw_overlap=yes"], r"extra\.sw_overlap must be float"),
        ("fast-cpu-seg", ["extra.modalities=[flair]"], r"extra\.modalities is unknown"),
        ("fast-cpu-seg", ["extra=3"], "extra must be a mapping"),
        ("fast-cpu-lgg", ["augment.missing_sequence_fill=3"], r"one of the 3 input channels"),
    ],
)
def test_bad_recipes_raise_recipe_error(name: str, overrides: list[str], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(name, overrides)


def test_recipe_yaml_round_trip(tmp_path) -> None:
    recipe = load_recipe("resnet50-binary")
    path = tmp_path / "mine.yaml"
    path.write_text(recipe.to_yaml())
    again = load_recipe(str(path))
    assert again.to_dict() == recipe.to_dict()


def test_extra_is_the_tasks_typed_section_with_its_defaults(tmp_path) -> None:
    brats = load_recipe("fast-cpu-brats3d", ["extra.sw_batch_size=1"])
    assert isinstance(brats.extra, BratsOptions)
    assert brats.extra.sw_batch_size == 1 and brats.extra.patch_size == [32, 32, 32]
    assert load_recipe("fast-cpu-brats").extra.patch_size == [128, 128, 128]  # the default
    loso = load_recipe("resnet50-binary-3sources")
    assert type(loso.extra) is RunOptions  # a classify recipe has no BraTS settings
    assert loso.extra.protocol == "loso" and loso.extra.test_source == ["sartaj-4class"]
    path = tmp_path / "resolved.yaml"
    path.write_text(brats.to_yaml())  # every default written out, and read back the same
    assert load_recipe(str(path)).to_dict() == brats.to_dict()
    assert brats.to_dict()["extra"]["samples_per_case"] == 8


def test_switching_model_drops_the_recipe_network_options(capsys) -> None:
    shipped = load_recipe("fast-cpu-seg")
    assert shipped.model_args  # the U-Net's channel widths
    switched = load_recipe("fast-cpu-seg", ["model=unet3plus"])
    assert switched.model == "unet3plus"
    assert switched.model_args == {}
    assert "model_args of unet (channels) dropped" in capsys.readouterr().err
    kept = load_recipe("fast-cpu-seg", ["model=attention-unet", "model_args.channels=[8,16]"])
    assert kept.model_args == {"channels": [8, 16]}
    same = load_recipe("fast-cpu-seg", ["image_size=64"])
    assert same.model_args == shipped.model_args


def test_compile_auto_compiles_only_long_budgets_where_inductor_can_build(monkeypatch) -> None:
    from braintumor.training import trainer

    monkeypatch.setattr(trainer, "inductor_available", lambda accelerator: True)
    shipped = load_recipe("fast-cpu-seg")
    assert shipped.compile == "auto"
    assert trainer.resolve_compile(shipped, "cpu") is True  # its 20-minute budget
    short = load_recipe("fast-cpu-seg", ["max_minutes=1.5"])
    assert trainer.resolve_compile(short, "cpu") is False
    unbounded = load_recipe("fast-cpu-seg", ["max_minutes=null"])
    assert trainer.resolve_compile(unbounded, "cpu") is False
    assert trainer.resolve_compile(load_recipe("fast-cpu-seg", ["compile=true"]), "cpu") is True
    monkeypatch.setattr(trainer, "inductor_available", lambda accelerator: False)
    assert trainer.resolve_compile(shipped, "cpu") is False
    assert trainer.resolve_compile(load_recipe("fast-cpu-seg", ["compile=true"]), "cpu") is True


def test_inductor_needs_a_cpu_compiler_and_headers_and_is_not_used_on_apple_gpus(
    monkeypatch, tmp_path
) -> None:
    from braintumor.training import trainer

    (tmp_path / "Python.h").write_text("")
    monkeypatch.setattr(trainer.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    monkeypatch.setattr(trainer.sys, "platform", "linux")
    monkeypatch.setattr(trainer.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(trainer, "_mps_available", lambda: False)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(trainer.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert trainer.inductor_available("cpu") is True
    monkeypatch.setattr(trainer, "_mps_available", lambda: True)
    assert trainer.inductor_available("auto") is False  # Lightning would pick the Apple GPU
    assert trainer.inductor_available("cpu") is True
    monkeypatch.setattr(trainer.shutil, "which", lambda name: None)
    assert trainer.inductor_available("cpu") is False
    monkeypatch.setattr(trainer.shutil, "which", lambda name: f"/usr/bin/{name}")
    (tmp_path / "Python.h").unlink()
    assert trainer.inductor_available("cpu") is False
