"""What the web page calls each served model: readable, unique, and the user's choice.

``serve NAME=PATH`` names a model; otherwise the name given at training (``train --name``,
kept in ``model.json``), a reference model's ``zoo:NAME``, else the run folder's name
(``runs/<run>/model`` -> ``<run>``), else the folder's own name. Two alike get ``-2``...
"""

from __future__ import annotations

import re
from pathlib import Path

from braintumor.errors import DataError
from braintumor.models.folder import ModelInfo

# The generic folder name train writes the model into; the run folder above names the run.
_GENERIC = {"model", "best", "final"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def parse_model_arg(arg: str) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); a plain path -> (None, path). Bad names are one line."""
    name, sep, path = str(arg).partition("=")
    if not sep or "/" in name or "\\" in name:
        return None, str(arg)
    if not _NAME.match(name) or not path:
        raise DataError(
            f"{arg}: NAME=PATH wants a name of letters, digits, '.', '_' or '-' and a path"
        )
    return name, path


def default_name(folder: str | Path, info: ModelInfo) -> str:
    """The name a model goes by when the user gives none (see the module docstring)."""
    if info.name:
        return info.name
    text = str(folder)
    if text.startswith("zoo:"):
        return text  # a shipped reference model goes by the name the command line uses
    path = Path(text).resolve()
    if path.name.lower() in _GENERIC and path.parent.name:
        return path.parent.name
    return path.name or "model"


def unique_name(name: str, taken: set[str] | dict) -> str:
    """``name``, or ``name-2``, ``name-3``... the first not in ``taken``."""
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate
