"""A BraTS recipe trains on the modalities every case has; a case lacking one the others
have is a one-line error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor.brats.modalities import modalities_for_data
from braintumor.cli.main import app
from braintumor.config import load_recipe
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from cli_support import assert_one_line_error

runner = CliRunner()
RECIPE = ["t1", "t1ce", "t2", "flair"]


def _case(name: str, *modalities: str) -> Sample:
    files = {m: f"{name}/{m}.nii.gz" for m in (*modalities, "brainmask")}
    return Sample(id=name, image=f"{name}/", modalities=files)


def test_all_modalities_present_changes_nothing() -> None:
    assert modalities_for_data(RECIPE, [_case("a", *RECIPE), _case("b", *RECIPE)]) == (RECIPE, "")


def test_the_modalities_every_case_has_are_kept_in_recipe_order() -> None:
    chosen, note = modalities_for_data(RECIPE, [_case("a", "flair", "t1ce")] * 2)
    assert chosen == ["t1ce", "flair"]
    assert (
        note == "the data has no t1, t2: training on t1ce, flair (2 of the recipe's 4 modalities)"
    )


def test_a_case_lacking_what_the_others_have_is_an_error() -> None:
    cases = [_case("a", "flair", "t1ce"), _case("b", "flair"), _case("c", "flair", "t1ce")]
    with pytest.raises(DataError, match=r"case b has no t1ce \(it has flair; 2 other cases"):
        modalities_for_data(RECIPE, cases)


def test_no_modality_in_common_is_an_error() -> None:
    with pytest.raises(DataError, match="no case has any of the recipe's modalities"):
        modalities_for_data(["t1", "t2"], [_case("a", "flair")])


@pytest.mark.realdata
def test_shared_brats2013_trains_on_flair_and_t1ce(shared_data: Path) -> None:
    from braintumor.brats.modalities import fit_recipe_modalities
    from braintumor.data.layouts import detect_layout

    layout = detect_layout(shared_data / "brats2013-4cases")
    recipe, note = fit_recipe_modalities(load_recipe("fast-cpu-brats"), layout.samples)
    assert recipe.extra.modalities == ["t1ce", "flair"] and recipe.in_channels == 2
    assert "no t1, t2" in note


@pytest.mark.realdata
def test_real_case_without_flair_fails_before_any_run_folder(shared_data, tmp_path) -> None:
    data = tmp_path / "brats"
    source = shared_data / "brats2013-4cases"
    for case in sorted(source.iterdir())[:2]:
        shutil.copytree(case, data / case.name)
    lacking = sorted(data.iterdir())[1]
    (lacking / "Flair_subtrMeanDivStd.nii.gz").unlink()
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "fast-cpu-brats", "--data", str(data), "--run-dir", str(run)]
    )
    assert_one_line_error(result, f"case {lacking.name} has no flair")
    assert not run.exists()
