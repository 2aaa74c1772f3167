"""Score a BraTS model on labelled cases: WT/TC/ET Dice, HD95 and volumes per case and on
average, system 002's per-label sensitivity / specificity / F1 / precision, and an HTML report.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from braintumor.atomic import write_text_atomic
from braintumor.brats.inference import brats_preprocessing, predict_labels, write_prediction
from braintumor.brats.labels import LABEL_NAMES, REGION_NAMES, to_working
from braintumor.data.samples import Sample
from braintumor.errors import DataError
from braintumor.io import read_image
from braintumor.metrics.brats import brats_case_scores
from braintumor.metrics.segmentation import multiclass_label_scores
from braintumor.models.folder import LoadedModel
from braintumor.report.html import ReportFigure, ReportSection, write_report

CASE_METRICS = ("dice", "hd95", "sensitivity", "precision", "volume_pred_ml", "volume_truth_ml")


def _truth(sample: Sample, convention: str, shape: tuple[int, ...]) -> np.ndarray:
    if not sample.mask:
        raise DataError(f"{sample.image}: case {sample.id} has no label map to evaluate against")
    labels = read_image(Path(sample.mask)).array
    if labels.shape != shape:
        raise DataError(f"{sample.mask}: shape {labels.shape} differs from the images' {shape}")
    working, _ = to_working(labels, convention)
    return working


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def evaluate_cases(
    loaded: LoadedModel,
    samples: list[Sample],
    out_dir: Path,
    tta: bool = False,
    overlap: float | None = None,
) -> dict[str, Any]:
    """Predict and score every case; writes predictions, ``metrics.json`` and ``report.html``.

    Truth labels are read in the training convention recorded in the model (``auto`` detects
    it per case). Returns ``{"cases": [...], "mean": {region: {metric: value}},
    "per_label": {...}, "wt_dice": ..., "tc_dice": ..., "et_dice": ...}`` (the last three
    repeat the mean Dice per region, the headline numbers of a run's model card).
    """
    out_dir = Path(out_dir)
    pre = brats_preprocessing(loaded)
    if not samples:
        raise DataError("BraTS evaluation: no cases given")
    cases: list[dict[str, Any]] = []
    label_rows: list[dict[str, Any]] = []
    figures: list[ReportFigure] = []
    for sample in samples:
        pred = predict_labels(loaded, sample, tta=tta, overlap=overlap)
        record = write_prediction(loaded, sample, pred, out_dir / "predictions")
        truth = _truth(sample, pre.get("convention", "auto"), pred.labels.shape)
        scores = brats_case_scores(pred.labels, truth, pred.case.spacing, "brats2023")
        row: dict[str, Any] = {"case": sample.id, "seconds": record["seconds"]}
        for region in REGION_NAMES:
            for metric in CASE_METRICS:
                row[f"{region}_{metric}"] = scores[region][metric]
        cases.append(row)
        per_label = multiclass_label_scores(pred.labels, truth, labels=[1, 2, 3])["per_label"]
        for label, values in per_label.items():
            name = LABEL_NAMES[int(label)]
            label_rows.append({"case": sample.id, "label": name, **values})
        for png in record["overlays"][:1]:
            figures.append(ReportFigure(Path(png).read_bytes(), f"{sample.id}: {Path(png).name}"))
    mean = {
        region: {m: _mean([c[f"{region}_{m}"] for c in cases]) for m in CASE_METRICS}
        for region in REGION_NAMES
    }
    label_means: dict[str, dict[str, float | None]] = {}
    for name in LABEL_NAMES[1:]:
        rows = [r for r in label_rows if r["label"] == name]
        keys = [k for k in rows[0] if k not in ("case", "label")] if rows else []
        label_means[name] = {k: _mean([r[k] for r in rows]) for k in keys}
    result = {
        "model": str(loaded.path),
        "n_cases": len(cases),
        "tta": tta,
        "cases": cases,
        "mean": mean,
        "per_label": label_means,
        **{f"{region.lower()}_dice": mean[region]["dice"] for region in REGION_NAMES},
    }
    write_text_atomic(out_dir / "metrics.json", json.dumps(result, indent=2))
    _report(out_dir / "report.html", loaded, result, figures)
    return result


def _bar_chart(cases: list[dict[str, Any]]) -> bytes:
    """Per-case Dice of WT/TC/ET as a grouped bar chart (PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(cases) + 2), 3.2))
    width = 0.25
    x = np.arange(len(cases))
    for i, region in enumerate(REGION_NAMES):
        values = [c[f"{region}_dice"] or 0.0 for c in cases]
        ax.bar(x + (i - 1) * width, values, width, label=region)
    ax.set_xticks(x, [c["case"] for c in cases], rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("Dice")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _report(path: Path, loaded: LoadedModel, result: dict[str, Any], figures: list) -> None:
    mean_rows = [{"region": r, **v} for r, v in result["mean"].items()]
    label_rows = [{"label": k, **v} for k, v in result["per_label"].items()]
    png = _bar_chart(result["cases"])
    # The figures are PNG files already on disk; re-encoding keeps the report self-contained.
    overlays = [ReportFigure(_thumbnail(f.png), f.caption) for f in figures]
    sections = [
        ReportSection(
            "Regions (mean over cases)",
            "WT = all tumour labels, TC = necrosis/non-enhancing + enhancing, ET = enhancing. "
            "HD95 in mm; volumes in mL.",
            table=mean_rows,
            figures=[ReportFigure(png, "Dice per case")],
        ),
        ReportSection("Per case", table=result["cases"]),
        ReportSection(
            "Per label (system 002: one label against the rest, voxel counts)", table=label_rows
        ),
        ReportSection("Overlays (slice with the largest predicted tumour)", figures=overlays),
    ]
    write_report(
        path,
        f"BraTS evaluation: {loaded.info.architecture}",
        sections,
        subtitle=f"{result['n_cases']} cases, model {loaded.path}",
    )


def _thumbnail(png: bytes, side: int = 256) -> bytes:
    image = Image.open(io.BytesIO(png))
    image.thumbnail((side, side))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
