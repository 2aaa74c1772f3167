"""Combine trained model folders into one ensemble model folder (``braintumor models ensemble``).

The members must take the same inputs the same way and give the same outputs (task,
architecture and its arguments, classes, size, channels, preprocessing) and have been trained
on the same data (the same sample ids), so that the folder's card, its test split and its
inference settings mean what they say. The ensemble keeps the first member's inference settings
(segmenters: TTA, largest component, stack rule) and its out-of-distribution statistics, read
on the first member's layer inside the ensemble: its features do not change there.

Members trained with different seeds usually drew different training / validation / test
splits, so one member's test images may be another's training images; where the members' run
folders hold their ``splits.csv``, the ensemble says how many, and that it is then to be
measured on images none of its members saw (a held-out source, new data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from braintumor.data.splits import TEST, TRAIN, VAL, read_splits
from braintumor.errors import ModelFormatError
from braintumor.models.ensemble import FIRST_MEMBER, Ensemble
from braintumor.models.folder import (
    FORMAT_VERSION,
    INFO_FILE,
    LoadedModel,
    load_model_dir,
    save_model_dir,
)
from braintumor.runfolder import SPLITS_FILE

#: what every member must share: the inputs it takes and the outputs it gives
SHARED = (
    "task",
    "architecture",
    "model_args",
    "num_outputs",
    "in_channels",
    "class_names",
    "image_size",
    "preprocessing",
)
#: the data fingerprint's keys that say which samples a member was trained on
SAME_DATA = ("layout", "ids_sha256")
#: what a segmenter's inference block records about how validation chose its settings
CHOICE_RECORDS = ("val_dice", "n_val", "chosen_on")


@dataclass
class Combined:
    """The written ensemble folder and what the user should know about it."""

    folder: Path
    members: int
    notes: list[str]


def _check_member(member: LoadedModel, first: LoadedModel) -> list[str]:
    """A ModelFormatError where ``member`` cannot join ``first``'s ensemble; notes otherwise."""
    if member.info.members > 1:
        raise ModelFormatError(
            f"{member.path}: already an ensemble of {member.info.members}; give its members"
        )
    for key in SHARED:
        mine, theirs = getattr(member.info, key), getattr(first.info, key)
        if mine != theirs:
            raise ModelFormatError(
                f"{member.path}: {key} {mine!r} differs from {first.path}'s {theirs!r}; an "
                "ensemble's members take the same inputs and give the same outputs"
            )
    for key in SAME_DATA:
        mine = member.info.data_fingerprint.get(key)
        if mine != first.info.data_fingerprint.get(key):
            raise ModelFormatError(
                f"{member.path}: trained on other data than {first.path} (data_fingerprint "
                f"{key} differs); an ensemble's members are trained on the same samples"
            )
    if _settings(member) != _settings(first):
        return [f"{member.path.name}: its inference settings differ; the first member's are kept"]
    return []


def _settings(member: LoadedModel) -> dict[str, Any]:
    """What a member does at inference, without the validation scores it chose them by."""
    return {k: v for k, v in member.info.inference.items() if k not in CHOICE_RECORDS}


def combine_model_dirs(folders: Sequence[str | Path], out: str | Path, name: str = "") -> Combined:
    """Write ``out``: an ensemble model folder of the models in ``folders`` (two or more)."""
    if len(folders) < 2:
        raise ModelFormatError(f"an ensemble needs at least two model folders, got {len(folders)}")
    loaded = [load_model_dir(folder) for folder in folders]
    first = loaded[0]
    if first.info.members > 1:
        raise ModelFormatError(
            f"{first.path}: already an ensemble of {first.info.members}; give its members"
        )
    notes = [note for member in loaded[1:] for note in _check_member(member, first)]
    crossing = _test_images_trained_on(loaded)
    if crossing:
        notes.append(
            f"{crossing} test image(s) of one member are training or validation images of "
            "another: measure the ensemble on images none of its members saw"
        )
    out = Path(out)
    if out.exists() and not (out / INFO_FILE).is_file():
        raise ModelFormatError(f"{out}: exists and is not a model folder; choose another --out")
    network = Ensemble([member.model.cpu() for member in loaded])
    network = network.to(memory_format=torch.contiguous_format)
    info = dataclasses.replace(
        first.info,
        # a folder called "model" is a run's, named by its run folder as training names it
        name=name or (out.resolve().parent.name if out.name == "model" else out.name),
        members=len(loaded),
        format_version=FORMAT_VERSION,
        created="",
        metrics={
            "members": [_member_summary(member) for member in loaded],
            "test_images_trained_on": crossing,
        },
        ood={},
    )
    ood = None
    if first.ood is not None:
        ood = dataclasses.replace(
            first.ood,
            layer=FIRST_MEMBER + first.ood.layer,
            details={**first.ood.details, "fitted_on": "the first member"},
        )
    else:
        notes.append(f"{first.path.name} has no out-of-distribution statistics; neither has this")
    save_model_dir(network, info, out, ood=ood)
    return Combined(folder=out, members=len(loaded), notes=notes)


def _member_summary(member: LoadedModel) -> dict[str, Any]:
    """A member's name, seed and own headline figures (the ensemble's are measured apart)."""
    return {
        "name": member.info.name,
        "seed": member.info.recipe.get("seed"),
        "metrics": member.info.metrics,
    }


def _test_images_trained_on(loaded: Sequence[LoadedModel]) -> int | None:
    """How many images one member was tested on and another trained or validated on, from
    the ``splits.csv`` of the members' run folders; None when fewer than two have one."""
    sides = {}
    for member in loaded:
        path = member.path.parent / SPLITS_FILE
        if path.is_file():
            table = read_splits(path)
            if table.column == "split":  # a fold file has no single test side
                sides[member.path] = table.assignment
    if len(sides) < 2:
        return None
    tested = {i for split in sides.values() for i, side in split.items() if side == TEST}
    seen = {i for split in sides.values() for i, side in split.items() if side in (TRAIN, VAL)}
    return len(tested & seen)
