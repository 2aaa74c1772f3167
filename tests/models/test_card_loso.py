"""Leave-one-source-out figures in model cards: read from the benchmark's results files,
rendered with their intervals, mean and worst, and put into an installed zoo card."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from braintumor.cli.main import app
from braintumor.errors import DataError, ModelFormatError
from braintumor.models.card import read_card
from braintumor.models.card_loso import (
    HEADING,
    loso_section,
    read_loso_results,
    replace_loso_section,
)
from braintumor.zoo import registry
from braintumor.zoo.recard import recard_loso

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
FOUR = RESULTS / "loso_4class_today.json"
SHIPPED_FOUR = RESULTS / "loso_4class_lggnear30.json"
BINARY = RESULTS / "loso_binary_today.json"
SHIPPED_BINARY = RESULTS / "loso_binary_binnear14.json"
SHIPPED_SEG = RESULTS / "loso_seg2d_seg2d60.json"
sys.path.insert(0, str(ROOT / "benchmarks"))

import loso as loso_benchmark  # noqa: E402
import train_reference  # noqa: E402

runner = CliRunner()


def test_section_shows_each_held_out_source_with_intervals() -> None:
    results = read_loso_results(FOUR, "4class")
    recipe = dict(results["recipe"], image_size=128, max_minutes=13.0)
    text = "\n".join(loso_section(results, recipe, FOUR.name))
    assert HEADING in text and "estimates for unseen sources" in text
    assert "| sartaj-4class | 1442 | 0.672 [0.648, 0.697] | 0.842 [0.818, 0.862] |" in text
    assert "| figshare-seg | 1226 | 0.764 [0.740, 0.786] | - | 0.968 [0.957, 0.977] | - |" in text
    assert "| mean |  | 0.718 |" in text and "| worst |  | 0.672 (sartaj-4class) |" in text
    assert "budget 10 minutes per fold" in text and "(small-resnet, 64 px)" in text
    assert "--setting 4class --max-minutes 10 --tag today" in text
    assert "image_size 64 (this model: 128); max_minutes 10 (this model: 13)" in text
    assert "batch norm adapted" not in text


def test_section_adds_the_adapted_figures_when_the_run_has_them() -> None:
    results = read_loso_results(BINARY, "binary")
    for fold in results["folds"]:
        fold["metrics_adapted"] = {
            s: dict(m, balanced_accuracy=0.5, ci95={}) for s, m in fold["metrics"].items()
        }
    results["summary_adapted"] = {
        "balanced_accuracy": {"mean": 0.5, "worst": 0.5, "worst_source": "lgg-kaggle3m"}
    }
    text = "\n".join(loso_section(results))
    adapted = text[text.index("With batch norm adapted") :]
    assert "| lgg-kaggle3m | 776 | 0.500 |" in adapted
    assert "| worst |  | 0.500 (lgg-kaggle3m) | - |" in adapted
    rows = loso_benchmark.markdown_rows(results)
    assert any("binary (today, BN adapted) | lgg-kaggle3m | 776 | 0.500 |" in r for r in rows)


def test_a_segmenter_s_section_shows_dice_per_held_out_source() -> None:
    def figures(n: int, dice: float, volume: float | None) -> dict:
        ci = {"dice": [dice - 0.05, dice + 0.05], "iou": [0.3, 0.4], "patient_volume_dice": None}
        return {"n": n, "dice": dice, "iou": 0.35, "patient_volume_dice": volume, "ci95": ci}

    results = {
        "benchmark": "loso",
        "setting": "seg2d",
        "task": "segment",
        "tag": "t",
        "recipe": {"name": "fast-cpu-seg", "model": "unet", "image_size": 128},
        "folds": [
            {"metrics": {"figshare-seg": figures(1226, 0.41, None)}},
            {"metrics": {"lgg-kaggle3m": figures(776, 0.52, 0.61)}},
        ],
        "summary": {
            "dice": {"mean": 0.465, "worst": 0.41, "worst_source": "figshare-seg"},
        },
    }
    text = "\n".join(loso_section(results))
    assert "| held-out source | n | Dice per slice [95% CI] |" in text
    assert "| figshare-seg | 1226 | 0.410 [0.360, 0.460] | 0.350 [0.300, 0.400] | - |" in text
    assert "| lgg-kaggle3m | 776 | 0.520 [0.470, 0.570] | 0.350 [0.300, 0.400] | 0.610 |" in text
    assert "| worst |  | 0.410 (figshare-seg) | - | - |" in text
    assert "Balanced accuracy" not in text and "volume Dice per patient where" in text
    rows = loso_benchmark.markdown_rows(dict(results, folds=[]))
    assert rows[0].startswith("| seg2d (t) | dice: mean 0.465, worst 0.410")


def test_the_card_shows_the_command_without_the_machine_s_run_folder() -> None:
    results = read_loso_results(FOUR, "4class")
    results["command"] = (
        "python benchmarks/loso.py --setting 4class --runs /scratch/me/runs --tag t"
    )
    text = "\n".join(loso_section(results))
    assert "`python benchmarks/loso.py --setting 4class --tag t`" in text
    assert "/scratch" not in text


def test_bad_results_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="setting 'binary', this model's is '4class'"):
        read_loso_results(BINARY, "4class")
    with pytest.raises(DataError, match="not a leave-one-source-out results file"):
        read_loso_results(RESULTS / "ood_sartaj-4class.json")
    with pytest.raises(DataError, match="no such leave-one-source-out results file"):
        read_loso_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataError, match="not a readable JSON"):
        read_loso_results(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text(json.dumps({"benchmark": "loso", "folds": []}))
    with pytest.raises(DataError, match="no finished fold"):
        read_loso_results(tmp_path / "empty.json")


def test_replacing_the_section_keeps_the_rest_of_the_card() -> None:
    card = "# model\n\n## Results\n\nfigures\n\n## Recipe\n\n| key | value |\n"
    first = replace_loso_section(card, loso_section(read_loso_results(FOUR)))
    assert first.index("## Results") < first.index(HEADING) < first.index("## Recipe")
    second = replace_loso_section(first, loso_section(read_loso_results(BINARY)))
    assert second.count(HEADING) == 1 and "lgg-kaggle3m" in second
    assert "sartaj-4class | 1442" not in second
    rest = second[: second.index(HEADING)] + second[second.index("## Recipe") :]
    assert rest == card


@pytest.fixture
def zoo_copy(tmp_path: Path) -> Path:
    """The installed 4class and seg2d models in a zoo folder of their own."""
    zoo = tmp_path / "zoo"
    index = json.loads((registry.ZOO_DIR / registry.INDEX_FILE).read_text())
    index["models"] = {k: index["models"][k] for k in ("4class", "seg2d")}
    for name in index["models"]:
        shutil.copytree(registry.ZOO_DIR / name, zoo / name)
    (zoo / registry.INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return zoo


def test_recard_replaces_the_installed_section_without_touching_weights(zoo_copy: Path) -> None:
    weights = registry.sha256_file(zoo_copy / "4class" / "model.safetensors")
    before = (zoo_copy / "4class" / "README.md").read_text()
    test_heading = next(line for line in before.splitlines() if line.startswith("## Results:"))
    results = read_loso_results(FOUR)
    results["folds"] = results["folds"][1:]  # a newer run: figshare-seg only
    new = zoo_copy / "loso_4class_new.json"
    new.write_text(json.dumps(results))
    card = recard_loso("4class", new, zoo_copy)
    text = card.read_text()
    assert text.count(HEADING) == 1 and "results file `loso_4class_new.json`" in text
    assert "| sartaj-4class | 1442 |" not in text and "| figshare-seg | 1226 |" in text
    assert test_heading in text  # the rest stays
    registry.verify_entry(registry.zoo_entry("4class", zoo_copy))  # the index follows the card
    assert registry.sha256_file(zoo_copy / "4class" / "model.safetensors") == weights
    with pytest.raises(DataError, match="setting '4class', this model's is 'seg2d'"):
        recard_loso("seg2d", new, zoo_copy)
    with pytest.raises(ModelFormatError, match="no such reference model"):
        recard_loso("binary", BINARY, zoo_copy)


def test_shipped_cards_show_their_setting_s_figures() -> None:
    for name, path in (("4class", SHIPPED_FOUR), ("binary", SHIPPED_BINARY)):
        assert train_reference.loso_file(train_reference.REFERENCE_MODELS[name], None) == path
        card = read_card(f"zoo:{name}")
        assert HEADING in card and f"results file `{path.name}`" in card
        for fold in read_loso_results(path)["folds"]:
            for source, m in fold["metrics"].items():
                low, high = m["ci95"]["balanced_accuracy"]
                cell = f"{m['balanced_accuracy']:.3f} [{low:.3f}, {high:.3f}]"
                assert f"| {source} | {m['n']} | {cell} |" in card
    card = read_card("zoo:seg2d")
    assert f"results file `{SHIPPED_SEG.name}`" in card
    for fold in read_loso_results(SHIPPED_SEG, "seg2d")["folds"]:
        for source, m in fold["metrics"].items():
            low, high = m["ci95"]["dice"]
            assert f"| {source} | {m['n']} | {m['dice']:.3f} [{low:.3f}, {high:.3f}] |" in card
    assert HEADING not in read_card("zoo:brats2d")
    for name in ("4class", "binary", "seg2d"):
        assert "--runs" not in read_card(f"zoo:{name}")  # no path of the building machine


def test_models_card_renders_another_results_file(tmp_path: Path) -> None:
    results = read_loso_results(FOUR)
    results["tag"] = "rerun"
    path = tmp_path / "loso_4class_rerun.json"
    path.write_text(json.dumps(results))
    result = runner.invoke(app, ["models", "card", "zoo:4class", "--loso", str(path)])
    assert result.exit_code == 0, result.output
    assert "setting `4class`, run `rerun`" in result.output
    assert result.output.count(HEADING) == 1
    result = runner.invoke(app, ["models", "card", "zoo:seg2d", "--loso", str(path)])
    assert result.exit_code == 2 and "holds a classify model's" in result.output
    assert "zoo:seg2d is a segment model" in result.output
