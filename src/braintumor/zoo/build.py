"""Train a reference model on the shared public sources and install it in the zoo.

Each reference model names the sources that fit its task and how their labels map. Until
training takes several ``--data`` folders at once, classification sources are gathered into
one staging folder of links (``<class>/<source>/<file>``): the toolkit then groups exact and
near duplicates across all sources before splitting, and every sample id carries its source.
Segmentation and BraTS models train on one source, as the table below says.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from braintumor.atomic import write_text_atomic
from braintumor.errors import DataError
from braintumor.models.card import CardExtras, metric_rows, write_card
from braintumor.models.card_loso import read_loso_results
from braintumor.models.folder import read_model_info
from braintumor.zoo.compact import compact_parity, install_zoo_model

TUMOUR_CLASSES = ("glioma", "meningioma", "pituitary", "tumor")

# Each source's licence or terms, as the shared data's README states them.
SOURCE_TERMS = {
    "sartaj-4class": "no licence file in the source repository; check the Kaggle dataset's terms",
    "navoneel-binary": "Apache-2.0 (source repository)",
    "br35h-binary": "see the Kaggle dataset 'Br35H :: Brain Tumor Detection 2020' for its terms",
    "figshare-seg": "CC BY 4.0 (Jun Cheng; Cheng et al., PLoS ONE 2015 and 2016)",
    "lgg-kaggle3m": "CC BY-NC-SA 4.0 (Buda, Saha, Mazurowski 2019)",
    "brats2013-4cases": "CC BY-NC-SA 3.0 CH (BraTS 2013/2015; Menze et al., IEEE TMI 2015)",
}


@dataclass(frozen=True)
class Source:
    """A shared dataset folder and the labels it contributes (None: the task's own labels)."""

    name: str
    labels: dict[str, str] | None = None  # normalised label -> label used in training


@dataclass(frozen=True)
class ReferenceSpec:
    """How one reference model is built."""

    name: str
    summary: str
    recipe: str
    sources: tuple[Source, ...]
    minutes: float
    overrides: tuple[str, ...] = ()
    stage: bool = True  # classification: gather the sources into one folder of links
    notes: tuple[str, ...] = field(default=())
    # benchmarks/loso.py setting whose results the card shows, and the results file's name
    # (in benchmarks/results/) used unless another is given
    loso_setting: str | None = None
    loso_results: str | None = None


# Reference models meet scans from sources they never saw: standardise the grey levels inside
# the head and train through the perturbations other converters make (docs/training.md).
_INVARIANT = (
    "preprocess.intensity=equalize",
    "augment.zoom=0.2",
    "augment.gamma=0.4",
    "augment.histogram_shift=0.3",
    "augment.bias_field=0.2",
    "augment.sharpen=0.5",
    "augment.resample=0.2",
    "augment.noise=0.02",
    "augment.jpeg=0.3",
)

_FOUR = {c: c for c in ("glioma", "meningioma", "pituitary", "no_tumor")}
_NO = {"no_tumor": "no_tumor"}
_BINARY = {"no_tumor": "no_tumor", **{c: "tumor" for c in TUMOUR_CLASSES}}

REFERENCE_MODELS: dict[str, ReferenceSpec] = {
    spec.name: spec
    for spec in (
        ReferenceSpec(
            name="4class",
            summary="Glioma / meningioma / pituitary tumour / no tumour on one 2D brain MRI slice.",
            recipe="fast-cpu-4class",
            sources=(
                Source("sartaj-4class", _FOUR),
                Source("figshare-seg", _FOUR),
                Source("br35h-binary", _NO),
                Source("navoneel-binary", _NO),
            ),
            minutes=13,
            overrides=_INVARIANT,
            loso_setting="4class",
            loso_results="loso_4class_today.json",
        ),
        ReferenceSpec(
            name="binary",
            summary="Tumour / no tumour on one 2D brain MRI slice.",
            recipe="fast-cpu-4class",
            sources=(
                Source("br35h-binary", _BINARY),
                Source("navoneel-binary", _BINARY),
                Source("sartaj-4class", _BINARY),
                Source("figshare-seg", _BINARY),
            ),
            minutes=9,
            # about four tumour slices to one without
            overrides=(*_INVARIANT, "class_weights=true"),
            loso_setting="binary",
            loso_results="loso_binary_today.json",
            notes=(
                "lgg-kaggle3m slices are not among the sources yet: their patient grouping "
                "needs multi-source training (a folder of links would let one patient's "
                "slices cross the split).",
            ),
        ),
        ReferenceSpec(
            name="seg2d",
            summary="2D tumour segmentation of one brain MRI slice (T1 contrast-enhanced).",
            recipe="fast-cpu-seg",
            sources=(Source("figshare-seg"),),
            minutes=9,
            overrides=_INVARIANT,
            stage=False,
            notes=(
                "Trained on Figshare T1 contrast-enhanced slices only; FLAIR abnormality (as in "
                "lgg-kaggle3m) is a different target it has not learnt.",
            ),
        ),
        ReferenceSpec(
            name="brats2d",
            summary="BraTS regions (whole tumour, tumour core, enhancing tumour) from FLAIR + "
            "T1c volumes, slice by slice. Trained on FOUR cases: a demonstration, not a model.",
            recipe="fast-cpu-brats",
            sources=(Source("brats2013-4cases"),),
            minutes=5,
            overrides=("extra.modalities=[flair, t1ce]",),
            stage=False,
            notes=(
                "Trained on only four BraTS 2013 cases (its test split holds one case): its "
                "figures say almost nothing about other scans.",
                "Needs FLAIR and T1c only, z-scored inside the brain like the BraTS 2013 files.",
            ),
        ),
    )
}


def _flat(text: str) -> str:
    return text.replace("/", "__").replace(" ", "_")


def stage_sources(spec: ReferenceSpec, data_root: Path, stage: Path) -> dict[str, dict[str, int]]:
    """Link every usable sample of the spec's sources into ``stage/<label>/<source>/``.

    Returns label counts per source. Sources are read by the toolkit's layout detection.
    """
    from braintumor.data.layouts import detect_layout

    shutil.rmtree(stage, ignore_errors=True)
    counts: dict[str, dict[str, int]] = {}
    for source in spec.sources:
        layout = detect_layout(data_root / source.name)
        per_label: dict[str, int] = {}
        for sample in layout.samples:
            label = (source.labels or {}).get(str(sample.label))
            if label is None:
                continue
            target = stage / label / source.name / _flat(sample.id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(Path(sample.image).resolve(), target)
            per_label[label] = per_label.get(label, 0) + 1
        counts[source.name] = per_label
    return counts


def _source_counts_direct(spec: ReferenceSpec, data_root: Path) -> dict[str, dict[str, int]]:
    from braintumor.data.layouts import detect_layout

    counts = {}
    for source in spec.sources:
        labels: dict[str, int] = {}
        samples = detect_layout(data_root / source.name).samples
        for sample in samples:
            if sample.label is not None:
                labels[str(sample.label)] = labels.get(str(sample.label), 0) + 1
        counts[source.name] = labels or {"unlabelled": len(samples)}
    return counts


def per_source_test(run_dir: Path) -> list[dict[str, Any]]:
    """Accuracy on the test split by source, from the sample ids ``<label>/<source>/<file>``."""
    path = run_dir / "test" / "predictions.csv"
    if not path.is_file():
        return []
    by_source: dict[str, list[int]] = {}
    with path.open() as handle:
        for row in csv.DictReader(handle):
            parts = row["id"].split("/")
            if len(parts) >= 3 and "correct" in row:
                by_source.setdefault(parts[1], []).append(int(row["correct"]))
    return [
        {"source": name, "test samples": len(v), "accuracy": f"{sum(v) / len(v):.3f}"}
        for name, v in sorted(by_source.items())
    ]


def headline(task: str, metrics: dict[str, Any]) -> dict[str, str]:
    """The figures ``models --zoo`` shows, from the test split, with their 95% intervals."""
    test = metrics.get("test")
    if not isinstance(test, dict):
        return {}
    wanted = ("accuracy", "balanced accuracy", "macro ROC-AUC", "dice (per slice)", "WT Dice")
    return {
        name: value + (f" {ci}" if ci != "n/a" else "")
        for name, value, ci in metric_rows(task, test)
        if name.startswith(wanted)
    }


def build_reference(
    name: str,
    data_root: Path,
    work_dir: Path,
    minutes: float | None = None,
    extra_overrides: list[str] | None = None,
    zoo_dir: Path | None = None,
    reuse: bool = False,
    loso_results: Path | None = None,
) -> dict[str, Any]:
    """Train reference model ``name``, install its compact copy in the zoo, return a summary.

    ``reuse`` keeps a finished run in ``work_dir`` and only rewrites its card and zoo copy.
    ``loso_results`` (a ``benchmarks/loso.py`` results file of the spec's setting) adds the
    leave-one-source-out section to the card.
    """
    from braintumor.config import load_recipe
    from braintumor.training.run import train_run

    spec = REFERENCE_MODELS[name]
    loso = read_spec_loso(spec, loso_results) if loso_results is not None else None
    budget = spec.minutes if minutes is None else minutes
    run_dir = work_dir / f"{name}-run"
    reusing = reuse and (run_dir / "metrics.json").is_file()
    if not reusing:
        shutil.rmtree(run_dir, ignore_errors=True)
    if spec.stage:
        data = work_dir / f"{name}-sources"
        counts = stage_sources(spec, data_root, data)
    else:
        data = data_root / spec.sources[0].name
        counts = _source_counts_direct(spec, data_root)
    overrides = [*spec.overrides, f"max_minutes={budget}", *(extra_overrides or [])]
    start = time.perf_counter()
    if reusing:
        model_dir = run_dir / "model"
        metrics = json.loads((run_dir / "metrics.json").read_text())
    else:
        result = train_run(load_recipe(spec.recipe, overrides), data, run_dir, progress=False)
        assert result.model_dir is not None  # single process: rank zero
        model_dir, metrics = result.model_dir, result.metrics
    seconds = time.perf_counter() - start
    info = json.loads((model_dir / "model.json").read_text())
    command = f"python benchmarks/train_reference.py {name} --minutes {budget:g}"
    if extra_overrides:
        command += "".join(f" --set {o}" for o in extra_overrides)
    extras = CardExtras(
        title=f"braintumor reference model `zoo:{name}`",
        summary=spec.summary,
        license="other",
        sources=[
            {
                "name": source,
                "samples": sum(labels.values()),
                "labels": labels,
                "licence": SOURCE_TERMS.get(source, "see the dataset"),
            }
            for source, labels in counts.items()
        ],
        per_source_test=per_source_test(run_dir),
        notes=list(spec.notes),
        build_command=command,
        loso=loso,
        loso_file=None if loso_results is None else loso_results.name,
    )
    write_card(model_dir, read_model_info(model_dir), metrics, extras)
    figures = headline(info["task"], metrics)
    folder = install_zoo_model(model_dir, name, spec.summary, figures, zoo_dir)
    summary = {
        "name": name,
        "command": command,
        "recipe": spec.recipe,
        "overrides": overrides,
        "sources": counts,
        "train_seconds": None if reusing else round(seconds, 1),
        "load_average": os.getloadavg(),
        "headline": figures,
        "compact_max_prob_diff": compact_parity(model_dir, folder),
        "zoo_bytes": sum(f.stat().st_size for f in folder.iterdir()),
        "per_source_test": extras.per_source_test,
        "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return summary


def read_spec_loso(spec: ReferenceSpec, path: Path) -> dict[str, Any]:
    """The leave-one-source-out results at ``path``, checked to be the spec's setting."""
    if spec.loso_setting is None:
        raise DataError(f"zoo:{spec.name} has no leave-one-source-out setting (benchmarks/loso.py)")
    return read_loso_results(path, spec.loso_setting)


def write_build_record(path: Path, summary: dict[str, Any]) -> None:
    """Merge one build's summary into the results file (one entry per reference model)."""
    data = json.loads(path.read_text()) if path.is_file() else {"benchmark": "reference_models"}
    data.setdefault("models", {})[summary["name"]] = summary
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
