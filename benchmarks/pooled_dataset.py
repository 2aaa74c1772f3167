"""Pool three public sources into one 4-class folder of symlinks, with a leak-free split.

    python benchmarks/pooled_dataset.py /tmp/pooled     # writes /tmp/pooled/data + splits.csv

sartaj-4class (Training and Testing), the Figshare slices of figshare-seg (classes from its
``labels.csv``) and the ``no`` images of br35h-binary become ``<class>/<source>/<file>``.
This is the multi-source set on which a model learns each source's export look instead of
the anatomy (every Figshare tumour is a min-max scaled PNG, most no-tumour images JPEGs).
The split groups exact and near copies (pHash, across the sources: Br35H and sartaj share
hundreds) and Figshare's neighbouring-number runs (probably one patient), so none crosses it.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
from pathlib import Path

from braintumor.data.audit import audit_dataset
from braintumor.data.layouts import detect_layout, normalise_class_name
from braintumor.data.splits import (
    duplicate_groups,
    figshare_number_groups,
    train_val_test_split,
    write_splits,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BRAINTUMOR_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.resolve())


def build(out: Path) -> Path:
    """Write the symlink folder ``out``; returns it."""
    if out.exists():
        shutil.rmtree(out)
    sartaj = SHARED / "sartaj-4class"
    for split in ("Training", "Testing"):
        for folder in sorted((sartaj / split).iterdir()):
            label = normalise_class_name(folder.name)
            for image in sorted(folder.iterdir()):
                _link(image, out / label / "sartaj" / f"{split}_{image.name}")
    figshare = SHARED / "figshare-seg"
    with open(figshare / "labels.csv") as handle:
        for row in csv.DictReader(handle):
            image = figshare / "images" / f"{row['number']}.png"
            # The bare number stays the file stem: the split groups neighbouring numbers.
            _link(image, out / row["label"] / "figshare" / image.name)
    for image in sorted((SHARED / "br35h-binary" / "no").iterdir()):
        _link(image, out / "no_tumor" / "br35h" / image.name)
    return out


def split(data: Path, out: Path, seed: int = 42) -> Path:
    """Grouped 70/15/15 split of ``data`` into ``out`` (splits.csv)."""
    layout = detect_layout(data)
    samples = layout.samples
    report = audit_dataset(samples, layout.root, phash_threshold=6)
    figshare = [i for i, s in enumerate(samples) if "/figshare/" in s.image]
    runs = figshare_number_groups([samples[i] for i in figshare])
    extra: list[str | None] = [None] * len(samples)
    for index, group in zip(figshare, runs, strict=True):
        extra[index] = group
    groups = duplicate_groups(samples, report, 6, extra_groups=extra)
    assignment = train_val_test_split(samples, (0.7, 0.15, 0.15), seed, groups)
    write_splits(out, samples, assignment, groups)
    return out


def source_report(data: Path) -> list[str]:
    """Images per class and source, and a warning for every class that a single source makes
    and every source that gives a single class: a model can then tell the class by the
    source's export look (a shortcut)."""
    counts: dict[str, dict[str, int]] = {}
    for label_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        for source_dir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
            n = sum(1 for _ in source_dir.iterdir())
            counts.setdefault(label_dir.name, {})[source_dir.name] = n
    lines = [f"{label}: {sources}" for label, sources in counts.items()]
    lines += [
        f"warning: every {label} image comes from {next(iter(sources))}"
        for label, sources in counts.items()
        if len(sources) == 1
    ]
    by_source: dict[str, list[str]] = {}
    for label, sources in counts.items():
        for source in sources:
            by_source.setdefault(source, []).append(label)
    lines += [
        f"warning: every {source} image is {labels[0]}"
        for source, labels in by_source.items()
        if len(labels) == 1
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for data/ and splits.csv")
    args = parser.parse_args()
    data = build(args.out / "data")
    print("\n".join(source_report(data)))
    print(split(data, args.out / "splits.csv"))


if __name__ == "__main__":
    main()
