"""A self-contained HTML report: sections of text, tables and figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from braintumor.atomic import write_text_atomic

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class ReportFigure:
    """A figure as PNG bytes with a caption."""

    png: bytes
    caption: str = ""


@dataclass
class ReportSection:
    """One section: a heading, optional text, an optional table and any figures.

    ``table`` is a list of row dicts (columns = the union of their keys, in first-seen order)
    or a single dict (shown as two columns, name and value).
    """

    heading: str
    text: str | None = None
    table: Sequence[Mapping] | Mapping | None = None
    figures: list[ReportFigure | bytes] = field(default_factory=list)


def format_value(value: object) -> str:
    """A table cell: floats to 4 significant digits, None as a dash, [lo, hi] as an interval."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.4g}"
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) for v in value)
    ):
        return f"[{format_value(float(value[0]))}, {format_value(float(value[1]))}]"
    return str(value)


def _table(table: Sequence[Mapping] | Mapping | None) -> dict | None:
    if table is None:
        return None
    if isinstance(table, Mapping):
        return {
            "columns": ["name", "value"],
            "rows": [[str(k), format_value(v)] for k, v in table.items()],
        }
    rows = list(table)
    if not rows:
        return None
    columns: list[str] = []
    for row in rows:
        columns += [str(k) for k in row if str(k) not in columns]
    return {
        "columns": columns,
        "rows": [[format_value(row.get(col)) for col in columns] for row in rows],
    }


def _anchor(heading: str, index: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
    return f"s{index}-{slug}" if slug else f"s{index}"


def render_report(title: str, sections: Sequence[ReportSection], subtitle: str = "") -> str:
    """The report as one HTML string (every image inline)."""
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    context_sections = []
    for i, section in enumerate(sections):
        figures = []
        for fig in section.figures:
            item = fig if isinstance(fig, ReportFigure) else ReportFigure(png=fig)
            figures.append(
                {"data": base64.b64encode(item.png).decode("ascii"), "caption": item.caption}
            )
        context_sections.append(
            {
                "heading": section.heading,
                "anchor": _anchor(section.heading, i),
                "text": section.text,
                "table": _table(section.table),
                "figures": figures,
            }
        )
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return env.get_template("report.html").render(
        title=title,
        subtitle=subtitle,
        sections=context_sections,
        footer=f"braintumor report, generated {stamp}. Research use only; not a medical device.",
    )


def write_report(
    path: str | Path, title: str, sections: Sequence[ReportSection], subtitle: str = ""
) -> Path:
    """Render the report and write it atomically to ``path``; returns the path."""
    path = Path(path)
    write_text_atomic(path, render_report(title, sections, subtitle))
    return path
