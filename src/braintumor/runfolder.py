"""The run folder (``runs/<name>/``): every path a training run writes, in one place.

::

    recipe.yaml            the resolved recipe
    splits.csv             each sample's split and group (reused on --resume)
    logs/metrics.csv       training curves (Lightning's CSV logger)
    tensorboard/           the same for TensorBoard
    checkpoints/           best and last checkpoints (resume)
    model/                 the model folder (model.safetensors + model.json)
    test/                  evaluation on the held-out test split (metrics.json, report.html...)
    test-<data>/           evaluation on --test-data
    metrics.json           the test metrics of every evaluation
    report.html            a copy of test/report.html
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RECIPE_FILE = "recipe.yaml"
SPLITS_FILE = "splits.csv"


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder; nothing is created until a path is written."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def of_model(cls, model_dir: str | Path) -> RunFolder | None:
        """The run folder a model folder was saved in, or None for a model folder on its own."""
        run = cls(Path(model_dir).resolve().parent)
        return run if run.recipe.is_file() or run.metrics_csv.is_file() else None

    @property
    def recipe(self) -> Path:
        """The resolved recipe, ``recipe.yaml``."""
        return self.root / RECIPE_FILE

    @property
    def splits(self) -> Path:
        """``splits.csv``: each sample's split and group."""
        return self.root / SPLITS_FILE

    @property
    def logs(self) -> Path:
        """Lightning's CSV logger folder."""
        return self.root / "logs"

    @property
    def metrics_csv(self) -> Path:
        """The training curves, ``logs/metrics.csv``."""
        return self.logs / "metrics.csv"

    @property
    def tensorboard(self) -> Path:
        """TensorBoard event files."""
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        """Best and last Lightning checkpoints."""
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        """The checkpoint ``--resume`` continues from."""
        return self.checkpoints / "last.ckpt"

    @property
    def model(self) -> Path:
        """The model folder of the best checkpoint."""
        return self.root / "model"

    @property
    def test(self) -> Path:
        """Evaluation on the held-out test split."""
        return self.root / "test"

    @property
    def test_adapted(self) -> Path:
        """Evaluation on the test split with batch norm adapted to each source (``--adapt-bn``)."""
        return self.root / "test-adapted"

    def external(self, data: str | Path) -> Path:
        """Evaluation on another dataset (``--test-data``)."""
        return self.root / f"test-{Path(data).name}"

    @property
    def metrics_json(self) -> Path:
        """Every evaluation's metrics."""
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        """A copy of the test split's report."""
        return self.root / "report.html"

    def curves(self) -> Path | None:
        """``logs/metrics.csv`` when training wrote it, for the reports' training curves."""
        return self.metrics_csv if self.metrics_csv.is_file() else None

    def is_empty(self) -> bool:
        """True when the folder does not exist or holds nothing."""
        return not self.root.exists() or not any(self.root.iterdir())
