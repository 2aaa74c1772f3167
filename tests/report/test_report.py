"""Report figures and the self-contained HTML report."""

from __future__ import annotations

import base64
import re
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest

from braintumor.errors import DataError
from braintumor.metrics import aggregate, classification_metrics, segmentation_scores
from braintumor.report import (
    ReportFigure,
    ReportSection,
    classification_report,
    pick_panel_ids,
    plots,
    segmentation_report,
    write_report,
)
from braintumor.report.html import format_value

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["glioma", "meningioma", "no_tumor", "pituitary"]

# A Lightning CSVLogger file: one sparse row per logging call.
METRICS_CSV = """epoch,step,train/loss,val/acc,val/loss
0,9,,0.50,1.30
0,9,1.00,,
1,19,,0.62,0.90
1,19,0.70,,
2,29,,0.71,0.80
2,29,0.55,,
"""


def _embedded_pngs(html: str) -> list[bytes]:
    return [
        base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    ]


def _classification_inputs(n: int = 120):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, n)
    p = rng.dirichlet(np.ones(4), n)
    p[np.arange(n), y] += 0.6
    p /= p.sum(axis=1, keepdims=True)
    images = [rng.integers(0, 255, (32, 32), dtype=np.uint8) for _ in range(n)]
    return y, p, images, [f"case-{i}" for i in range(n)]


def test_write_report_embeds_tables_and_images(tmp_path: Path) -> None:
    png = plots.class_distribution({"a": 3, "b": 5})
    sections = [
        ReportSection("Numbers <b>", text="plain", table={"accuracy": 0.912345, "ci": [0.8, 0.95]}),
        ReportSection(
            "Rows",
            table=[{"class": "x", "f1": 0.5}, {"class": "y", "auc": None}],
            figures=[ReportFigure(png, "counts"), png],
        ),
    ]
    out = write_report(tmp_path / "r" / "report.html", "My <title>", sections)
    html = out.read_text()
    assert "0.9123" in html and "[0.8, 0.95]" in html
    assert "<th>auc</th>" in html and "—" in html  # union of columns, None shown as a dash
    assert "My &lt;title&gt;" in html and "Numbers &lt;b&gt;" in html  # escaped
    images = _embedded_pngs(html)
    assert len(images) == 2 and all(i.startswith(PNG_MAGIC) for i in images)
    assert images[0] == png


def test_report_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "report.html"
    write_report(dest, "first", [ReportSection("A", text="old")])
    before = dest.read_text()

    def broken_write(self: Path, data: str, *args, **kwargs) -> int:
        with open(self, "w") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", broken_write)
    with pytest.raises(OSError):
        write_report(dest, "second", [ReportSection("B", text="new")])
    monkeypatch.undo()
    assert dest.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_format_value() -> None:
    assert format_value(0.123456) == "0.1235"
    assert format_value(None) == "—"
    assert format_value(float("nan")) == "—"
    assert format_value([0.1, 0.25]) == "[0.1, 0.25]"
    assert format_value(7) == "7"


def test_epoch_metrics_merge_sparse_rows_and_plot(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(METRICS_CSV)
    series = plots.read_epoch_metrics(csv_path)
    assert series["train/loss"] == {0: 1.0, 1: 0.7, 2: 0.55}
    assert series["val/acc"][2] == pytest.approx(0.71)
    assert plots.training_curves(csv_path).startswith(PNG_MAGIC)
    assert plots.training_curves(csv_path, monitor="val/acc").startswith(PNG_MAGIC)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError):
        plots.read_epoch_metrics(bad)
    with pytest.raises(DataError):
        plots.read_epoch_metrics(tmp_path / "missing.csv")


def test_each_plot_is_a_png() -> None:
    y, p, images, ids = _classification_inputs()
    m = classification_metrics(y, p, NAMES, n_bootstrap=0)
    truth = np.zeros((32, 32), bool)
    truth[8:20, 8:20] = True
    rows = [{"dice": 0.8, "hd95": 3.0}, {"dice": 0.6, "hd95": None}, {"dice": 0.9, "hd95": 1.0}]
    figures = [
        plots.confusion_matrix_plot(m["confusion_matrix"], NAMES),
        plots.roc_curves(y, p, NAMES),
        plots.roc_curves(y % 2, p[:, :2] / p[:, :2].sum(1, keepdims=True), ["no", "yes"]),
        plots.reliability_diagram(m["reliability"], m["ece"]),
        plots.mistakes_grid(y, p, NAMES, images, ids, max_items=4),
        plots.segmentation_panels(
            [
                ("a", images[0], truth, np.roll(truth, 3, axis=0)),
                ("rgb", np.random.default_rng(0).random((32, 32, 3)) * 300, truth, truth),
            ]
        ),
        plots.metric_distributions(rows, ["dice", "hd95"]),
    ]
    assert all(f is not None and f.startswith(PNG_MAGIC) for f in figures)
    with pytest.raises(DataError):
        plots.confusion_matrix_plot([[1, 2]], NAMES)


def test_worst_mistakes_are_most_confident_wrong_first() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.05, 0.95], [0.6, 0.4]])
    assert plots.worst_mistakes(y, p) == [1, 3]
    right = p.argmax(axis=1)
    assert plots.mistakes_grid(right, p, ["a", "b"], [np.zeros((4, 4))] * 4, list("abcd")) is None


def test_classification_report_folder(tmp_path: Path) -> None:
    y, p, images, ids = _classification_inputs()
    m = classification_metrics(y, p, NAMES, n_bootstrap=200)
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text(METRICS_CSV)
    out = classification_report(tmp_path / "eval", m, NAMES, y, p, images, ids, csv_path)
    html = out.read_text()
    assert f"{m['accuracy']:.4g}" in html
    assert f"{m['macro']['f1']:.4g}" in html
    worst = plots.worst_mistakes(y, p)[0]
    assert ids[worst] in html
    names = {f.name for f in out.parent.iterdir()}
    expected = {"confusion_matrix.png", "roc_curves.png", "reliability.png", "mistakes.png"}
    assert expected | {"class_distribution.png", "training_curves.png", "report.html"} <= names
    assert not [n for n in names if n.endswith(".part")]
    assert len(_embedded_pngs(html)) == 6
    with pytest.raises(DataError):
        classification_report(tmp_path / "x", m, NAMES, y, p, images[:3], ids, None)


def test_segmentation_report_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows, panels = [], []
    for i in range(12):
        truth = np.zeros((40, 40), bool)
        truth[10:25, 12:28] = True
        pred = np.roll(truth, int(rng.integers(0, 6)), axis=1)
        rows.append({"id": f"s{i}", **segmentation_scores(pred, truth, spacing=(0.5, 0.5))})
        panels.append((f"s{i}", rng.random((40, 40)), truth, pred))
    summary = aggregate(rows, [f"p{i // 4}" for i in range(12)], n_bootstrap=100)
    chosen = pick_panel_ids(rows, n_best=2, n_worst=2)
    assert len(chosen) == 4
    best = max(rows, key=lambda r: r["dice"])
    assert chosen[0] == best["id"]
    rule = "Predicted mask: probability >= 0.5, largest component only."
    shown = [pp for pp in panels if pp[0] in chosen]
    out = segmentation_report(tmp_path / "seg", rows, summary, shown, mask_rule=rule)
    html = out.read_text()
    assert "Summary per patient" in html and "Empty-mask rule" in html
    assert html_escape(rule) in html
    assert f"{summary['per_image']['dice']['mean']:.4g}" in html
    assert {"metric_distributions.png", "segmentation_panels.png"} <= {
        f.name for f in out.parent.iterdir()
    }
    assert len(_embedded_pngs(html)) == 2


def test_mistake_titles_keep_the_end_of_a_long_id() -> None:
    long_id = "sartaj-4class/Training/meningioma_tumor/m1(97).jpg"
    short = plots.short_id(long_id)
    assert len(short) == 34 and short.startswith("...") and short.endswith("m1(97).jpg")
    assert plots.short_id("figshare/1880.png") == "figshare/1880.png"
