"""LGG: channel choice, per-patient volume scores, tumour-weighted sampling, bad slice files."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from braintumor.cli.data import data_app
from braintumor.config import load_recipe
from braintumor.data.audit import AuditReport, DuplicateGroup, check_samples
from braintumor.data.cross_sources import cross_source_report
from braintumor.data.layouts import DetectedLayout, detect_layout
from braintumor.data.lgg import lgg_preprocess
from braintumor.data.near_confirm import (
    MIN_CORRELATION,
    confirm_near_duplicates,
    links_that_stand,
)
from braintumor.data.preprocess import PreprocessSpec, prepare_slice
from braintumor.data.samples import Sample
from braintumor.data.splits import layout_split_groups
from braintumor.errors import DataError, RecipeError
from braintumor.metrics.patient import detection_scores, patient_rows, slice_counts
from braintumor.training.datamodule import tumour_weights
from braintumor.training.setup import preprocess_spec

PATIENT = "TCGA_CS_4941_19960909"


def _three_sequences() -> np.ndarray:
    image = np.zeros((16, 16, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 200, 90
    image[4:8, 4:8, 1] = 50  # FLAIR has its own structure
    return image


def test_channels_choose_flair_and_grey_never_mixes() -> None:
    image = _three_sequences()
    flair = prepare_slice(image, PreprocessSpec(image_size=16, color="keep", channels=[1]))
    assert flair.shape == (1, 16, 16) and np.array_equal(flair[0], image[..., 1])
    grey = prepare_slice(image, PreprocessSpec(image_size=16, color="grey", channels=[1]))
    assert np.array_equal(grey, flair)
    kept = prepare_slice(image, PreprocessSpec(image_size=16, color="keep", in_channels=3))
    assert np.array_equal(kept.transpose(1, 2, 0), image)
    with pytest.raises(DataError, match="channels"):
        prepare_slice(image, PreprocessSpec(image_size=16, color="keep", channels=[3]))


def test_grey_recipe_on_lgg_takes_flair_and_keep_recipes_are_untouched() -> None:
    fitted, note = lgg_preprocess("lgg-kaggle-3m", {"color": "grey"})
    assert fitted["channels"] == [1] and "FLAIR" in note
    assert lgg_preprocess("lgg-kaggle-3m", {"color": "keep"}) == ({"color": "keep"}, "")
    assert lgg_preprocess("figshare-mat", {"color": "grey"}) == ({"color": "grey"}, "")
    chosen = {"color": "grey", "channels": [0]}
    assert lgg_preprocess("lgg-kaggle-3m", chosen) == (chosen, "")


def test_keep_channels_must_match_in_channels() -> None:
    recipe = load_recipe("fast-cpu-lgg", ["preprocess.channels=[1]"])
    with pytest.raises(RecipeError, match="in_channels=1"):
        preprocess_spec(recipe)
    recipe = load_recipe("fast-cpu-lgg", ["preprocess.channels=[1]", "in_channels=1"])
    assert preprocess_spec(recipe).channels == [1]


def test_patient_dice_is_the_volume_dice_not_the_mean_of_slices() -> None:
    big_truth = np.zeros((10, 10), bool)
    big_truth[:, :5] = True  # 50 px, predicted exactly
    small_truth = np.zeros((10, 10), bool)
    small_truth[0, 0] = True  # 1 px, missed
    empty = np.zeros((10, 10), bool)
    rows = [
        slice_counts(big_truth, big_truth),
        slice_counts(empty, small_truth),
        slice_counts(empty, empty),
    ]
    (patient,) = patient_rows(rows, ["p"] * 3)
    assert patient["dice"] == pytest.approx(2 * 50 / (50 + 51))  # 0.990, not (1+0+1)/3
    assert patient["iou"] == pytest.approx(50 / 51)
    assert (patient["n_slices"], patient["tumour_slices"]) == (3, 2)
    (nothing,) = patient_rows([slice_counts(empty, empty)], ["q"])
    assert nothing["dice"] == 1.0  # DESIGN.md: both empty -> Dice 1


def test_detection_counts_slices_with_tumour() -> None:
    rows = [
        {"truth_px": 5, "predicted_px": 3},
        {"truth_px": 5, "predicted_px": 0},
        {"truth_px": 0, "predicted_px": 0},
        {"truth_px": 0, "predicted_px": 2},
        {"truth_px": 0, "predicted_px": 0},
    ]
    det = detection_scores(rows)
    assert det["sensitivity"] == 0.5 and det["specificity"] == pytest.approx(2 / 3)
    assert (det["tp"], det["fn"], det["tn"], det["fp"]) == (1, 1, 2, 1)


def test_tumour_weights_give_the_asked_share() -> None:
    masks = np.zeros((10, 4, 4), np.uint8)
    masks[:2, 0, 0] = 1  # 2 of 10 slices show tumour
    weights = tumour_weights(masks, 0.5)
    assert weights[:2].sum() / weights.sum() == pytest.approx(0.5)
    assert np.allclose(tumour_weights(np.zeros((3, 2, 2)), 0.5), 1.0)


def test_cross_patient_near_pairs_need_pixel_correlation(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    paths = {}
    for name, array in (("a", base), ("b", base // 2 + 10), ("c", rng.permutation(base))):
        paths[name] = tmp_path / f"{name}.tif"
        tifffile.imwrite(paths[name], array)
    samples = [Sample(id=n, image=str(p), group=f"patient-{n}") for n, p in paths.items()]
    report = AuditReport(root=str(tmp_path), n_samples=3, phash_threshold=6)
    report.near.groups = [DuplicateGroup(ids=["a", "b", "c"], labels=[], splits=[])]
    lgg = DetectedLayout("lgg-kaggle-3m", "segment", tmp_path, samples)
    confirmed = confirm_near_duplicates(report, lgg)
    assert [g.ids for g in confirmed.near.groups] == [["a", "b"]]  # b is a rescaled copy
    figshare = DetectedLayout("figshare-mat", "segment", tmp_path, samples)
    assert confirm_near_duplicates(report, figshare) is report


def test_multi_source_near_links_need_correlation_only_at_a_weak_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = {}
    for name in ("lgg/a", "fig/b", "fig/c", "lgg/d"):
        paths[name] = tmp_path / f"{name.replace('/', '-')}.tif"
        tifffile.imwrite(paths[name], rng.integers(0, 255, (64, 64), dtype=np.uint8))
    samples = [
        Sample(id=n, image=str(p), group=n, source=n.split("/")[0]) for n, p in paths.items()
    ]
    report = AuditReport(root=str(tmp_path), n_samples=4, phash_threshold=6)
    report.near.groups = [DuplicateGroup(ids=list(paths), labels=[], splits=[])]
    layout = DetectedLayout(
        "multi-source",
        "segment",
        tmp_path,
        samples,
        source_layouts={"lgg": "lgg-kaggle-3m", "fig": "figshare-mat"},
    )
    confirmed = confirm_near_duplicates(report, layout)
    # uncorrelated noise: only the link between the two strong-pHash samples stands
    assert [g.ids for g in confirmed.near.groups] == [["fig/b", "fig/c"]]
    # every split path groups through layout_split_groups, which applies the same rule
    groups = dict(zip(paths, layout_split_groups(layout, report), strict=True))
    assert groups["fig/b"] == groups["fig/c"]
    assert len({groups["lgg/a"], groups["lgg/d"], groups["fig/b"]}) == 3


def test_cross_source_audit_counts_lgg_pairs_only_where_pixels_confirm(tmp_path: Path) -> None:
    y, x = np.mgrid[0:128, 0:128]
    smooth = 120 + 80 * np.sin(x / 9.0) * np.cos(y / 13.0)
    noisy = smooth + np.random.default_rng(0).normal(0, 45, smooth.shape)  # same pHash, r~0.94
    arrays = {"lgg/a": smooth, "fig/b": smooth / 2 + 10, "fig/c": noisy}
    samples = []
    for name, array in arrays.items():
        path = tmp_path / f"{name.replace('/', '-')}.png"
        Image.fromarray(array.clip(0, 255).astype(np.uint8)).save(path)
        samples.append(Sample(id=name, image=str(path), group=name, source=name.split("/")[0]))
    results = check_samples(samples, tmp_path, workers=1, progress=False)
    raw = cross_source_report(samples, results)
    assert raw.near_matrix["fig"]["lgg"] == 2 and raw.unconfirmed_near_pairs == 0
    stand = partial(links_that_stand, samples=samples, weak={"lgg/a"}, threshold=MIN_CORRELATION)
    confirmed = cross_source_report(samples, results, keep_near=stand)
    assert confirmed.near_matrix["fig"]["lgg"] == 1  # the rescaled copy, not the noisy slice
    assert confirmed.unconfirmed_near_pairs == 1
    assert confirmed.near_matrix["fig"]["fig"] == 2  # two strong-pHash samples: pHash decides


def _slice(folder: Path, n: object, image: np.ndarray, mask: np.ndarray | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{folder.name}_{n}"
    tifffile.imwrite(f"{stem}.tif", image, photometric="rgb" if image.ndim == 3 else None)
    if mask is not None:
        tifffile.imwrite(f"{stem}_mask.tif", mask)


def test_bad_lgg_slices_are_listed_skips_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "kaggle_3m" / PATIENT
    rgb, mask = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    _slice(folder, 1, rgb, mask)  # good
    _slice(folder, 2, rgb, np.where(np.eye(8) > 0, 255, 0).astype(np.uint8))  # good, 0/255
    _slice(folder, 3, rgb, None)  # mask missing
    _slice(folder, 4, rgb, np.zeros((6, 8), np.uint8))  # mask of another size
    _slice(folder, 5, rgb, np.full((8, 8), 128, np.uint8))  # mask values
    _slice(folder, 6, np.zeros((8, 8, 4), np.uint8), mask)  # 4 channels
    _slice(folder, 7, np.zeros((8, 8, 3), np.uint16), mask)  # 16 bit
    _slice(folder, "x1", rgb, mask)  # non-numeric index
    layout = detect_layout(tmp_path)
    assert [Path(s.image).name for s in layout.samples] == [f"{PATIENT}_1.tif", f"{PATIENT}_2.tif"]
    notes = "\n".join(layout.notes)
    assert "skipped 7 slice files" in notes
    expected = {
        "no mask": f"{PATIENT}_3.tif",
        "is 6x8 but": f"{PATIENT}_4_mask.tif",
        "not 0/255 or 0/1": f"{PATIENT}_5_mask.tif",
        "4-channel": f"{PATIENT}_6.tif",
        "16-bit": f"{PATIENT}_7.tif",
        "'x1' is not a number": f"{PATIENT}_x1.tif",
    }
    lines = [line for line in layout.notes if line.startswith("  ")]
    for problem, name in expected.items():
        assert any(problem in line and name in line for line in lines), problem
    assert any("without an image" in line for line in lines)  # the x1 slice's mask


def test_lgg_audit_counts_near_groups_across_patients_only_where_pixels_confirm(
    tmp_path: Path,
) -> None:
    y, x = np.mgrid[0:128, 0:128]
    smooth = 120 + 80 * np.sin(x / 9.0) * np.cos(y / 13.0)
    noisy = smooth + np.random.default_rng(0).normal(0, 45, smooth.shape)  # same pHash, r~0.94
    mask = np.zeros((128, 128), np.uint8)
    for patient, grey in (("TCGA_CS_4941_19960909", smooth), ("TCGA_DU_5851_19950428", noisy)):
        rgb = np.repeat(grey.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
        _slice(tmp_path / "kaggle_3m" / patient, 1, rgb, mask)
    report = tmp_path / "audit.json"
    result = CliRunner().invoke(data_app, ["audit", str(tmp_path), "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "0 inside one patient" in result.output and "0 across patients" in result.output
    assert json.loads(report.read_text())["near"]["n_groups"] == 0  # pHash alone: 1 group
