"""The error types the command line turns into one-line messages and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class BrainTumorError(Exception):
    """Base class for every error the user should see as one clear line."""


class ImageReadError(BrainTumorError):
    """A file could not be read as an image (corrupt, truncated, empty, unsupported, NaN...)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class LayoutError(BrainTumorError):
    """A folder matched no known dataset layout, or matched one but is inconsistent."""


class DataError(BrainTumorError):
    """Inputs that read fine but do not fit together (mask vs image, missing modality...)."""


class ModelFormatError(BrainTumorError):
    """A model folder or checkpoint is missing, malformed, or not trustworthy."""


class RecipeError(BrainTumorError):
    """An unknown recipe, an unknown key, or a value of the wrong type."""


class OutputError(BrainTumorError):
    """An output path that cannot be written (an existing file, a read-only folder...)."""
