"""What ``braintumor predict`` shows on the terminal: the answers for the first inputs and a
count of all of them, so the first command gives a result without opening a table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.table import Table

from braintumor.tasks.registry import CLASSES

#: inputs shown one per row; the rest are counted
MAX_ROWS = 10


def _area(record: dict) -> str:
    if not record.get("tumor"):
        return "-"
    mm2 = record.get("area_mm2")
    return f"{record['area_px']} px" + (f" ({mm2:.0f} mm²)" if mm2 else "")


def _classifier_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    rows = [[r["predicted"], f"{r['confidence']:.2f}"] for r in records]
    return ["answer", "confidence"], rows


def _segmenter_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    rows = [
        ["yes" if r.get("tumor") else "no", _area(r), str(r.get("n_components", 0))]
        for r in records
    ]
    return ["tumour", "area", "regions"], rows


def answers_table(records: list[dict], outputs: str, title: str) -> Table:
    """The first :data:`MAX_ROWS` predictions, one row per input (``outputs``: the task's kind
    of output, :data:`~braintumor.tasks.registry.CLASSES` or a mask)."""
    shown = records[:MAX_ROWS]
    columns, rows = (_classifier_rows if outputs == CLASSES else _segmenter_rows)(shown)
    # The note column only when an input shown is out of the model's distribution.
    flagged = any(r.get("ood") for r in shown)
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("input", *columns, *(("note",) if flagged else ())):
        table.add_column(column)
    for record, row in zip(shown, rows, strict=True):
        note = ["unlike the training images" if record.get("ood") else ""] if flagged else []
        table.add_row(Path(record["path"]).name, *row, *note)
    return table


def answers_count(records: list[dict], outputs: str) -> str:
    """One line: how many inputs got each answer (classes, or tumour found / not found)."""
    if outputs == CLASSES:
        counts = Counter(r["predicted"] for r in records)
    else:
        counts = Counter("tumour" if r.get("tumor") else "no tumour" for r in records)
    parts = ", ".join(f"{name} {n}" for name, n in counts.most_common())
    hidden = len(records) - MAX_ROWS
    more = f" ({hidden} not shown above)" if hidden > 0 else ""
    return f"answers: {parts}{more}"
