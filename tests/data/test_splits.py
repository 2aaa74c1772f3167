"""Splits: groups merge transitively, no group ever sits on two sides, stratification holds,
k-fold covers every sample once, the given test split is respected; real-data leak checks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from braintumor.data.audit import audit_dataset
from braintumor.data.samples import Sample
from braintumor.data.splits import (
    EXCLUDED,
    check_no_leak,
    duplicate_groups,
    figshare_number_groups,
    kfold_splits,
    layout_extra_groups,
    read_splits,
    split_counts,
    train_val_test_split,
    write_splits,
)
from braintumor.errors import DataError


def make_samples(n: int, seed: int, n_groups: int | None = None) -> list[Sample]:
    """Samples with three unbalanced labels; groups of random size share one label."""
    rng = np.random.default_rng(seed)
    samples, group = [], 0
    while len(samples) < n:
        label = rng.choice(["a", "b", "c"], p=[0.5, 0.3, 0.2])
        for _ in range(int(rng.integers(1, 5))):
            samples.append(
                Sample(
                    id=f"s{len(samples)}",
                    image=f"{len(samples)}.png",
                    label=label,
                    group=f"p{group}",
                )
            )
        group += 1
    return samples[:n]


def test_duplicate_groups_merge_layout_and_hashes_transitively() -> None:
    samples = [Sample(id=f"s{i}", image=f"{i}.png") for i in range(6)]
    samples[0].group = samples[1].group = "patient-1"
    hashes = {
        "s1": ("aaa", 0b0),  # exact copy of s2
        "s2": ("aaa", 0b0),
        "s3": ("bbb", 0b111),  # 3 bits from s2: near duplicate
        "s4": ("ccc", 2**64 - 1),
        "s5": ("ddd", None),
    }
    groups = duplicate_groups(samples, hashes, phash_threshold=3)
    assert groups[0] == groups[1] == groups[2] == groups[3]
    assert len({groups[0], groups[4], groups[5]}) == 3
    assert groups[0] == "g00000"
    tighter = duplicate_groups(samples, hashes, phash_threshold=2)
    assert tighter[3] != tighter[0]
    extra = [None, None, None, None, "x", "x"]
    assert duplicate_groups(samples, None, extra_groups=extra)[4:] == ["g00003"] * 2


def textured(seed: int, size: int = 96) -> Image.Image:
    """A smooth random grey picture (pHash needs structure)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(6, 6)).astype(np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def test_duplicate_groups_from_an_audit_report(tmp_path: Path) -> None:
    textured(1).save(tmp_path / "a.png")
    textured(1).resize((70, 70)).save(tmp_path / "b.jpg", quality=75)
    textured(2).save(tmp_path / "c.png")
    samples = [Sample(id=n, image=n) for n in ("a.png", "b.jpg", "c.png")]
    report = audit_dataset(samples, tmp_path, workers=1, progress=False)
    groups = duplicate_groups(samples, report)
    assert groups[0] == groups[1] != groups[2]


def test_figshare_number_groups() -> None:
    numbers = [(1, "m"), (2, "m"), (4, "m"), (7, "m"), (8, "g"), (9, "g"), (30, "p")]
    samples = [Sample(id=str(n), image=f"images/{n}.png", label=lab) for n, lab in numbers]
    groups = figshare_number_groups(samples, max_gap=2)
    assert groups == ["num1", "num1", "num1", None, "num8", "num8", None]
    assert figshare_number_groups(samples, max_gap=3)[3] == "num1"
    assert layout_extra_groups(samples, "image-mask") == groups
    assert layout_extra_groups(samples, "class-folders") is None


@pytest.mark.parametrize("seed", range(6))
def test_train_val_test_never_splits_a_group(seed: int) -> None:
    samples = make_samples(300, seed)
    groups = [s.group for s in samples]
    assignment = train_val_test_split(samples, (0.7, 0.15, 0.15), seed=seed, groups=groups)
    check_no_leak(samples, assignment, groups)
    sides = {}
    for group, side in zip(groups, assignment, strict=True):
        assert sides.setdefault(group, side) == side
    share = Counter(assignment)
    assert abs(share["train"] / 300 - 0.7) < 0.05
    assert abs(share["val"] / 300 - 0.15) < 0.05
    assert abs(share["test"] / 300 - 0.15) < 0.05
    overall = Counter(s.label for s in samples)
    for side, counts in split_counts(samples, assignment).items():
        total = sum(counts.values())
        for label, n in overall.items():
            assert abs(counts.get(label, 0) / total - n / 300) < 0.1, (side, label)


@pytest.mark.parametrize("seed", range(4))
def test_kfold_covers_every_sample_once(seed: int) -> None:
    samples = make_samples(200, seed)
    groups = [s.group for s in samples]
    folds = kfold_splits(samples, 5, seed, groups)
    assert sorted(set(folds)) == ["0", "1", "2", "3", "4"]
    assert len(folds) == len(samples)
    check_no_leak(samples, folds, groups)
    sizes = Counter(folds).values()
    assert max(sizes) - min(sizes) < 25
    assert kfold_splits(samples, 5, seed, groups) == folds  # same seed, same folds


def test_kfold_needs_enough_groups() -> None:
    samples = make_samples(6, 0)
    with pytest.raises(DataError, match="cannot make 10 folds"):
        kfold_splits(samples, 10, 0, ["one"] * 6)


def test_respect_given_test() -> None:
    samples = make_samples(200, 3)
    for s in samples[:40]:
        s.split = "test"
    groups = [s.group for s in samples]
    test_groups = {s.group for s in samples[:40]}
    assignment = train_val_test_split(samples, seed=1, groups=groups, respect_given_test=True)
    assert assignment[:40] == ["test"] * 40
    leaked = [i for i in range(40, 200) if samples[i].group in test_groups]
    assert leaked  # the made data has a group straddling the given test split
    assert [i for i, side in enumerate(assignment) if side == EXCLUDED] == leaked
    assert "test" not in assignment[40:]
    check_no_leak(samples, assignment, groups)
    val_share = assignment.count("val") / (200 - 40 - len(leaked))
    assert abs(val_share - 0.15 / 0.85) < 0.06
    with pytest.raises(DataError, match="no test split"):
        train_val_test_split(make_samples(20, 0), respect_given_test=True)


def test_check_no_leak_names_the_group() -> None:
    samples = make_samples(4, 0)
    with pytest.raises(DataError, match="group p9 is on 2 sides"):
        check_no_leak(samples, ["train", "test", "train", EXCLUDED], ["p1", "p9", "p9", "p9"][::-1])


def test_bad_fractions() -> None:
    with pytest.raises(DataError, match="fractions"):
        train_val_test_split(make_samples(20, 0), (0.5, 0.2, 0.2))


def test_splits_file_round_trip(tmp_path: Path) -> None:
    samples = make_samples(30, 1)
    groups = [s.group for s in samples]
    folds = kfold_splits(samples, 3, 0, groups)
    write_splits(tmp_path / "splits.csv", samples, folds, groups, column="fold")
    table = read_splits(tmp_path / "splits.csv")
    assert table.column == "fold"
    assert [table.assignment[s.id] for s in samples] == folds
    assert [table.groups[s.id] for s in samples] == groups
    (tmp_path / "bad.csv").write_text("name,side\nx,train\n")
    with pytest.raises(DataError, match="not a splits file"):
        read_splits(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="cannot read"):
        read_splits(tmp_path / "absent.csv")


def _crosses(assignment: list[str], members: list[list[int]]) -> int:
    return sum(len({assignment[i] for i in group} - {EXCLUDED}) > 1 for group in members)


@pytest.mark.realdata
@pytest.mark.slow  # audits 3,264 real images
def test_sartaj_splits_keep_duplicates_together(shared_data: Path) -> None:
    from braintumor.data.layouts import detect_layout

    layout = detect_layout(shared_data / "sartaj-4class")
    samples = layout.samples
    report = audit_dataset(samples, layout.root, workers=2, progress=False)
    index = {s.id: i for i, s in enumerate(samples)}
    clusters = [[index[i] for i in g.ids] for g in report.exact.groups + report.near.groups]
    # The dataset's own split leaks; the made ones must not.
    assert _crosses([s.split for s in samples], clusters) > 60
    groups = duplicate_groups(samples, report)
    for seed in (0, 1):
        assignment = train_val_test_split(samples, seed=seed, groups=groups)
        assert _crosses(assignment, clusters) == 0
    kept = train_val_test_split(samples, groups=groups, respect_given_test=True)
    assert _crosses(kept, clusters) == 0
    assert kept.count(EXCLUDED) >= report.exact.files_with_copy_elsewhere["train"]


@pytest.mark.realdata
@pytest.mark.slow  # audits 1,226 real images
def test_figshare_neighbours_stay_together(shared_data: Path) -> None:
    from braintumor.data.layouts import detect_layout

    layout = detect_layout(shared_data / "figshare-seg")
    samples = layout.samples
    report = audit_dataset(samples, layout.root, workers=2, progress=False)
    extra = layout_extra_groups(samples, layout.name)
    assert extra is not None and sum(g is not None for g in extra) > 600
    groups = duplicate_groups(samples, report, extra_groups=extra)
    assignment = train_val_test_split(samples, seed=0, groups=groups)
    check_no_leak(samples, assignment, groups)
    by_number = {int(Path(s.image).stem): i for i, s in enumerate(samples)}
    neighbours = [
        [by_number[n], by_number[n + d]]
        for n in by_number
        for d in (1, 2)
        if n + d in by_number and samples[by_number[n]].label == samples[by_number[n + d]].label
    ]
    assert len(neighbours) > 500
    assert _crosses(assignment, neighbours) == 0
    near = [[by_number[int(Path(i).stem)] for i in g.ids] for g in report.near.groups]
    assert _crosses(assignment, near) == 0
