"""The typed sections of a recipe that only some tasks or protocols read.

A recipe's YAML keeps one flat ``extra:`` mapping (``--set extra.patch_size=[96,96,96]``); at
load it becomes the dataclass its task registered (:func:`braintumor.tasks.registry.
task_options`): :class:`RunOptions` for every task, :class:`BratsOptions` for the BraTS tasks.
The segmenters' ``inference:`` mapping becomes :class:`InferenceOptions`. An unknown key or a
value of the wrong type is a one-line :class:`RecipeError`, and every default lives here, once.

This module imports nothing heavy: reading a recipe must stay fast.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from braintumor.errors import RecipeError

#: The BraTS input sequences, in channel order, when a recipe does not name them.
DEFAULT_MODALITIES = ["t1", "t1ce", "t2", "flair"]


@dataclass
class RunOptions:
    """What every task's recipe may set in ``extra``: how a run splits its data.

    ``fold`` is the fold a fold file (``braintumor data split --folds``) tests on; ``protocol``
    (``loso`` or ``kfold``), ``val_source`` and ``test_source`` choose a multi-run protocol
    (``braintumor train --protocol``).
    """

    fold: int = 0
    protocol: str | None = None
    val_source: list[str] = field(default_factory=list)
    test_source: list[str] = field(default_factory=list)


@dataclass
class BratsOptions(RunOptions):
    """The BraTS tasks' settings (docs/brats.md).

    ``target_spacing`` here is read only when ``preprocess.target_spacing`` is unset.
    ``cache_dir`` None means ``$BRAINTUMOR_CACHE/brats`` (a machine setting, not the model's).
    """

    modalities: list[str] = field(default_factory=lambda: list(DEFAULT_MODALITIES))
    label_mode: str = "regions"  # regions (WT/TC/ET sigmoids) | labels (softmax)
    convention: str = "auto"  # auto, or a label convention of braintumor.metrics.brats
    cache_dir: str | None = None
    target_spacing: list[float] | None = None
    # 2D: slices kept for training
    min_tumour_pixels: int = 50
    empty_slice_fraction: float = 0.1
    # 3D: patches and sliding-window inference
    patch_size: list[int] = field(default_factory=lambda: [128, 128, 128])
    samples_per_case: int = 4
    pos_fraction: float = 0.5
    sw_overlap: float = 0.5
    sw_batch_size: int = 2


#: An inference setting left to the validation split (inference/choice.py).
AUTO = "auto"


@dataclass
class InferenceOptions:
    """A 2D model's test-time choices: each ``True``, ``False`` or ``auto`` (the default).

    A segmenter's ``auto`` settings are chosen by validation Dice after training
    (``braintumor.inference.choice``). A classifier has ``tta`` only, and nothing is chosen
    for it: ``auto`` is off, ``true`` averages each slice with its left-right mirror.
    """

    tta: bool | str = AUTO
    keep_largest: bool | str = AUTO
    #: 3D components across a patient's slice stack (only chosen when validation has stacks)
    stack_components: bool | str = AUTO

    def __post_init__(self) -> None:
        for key, value in dataclasses.asdict(self).items():
            if value != AUTO and not isinstance(value, bool):
                raise RecipeError(f"{key} must be true, false or auto, not {value!r}")


Options = TypeVar("Options")

# A single source may be written without brackets: ``test_source: sartaj-4class``.
_LIST_OR_ONE = ("val_source", "test_source")


def options_from_dict(
    kind: type[Options], data: dict[str, Any], where: str, section: str = "extra"
) -> Options:
    """``data`` (a recipe's ``section`` mapping) as the dataclass ``kind``; ``where`` names the
    recipe in errors. Unknown keys and values of the wrong type are a :class:`RecipeError`."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: {section} must be a mapping, not {data!r}")
    hints = typing.get_type_hints(kind)
    known = [f.name for f in dataclasses.fields(kind)]  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise RecipeError(f"{where}: {section}.{key} is unknown; known: {', '.join(known)}")
        if key in _LIST_OR_ONE and isinstance(value, str):
            value = [value]
        values[key] = _checked(value, hints[key], f"{where}: {section}.{key}")
    try:
        return kind(**values)
    except RecipeError as error:  # a rule between values, or on a value's text
        raise RecipeError(f"{where}: {section}.{error}") from error


def _checked(value: Any, hint: Any, where: str) -> Any:
    """``value`` if it fits ``hint`` (ints are accepted for floats), else a RecipeError."""
    if _fits(value, hint):
        return value
    # ``--set extra.cache_dir=2024`` parses as a number; a text field takes it as written.
    if isinstance(value, int | float) and not isinstance(value, bool) and _fits("", hint):
        return str(value)
    name = str(hint) if typing.get_origin(hint) else hint.__name__  # list[int], not list
    raise RecipeError(f"{where} must be {name}, not {value!r}")


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if isinstance(value, bool):  # bool is an int to Python, never to a recipe
        return hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)
