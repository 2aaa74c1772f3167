"""Ensemble model folders: several trained networks averaged into one model folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.errors import ModelFormatError
from braintumor.explain import choose_layer, gradcam
from braintumor.inference.ood import feature_layer
from braintumor.inference.predictor import Predictor
from braintumor.io import read_image
from braintumor.models.combine import combine_model_dirs
from braintumor.models.ensemble import Ensemble
from braintumor.models.folder import INFO_FILE, load_model_dir, save_model_dir
from braintumor.models.ood_stats import OODStats
from cli_support import assert_one_line_error
from model_support import save_untrained

SIZE = 32
CLASSES = ["no_tumor", "tumor"]
ARGS = {"widths": [8, 8, 8, 8]}
FINGERPRINT = {"layout": "class-folders", "ids_sha256": "ab" * 32}
runner = CliRunner()


def _member(folder: Path, seed: int, **info) -> Path:
    """An untrained seeded small residual classifier, as a model folder trained on FINGERPRINT."""
    info.setdefault("data_fingerprint", FINGERPRINT)
    info.setdefault("recipe", {"name": "fast-cpu-binary", "seed": seed})
    return save_untrained(
        folder, "classify", "small-resnet", CLASSES, ARGS, image_size=SIZE, seed=seed, **info
    )


def _with_ood(folder: Path) -> OODStats:
    """Give a model folder out-of-distribution statistics on its own feature layer."""
    loaded = load_model_dir(folder)
    layer = feature_layer(loaded.model, True, 1, SIZE)
    dim = loaded.model.get_submodule(layer).in_features
    rng = np.random.default_rng(0)
    stats = OODStats(
        method="mahalanobis",
        layer=layer,
        at_input=True,
        means=rng.normal(size=(2, dim)).astype(np.float32),
        precision=np.eye(dim, dtype=np.float32),
        thresholds={"mahalanobis": 5.0},
    )
    save_model_dir(loaded.model, loaded.info, folder, ood=stats)
    return stats


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Six grey PNG slices with a bright disc of varying size."""
    folder = tmp_path / "slices"
    folder.mkdir()
    yy, xx = np.mgrid[:48, :48]
    for k in range(6):
        disc = ((yy - 24) ** 2 + (xx - 20 - k) ** 2 < (4 + 2 * k) ** 2) * 150
        Image.fromarray((40 + disc).astype(np.uint8)).save(folder / f"slice{k}.png")
    return folder


def test_output_is_the_mean_of_the_members_logits() -> None:
    torch.manual_seed(0)
    members = [torch.nn.Conv2d(1, 2, 3, padding=1) for _ in range(3)]
    x = torch.randn(2, 1, 8, 8)
    expected = torch.stack([m(x) for m in members]).mean(0)
    torch.testing.assert_close(Ensemble(members)(x), expected)
    with pytest.raises(ValueError, match="at least two"):
        Ensemble(members[:1])


def test_folder_round_trip_averages_the_loaded_members(tmp_path: Path) -> None:
    folders = [_member(tmp_path / f"m{seed}", seed) for seed in (0, 1, 2)]
    combined = combine_model_dirs(folders, tmp_path / "ens")
    assert combined.members == 3 and combined.notes[-1].endswith("neither has this")
    loaded = load_model_dir(combined.folder)
    assert isinstance(loaded.model, Ensemble) and loaded.info.members == 3
    meta = json.loads((combined.folder / INFO_FILE).read_text())
    assert meta["format_version"] == 2 and meta["members"] == 3
    assert [m["seed"] for m in meta["metrics"]["members"]] == [0, 1, 2]
    assert meta["name"] == "ens"
    in_run = combine_model_dirs(folders[:2], tmp_path / "my-run" / "model").folder
    assert load_model_dir(in_run).info.name == "my-run"  # named as training names a run's model
    x = torch.randn(4, 1, SIZE, SIZE)
    with torch.no_grad():
        singles = [load_model_dir(f).model(x) for f in folders]
        torch.testing.assert_close(loaded.model(x), torch.stack(singles).mean(0))
        # the members differ, so the mean is not any one of them
        assert not torch.allclose(singles[0], singles[1])


def test_ood_score_is_the_first_members(tmp_path: Path, images: Path) -> None:
    first, second = _member(tmp_path / "a", 0), _member(tmp_path / "b", 1)
    stats = _with_ood(first)
    ens = combine_model_dirs([first, second], tmp_path / "ens").folder
    loaded = load_model_dir(ens)
    assert loaded.ood is not None and loaded.ood.layer == "members.0." + stats.layer
    slices = [read_image(p) for p in sorted(images.glob("*.png"))]
    probs_one, scores_one = Predictor(load_model_dir(first), batch_size=4).classify_scored(slices)
    probs_ens, scores_ens = Predictor(loaded, batch_size=4).classify_scored(slices)
    assert scores_one is not None and scores_ens is not None
    np.testing.assert_allclose(scores_ens, scores_one, rtol=1e-4, atol=1e-4)
    assert not np.allclose(probs_ens, probs_one, atol=1e-4)


def test_gradcam_explains_through_the_first_member(tmp_path: Path) -> None:
    folders = [_member(tmp_path / f"m{seed}", seed) for seed in (0, 1)]
    loaded = load_model_dir(combine_model_dirs(folders, tmp_path / "ens").folder)
    layer, tokens = choose_layer(loaded.model, loaded.info.architecture)
    single, _ = choose_layer(load_model_dir(folders[0]).model, loaded.info.architecture)
    assert layer == "members.0." + single and not tokens
    heat = gradcam(loaded, torch.randn(1, 1, SIZE, SIZE), target_class=1)
    assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all() and heat.max() <= 1.0


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"class_names": ["healthy", "tumour"]}, "class_names"),
        ({"image_size": 64}, "image_size"),
        ({"data_fingerprint": {"layout": "class-folders", "ids_sha256": "cd" * 32}}, "other data"),
    ],
)
def test_members_that_do_not_fit_are_refused(tmp_path: Path, change: dict, fragment: str) -> None:
    first = _member(tmp_path / "a", 0)
    other = tmp_path / "b"
    _member(other, 1)
    meta = json.loads((other / INFO_FILE).read_text()) | change
    (other / INFO_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match=fragment) as error:
        combine_model_dirs([first, other], tmp_path / "ens")
    assert str(other) in str(error.value)
    assert not (tmp_path / "ens").exists()


def test_nested_single_and_clobbering_ensembles_are_refused(tmp_path: Path) -> None:
    a, b = _member(tmp_path / "a", 0), _member(tmp_path / "b", 1)
    with pytest.raises(ModelFormatError, match="at least two"):
        combine_model_dirs([a], tmp_path / "ens")
    ens = combine_model_dirs([a, b], tmp_path / "ens").folder
    with pytest.raises(ModelFormatError, match="already an ensemble"):
        combine_model_dirs([ens, a], tmp_path / "ens2")
    data = tmp_path / "my-data"
    data.mkdir()
    (data / "keep.txt").write_text("not a model")
    with pytest.raises(ModelFormatError, match="not a model folder"):
        combine_model_dirs([a, b], data)
    assert (data / "keep.txt").read_text() == "not a model"


def test_a_bad_member_count_in_model_json_is_refused(tmp_path: Path) -> None:
    folder = _member(tmp_path / "a", 0)
    meta = json.loads((folder / INFO_FILE).read_text()) | {"members": "three"}
    (folder / INFO_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="members must be a whole number"):
        load_model_dir(folder)


def test_cli_builds_an_ensemble_that_predict_uses(tmp_path: Path, images: Path) -> None:
    a, b = _member(tmp_path / "a", 0), _member(tmp_path / "b", 1, inference={"tta": True})
    command = ["models", "ensemble", str(a), str(b), "--out", str(tmp_path / "e")]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "an ensemble of 2 models" in said and "first member's are kept" in said
    out = tmp_path / "preds"
    result = runner.invoke(app, ["predict", str(tmp_path / "e"), str(images), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 7  # a header and the six slices
    missing = runner.invoke(app, ["models", "ensemble", str(a), str(tmp_path / "nope"), "-o", "x"])
    assert_one_line_error(missing, "nope")


def _run_with_splits(root: Path, seed: int, sides: dict[str, str]) -> Path:
    """A member inside a run folder whose splits.csv assigns ``sides`` (id -> split)."""
    root.mkdir()
    rows = ["id,split,group", *(f"{i},{side},{i}" for i, side in sides.items())]
    (root / "splits.csv").write_text("\n".join(rows) + "\n")
    return _member(root / "model", seed)


def test_test_images_another_member_trained_on_are_counted(tmp_path: Path) -> None:
    a = _run_with_splits(tmp_path / "r0", 0, {"x1": "train", "x2": "val", "x3": "test"})
    b = _run_with_splits(tmp_path / "r1", 1, {"x1": "test", "x2": "train", "x3": "train"})
    c = _run_with_splits(tmp_path / "r2", 2, {"x1": "train", "x2": "val", "x3": "test"})
    crossed = combine_model_dirs([a, b], tmp_path / "ab")
    assert any("2 test image(s)" in note for note in crossed.notes)
    info = json.loads((crossed.folder / INFO_FILE).read_text())
    assert info["metrics"]["test_images_trained_on"] == 2
    shared = combine_model_dirs([a, c], tmp_path / "ac")  # one split, two seeds
    assert not any("test image" in note for note in shared.notes)
    info = json.loads((shared.folder / INFO_FILE).read_text())
    assert info["metrics"]["test_images_trained_on"] == 0


def test_only_differing_inference_settings_are_noted(tmp_path: Path) -> None:
    chosen = {"tta": True, "keep_largest": False, "chosen_on": "validation mean Dice"}
    a = _member(tmp_path / "a", 0, inference={**chosen, "val_dice": {"tta": 0.81}, "n_val": 9})
    b = _member(tmp_path / "b", 1, inference={**chosen, "val_dice": {"tta": 0.78}, "n_val": 9})
    c = _member(tmp_path / "c", 2, inference={**chosen, "tta": False})
    same = combine_model_dirs([a, b], tmp_path / "ab").notes
    assert not any("inference settings" in note for note in same)
    differ = combine_model_dirs([a, c], tmp_path / "ac").notes
    assert any(note.startswith("c: its inference settings differ") for note in differ)
