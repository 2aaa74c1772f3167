"""Load a local weights file into a model without ever running code from the file.

``.safetensors`` files hold tensors only. ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` files are
read with ``torch.load(weights_only=True)``, which refuses pickles that would construct
arbitrary objects; such a file raises ModelFormatError. Checkpoints are unwrapped
(``state_dict`` / ``model`` keys, ``module.`` / ``model.`` prefixes); tensors whose shape does
not fit (a head trained for another class count) are skipped and reported, and a 3-channel
first convolution is adapted to 1 or 4 input channels with timm's ``adapt_input_conv``.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from timm.models._manipulate import adapt_input_conv
from torch import nn

from braintumor.errors import ModelFormatError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_PREFIXES = ("module.", "model.")


@dataclass
class LoadReport:
    """What :func:`load_weights` did with each tensor of the file and of the model."""

    path: Path
    loaded: list[str] = field(default_factory=list)
    #: model tensors the file did not provide (they keep their initial values)
    missing: list[str] = field(default_factory=list)
    #: file tensors the model has no place for
    unexpected: list[str] = field(default_factory=list)
    #: name -> (shape in file, shape in model) for tensors left out because the shapes differ
    skipped: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    #: first convolutions whose input channels were adapted (e.g. RGB -> 4 MRI sequences)
    adapted: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts, and the names of skipped tensors."""
        line = (
            f"loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, skipped {len(self.skipped)}, "
            f"adapted {len(self.adapted)}"
        )
        if self.skipped:
            line += " (skipped: " + ", ".join(sorted(self.skipped)) + ")"
        return line


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, unwrapped from a checkpoint, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such weights file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelFormatError(f"{path}: not a readable safetensors file ({exc})") from exc
    if suffix not in PICKLE_SUFFIXES:
        raise ModelFormatError(
            f"{path}: unknown weights format {suffix!r}; use .safetensors or "
            + "/".join(PICKLE_SUFFIXES)
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFormatError(
            f"{path}: refused, not a plain tensor file: it holds Python objects whose loading "
            "could run code, or it is corrupt; convert trusted weights to .safetensors"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: not a readable PyTorch weights file ({exc})") from exc
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ModelFormatError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFormatError(f"{path}: holds no tensors")
    return tensors


def _match_key(key: str, targets: Mapping[str, torch.Tensor]) -> str:
    """``key`` with wrapper prefixes (DataParallel ``module.``, Lightning ``model.``) removed."""
    while key not in targets:
        prefix = next((p for p in _PREFIXES if key.startswith(p)), None)
        if prefix is None:
            break
        key = key[len(prefix) :]
    return key


def _adaptable(source: torch.Tensor, target: torch.Tensor) -> bool:
    """A 2D conv kernel that differs only in input channels, trained on 3-channel images."""
    return (
        source.ndim == 4
        and target.ndim == 4
        and source.shape[1] == 3
        and source.shape[0] == target.shape[0]
        and source.shape[2:] == target.shape[2:]
    )


def load_weights(model: nn.Module, path: str | Path, strict: bool = False) -> LoadReport:
    """Copy the tensors of ``path`` into ``model`` and report what matched.

    With ``strict=True`` any missing, unexpected or skipped tensor raises ModelFormatError
    (after nothing has been changed in the model).
    """
    path = Path(path)
    state = read_state_dict(path)
    targets = model.state_dict()
    report = LoadReport(path=path)
    accepted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = _match_key(key, targets)
        if name not in targets:
            report.unexpected.append(key)
            continue
        target = targets[name]
        if tensor.shape != target.shape:
            if _adaptable(tensor, target):
                tensor = adapt_input_conv(target.shape[1], tensor)
                report.adapted.append(name)
            else:
                report.skipped[name] = (tuple(tensor.shape), tuple(target.shape))
                continue
        accepted[name] = tensor
        report.loaded.append(name)
    report.missing = [k for k in targets if k not in accepted]
    if strict and (report.missing or report.unexpected or report.skipped):
        raise ModelFormatError(f"{path}: does not fit the model: {report.summary()}")
    if not accepted:
        raise ModelFormatError(f"{path}: no tensor fits this model ({report.summary()})")
    model.load_state_dict(accepted, strict=False)
    return report
