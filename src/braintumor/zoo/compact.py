"""Compact copies of model folders for the zoo: half-precision weights on disk.

The network keeps float32 parameters; ``load_state_dict`` copies the float16 tensors into
them, so a compact folder loads through the ordinary ``model_io.load_model_dir`` and computes
in float32. float16 keeps 11 significant bits (bfloat16 only 8); a tensor whose values do not
fit float16's range falls back to bfloat16.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from braintumor.atomic import write_text_atomic
from braintumor.models.ood_stats import OOD_FILE
from braintumor.tasks.registry import CLASSES, model_task
from braintumor.zoo.registry import INDEX_FILE, ZOO_DIR, sha256_file

WEIGHTS_FILE = "model.safetensors"
SHIPPED_FILES = ("model.safetensors", "model.json", "README.md")
# Shipped too when the model has out-of-distribution statistics (kept in float32: they are
# small and the threshold was set on their exact values).
OPTIONAL_FILES = (OOD_FILE,)
FP16_MAX = float(torch.finfo(torch.float16).max)


def compact_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """float32/float64 -> float16 (bfloat16 when out of float16's range); others unchanged."""
    if not tensor.is_floating_point():
        return tensor
    if tensor.numel() and float(tensor.abs().max()) >= FP16_MAX:
        return tensor.to(torch.bfloat16)
    return tensor.to(torch.float16)


def compact_weights(source: Path, dest: Path) -> dict[str, int]:
    """Write ``source`` safetensors with half-precision floats to ``dest``; dtype counts."""
    tensors = {name: compact_tensor(t).contiguous() for name, t in load_file(str(source)).items()}
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(dest))
    os.chmod(dest, 0o644)  # package data: readable by every user of the installation
    counts: dict[str, int] = {}
    for tensor in tensors.values():
        key = str(tensor.dtype).removeprefix("torch.")
        counts[key] = counts.get(key, 0) + 1
    return counts


def install_zoo_model(
    model_dir: Path,
    name: str,
    summary: str,
    headline: dict[str, Any],
    zoo_dir: Path | None = None,
) -> Path:
    """Copy ``model_dir`` (weights made compact, model.json, README.md) into the zoo as ``name``.

    The index entry records each file's SHA-256 so that a damaged install is detected.
    """
    zoo_dir = zoo_dir or ZOO_DIR
    folder = zoo_dir / name
    staging = zoo_dir / f".{name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    counts = compact_weights(model_dir / WEIGHTS_FILE, staging / WEIGHTS_FILE)
    shipped = [*SHIPPED_FILES, *(f for f in OPTIONAL_FILES if (model_dir / f).is_file())]
    for file_name in shipped[1:]:
        shutil.copyfile(model_dir / file_name, staging / file_name)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    info = json.loads((folder / "model.json").read_text())
    index_path = zoo_dir / INDEX_FILE
    index = json.loads(index_path.read_text()) if index_path.is_file() else {"format": 1}
    index.setdefault("models", {})[name] = {
        "folder": name,
        "task": info["task"],
        "summary": summary,
        "headline": headline,
        "storage_dtype": "float16" if set(counts) <= {"float16", "int64"} else "mixed",
        "files": {f: sha256_file(folder / f) for f in shipped},
    }
    index["models"] = dict(sorted(index["models"].items()))
    write_text_atomic(index_path, json.dumps(index, indent=2) + "\n")
    return folder


def compact_parity(full_dir: Path, compact_dir: Path, n: int = 8, seed: int = 0) -> float:
    """Largest |probability difference| between a float32 folder and its compact copy.

    Measured on ``n`` seeded standard-normal inputs of the model's size (the inputs the
    networks see are normalised to about that range).
    """
    from braintumor.models.folder import load_model_dir

    full, compact = load_model_dir(full_dir), load_model_dir(compact_dir)
    size = full.info.image_size
    side = [size, size] if isinstance(size, int) else list(size)[-2:]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, full.info.in_channels, *side, generator=generator)
    # classifiers: softmax over classes; segmenters: a sigmoid per pixel and region
    classifier = model_task(full.info.task, full_dir).outputs == CLASSES
    probs = torch.softmax if classifier else (lambda t, dim: torch.sigmoid(t))
    with torch.no_grad():
        a, b = probs(full.model(x), dim=1), probs(compact.model(x), dim=1)
    return float((a - b).abs().max())
