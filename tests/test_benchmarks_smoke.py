"""Smoke runs of the speed benchmarks' core functions (one step each, tiny synthetic data).

Nothing here is timed: the tests check that every script runs end to end and writes the
fields the documentation's table and readers rely on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from braintumor.config import load_recipe
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.training.setup import preprocess_spec

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import head_outline  # noqa: E402
import loso_ensemble  # noqa: E402
import matmul_peak  # noqa: E402
import ood as ood_benchmark  # noqa: E402
import outline_speed  # noqa: E402
import profile_step  # noqa: E402
import speed_classify  # noqa: E402
import speed_common  # noqa: E402
import speed_pipelines  # noqa: E402
import speed_segment  # noqa: E402

PEAK = {"fp32_gflops": 50.0, "bf16_gflops": 150.0, "source": "test"}
VARIANT_FIELDS = {
    "precision",
    "steps",
    "images",
    "seconds",
    "images_per_s",
    "images_per_s_median_step",
    "achieved_gflops",
    "fraction_of_fp32_peak",
    "fraction_of_bf16_peak",
}


def test_matmul_peak_measures_both_dtypes() -> None:
    result = matmul_peak.measure_matmul_peak((64, 96), repeats=1)
    assert set(result["per_size"]) == {"fp32", "bf16"}
    assert set(result["per_size"]["fp32"]) == {"64", "96"}
    assert result["fp32_gflops"] == max(result["per_size"]["fp32"].values()) > 0
    assert result["bf16_gflops"] == max(result["per_size"]["bf16"].values()) > 0


def test_peak_file_is_per_cpu_model(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(speed_common, "cpu_model", lambda: "Some CPU 9")
    monkeypatch.setattr(speed_common, "cpu_matrix_units", lambda: "amx")
    assert matmul_peak.peak_file(tmp_path).name == "matmul_peak.json"  # nothing stored yet
    machine = {"cpu_model": "Other CPU", "cpu_matrix_units": "amx"}
    stored = {"machine": machine, "fp32_gflops": 1.0, "bf16_gflops": 2.0}
    (tmp_path / "matmul_peak.json").write_text(json.dumps(stored))
    assert matmul_peak.peak_file(tmp_path).name == "matmul_peak-some-cpu-9-amx.json"
    monkeypatch.setattr(speed_common, "cpu_model", lambda: "Other CPU")
    assert matmul_peak.peak_file(tmp_path).name == "matmul_peak.json"
    # The same name without AMX is another CPU (its bf16 peak is a tenth).
    monkeypatch.setattr(speed_common, "cpu_matrix_units", lambda: "avx512_bf16")
    assert matmul_peak.peak_file(tmp_path).name == "matmul_peak-other-cpu-avx512-bf16.json"
    del stored["machine"]["cpu_matrix_units"]  # a file from before the units were recorded
    (tmp_path / "matmul_peak.json").write_text(json.dumps(stored))
    assert matmul_peak.peak_file(tmp_path).name != "matmul_peak.json"


def test_profile_step_accounts_for_the_step(monkeypatch) -> None:
    monkeypatch.setattr(profile_step, "peak_for_this_cpu", lambda: PEAK)
    result = profile_step.profile_recipe("fast-cpu-4class", steps=1, warmup=0, batch_size=2)
    shares = [cell["share"] for cell in result["categories"].values()]
    assert sum(shares) == pytest.approx(1.0, abs=0.01)
    assert "convolution backward" in result["categories"]
    assert set(result["phases_ms"]) == {
        "augment + normalise",
        "forward + loss",
        "backward",
        "optimiser",
    }
    assert result["gflop_per_step"] > 0 and result["fraction_of_peak"] > 0
    assert "| convolution backward |" in profile_step.markdown({"recipes": [result]})
    assert profile_step.category("aten::native_batch_norm_backward") == "normalisation"
    assert profile_step.category("aten::_fused_adamw_") == "optimiser"


def test_interleaved_timing_alternates_order_and_counts_steps() -> None:
    calls: list[str] = []

    def variant(name: str, settle: int = 0) -> speed_common.Variant:
        def step() -> int:
            calls.append(name)
            return 4

        return speed_common.Variant(
            name, step, settle=settle, pause=lambda: calls.append(f"{name}|")
        )

    timings = speed_common.interleaved_timing(
        [variant("a"), variant("b", settle=1)], warmup=1, steps=4, rounds=2
    )
    # warm-up a, b; round 1: a a, (settle) b b b; round 2 reversed: (settle) b b b, a a;
    # every block ends with a pause
    assert "".join(calls) == "aa|bb|" + "aaa|bbbb|" + "bbbb|aaa|"
    assert timings["a"].steps == timings["b"].steps == 4
    assert timings["a"].items == 16
    assert timings["a"].items_per_s > 0
    assert len(timings["b"].step_seconds) == 4 and timings["b"].items_per_s_median > 0


def _check_result(result: dict) -> None:
    assert result["machine"]["load_average_start"]
    assert "shared_machine" in result["machine"]
    assert result["decode"]["seconds"] > 0
    assert result["flops"]["train_gflop_per_image"] > result["flops"]["infer_gflop_per_image"] > 0
    train, infer, data = result["train"], result["infer"], result["data"]
    precisions = speed_pipelines.precisions(speed_pipelines.resolve_precision("auto"))
    assert set(train["variants"]) == {"reference_workers0", *(f"ours_{p}" for p in precisions)}
    assert set(infer["variants"]) == {
        "reference_workers0",
        "ours_predictor_fp32",
        *(f"ours_cached_{p}" for p in precisions),
    }
    assert set(data["variants"]) == {"reference_workers0", "ours"}
    assert data["variants"]["ours"]["achieved_gflops"] == 0  # no network in the input phase
    for phase in (train, infer, data):
        assert phase["reference_best"] == "reference_workers0"
        for row in phase["variants"].values():
            assert set(row) >= VARIANT_FIELDS
            assert row["steps"] == 1 and row["images"] > 0 and row["images_per_s"] > 0
        assert set(phase["speedup"]) == set(phase["variants"]) - {"reference_workers0"}
    table = speed_common.markdown_table(result)
    rows = sum(len(phase["variants"]) for phase in (train, infer, data))
    assert table.count("\n| " + result["benchmark"]) == rows
    assert table.count("| — | — | — |") == len(data["variants"])
    assert "**reference_workers0**" in table
    json.dumps(result)  # the record must be writable as JSON


@pytest.mark.slow
def test_speed_classify_smoke(tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "data", "classify", n=3, size=48)
    result = speed_classify.run_classify_benchmark(
        data,
        overrides=["batch_size=4", "image_size=32"],
        warmup=1,
        steps=1,
        rounds=1,
        workers=(0,),
        cache_dir=tmp_path / "cache",
        peak=PEAK,
    )
    assert result["setup"]["images"] == 12
    assert result["setup"]["classes"] == ["glioma", "meningioma", "no_tumor", "pituitary"]
    _check_result(result)


@pytest.mark.slow
def test_speed_segment_smoke(tmp_path: Path) -> None:
    data = write_synthetic_dataset(tmp_path / "data", "segment", n=6, size=48)
    result = speed_segment.run_segment_benchmark(
        data,
        overrides=["batch_size=4", "image_size=32", "compile=false"],
        warmup=1,
        steps=1,
        rounds=1,
        workers=(0,),
        limit=5,
        cache_dir=tmp_path / "cache",
        peak=PEAK,
    )
    assert result["setup"]["images"] == 5
    _check_result(result)


def test_write_result_records_load_at_end(tmp_path: Path) -> None:
    record = {"machine": speed_common.machine_info(), "value": 1}
    path = speed_common.write_result("speed_test.json", record, tmp_path)
    written = json.loads(path.read_text())
    assert written["value"] == 1
    assert "load_average_end" in written["machine"]


def test_compiled_training_variant_comes_first_when_the_recipe_compiles(monkeypatch) -> None:
    monkeypatch.setattr(speed_pipelines, "resolve_compile", lambda recipe, accelerator: True)
    recipe = load_recipe("fast-cpu-seg")
    net = torch.nn.Conv2d(1, 1, 3)  # the steps are not run: compiling is lazy
    variants = speed_pipelines.our_train_variants(net, recipe, [], None, None, "bf16")
    assert [v.name for v in variants] == ["ours_bf16_compiled", "ours_bf16", "ours_fp32"]


def test_precision_names() -> None:
    assert speed_pipelines.resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        speed_pipelines.resolve_precision("fp8")


def test_loader_feed_stops_workers_on_pause_and_restarts() -> None:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.arange(6))
    with_workers = speed_pipelines.LoaderFeed(DataLoader(data, batch_size=2, num_workers=1))
    assert with_workers.next()[0].tolist() == [0, 1]
    workers = with_workers.iterator._workers  # the live worker processes
    with_workers.pause()
    assert with_workers.iterator is None
    assert not any(w.is_alive() for w in workers)
    assert with_workers.next()[0].tolist() == [0, 1]  # restarted from the beginning
    with_workers.pause()

    in_process = speed_pipelines.LoaderFeed(DataLoader(data, batch_size=4))
    assert in_process.next()[0].tolist() == [0, 1, 2, 3]
    in_process.pause()  # no workers: keeps its place, then wraps around
    assert in_process.next()[0].tolist() == [4, 5]
    assert in_process.next()[0].tolist() == [0, 1, 2, 3]


def test_ood_benchmark_builds_foreign_sets_and_scores_them() -> None:
    rng = np.random.default_rng(0)
    natural = ood_benchmark.natural_images(rng)
    textures = ood_benchmark.textures(rng)
    ct = ood_benchmark.ct_like(rng, n=3)
    assert len(natural) == len(ood_benchmark.NATURAL) * ood_benchmark.CROPS_PER_IMAGE
    for image in natural + textures + ct:
        assert image.array.dtype == np.uint8 and image.array.shape[:2] == (256, 256)
    damaged = ood_benchmark.corrupted(ct[:2], rng)
    assert set(damaged) == set(ood_benchmark.CORRUPTIONS)
    assert not np.array_equal(damaged["inverted"][0].array, ct[0].array)
    assert ood_benchmark.auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert ood_benchmark.auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0


@pytest.mark.slow
def test_time_to_accuracy_runs_both_sides_on_one_split(tmp_path: Path) -> None:
    """Both loops train (two epochs of ours, one of the plain loop) on ours' split."""
    import time_to_accuracy

    data = write_synthetic_dataset(tmp_path / "data", "classify")
    result = time_to_accuracy.measure(
        data, overrides=["image_size=64"], target=0.0, epochs=2, plain_epochs=1, workers=0
    )
    ours, plain = result["curves"]["ours"], result["curves"]["plain"]
    assert [p["epoch"] for p in ours] == [1, 2] and [p["epoch"] for p in plain] == [1]
    assert 0 < ours[0]["minutes"] < ours[1]["minutes"]
    assert result["minutes_to_target"]["ours"] == ours[0]["minutes"]  # target 0: first epoch
    sizes = result["split_sizes"]
    assert sizes["train"] > sizes["val"] > 0
    time_to_accuracy.plot(result["curves"], 0.5, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 5_000


def test_head_outline_benchmark_measures_each_gamma() -> None:
    # A head-like phantom: a bright rim (the scalp) around a darker, textured inside.
    yy, xx = np.mgrid[:96, :96]
    radius = ((yy - 48) / 38) ** 2 + ((xx - 48) / 30) ** 2
    head = np.where(radius < 1, 50 + 160 * radius + 20 * np.sin(xx / 3.0), 0).astype(np.uint8)
    greys = [head, np.ascontiguousarray(np.fliplr(head))]
    spec = preprocess_spec(load_recipe("fast-cpu-4class", ["image_size=32"]))
    per_gamma = head_outline.measure_outline(greys, spec)
    assert set(per_gamma) == {str(g) for g in head_outline.GAMMAS}
    for record in per_gamma.values():
        assert 0.0 <= record["mean_input_difference"] < 255.0
        assert 0.0 <= record["box_iou_under_0.95"] <= 1.0 and 0.9 < record["mean_box_iou"] <= 1.0
    assert head_outline.box_iou((0, 10, 0, 10), (0, 10, 5, 15)) == pytest.approx(1 / 3)


def _fold_run(root: Path, name: str, probs: list[float], truth: list[str]) -> Path:
    """A finished loso.py fold run: its held-out predictions.csv only."""
    test = root / name / "test-held" / "test"
    test.mkdir(parents=True)
    lines = ["id,true,prob_no_tumor,prob_tumor"]
    # ids as a layout gives them: source/folder/file, folders A and B alternating
    lines += [
        f"held/{'AB'[k % 2]}/img{k}.jpg,{t},{1 - p},{p}"
        for k, (p, t) in enumerate(zip(probs, truth, strict=True))
    ]
    (test / "predictions.csv").write_text("\n".join(lines) + "\n")
    return root / name


def test_loso_ensemble_averages_the_runs_answers(tmp_path: Path) -> None:
    truth = ["tumor", "tumor", "no_tumor", "no_tumor"]
    # Each run gets one image wrong, a different one; their average gets all four right.
    runs = [
        _fold_run(tmp_path, "a", [0.9, 0.4, 0.1, 0.2], truth),
        _fold_run(tmp_path, "b", [0.9, 0.8, 0.1, 0.6], truth),
    ]
    table = loso_ensemble.ensemble_table(runs, "held")
    assert table["n_common"] == 4 and table["classes"] == ["no_tumor", "tumor"]
    assert table["by_size"]["1"]["mean_over_subsets"]["accuracy"] == 0.75
    pair = table["by_size"]["2"]["subsets"][0]
    assert pair["runs"] == ["a", "b"] and pair["accuracy"] == 1.0 and pair["tumor_auc"] == 1.0
    with pytest.raises(loso_ensemble.DataError, match=r"no predictions\.csv"):
        loso_ensemble.ensemble_table([tmp_path / "missing"], "held")
    by_folder = loso_ensemble.ensemble_table(runs, "held", folder_part=1)["by_folder"]
    # folder A holds img0 (tumour) and img2 (healthy), B img1 and img3: run a misses img1 only
    assert [row["accuracy"] for row in by_folder["A"]] == [1.0, 1.0]
    assert [row["accuracy"] for row in by_folder["B"]] == [0.5, 0.5]
    with pytest.raises(loso_ensemble.DataError, match="no folder at --folder-part 2"):
        loso_ensemble.ensemble_table(runs, "held", folder_part=2)


def test_loso_gallery_draws_wrong_and_right_slices_apart(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    import loso_gallery

    rows = ["id,path,true,predicted,correct"]
    for i, (grey, correct) in enumerate([(0, 1), (255, 0), (0, 1), (90, 1)]):
        path = tmp_path / f"{i}.png"
        Image.new("L", (40, 30), grey).save(path)
        true = "glioma" if i == 3 else "no_tumor"
        rows.append(f"s/{i},{path},{true},{'glioma' if not correct else true},{correct}")
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(loso_gallery, "RESULTS", tmp_path)
    monkeypatch.setattr(sys, "argv", ["x", str(predictions), "--true", "no_tumor", "--name", "t"])
    loso_gallery.main()
    tile = loso_gallery.TILE
    with Image.open(tmp_path / "loso_gallery_t-wrong.png") as wrong:
        assert wrong.getpixel((5, 5)) == 255 and wrong.getpixel((tile + 5, 5)) == 0
    with Image.open(tmp_path / "loso_gallery_t-right.png") as right:  # the glioma is not drawn
        assert right.getpixel((5, 5)) == 0 and right.getpixel((2 * tile + 5, 5)) == 0


@pytest.mark.skipif(
    not (BENCHMARKS.parent / ".git").exists(), reason="needs a git checkout (it reads HEAD)"
)
def test_outline_speed_loads_a_revisions_outline_beside_the_trees(tmp_path: Path) -> None:
    from braintumor.data import intensity

    base = outline_speed.module_at("HEAD", tmp_path)
    assert base is not intensity and base.__name__ == "intensity_base"
    grey = np.zeros((200, 180), np.uint8)
    grey[40:170, 30:150] = 120  # a bright "head" on a dark background
    for outline in ("gamma-normalised", "range"):
        found = base.head_contour(grey, outline, 96)
        assert found is not None
        assert outline_speed.same_outline(found, intensity.head_contour(grey, outline, 96))
    assert not outline_speed.same_outline(found, None)


def test_loso_tta_change_is_paired_and_bounded() -> None:
    import loso_tta

    y = np.array([0, 0, 1, 1, 2, 2])
    plain = np.array([0, 1, 1, 1, 2, 0])  # recalls 0.5, 1, 0.5
    mirrored = np.array([0, 0, 1, 1, 2, 0])  # the mirror fixes one glioma: 1, 1, 0.5
    change = loso_tta.balanced_accuracy_change(y, plain, mirrored, n_bootstrap=200)
    assert change["difference"] == pytest.approx(1 / 6, abs=1e-4)
    low, high = change["ci95"]
    assert 0.0 <= low <= change["difference"] <= high  # never negative: no image got worse
    same = loso_tta.balanced_accuracy_change(y, plain, plain, n_bootstrap=50)
    assert same == {"difference": 0.0, "ci95": [0.0, 0.0]}
