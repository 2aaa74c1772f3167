"""Audit: hashing, pair finding, clusters, duplicates on made images, findings for bad files,
masks and cases, report files; the exact-duplicate figures of the real sartaj-4class set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from braintumor.data.audit import audit_dataset
from braintumor.data.audit_html import write_audit_html, write_audit_json
from braintumor.data.hashing import (
    connected_groups,
    groups_of,
    near_pairs,
    popcount64,
)
from braintumor.data.samples import Sample


def textured(seed: int, size: int = 96) -> Image.Image:
    """A smooth random grey picture: blobs at random places (pHash needs structure)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    picture = np.zeros((size, size))
    for _ in range(6):
        cy, cx, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.3)
        picture += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)
    picture = (picture - picture.min()) / (np.ptp(picture) + 1e-9) * 255
    return Image.fromarray(picture.astype(np.uint8)).convert("RGB")


def sample(root: Path, name: str, label: str = "a", split: str | None = None, **kw) -> Sample:
    return Sample(id=name, image=name, label=label, split=split, **kw)


def test_popcount_and_pairs_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=300, dtype=np.uint64)
    hashes[10] = hashes[3] ^ np.uint64(0b101)  # distance 2 from #3
    expected = {
        (i, j)
        for i in range(300)
        for j in range(i + 1, 300)
        if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 20
    }
    pairs, distances = near_pairs(hashes, 20, block=37)  # odd block size crosses blocks
    assert {tuple(p) for p in pairs.tolist()} == expected
    assert (3, 10) in expected
    for (i, j), d in zip(pairs.tolist(), distances.tolist(), strict=True):
        assert d == bin(int(hashes[i]) ^ int(hashes[j])).count("1")
    assert popcount64(np.array([0, 1, 2**64 - 1], dtype=np.uint64)).tolist() == [0, 1, 64]


def test_clusters_are_transitive() -> None:
    # 0~1 and 1~2 put 0, 1, 2 together although 0 and 2 are not a pair; 5~6 apart.
    labels = connected_groups(7, np.array([[0, 1], [1, 2], [5, 6]]))
    assert labels[0] == labels[1] == labels[2]
    assert len({labels[0], labels[3], labels[4], labels[5]}) == 4
    assert groups_of(labels) == [[0, 1, 2], [5, 6]]
    assert groups_of(labels, np.arange(7) + 100) == [[100, 101, 102], [105, 106]]


def test_exact_and_near_duplicates_on_made_images(tmp_path: Path) -> None:
    textured(1).save(tmp_path / "a.png")
    shutil.copy(tmp_path / "a.png", tmp_path / "copy.png")
    # Resized and recompressed: different bytes, same picture.
    textured(1).resize((80, 80)).save(tmp_path / "small.jpg", quality=70)
    textured(2).save(tmp_path / "other.png")
    samples = [
        sample(tmp_path, "a.png", "x", "train"),
        sample(tmp_path, "copy.png", "y", "test"),
        sample(tmp_path, "small.jpg", "x", "test"),
        sample(tmp_path, "other.png", "x", "train"),
    ]
    report = audit_dataset(samples, tmp_path, workers=1, progress=False)
    assert [g.ids for g in report.exact.groups] == [["a.png", "copy.png"]]
    assert report.exact.n_extra_copies == 1
    assert report.exact.cross_split_groups == 1
    assert report.exact.files_with_copy_elsewhere == {"test": 1, "train": 1}
    assert report.exact.label_conflict_groups == 1
    assert [g.ids for g in report.near.groups] == [["a.png", "copy.png", "small.jpg"]]
    assert report.near.groups[0].max_distance <= 6
    assert report.near.pairs == 3
    assert report.counts["all"] == {"x": 3, "y": 1}
    assert report.formats == {"PNG": 3, "JPEG": 1}
    assert report.sizes["distinct"] == 2
    assert report.unreadable == []


def test_pool_gives_the_same_report(tmp_path: Path) -> None:
    samples = []
    for i in range(12):
        textured(i % 5).save(tmp_path / f"{i}.png")
        samples.append(sample(tmp_path, f"{i}.png", str(i % 2)))
    one = audit_dataset(samples, tmp_path, workers=1, progress=False)
    two = audit_dataset(samples, tmp_path, workers=2, progress=False)
    assert one.exact == two.exact and one.near == two.near
    assert one.exact.n_groups == 5  # seeds 0..4 each written two or three times


def test_bad_files_are_findings_not_crashes(tmp_path: Path) -> None:
    textured(3).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    names = ["good.jpg", "cut.jpg", "empty.png", "text.png", "absent.png"]
    report = audit_dataset([sample(tmp_path, n) for n in names], tmp_path, progress=False)
    bad = {row["path"]: row["error"] for row in report.unreadable}
    assert set(bad) == set(names) - {"good.jpg"}
    assert "empty" in bad["empty.png"]
    assert all("\n" not in error for error in bad.values())
    assert report.formats == {"JPEG": 1}


def test_mask_problems(tmp_path: Path) -> None:
    for i in range(4):
        textured(i, 64).convert("L").save(tmp_path / f"{i}.png")
    good = np.zeros((64, 64), np.uint8)
    good[20:30, 20:30] = 255
    Image.fromarray(good).save(tmp_path / "m0.png")
    Image.fromarray(good[:32]).save(tmp_path / "m1.png")  # wrong size
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "m2.png")  # empty
    Image.fromarray((np.arange(64 * 64) % 5).astype(np.uint8).reshape(64, 64)).save(
        tmp_path / "m3.png"
    )
    samples = [sample(tmp_path, f"{i}.png", mask=f"m{i}.png") for i in range(4)]
    report = audit_dataset(samples, tmp_path, workers=1, progress=False)
    problems = {row["id"]: row["problem"] for row in report.mask_problems}
    assert "0.png" not in problems
    assert problems["1.png"].startswith("size 64x32 differs")
    assert problems["2.png"].startswith("empty")
    assert problems["3.png"].startswith("non-binary: 5 values")


def _nifti(path: Path, shape: tuple[int, ...], values: list[int] | None = None) -> None:
    data = np.zeros(shape, np.float32)
    if values:
        for k, v in enumerate(values):
            data[k, 0, 0] = v
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)


def test_brats_case_problems(tmp_path: Path) -> None:
    for case in ("c1", "c2", "c3"):
        (tmp_path / case).mkdir()
        _nifti(tmp_path / case / "t1c.nii.gz", (8, 8, 4))
        _nifti(tmp_path / case / "seg.nii.gz", (8, 8, 4), [0, 1, 2, 4])
    _nifti(tmp_path / "c1" / "flair.nii.gz", (8, 8, 4))
    _nifti(tmp_path / "c2" / "flair.nii.gz", (8, 8, 5))  # shape differs
    cases = [
        Sample(id=c, image=c, mask=f"{c}/seg.nii.gz", group=c, modalities=mods)
        for c, mods in [
            ("c1", {"t1c": "c1/t1c.nii.gz", "flair": "c1/flair.nii.gz"}),
            ("c2", {"t1c": "c2/t1c.nii.gz", "flair": "c2/flair.nii.gz"}),
            ("c3", {"t1c": "c3/t1c.nii.gz"}),  # flair missing
        ]
    ]
    report = audit_dataset(cases, tmp_path, workers=1, progress=False)
    problems = {(row["id"], row["problem"].split(":")[0]) for row in report.case_problems}
    assert ("c2", "flair") in problems
    assert ("c3", "missing modalities") in problems
    assert not any(case == "c1" for case, _ in problems)
    assert report.label_values == [0.0, 1.0, 2.0, 4.0]
    assert report.sizes["most_common"][0] == [8, 8, 4, 2]


def test_report_files(tmp_path: Path) -> None:
    textured(0).save(tmp_path / "<b>.png")
    shutil.copy(tmp_path / "<b>.png", tmp_path / "b.png")
    samples = [sample(tmp_path, "<b>.png"), sample(tmp_path, "b.png")]
    report = audit_dataset(samples, tmp_path, workers=1, progress=False)
    write_audit_json(report, tmp_path / "out" / "audit.json")
    write_audit_html(report, tmp_path / "out" / "audit.html")
    loaded = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert loaded["exact"]["n_groups"] == 1
    page = (tmp_path / "out" / "audit.html").read_text()
    assert "&lt;b&gt;.png" in page and "<b>.png" not in page
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["audit.html", "audit.json"]


def _sartaj_samples(root: Path) -> list[Sample]:
    samples = []
    for path in sorted(root.rglob("*.jpg")):
        rel = path.relative_to(root)
        split = {"Training": "train", "Testing": "test"}[rel.parts[0]]
        samples.append(Sample(id=str(rel), image=str(rel), label=rel.parts[1], split=split))
    return samples


@pytest.mark.realdata
@pytest.mark.slow  # about 3 s alone, over 10 s on a busy 2-core machine
def test_sartaj_exact_duplicates(shared_data: Path) -> None:
    root = shared_data / "sartaj-4class"
    samples = _sartaj_samples(root)
    assert len(samples) == 3264
    report = audit_dataset(samples, root, workers=2, progress=False)
    exact = report.exact
    assert (exact.n_groups, exact.n_files, exact.n_extra_copies) == (166, 403, 237)
    assert exact.cross_split_groups == 64
    assert exact.files_with_copy_elsewhere["test"] == 88
    assert exact.within_split_groups == {"test": 41, "train": 61}
    assert exact.label_conflict_groups == 0
    # Near duplicates: close to the published 271 / 484 / 116 (draft decoding moves a few).
    assert abs(report.near.files_with_copy_elsewhere["test"] - 271) <= 10
    assert abs(report.near.cross_split_pairs - 484) <= 20
    assert abs(report.near.label_conflict_pairs - 116) <= 10


@pytest.mark.realdata
def test_corrupt_real_file_is_reported(shared_data: Path, tmp_path: Path) -> None:
    source = sorted((shared_data / "sartaj-4class" / "Testing" / "no_tumor").glob("*.jpg"))[:3]
    for path in source:
        shutil.copy(path, tmp_path / path.name)
    broken = tmp_path / source[1].name
    broken.write_bytes(broken.read_bytes()[:200])
    samples = [sample(tmp_path, p.name, "no_tumor") for p in source]
    report = audit_dataset(samples, tmp_path, workers=1, progress=False)
    assert [row["path"] for row in report.unreadable] == [source[1].name]
    assert report.formats == {"JPEG": 2}
