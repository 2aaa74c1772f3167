"""Cross-source duplicate grouping on real slices copied between two temporary datasets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from braintumor.config import load_recipe
from braintumor.data.cross_sources import count_cross_source_groups
from braintumor.data.sources import load_data
from braintumor.protocols.loso import plan_fold, source_groups

pytestmark = pytest.mark.realdata


def _pick(folder: Path, n: int) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:n]


def test_real_copies_between_two_datasets_share_a_group(shared_data: Path, tmp_path: Path) -> None:
    sartaj = shared_data / "sartaj-4class" / "Training"
    a, b = tmp_path / "site-a", tmp_path / "site-b"
    for cls in ("glioma_tumor", "no_tumor"):
        for path in _pick(sartaj / cls, 6):
            (a / cls).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, a / cls / path.name)
    # Site b: two byte copies, two re-exports (smaller, re-encoded), and unrelated slices.
    (b / "glioma").mkdir(parents=True)
    (b / "notumor").mkdir(parents=True)
    glioma = _pick(a / "glioma_tumor", 4)
    shutil.copyfile(glioma[0], b / "glioma" / "byte-copy-0.jpg")
    shutil.copyfile(glioma[1], b / "glioma" / "byte-copy-1.jpg")
    for k, path in enumerate(glioma[2:4]):
        with Image.open(path) as image:
            small = image.convert("L").resize((image.width * 3 // 4, image.height * 3 // 4))
            small.save(b / "glioma" / f"re-export-{k}.png")
    for path in sorted((sartaj / "glioma_tumor").iterdir())[-3:]:
        shutil.copyfile(path, b / "glioma" / path.name)
    for path in sorted((sartaj / "no_tumor").iterdir())[-3:]:
        shutil.copyfile(path, b / "notumor" / path.name)

    layout = load_data([str(a), str(b)])
    recipe = load_recipe("fast-cpu-4class")
    groups = source_groups(layout, recipe)
    group_of = {s.id: g for s, g in zip(layout.samples, groups, strict=True)}
    for k, path in enumerate(glioma[:2]):
        assert (
            group_of[f"site-a/glioma_tumor/{path.name}"]
            == group_of[f"site-b/glioma/byte-copy-{k}.jpg"]
        )
    for k, path in enumerate(glioma[2:4]):
        assert (
            group_of[f"site-a/glioma_tumor/{path.name}"]
            == group_of[f"site-b/glioma/re-export-{k}.png"]
        )
    assert count_cross_source_groups(layout.samples, groups) >= 4

    fold = plan_fold(layout.samples, groups, ["site-b"], [], recipe, drop="train")
    removed = {
        s.id for s, side in zip(layout.samples, fold.assignment, strict=True) if side == "excluded"
    }
    assert {f"site-a/glioma_tumor/{p.name}" for p in glioma} <= removed
    assert fold.excluded["site-a"] == len(removed)
