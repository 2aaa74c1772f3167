"""Model cards in the Hugging Face convention: ``README.md`` with YAML metadata, for people.

Every model folder written by ``train`` gets one, so the folder can be pushed to a model hub
as it is; the reference models of the zoo add their sources' licences and the
leave-one-source-out figures (:class:`CardExtras`). The card names datasets, never paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from braintumor.atomic import write_text_atomic
from braintumor.models.card_loso import loso_section
from braintumor.models.folder import ModelInfo, read_model_info
from braintumor.tasks.registry import CLASSES, LABELS, MASK, get_task

CARD_FILE = "README.md"
LIBRARY = "braintumor"
INTENDED_USE = (
    "Research and teaching: trying methods on public brain MRI data, comparing models, "
    "building tools. **Not for diagnosis or any clinical decision**: the model was trained on "
    "small public research datasets of uneven quality and has not been validated clinically."
)
# By what the task's model outputs (Task.outputs), so that a new task gets the card of its kind.
_PIPELINE = {
    CLASSES: "image-classification",
    MASK: "image-segmentation",
    LABELS: "image-segmentation",
}
_CARD_METRICS = {CLASSES: ["accuracy", "f1", "roc_auc"], MASK: ["dice", "iou"], LABELS: ["dice"]}
_FAILURE_MODES = {
    CLASSES: [
        "Inputs unlike the training slices: other planes, sequences, scanners or crops than "
        "the training data holds, CT, non-brain images; it still outputs a class.",
        "Classes it was not trained on (other tumour types, lesions, post-operative brains).",
        "Labels of the public training sets are not all reliable, and probabilities are not "
        "calibrated for a new source.",
    ],
    MASK: [
        "Sequences and planes other than those of the training data (e.g. a model trained on "
        "T1 contrast-enhanced slices misses FLAIR-only abnormality).",
        "Small tumours and tumours touching the skull: outlines are coarse at the model's "
        "input size.",
        "Slices without tumour can receive small false positives.",
    ],
    LABELS: [
        "Trained on very few cases: expect wide variation from case to case.",
        "Needs the sequences it was trained on, registered and skull-stripped like BraTS.",
    ],
}


def _outputs(task: str) -> str:
    """What the task ``task`` outputs (:attr:`Task.outputs`): the card's kind."""
    return get_task(task).outputs


@dataclass
class CardExtras:
    """What a card adds beyond ``model.json``: zoo models set these."""

    title: str | None = None
    summary: str | None = None
    license: str = "other"
    # one dict per source: name, samples, labels (dict), licence, terms
    sources: list[dict[str, Any]] = field(default_factory=list)
    # a benchmarks/loso.py results file (models/card_loso.py) and its name
    loso: dict[str, Any] | None = None
    loso_file: str | None = None
    per_source_test: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    build_command: str | None = None


def _interval(value: Any, ci: Any) -> tuple[str, str]:
    shown = f"{value:.3f}" if isinstance(value, int | float) else "n/a"
    numbers = isinstance(ci, list | tuple) and all(isinstance(v, int | float) for v in ci)
    if numbers and len(ci) == 2:
        return shown, f"[{ci[0]:.3f}, {ci[1]:.3f}]"
    return shown, "n/a"


def metric_rows(task: str, split_metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, 95% interval) rows from one split's evaluation metrics."""
    outputs = _outputs(task)
    if outputs == CLASSES:
        ci = split_metrics.get("ci95") or {}
        macro = split_metrics.get("macro") or {}
        return [
            ("accuracy", *_interval(split_metrics.get("accuracy"), ci.get("accuracy"))),
            ("balanced accuracy", *_interval(split_metrics.get("balanced_accuracy"), None)),
            ("macro F1", *_interval(macro.get("f1"), ci.get("macro_f1"))),
            ("macro ROC-AUC", *_interval(macro.get("roc_auc"), ci.get("macro_roc_auc"))),
        ]
    if outputs == MASK:
        rows = []
        summary = split_metrics.get("summary") or {}
        for level, label in (("per_image", "per slice"), ("per_group", "per patient")):
            for name in ("dice", "iou"):
                block = (summary.get(level) or {}).get(name)
                if block:
                    rows.append((f"{name} ({label})", *_interval(block["mean"], block.get("ci95"))))
        return rows
    return [
        (
            f"{region} Dice (mean over {split_metrics.get('n_cases', '?')} cases)",
            *_interval(split_metrics.get(f"{region.lower()}_dice"), None),
        )
        for region in ("WT", "TC", "ET")
    ]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def _sources(info: ModelInfo, extras: CardExtras) -> list[dict[str, Any]]:
    if extras.sources:
        return extras.sources
    fp = info.data_fingerprint or {}
    listed = fp.get("sources") if isinstance(fp.get("sources"), list) else [fp]
    return [
        {
            "name": s.get("name") or s.get("source") or "unnamed dataset",
            "samples": s.get("n_samples"),
            "labels": s.get("labels") or {},
        }
        for s in listed
        if s
    ]


def _front_matter(info: ModelInfo, extras: CardExtras, sources: list[dict[str, Any]]) -> str:
    meta: dict[str, Any] = {
        "license": extras.license,
        "library_name": LIBRARY,
        "pipeline_tag": _PIPELINE[_outputs(info.task)],
        "tags": ["braintumor", "medical-imaging", "mri", "brain-tumor", info.task],
        "datasets": [s["name"] for s in sources],
        "metrics": _CARD_METRICS[_outputs(info.task)],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def render_card(
    info: ModelInfo, metrics: dict[str, Any] | None = None, extras: CardExtras | None = None
) -> str:
    """The card's text: YAML front matter, then task, data, results, recipe, use and limits."""
    extras = extras or CardExtras()
    sources = _sources(info, extras)
    recipe = info.recipe or {}
    title = extras.title or f"{recipe.get('name', info.architecture)} ({info.task})"
    size = info.image_size
    if not isinstance(size, int):
        size = "x".join(map(str, size))
    lines = [_front_matter(info, extras, sources), f"# {title}", ""]
    if extras.summary:
        lines += [extras.summary, ""]
    lines += ["## Model", ""]
    lines += _table(
        ["", ""],
        [
            ["task", info.task],
            ["classes", ", ".join(info.class_names)],
            ["architecture", architecture_text(info)],
            ["input", f"{size} px, {info.in_channels} channel(s)"],
            ["test-time settings", _inference_text(info.inference)],
            ["created", info.created or "unknown"],
            ["braintumor version", info.braintumor_version],
        ],
    )
    lines += ["", "## Training data", ""]
    source_rows = []
    for s in sources:
        labels = ", ".join(f"{k} {v}" for k, v in sorted((s.get("labels") or {}).items()))
        source_rows.append([s["name"], s.get("samples", "?"), labels or "-", s.get("licence", "-")])
    lines += _table(["dataset", "samples", "labels", "licence / terms"], source_rows)
    fp = info.data_fingerprint or {}
    if fp.get("ids_sha256"):
        lines += ["", f"Sample list fingerprint (SHA-256 of the sorted ids): `{fp['ids_sha256']}`."]
    lines += _results(info, metrics or {}, extras)
    lines += ["", "## Recipe", ""]
    keys = (
        "name",
        "model",
        "image_size",
        "optimizer",
        "lr",
        "batch_size",
        "max_epochs",
        "max_minutes",
        "loss",
        "augment",
        "preprocess",
    )
    lines += _table(["key", "value"], [[k, recipe[k]] for k in keys if k in recipe])
    if extras.build_command:
        lines += ["", "Built with:", "", "```", extras.build_command, "```"]
    lines += ["", "## Intended use", "", INTENDED_USE, "", "## Known failure modes", ""]
    lines += [f"- {text}" for text in _FAILURE_MODES[_outputs(info.task)] + extras.notes]
    return "\n".join(lines) + "\n"


def _inference_text(inference: dict[str, Any]) -> str:
    """What ``predict`` does by default beyond one forward pass (``model.json`` ``inference``)."""
    said = {
        "tta": "left-right mirror averaged in (TTA)",
        "keep_largest": "largest tumour region kept",
        "stack_components": "3D components across a patient's stack",
    }
    on = [text for key, text in said.items() if inference.get(key)]
    return "; ".join(on) if on else "none (one forward pass)"


def _results(info: ModelInfo, metrics: dict[str, Any], extras: CardExtras) -> list[str]:
    lines: list[str] = []
    for split, title in (("test", "held-out test split"), ("external", "external test data")):
        block = metrics.get(split)
        if isinstance(block, dict):
            count = f"{block['n_cases']} cases" if "n_cases" in block else None
            count = count or f"{block.get('n') or block.get('n_samples')} samples"
            lines += ["", f"## Results: {title} ({count})", ""]
            rows = [list(r) for r in metric_rows(info.task, block)]
            lines += _table(["metric", "value", "95% interval"], rows)
    if not lines and info.metrics:
        lines += ["", "## Results", ""]
        lines += _table(["metric", "value"], [[k, v] for k, v in sorted(info.metrics.items())])
    if extras.per_source_test:
        header = list(extras.per_source_test[0])
        lines += ["", "### Test split by source", ""]
        lines += _table(header, [[row[k] for k in header] for row in extras.per_source_test])
    if extras.loso:
        lines += loso_section(extras.loso, info.recipe, extras.loso_file)
    return lines


def write_card(
    folder: str | Path,
    info: ModelInfo | None = None,
    metrics: dict[str, Any] | None = None,
    extras: CardExtras | None = None,
) -> Path:
    """Write ``README.md`` into the model folder (atomically) and return its path."""
    folder = Path(folder)
    info = info or read_model_info(folder)
    path = folder / CARD_FILE
    write_text_atomic(path, render_card(info, metrics, extras))
    return path


def read_card(model: str | Path) -> str:
    """The card of a model folder (or ``zoo:NAME``); rendered from ``model.json`` if absent."""
    from braintumor.zoo import resolve_model_ref

    folder = resolve_model_ref(model)
    path = folder / CARD_FILE
    if path.is_file():
        return path.read_text()
    return render_card(read_model_info(folder))


def split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    """(YAML metadata, body) of a card; empty metadata when it has none."""
    if not text.startswith("---\n"):
        return {}, text
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head) or {}, body


def architecture_text(info: ModelInfo) -> str:
    """The network and its arguments; an ensemble says how many members it averages."""
    text = f"{info.architecture} {info.model_args or ''}".strip()
    return f"ensemble of {info.members} x {text} (logits averaged)" if info.members > 1 else text
