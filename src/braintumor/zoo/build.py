"""Train a reference model on the shared public sources and install it in the zoo.

Each reference model names the sources that fit its task and which of their classes it takes;
they are passed to training as several ``--data`` values (:mod:`braintumor.data.sources`), so
exact and near duplicates are grouped across all sources before the split, LGG slices stay
with their patient, and the test figures come per source.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from braintumor.atomic import write_text_atomic
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.io.masks import read_mask_file
from braintumor.models.card import CardExtras, metric_rows, write_card
from braintumor.models.card_loso import read_loso_results
from braintumor.models.folder import read_model_info
from braintumor.zoo.compact import compact_parity, install_zoo_model
from braintumor.zoo.inputs import build_inputs
from braintumor.zoo.specs import REFERENCE_MODELS, SOURCE_TERMS, ReferenceSpec


def source_counts(data: list[str], task: str, classes: list[str] | None) -> dict[str, dict]:
    """Samples per source and class, as training will see them. A sample without a class is
    counted by its mask: ``tumour slice`` or ``empty mask`` for a 2D slice (LGG), ``case`` for
    a multimodal case (BraTS), ``unlabelled`` without a mask."""
    from braintumor.data.sources import load_data

    counts: dict[str, dict[str, int]] = {}
    for sample in load_data(data, task, classes).samples:
        per_label = counts.setdefault(sample.source or "-", {})
        label = str(sample.label) if sample.label is not None else _mask_kind(sample)
        per_label[label] = per_label.get(label, 0) + 1
    return counts


def _mask_kind(sample: Sample) -> str:
    """What an unclassified sample is, for the card's training-data table."""
    if sample.modalities:
        return "case"
    if sample.mask is None:
        return "unlabelled"
    mask, _ = read_mask_file(sample.mask)
    return "tumour slice" if mask.any() else "empty mask"


def per_source_test(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the test split's per-source figures (runs over several sources)."""
    test = metrics.get("test")
    if not isinstance(test, dict):
        return []
    per_source = test.get("per_source")
    if per_source and test.get("task") == "segment":
        from braintumor.report.evaluation import segmentation_source_rows

        return list(segmentation_source_rows(per_source))

    def cell(figures: dict[str, Any], key: str) -> str:
        value, ci = figures.get(key), (figures.get("ci95") or {}).get(key)
        if value is None:
            return "n/a"
        return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    return [
        {
            "source": source,
            "test samples": figures["n"],
            "accuracy": cell(figures, "accuracy"),
            "balanced accuracy": cell(figures, "balanced_accuracy"),
            "tumour ROC-AUC": cell(figures, "tumor_auc"),
        }
        for source, figures in (per_source or {}).items()
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
    retuned: str | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train reference model ``name``, install its compact copy in the zoo, return a summary.

    ``reuse`` keeps a finished run in ``work_dir`` and only rewrites its card and zoo copy.
    ``resume`` goes on with an interrupted build in ``work_dir`` (finished members kept, the
    stopped one from its last checkpoint); its ``train_seconds`` are this call's only.
    ``loso_results`` (a ``benchmarks/loso.py`` results file of the spec's setting) adds the
    leave-one-source-out section to the card. ``retuned``: the command that gave the reused
    run's model its inference settings afterwards (:mod:`braintumor.zoo.retune`), shown on
    the card under the build command.
    """
    from braintumor.tasks.registry import get_task
    from braintumor.training.members import train_members
    from braintumor.training.run import train_run

    spec = REFERENCE_MODELS[name]
    loso = read_spec_loso(spec, loso_results) if loso_results is not None else None
    budget = spec.minutes if minutes is None else minutes
    run_dir = work_dir / f"{name}-run"
    reusing = reuse and (run_dir / "metrics.json").is_file()
    resuming = resume and not reusing and run_dir.is_dir()
    if not reusing and not resuming:
        shutil.rmtree(run_dir, ignore_errors=True)
    inputs = build_inputs(spec, data_root, budget, extra_overrides)
    data, overrides, recipe = inputs.data, inputs.overrides, inputs.recipe
    counts = source_counts(data, get_task(recipe.task).data_kinds[0], recipe.classes)
    start = time.perf_counter()
    if reusing:
        model_dir = run_dir / "model"
        metrics = json.loads((run_dir / "metrics.json").read_text())
    else:
        given = data if len(data) > 1 else data[0]
        if spec.members > 1:
            result = train_members(
                recipe, given, run_dir, spec.members, resume=resuming, progress=False
            )
        else:
            result = train_run(recipe, given, run_dir, resume=resuming, progress=False)
        assert result.model_dir is not None  # single process: rank zero
        model_dir, metrics = result.model_dir, result.metrics
    seconds = time.perf_counter() - start
    info = json.loads((model_dir / "model.json").read_text())
    command = f"python benchmarks/train_reference.py {name} --minutes {budget:g}"
    if extra_overrides:
        command += "".join(f" --set {o}" for o in extra_overrides)
    if retuned:
        command += f"\n# then its inference settings, its test split evaluated again:\n{retuned}"
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
        per_source_test=per_source_test(metrics),
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
        "resumed": resuming,
        "load_average": None if reusing else os.getloadavg(),
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
    """Merge one build's summary into the results file (one entry per reference model).

    A re-carded run (``train_seconds`` None) keeps the training time its first build recorded,
    the machine's load during that training and whether that build was resumed.
    """
    data: dict[str, Any] = (
        json.loads(path.read_text()) if path.is_file() else {"benchmark": "reference_models"}
    )
    models = data.setdefault("models", {})
    previous = models.get(summary["name"], {})
    if summary["train_seconds"] is None and previous.get("train_seconds") is not None:
        kept = {
            k: previous[k] for k in ("train_seconds", "load_average", "resumed") if k in previous
        }
        summary = {**summary, **kept}
    models[summary["name"]] = summary
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
