"""Reference models shipped with the package (``zoo:NAME``); see docs/zoo.md."""

from braintumor.zoo.registry import (
    ZOO_PREFIX,
    ZooEntry,
    default_zoo_models,
    is_zoo_ref,
    resolve_model_ref,
    zoo_entries,
    zoo_entry,
)

__all__ = [
    "ZOO_PREFIX",
    "ZooEntry",
    "default_zoo_models",
    "is_zoo_ref",
    "resolve_model_ref",
    "zoo_entries",
    "zoo_entry",
]
