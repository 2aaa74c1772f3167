"""Recipes: validated training configurations, loaded from YAML and overridden from the CLI.

A recipe is a named YAML file in ``braintumor/recipes/`` (or any path). ``--set key=value``
overrides any field, with dotted keys reaching into the dict-valued fields
(``--set augment.rotate=15``). Values are parsed as YAML scalars, so ``--set lr=1e-3`` is a
float and ``--set pretrained=true`` a bool.

``extra`` (the task's own settings) and ``inference`` (a segmenter's test-time choices) are
typed sections, :mod:`braintumor.recipe_options`: flat mappings in YAML, dataclasses once
loaded, checked key by key.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from rich.console import Console

from braintumor.errors import RecipeError
from braintumor.recipe_options import AUTO, InferenceOptions, RunOptions, options_from_dict
from braintumor.tasks.catalog import list_tasks, task_options

_console = Console(stderr=True)


@dataclass
class Recipe:
    """Everything a training run needs besides the data."""

    name: str
    task: str  # a registered task (braintumor.tasks.list_tasks())
    model: str
    description: str = ""
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    weights: str | None = None
    # Input
    image_size: int = 224
    in_channels: int = 3
    preprocess: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    # Optimisation
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    warmup_fraction: float = 0.0
    plateau_factor: float = 0.2
    plateau_patience: int = 2
    loss: str = "ce"
    loss_args: dict[str, Any] = field(default_factory=dict)
    label_smoothing: float = 0.0
    class_weights: bool = False
    batch_size: int = 32
    max_epochs: int = 30
    max_minutes: float | None = None
    # Validate, checkpoint and ship an exponential moving average of the weights over about
    # this many epochs (training.averaging); None trains and ships the last weights.
    ema_epochs: float | None = None
    # Classifiers: train the first epochs on smaller images, the side growing from this to
    # image_size over the first half of training (training.progressive); None: full size.
    progressive_start: int | None = None
    early_stopping_patience: int | None = 10
    monitor: str = "val/loss"
    monitor_mode: Literal["min", "max"] = "min"
    # Segmenters: share of training draws showing tumour (weighted sampler); None = uniform
    positive_fraction: float | None = None
    # Segmenters: start every output at this tumour probability (the output layer's bias set to
    # its logit, models.output_prior) instead of 0.5; None keeps the network's own start.
    output_prior: float | None = None
    # Segmenters: tta / keep_largest, each true, false or auto (chosen on validation)
    inference: InferenceOptions = field(default_factory=InferenceOptions)
    # Data
    # Classes to train (None: those of the data). ``[no_tumor, tumor]`` makes a tumour /
    # no-tumour recipe: glioma, meningioma and pituitary samples count as tumor.
    classes: list[str] | None = None
    # Order of training draws: auto (balanced over source x class when several datasets are
    # pooled), balanced, or shuffle (data/balance.py).
    sampling: str = "auto"
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    phash_threshold: int = 6
    num_workers: int = 0
    # Machine
    precision: str = "auto"
    # torch.compile the network (inductor): faster steps after a one-off compile (about a
    # minute on a 2-core CPU), so worth it for runs of many minutes. ``auto`` compiles when
    # the time budget is long enough and inductor can build kernels here
    # (training.trainer.resolve_compile).
    compile: bool | Literal["auto"] = False
    seed: int = 42
    # The task's own settings (braintumor.recipe_options): a flat mapping in YAML, the task's
    # dataclass once loaded.
    extra: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        if self.task not in list_tasks():
            raise RecipeError(f"recipe {self.name!r}: task must be one of {tuple(list_tasks())}")
        kind = task_options(self.task)
        if type(self.extra) is not kind:
            extra = self.extra
            given = dataclasses.asdict(extra) if isinstance(extra, RunOptions) else extra
            self.extra = options_from_dict(kind, given, f"recipe {self.name!r}")
        if self.monitor_mode not in ("min", "max"):
            raise RecipeError(f"recipe {self.name!r}: monitor_mode must be 'min' or 'max'")
        for name in ("lr", "batch_size", "max_epochs", "image_size", "in_channels"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise RecipeError(f"recipe {self.name!r}: {name} must be a number, not {value!r}")
            if value <= 0:
                raise RecipeError(f"recipe {self.name!r}: {name} must be positive")
        if self.sampling not in ("auto", "shuffle", "balanced"):
            raise RecipeError(
                f"recipe {self.name!r}: sampling must be auto, shuffle or balanced, "
                f"not {self.sampling!r}"
            )
        fraction = self.positive_fraction
        if fraction is not None and not (isinstance(fraction, float) and 0.0 < fraction < 1.0):
            raise RecipeError(
                f"recipe {self.name!r}: positive_fraction must be a number between 0 and 1 "
                f"(exclusive) or null, not {fraction!r}"
            )
        prior = self.output_prior
        if prior is not None and not (isinstance(prior, float) and 0.0 < prior < 1.0):
            raise RecipeError(
                f"recipe {self.name!r}: output_prior must be a probability between 0 and 1 "
                f"(exclusive) or null, not {prior!r}"
            )
        if prior is not None and self.task == "classify":
            raise RecipeError(f"recipe {self.name!r}: output_prior applies to segmenters only")
        fill = self.augment.get("missing_sequence_fill", 1)
        if (
            self.augment.get("missing_sequence")
            and self.in_channels > 1
            and not (isinstance(fill, int) and 0 <= fill < self.in_channels)
        ):  # checked here so a typo fails before the data is read, not at the first step
            raise RecipeError(
                f"recipe {self.name!r}: augment.missing_sequence_fill={fill!r} must be one of "
                f"the {self.in_channels} input channels (0-{self.in_channels - 1})"
            )
        if self.augment.get("sequence_contrast") and self.preprocess.get("intensity") != "equalize":
            # the curve's re-equalisation assumes equalised head levels
            raise RecipeError(
                f"recipe {self.name!r}: augment.sequence_contrast needs "
                "preprocess.intensity: equalize"
            )
        ema = self.ema_epochs
        if ema is not None and (
            isinstance(ema, bool) or not isinstance(ema, int | float) or ema <= 0
        ):
            raise RecipeError(
                f"recipe {self.name!r}: ema_epochs must be a positive number of epochs or null, "
                f"not {ema!r}"
            )
        start = self.progressive_start
        if start is not None and (
            isinstance(start, bool)
            or not isinstance(start, int)
            or not 16 <= start <= self.image_size
        ):
            raise RecipeError(
                f"recipe {self.name!r}: progressive_start must be an image side from 16 to "
                f"image_size ({self.image_size}) or null, not {start!r}"
            )
        if self.compile != "auto" and not isinstance(self.compile, bool):
            raise RecipeError(
                f"recipe {self.name!r}: compile must be true, false or auto, not {self.compile!r}"
            )
        if not isinstance(self.inference, InferenceOptions):
            given = self.inference
            self.inference = options_from_dict(
                InferenceOptions, given, f"recipe {self.name!r}", "inference"
            )
        segmenter_only = ("keep_largest", "stack_components")
        if self.task == "classify" and any(
            getattr(self.inference, key) != AUTO for key in segmenter_only
        ):
            raise RecipeError(
                f"recipe {self.name!r}: inference.keep_largest and inference.stack_components "
                "are segmenter settings; a classifier has inference.tta only"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, ready for YAML/JSON."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The resolved recipe as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def recipe_names() -> list[str]:
    """Names of the recipes shipped with the package."""
    folder = resources.files("braintumor") / "recipes"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_recipe_yaml(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text()
    else:
        resource = resources.files("braintumor") / "recipes" / f"{name_or_path}.yaml"
        if not resource.is_file():
            close = difflib.get_close_matches(name_or_path, recipe_names(), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise RecipeError(f"unknown recipe {name_or_path!r}{hint}; see `braintumor recipes`")
        text = resource.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{name_or_path}: invalid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{name_or_path}: a recipe must be a YAML mapping")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"augment.rotate=15"`` -> (["augment", "rotate"], 15)."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), _parse_scalar(raw.strip())


def _parse_scalar(raw: str) -> Any:
    # YAML 1.1 reads "1e-4" as a string; numbers are tried first for that reason.
    for number in (int, float):
        try:
            return number(raw)
        except ValueError:
            pass
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise RecipeError(f"cannot parse override value {raw!r} ({exc})") from exc


def _apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    known = {f.name for f in dataclasses.fields(Recipe)}
    if keys[0] not in known:
        close = difflib.get_close_matches(keys[0], sorted(known), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise RecipeError(f"unknown recipe key {keys[0]!r}{hint}")
    target = data
    for key in keys[:-1]:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise RecipeError(f"cannot set {'.'.join(keys)}: {key} is not a mapping")
    target[keys[-1]] = value


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """Load a shipped recipe by name (or a YAML path) and apply ``key=value`` overrides."""
    data = _read_recipe_yaml(name_or_path)
    data.setdefault("name", Path(name_or_path).stem)
    shipped_model = data.get("model")
    parsed = [parse_override(text) for text in overrides or []]
    for keys, value in parsed:
        _apply_override(data, keys, value)
    # The recipe's network options belong to its own network: switching the model without
    # giving new options starts that model from its defaults instead of failing on them.
    sets_model_args = any(keys[0] == "model_args" for keys, _ in parsed)
    if data.get("model") != shipped_model and not sets_model_args and data.get("model_args"):
        dropped = ", ".join(sorted(data["model_args"]))
        _console.print(
            f"[yellow]model {data.get('model')}: the recipe's model_args of {shipped_model} "
            f"({dropped}) dropped; set model_args.* to configure it"
        )
        data["model_args"] = {}
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"recipe {name_or_path!r}: unknown keys {unknown}")
    try:
        return Recipe(**data)
    except TypeError as exc:
        raise RecipeError(f"recipe {name_or_path!r}: {exc}") from exc
