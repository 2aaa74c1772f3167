"""Tumours of unknown type in a four-class run: accepted only when asked for, drawn from the
tumour types' share, trained with the likelihood of "one of the types", never scored."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.config import load_recipe
from braintumor.data.balance import source_class_weights
from braintumor.data.coarse_labels import coarse_members, fine_class_names
from braintumor.data.samples import Sample
from braintumor.data.sources import load_data
from braintumor.data.synth_sources import write_source_shift_datasets
from braintumor.errors import DataError
from braintumor.protocols.loso import default_test_sources, plan_fold
from braintumor.training.coarse_loss import COARSE_INDEX, CoarseLabelLoss

runner = CliRunner()


def _samples(cells: dict[tuple[str, str], int]) -> list[Sample]:
    return [
        Sample(id=f"{source}/{label}{i}", image=f"{label}{i}.png", label=label, source=source)
        for (source, label), n in cells.items()
        for i in range(n)
    ]


def test_generic_tumour_is_coarse_only_beside_tumour_types() -> None:
    assert coarse_members(["glioma", "tumor", "no_tumor"]) == {"tumor": ("glioma",)}
    assert coarse_members(["tumor", "no_tumor"]) == {}  # a binary run: tumor is its class
    samples = _samples({("a", "glioma"): 1, ("a", "pituitary"): 1, ("b", "tumor"): 2})
    assert fine_class_names(samples) == ["glioma", "pituitary"]


def test_coarse_loss_is_the_likelihood_of_any_member_type() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]], requires_grad=True)
    loss_fn = CoarseLabelLoss(torch.nn.CrossEntropyLoss(), members=[1, 2])
    coarse_only = loss_fn(logits[:1], torch.tensor([COARSE_INDEX]))
    probs = logits[0].detach().softmax(0)
    assert coarse_only.item() == pytest.approx(-math.log(probs[1] + probs[2]), rel=1e-5)
    # Typed rows keep the wrapped loss; the batch mean weighs every row alike.
    mixed = loss_fn(logits, torch.tensor([COARSE_INDEX, 2]))
    typed = torch.nn.functional.cross_entropy(logits[1:], torch.tensor([2]))
    assert mixed.item() == pytest.approx((coarse_only.item() + typed.item()) / 2, rel=1e-5)
    coarse_only.backward()
    assert logits.grad is not None and logits.grad[0, 0] > 0  # pushes "not a member" down


def test_coarse_tumours_draw_from_the_tumour_types_share() -> None:
    samples = _samples(
        {("a", "glioma"): 10, ("a", "meningioma"): 30, ("a", "no_tumor"): 20, ("b", "tumor"): 40}
    )
    weights = source_class_weights(samples)
    share: dict[str, float] = {}
    for sample, weight in zip(samples, weights, strict=True):
        share[str(sample.label)] = share.get(str(sample.label), 0.0) + weight / weights.sum()
    # no_tumor keeps the third it has without the coarse images; the rest is split evenly.
    assert share["no_tumor"] == pytest.approx(1 / 3)
    for label in ("glioma", "meningioma", "tumor"):
        assert share[label] == pytest.approx(2 / 9)


@pytest.fixture(scope="module")
def typed_and_yes_no(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A typed source (glioma / meningioma / no tumour) and a yes/no source of another look."""
    out = tmp_path_factory.mktemp("coarse")
    (typed,) = write_source_shift_datasets(
        out / "typed", ["reference"], n_per_class=80, size=64, seed=0,
        kinds=("glioma", "meningioma", "no_tumor"),
    )  # fmt: skip
    (yes_no,) = write_source_shift_datasets(
        out / "yn", ["dark"], n_per_class=40, size=64, seed=1, kinds=("glioma", "no_tumor")
    )
    (yes_no / "glioma").rename(yes_no / "yes")
    (yes_no / "no_tumor").rename(yes_no / "no")
    return typed, yes_no


def test_a_yes_no_source_keeps_its_tumours_only_when_asked(
    typed_and_yes_no: tuple[Path, Path],
) -> None:
    typed, yes_no = typed_and_yes_no
    with pytest.raises(DataError, match=r"yn: label 'tumor' .*NAME=PATH:no_tumor,tumor"):
        load_data([f"typed={typed}", f"yn={yes_no}"])
    layout = load_data([f"typed={typed}", f"yn={yes_no}:no_tumor,tumor"])
    labels = {s.label for s in layout.samples if s.source == "yn"}
    assert labels == {"no_tumor", "tumor"}


@pytest.mark.slow
def test_coarse_tumours_train_and_are_never_scored(
    typed_and_yes_no: tuple[Path, Path], tmp_path: Path
) -> None:
    typed, yes_no = typed_and_yes_no
    run_dir = tmp_path / "run"
    args = ["train", "plain-cpu-4class", "--data", f"typed={typed}"]
    args += ["--data", f"yn={yes_no}:no_tumor,tumor", "--run-dir", str(run_dir)]
    for item in ("image_size=64", "max_epochs=20", "batch_size=16", "model_args.layers=[1,1,1,1]"):
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with (run_dir / "splits.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    coarse_sides = {r["split"] for r in rows if r["id"].startswith("yn/yes/")}
    assert coarse_sides <= {"train", "excluded"} and "train" in coarse_sides
    model = json.loads((run_dir / "model" / "model.json").read_text())
    assert model["class_names"] == ["glioma", "meningioma", "no_tumor"]
    draws = model["data_fingerprint"]["sampling"]["draw_share"]
    assert draws["yn"]["tumor"] > 0
    metrics = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert metrics["n"] == sum(1 for r in rows if r["split"] == "test")
    # Learning happened: the loss fell, and on the test split (about 40 slices, so the bounds
    # leave room for its noise) tumour is told from no tumour, which both sources teach, and
    # the three typed classes beat chance (1/3).
    with (run_dir / "logs" / "metrics.csv").open() as handle:
        losses = [float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")]
    assert losses[-1] < 0.85 * losses[0]
    assert metrics["per_class"]["no_tumor"]["roc_auc"] > 0.7
    assert metrics["balanced_accuracy"] > 0.5


def test_a_source_of_untyped_tumours_is_never_held_out_for_scoring() -> None:
    typed = {("a", "glioma"): 2, ("a", "no_tumor"): 2, ("c", "glioma"): 2, ("c", "no_tumor"): 2}
    samples = _samples({**typed, ("b", "no_tumor"): 2, ("b", "tumor"): 2})
    assert default_test_sources(samples) == ["a", "c"]


def test_a_leave_one_source_out_fold_validates_on_typed_samples_only() -> None:
    typed = {("a", "glioma"): 20, ("a", "no_tumor"): 20, ("c", "glioma"): 20, ("c", "no_tumor"): 20}
    samples = _samples({**typed, ("b", "no_tumor"): 20, ("b", "tumor"): 40})
    groups = [s.id for s in samples]
    fold = plan_fold(samples, groups, ["c"], [], load_recipe("fast-cpu-4class"))
    sides = {side for s, side in zip(samples, fold.assignment, strict=True) if s.label == "tumor"}
    assert "train" in sides and sides <= {"train", "excluded"}
    assert fold.assignment.count("val") > 0
