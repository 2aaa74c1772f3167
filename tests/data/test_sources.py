"""Several datasets as one: NAME=PATH parsing, class harmonisation, source tags, balancing,
cross-source duplicates, leave-one-source-out folds and per-source metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from braintumor.cli.data import data_app
from braintumor.config import load_recipe
from braintumor.data.audit import check_samples
from braintumor.data.balance import contributions, sampling_plan, shortcut_warnings
from braintumor.data.cross_sources import cross_source_report, labels_conflict
from braintumor.data.layouts_base import SEGMENT_DATA
from braintumor.data.sources import load_data, parse_source, parse_sources
from braintumor.data.synth_sources import write_source_shift_datasets
from braintumor.data.synthetic import write_classification_dataset, write_segmentation_dataset
from braintumor.errors import DataError
from braintumor.metrics.per_source import mean_and_worst, source_metrics
from braintumor.protocols import PROTOCOLS
from braintumor.protocols.loso import default_test_sources, plan_fold, source_groups

runner = CliRunner()


def _yes_no(root: Path, n: int = 4, seed: int = 5) -> Path:
    """A small yes/no set: tumour phantoms in yes/, healthy ones in no/."""
    tmp = write_classification_dataset(root / "_tmp", n_per_class=n, size=64, seed=seed)
    for kind, folder in (("glioma", "yes"), ("no_tumor", "no")):
        shutil.copytree(tmp / kind, root / "yesno" / folder)
    shutil.rmtree(tmp)
    return root / "yesno"


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    four = write_classification_dataset(root / "four", n_per_class=4, size=64, seed=1)
    # Kaggle-style folder names, harmonised by the synonyms.
    (four / "glioma").rename(four / "glioma_tumor")
    (four / "no_tumor").rename(four / "notumor")
    seg = write_segmentation_dataset(root / "seg", n=6, size=64, seed=2)
    lgg_like = write_segmentation_dataset(
        root / "masks-only", n=6, size=64, seed=3, empty_fraction=0.5
    )
    (lgg_like / "labels.csv").unlink()
    return {"four": four, "seg": seg, "masks": lgg_like, "yesno": _yes_no(root)}


def test_parse_name_path_and_class_filter(tmp_path: Path) -> None:
    plain = parse_source(str(tmp_path))
    assert (plain.name, plain.path, plain.only, plain.named) == (tmp_path.name, tmp_path, (), False)
    named = parse_source(f"site-a={tmp_path}")
    assert (named.name, named.path, named.named) == ("site-a", tmp_path, True)
    filtered = parse_source(f"b={tmp_path}:no,notumor")
    assert (filtered.name, filtered.path, filtered.only) == (
        "b",
        tmp_path,
        ("no_tumor", "no_tumor"),
    )
    assert parse_source(f"{tmp_path}:yes").only == ("tumor",)
    # A folder whose name holds '=' or ':' is taken as it is.
    odd = tmp_path / "a=b:c"
    odd.mkdir()
    assert (parse_source(str(odd)).path, parse_source(str(odd)).name) == (odd, "a_b_c")
    with pytest.raises(DataError, match="two sources are named x"):
        parse_sources([f"x={tmp_path}", f"x={tmp_path}"])


def test_sources_are_tagged_prefixed_and_harmonised(sets: dict[str, Path]) -> None:
    layout = load_data([str(sets["four"]), f"seg={sets['seg']}"])
    assert layout.name == "multi-source"
    assert layout.classes == ["glioma", "meningioma", "no_tumor", "pituitary"]
    assert {s.source for s in layout.samples} == {"four", "seg"}
    assert all(s.id.startswith(f"{s.source}/") for s in layout.samples)
    assert len({s.id for s in layout.samples}) == len(layout.samples)
    assert contributions(layout.samples)["seg"] == {"glioma": 2, "meningioma": 2, "pituitary": 2}


def test_numbered_neighbours_are_grouped_within_their_source(
    sets: dict[str, Path], tmp_path: Path
) -> None:
    seg = write_segmentation_dataset(tmp_path / "fig", n=4, size=64, seed=4)
    (seg / "labels.csv").write_text(
        "number,label\n" + "".join(f"{i:04d},glioma\n" for i in range(1, 5))
    )
    layout = load_data([str(sets["four"]), f"fig={seg}"])
    groups = {s.group for s in layout.samples if s.source == "fig"}
    assert groups == {"fig:num1"}


def test_one_bare_folder_keeps_its_ids(sets: dict[str, Path]) -> None:
    layout = load_data(sets["four"])
    assert layout.name == "class-folders"
    assert all(not s.id.startswith("four/") for s in layout.samples)
    assert {s.source for s in layout.samples} == {"four"}


def test_binary_recipe_maps_tumour_types_and_masks(sets: dict[str, Path]) -> None:
    classes = load_recipe("fast-cpu-binary").classes
    layout = load_data([str(sets["four"]), str(sets["yesno"]), str(sets["masks"])], classes=classes)
    table = contributions(layout.samples)
    assert table["four"] == {"no_tumor": 4, "tumor": 12}
    assert table["yesno"] == {"no_tumor": 4, "tumor": 4}
    # No labels.csv: tumour = non-empty mask.
    assert table["masks-only"] == {"no_tumor": 3, "tumor": 3}


def test_unmappable_classes_are_one_line_errors(sets: dict[str, Path]) -> None:
    with pytest.raises(DataError) as error:
        load_data([str(sets["four"]), str(sets["yesno"])])
    message = str(error.value)
    assert "source yesno" in message and "'tumor'" in message and "\n" not in message
    with pytest.raises(DataError, match=r"labels \['glioma', 'meningioma', 'pituitary'\]"):
        load_data([str(sets["four"]), str(sets["yesno"])], classes=["no_tumor", "cat"])
    with pytest.raises(DataError, match="no sample of class pituitary"):
        load_data([str(sets["four"]), f"{sets['yesno']}:pituitary"])


def test_a_class_filter_drops_labels_the_classes_cannot_name(sets: dict[str, Path]) -> None:
    four = ["glioma", "meningioma", "no_tumor", "pituitary"]
    # yesno's "tumor" has no four-class name, but the filter keeps only its no_tumor images:
    # how a four-class model is evaluated on a yes/no source's healthy slices.
    layout = load_data([str(sets["four"]), f"{sets['yesno']}:no_tumor"], classes=four)
    assert contributions(layout.samples)["yesno"] == {"no_tumor": 4}
    with pytest.raises(DataError, match=r"labels \['tumor'\] cannot be mapped"):
        load_data([str(sets["four"]), str(sets["yesno"])], classes=four)


def test_partly_labelled_source_is_an_error(tmp_path: Path) -> None:
    seg = write_segmentation_dataset(tmp_path / "part", n=4, size=64, seed=4)
    (seg / "labels.csv").write_text("number,label\n0001,glioma\n0002,pituitary\n")
    with pytest.raises(DataError, match=r"source part .*2 samples have no class"):
        load_data([str(seg), f"x={seg}"])


def test_a_filter_entry_renames_a_class(sets: dict[str, Path], tmp_path: Path) -> None:
    spec = parse_source(f"lgg={sets['masks']}:yes=glioma,no")
    assert (spec.only, spec.rename) == (("glioma", "no_tumor"), (("tumor", "glioma"),))
    # Slices labelled by their masks (tumour / no tumour) join a four-class run as gliomas.
    layout = load_data([str(sets["four"]), f"lgg={sets['masks']}:tumor=glioma,no_tumor"])
    assert contributions(layout.samples)["lgg"] == {"glioma": 3, "no_tumor": 3}
    assert layout.classes == ["glioma", "meningioma", "no_tumor", "pituitary"]
    with pytest.raises(DataError, match="'tumor=' is not OLD=NEW"):
        parse_source(f"{tmp_path}x:tumor=")


def test_class_filter_takes_only_the_no_images(sets: dict[str, Path]) -> None:
    layout = load_data([str(sets["four"]), f"yn={sets['yesno']}:no"])
    table = contributions(layout.samples)
    assert table["yn"] == {"no_tumor": 4}
    assert layout.classes == ["glioma", "meningioma", "no_tumor", "pituitary"]


def test_balanced_draws_and_shortcut_warning(sets: dict[str, Path]) -> None:
    layout = load_data([str(sets["four"]), f"yn={sets['yesno']}:no", f"seg={sets['seg']}"])
    weights, record = sampling_plan(layout.samples, "auto")
    assert weights is not None and abs(weights.sum() - len(layout.samples)) < 1e-6
    share = record["draw_share"]
    per_class = {c: sum(cells.get(c, 0.0) for cells in share.values()) for c in layout.classes}
    assert all(abs(v - 0.25) < 1e-3 for v in per_class.values()), per_class
    assert abs(share["four"]["no_tumor"] - share["yn"]["no_tumor"]) < 1e-3
    assert record["mode"] == "source x class balanced" and record["warnings"] == []
    warnings = shortcut_warnings({"a": {"glioma": 3, "no_tumor": 0}, "b": {"no_tumor": 5}})
    assert [w.split(":")[0] for w in warnings] == [
        "class glioma comes only from source a",
        "class no_tumor comes only from source b",  # a count of 0 provides nothing
    ]
    assert "shortcut risk" in warnings[0]
    one = load_data(sets["four"])
    assert sampling_plan(one.samples, "auto")[0] is None


def _copy_between(a: Path, b: Path, files: list[Path], into: str) -> list[Path]:
    copies = []
    for k, path in enumerate(files):
        dest = b / into / f"copy{k}{path.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        copies.append(dest)
    return copies


def test_cross_source_copies_are_counted_and_grouped(sets: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(sets["yesno"], other)
    pituitary = sorted((sets["four"] / "pituitary").iterdir())[:2]
    _copy_between(sets["four"], other, pituitary, "yes")  # same label family: no conflict
    healthy = sorted((sets["four"] / "meningioma").iterdir())[:1]
    copied = _copy_between(sets["four"], other, healthy, "no")  # a tumour filed as "no"
    # A near copy: the same slice re-encoded as JPEG.
    Image.open(sorted((sets["four"] / "glioma_tumor").iterdir())[0]).save(
        other / "yes" / "near.jpg", quality=90
    )
    layout = load_data([f"a={sets['four']}", f"b={other}"], task=None)
    results = check_samples(layout.samples, layout.root, workers=1, progress=False)
    report = cross_source_report(layout.samples, results)
    assert report.exact_matrix["a"]["b"] == 3 and report.exact_matrix["b"]["a"] == 3
    assert report.near_matrix["a"]["b"] >= 4
    assert report.cross_source_groups >= 4
    conflicts = {(c["label_a"], c["label_b"]): c["pairs"] for c in report.label_conflicts}
    assert conflicts.get(("meningioma", "no_tumor")) == 1, report.label_conflicts
    assert copied[0].name in report.label_conflicts[0]["example"]
    json.loads(report.to_json())


def test_labels_conflict_rules() -> None:
    assert not labels_conflict("tumor", "glioma")
    assert labels_conflict("tumor", "no_tumor")
    assert labels_conflict("glioma", "pituitary")
    assert not labels_conflict(None, "glioma")


def test_loso_folds_remove_copies_of_the_held_out_source(
    sets: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    shutil.copytree(sets["four"], other)  # every image of 'b' is a copy of one in 'a'
    c = write_classification_dataset(tmp_path / "c", n_per_class=8, size=64, seed=9)
    d = write_classification_dataset(tmp_path / "d", n_per_class=8, size=64, seed=10)
    layout = load_data([f"a={sets['four']}", f"b={other}", f"c={c}", f"d={d}"])
    recipe = load_recipe("fast-cpu-4class")
    groups = source_groups(layout, recipe)
    assert default_test_sources(layout.samples) == ["a", "b", "c", "d"]
    fold = plan_fold(layout.samples, groups, ["a"], [], recipe)
    assert fold.excluded == {"b": 16}
    sides = {s.source: set() for s in layout.samples}
    for sample, side in zip(layout.samples, fold.assignment, strict=True):
        sides[sample.source].add(side)
    assert sides == {"a": {"test"}, "b": {"excluded"}, "c": {"train", "val"}, "d": {"train", "val"}}
    with_val = plan_fold(layout.samples, groups, ["c"], ["b"], recipe)
    assert with_val.excluded == {"a": 16}  # copies of the validation source leave training
    assert "val" in {
        side for s, side in zip(layout.samples, with_val.assignment, strict=True) if s.source == "b"
    }
    with pytest.raises(DataError, match="no source named e"):
        plan_fold(layout.samples, groups, ["e"], [], recipe)


def test_segmenter_folds_hold_out_every_source_whatever_its_labels(tmp_path: Path) -> None:
    labelled = write_segmentation_dataset(tmp_path / "labelled", n=12, size=64, seed=1)
    unlabelled = write_segmentation_dataset(tmp_path / "unlabelled", n=12, size=64, seed=2)
    (unlabelled / "labels.csv").unlink()  # masks only, as LGG's slices
    layout = load_data([str(labelled), str(unlabelled)], SEGMENT_DATA)
    recipe = load_recipe("fast-cpu-seg")
    groups = source_groups(layout, recipe)
    assert default_test_sources(layout.samples, SEGMENT_DATA) == ["labelled", "unlabelled"]
    # the classes of the held-out slices are not in training: no matter for masks
    fold = plan_fold(layout.samples, groups, ["labelled"], [], recipe)
    assert fold.assignment.count("test") == 12
    with pytest.raises(DataError, match="has no training sample"):
        plan_fold(layout.samples, groups, ["labelled"], [], load_recipe("fast-cpu-4class"))


def test_protocol_registry() -> None:
    assert PROTOCOLS["loso"].__name__ == "run_loso"


def test_source_metrics_values() -> None:
    names = ["glioma", "no_tumor", "tumor"]
    y = np.array([0, 0, 2, 1, 1])
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.1, 0.8, 0.1], [0.5, 0.4, 0.1]]
    )
    m = source_metrics(y, probs, names, n_bootstrap=200)
    assert m["n"] == 5 and m["classes"] == {"glioma": 2, "no_tumor": 2, "tumor": 1}
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(1 / 2)
    assert m["tumor_auc"] == pytest.approx(5 / 6)
    lo, hi = m["ci95"]["balanced_accuracy"]
    assert lo <= m["balanced_accuracy"] <= hi
    only_tumour = source_metrics(np.array([0, 0]), probs[:2], names, n_bootstrap=10)
    assert only_tumour["tumor_auc"] is None and only_tumour["specificity"] is None
    summary = mean_and_worst({"x": m, "y": only_tumour})
    assert summary["sensitivity"]["worst_source"] == "y"
    assert "tumor_auc" in summary and summary["tumor_auc"]["n_sources"] == 1


def test_source_shift_phantoms_differ_by_source(tmp_path: Path) -> None:
    folders = write_source_shift_datasets(tmp_path, ["reference", "dark"], n_per_class=2, size=64)
    assert [f.name for f in folders] == ["source-1-reference", "source-2-dark"]
    mean = [
        np.mean([np.asarray(Image.open(p)).mean() for p in sorted(f.rglob("*.png"))])
        for f in folders
    ]
    assert mean[1] < 0.7 * mean[0], mean
    result = runner.invoke(
        data_app,
        [
            "synth",
            str(tmp_path / "cli"),
            "--task",
            "classify",
            "--source-shift",
            "3",
            "--n",
            "1",
            "--size",
            "48",
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "cli").iterdir())) == 3


def test_data_audit_and_split_of_several_sources(sets: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(sets["four"], other)
    out = tmp_path / "audit.json"
    result = runner.invoke(
        data_app,
        [
            "audit",
            f"a={sets['four']}",
            f"b={other}",
            "--json",
            str(out),
            "--html",
            str(tmp_path / "audit.html"),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    cross = json.loads(out.read_text())["cross_sources"]
    assert cross["exact_matrix"]["a"]["b"] == 16
    assert "Overlap matrix" in (tmp_path / "audit.html").read_text()
    splits = tmp_path / "splits.csv"
    result = runner.invoke(
        data_app,
        ["split", f"a={sets['four']}", f"b={other}", "--out", str(splits), "--workers", "1"],
    )
    assert result.exit_code == 0, result.output
    assert "16 groups span two or more sources" in result.output
    rows = splits.read_text().splitlines()[1:]
    side = {r.split(",")[0]: r.split(",")[1] for r in rows}
    for sample_id in [r.split(",")[0] for r in rows if r.startswith("a/")]:
        assert side[sample_id] == side["b/" + sample_id[2:]]
