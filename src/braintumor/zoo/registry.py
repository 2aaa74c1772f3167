"""The reference models shipped inside the package, and ``zoo:NAME`` references to them.

``index.json`` beside this file names each model, its folder, task, headline figures and the
SHA-256 of every file, so a damaged installation is caught before a model is loaded. Nothing
here reads the network: :func:`resolve_model_ref` turns a reference into a folder, and
``model_io`` loads it like any other model folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from braintumor.errors import ModelFormatError

ZOO_PREFIX = "zoo:"
ZOO_DIR = Path(__file__).resolve().parent
INDEX_FILE = "index.json"
REINSTALL = "reinstall braintumor (pip install --force-reinstall braintumor)"


@dataclass(frozen=True)
class ZooEntry:
    """One shipped reference model as the index describes it."""

    name: str
    folder: Path
    task: str
    summary: str
    headline: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> SHA-256
    storage_dtype: str = "float16"


def _read_index(zoo_dir: Path) -> dict[str, ZooEntry]:
    path = zoo_dir / INDEX_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        models = data["models"]
        return {
            name: ZooEntry(
                name=name,
                folder=zoo_dir / entry["folder"],
                task=entry["task"],
                summary=entry.get("summary", ""),
                headline=entry.get("headline", {}),
                files=entry["files"],
                storage_dtype=entry.get("storage_dtype", "float16"),
            )
            for name, entry in models.items()
        }
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"{path}: the zoo index is damaged ({exc}); {REINSTALL}") from exc


def zoo_entries(zoo_dir: Path | None = None) -> dict[str, ZooEntry]:
    """The shipped reference models by name (empty when none are built).

    Read at each call: the index is small, and a rebuilt zoo must be seen at once.
    """
    return _read_index(zoo_dir or ZOO_DIR)


def zoo_entry(name: str, zoo_dir: Path | None = None) -> ZooEntry:
    """The entry for ``name``; an unknown name is an error listing the available ones."""
    entries = zoo_entries(zoo_dir)
    if name not in entries:
        available = ", ".join(ZOO_PREFIX + n for n in sorted(entries)) or "none"
        raise ModelFormatError(
            f"{ZOO_PREFIX}{name}: no such reference model; available: {available}"
        )
    return entries[name]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_entry(entry: ZooEntry) -> Path:
    """Check every file of a shipped model against its recorded SHA-256; return its folder."""
    for file_name, expected in entry.files.items():
        path = entry.folder / file_name
        if not path.is_file():
            raise ModelFormatError(f"{path}: missing from the installed model zoo; {REINSTALL}")
        if sha256_file(path) != expected:
            raise ModelFormatError(
                f"{path}: corrupted (SHA-256 differs from the zoo index); {REINSTALL}"
            )
    return entry.folder


def is_zoo_ref(ref: str | Path) -> bool:
    """True for ``zoo:NAME``."""
    return str(ref).startswith(ZOO_PREFIX)


def resolve_model_ref(ref: str | Path, zoo_dir: Path | None = None) -> Path:
    """A model folder for ``ref``: ``zoo:NAME`` -> the verified shipped folder, else the path."""
    if not is_zoo_ref(ref):
        return Path(ref)
    return verify_entry(zoo_entry(str(ref)[len(ZOO_PREFIX) :], zoo_dir))


def default_zoo_models(kind: str, zoo_dir: Path | None = None) -> list[str]:
    """Reference models for inputs of ``kind``: ``slices`` (2D images) or ``brats`` (cases)."""
    wanted = {"slices": ["4class", "seg2d"], "brats": ["brats2d"]}
    if kind not in wanted:
        raise ValueError(f"unknown input kind {kind!r}")
    entries = zoo_entries(zoo_dir)
    chosen = [name for name in wanted[kind] if name in entries]
    if not chosen:
        raise ModelFormatError(
            f"no reference model for {kind} is installed "
            f"(zoo: {', '.join(sorted(entries)) or 'empty'}); give a model folder"
        )
    return chosen
