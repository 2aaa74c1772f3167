"""The trained-model folder: ``model.safetensors`` + ``model.json``.

Loading never unpickles: the weights are safetensors and the description is JSON, so a model
folder from a stranger cannot execute code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from braintumor import __version__
from braintumor.atomic import current_umask
from braintumor.errors import ModelFormatError
from braintumor.models.ensemble import Ensemble
from braintumor.models.ood_stats import OODStats
from braintumor.models.registry import build_model
from braintumor.zoo.registry import resolve_model_ref

#: the newest folder format this version reads; 2 added ensembles (``members`` > 1), which
#: older versions would misread, so only ensembles are written as 2
FORMAT_VERSION = 2
SINGLE_NETWORK_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
INFO_FILE = "model.json"


@dataclass
class ModelInfo:
    """What a model folder says about its network, so it can be rebuilt and used."""

    task: str
    architecture: str
    num_outputs: int
    in_channels: int
    class_names: list[str]
    image_size: int | list[int]
    model_args: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: dict[str, Any] = field(default_factory=dict)
    # Segmenters: TTA, largest-component and stack-rule choice (inference/choice.py).
    inference: dict[str, Any] = field(default_factory=dict)
    # Out-of-distribution statistics (inference/ood.py); empty in folders made before them.
    ood: dict[str, Any] = field(default_factory=dict)
    # A readable, unique-enough name (``train --name``, default the run folder's name).
    name: str = ""
    created: str = ""
    braintumor_version: str = __version__
    format_version: int = SINGLE_NETWORK_FORMAT
    # Networks averaged (models/ensemble.py); 1 for a single network.
    members: int = 1

    def to_json(self) -> str:
        """JSON text of this description."""
        return json.dumps(dataclasses.asdict(self), indent=2, default=str)


@dataclass
class LoadedModel:
    """A rebuilt network (in eval mode) with its description and out-of-distribution
    statistics (None for folders made before them)."""

    model: torch.nn.Module
    info: ModelInfo
    path: Path
    ood: OODStats | None = None


def save_model_dir(
    model: torch.nn.Module, info: ModelInfo, folder: str | Path, ood: OODStats | None = None
) -> Path:
    """Write ``folder`` atomically: built beside it, then renamed into place.

    ``ood`` statistics are written beside the weights and ``info.ood`` set to their block;
    without them ``info.ood`` is emptied, so model.json never names a file the folder lacks.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    info.created = info.created or datetime.now(timezone.utc).isoformat(timespec="seconds")
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    os.chmod(staging, 0o777 & ~current_umask())
    try:
        save_model(model, str(staging / WEIGHTS_FILE))
        info.ood = ood.save(staging) if ood is not None else {}
        (staging / INFO_FILE).write_text(info.to_json())
        for path in staging.iterdir():
            os.chmod(path, 0o666 & ~current_umask())
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            staging.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def read_model_info(folder: str | Path) -> ModelInfo:
    """Parse and validate ``model.json`` of a model folder (or a ``zoo:NAME`` reference)."""
    folder = resolve_model_ref(folder)
    info_path = folder / INFO_FILE
    if not folder.is_dir():
        raise ModelFormatError(
            f"{folder}: not a model folder (expected {INFO_FILE} + {WEIGHTS_FILE})"
        )
    if not info_path.is_file():
        raise ModelFormatError(f"{info_path}: missing; is {folder} a braintumor model folder?")
    try:
        data = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{info_path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{info_path}: expected a JSON object")
    if data.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFormatError(
            f"{info_path}: format version {data['format_version']} is newer than this "
            f"braintumor understands ({FORMAT_VERSION}); upgrade braintumor"
        )
    known = {f.name for f in dataclasses.fields(ModelInfo)}
    required = {"task", "architecture", "num_outputs", "in_channels", "class_names", "image_size"}
    missing = sorted(required - set(data))
    if missing:
        raise ModelFormatError(f"{info_path}: missing keys {missing}")
    members = data.get("members", 1)
    if not isinstance(members, int) or isinstance(members, bool) or not 1 <= members <= 64:
        raise ModelFormatError(f"{info_path}: members must be a whole number 1-64, not {members!r}")
    return ModelInfo(**{k: v for k, v in data.items() if k in known})


def build_network(info: ModelInfo) -> torch.nn.Module:
    """The untrained network ``info`` describes (no pretrained weights are fetched): one
    network, or an :class:`~braintumor.models.ensemble.Ensemble` of ``info.members``."""

    def one() -> torch.nn.Module:
        return build_model(
            info.architecture,
            num_classes=info.num_outputs,
            in_channels=info.in_channels,
            pretrained=False,
            **info.model_args,
        )

    return Ensemble([one() for _ in range(info.members)]) if info.members > 1 else one()


def load_model_dir(folder: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network named in ``model.json`` and load ``model.safetensors`` into it.

    ``folder`` may be ``zoo:NAME`` (a shipped reference model, checked against its SHA-256);
    half-precision weights (the zoo's compact format) are copied into float32 parameters.
    """
    folder = resolve_model_ref(folder)
    info = read_model_info(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelFormatError(f"{weights}: missing")
    model = build_network(info)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise ModelFormatError(f"{weights}: cannot load weights ({exc})") from exc
    if missing or unexpected:
        raise ModelFormatError(
            f"{weights}: weights do not fit {info.architecture} "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)"
        )
    model.to(device).eval()
    ood = OODStats.load(folder, info.ood) if info.ood else None
    return LoadedModel(model=model, info=info, path=folder, ood=ood)
