"""Write an audit report as JSON and as the project's self-contained HTML report (tables)."""

from __future__ import annotations

from pathlib import Path

from braintumor.atomic import write_text_atomic
from braintumor.data.audit import AuditReport, DuplicateSummary
from braintumor.report.html import ReportSection, render_report

# Groups listed in the page; the JSON always has them all.
MAX_GROUPS_SHOWN = 50
# Files named per group in the page.
MAX_IDS_SHOWN = 6

_SUMMARY_ROWS = [
    ("n_groups", "groups"),
    ("n_files", "files in groups"),
    ("n_extra_copies", "extra copies"),
    ("pairs", "pairs"),
    ("cross_split_groups", "groups crossing splits"),
    ("cross_split_files", "files in those groups"),
    ("cross_split_pairs", "pairs crossing splits"),
    ("files_with_copy_elsewhere", "files with a copy in another split"),
    ("within_split_groups", "groups within one split"),
    ("label_conflict_groups", "groups with more than one label"),
    ("label_conflict_pairs", "pairs with different labels"),
]


def _fmt(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "0"
    return str(value)


def _size(size: list[int]) -> str:
    return "x".join(str(v) for v in size)


def _images_table(report: AuditReport) -> dict[str, str]:
    sizes = report.sizes
    common = ", ".join(f"{_size(s[:-1])} ({s[-1]})" for s in sizes.get("most_common", []))
    return {
        "distinct sizes": str(sizes.get("distinct", 0)),
        "smallest (per axis)": _size(sizes["min"]) if sizes else "-",
        "largest (per axis)": _size(sizes["max"]) if sizes else "-",
        "most common": common or "-",
        "modes": _fmt(report.modes),
        "formats": _fmt(report.formats),
        "unreadable files": str(len(report.unreadable)),
    }


def _group_rows(summary: DuplicateSummary) -> list[dict[str, str]]:
    """Groups that matter for splits first (crossing splits or labels), then the largest."""
    ranked = sorted(
        summary.groups, key=lambda g: (len(g.splits) + len(g.labels), len(g.ids)), reverse=True
    )
    rows = []
    for group in ranked[:MAX_GROUPS_SHOWN]:
        more = len(group.ids) - MAX_IDS_SHOWN
        row = {
            "files": ", ".join(group.ids[:MAX_IDS_SHOWN]) + (f" (+{more})" if more > 0 else ""),
            "splits": ", ".join(group.splits),
            "labels": ", ".join(group.labels),
        }
        if summary.kind == "near":
            row["max distance"] = str(group.max_distance)
        rows.append(row)
    return rows


def audit_sections(report: AuditReport) -> list[ReportSection]:
    """The report as sections of the project's HTML report."""
    labels = sorted({label for row in report.counts.values() for label in row})
    counts = [
        {
            "split": split,
            **{lab: str(row.get(lab, 0)) for lab in labels},
            "total": str(sum(row.values())),
        }
        for split, row in report.counts.items()
    ]
    duplicates = [
        {
            "finding": name,
            "exact (SHA-256)": _fmt(getattr(report.exact, key)),
            f"near (pHash <= {report.phash_threshold})": _fmt(getattr(report.near, key)),
        }
        for key, name in _SUMMARY_ROWS
    ]
    sections = [
        ReportSection("Counts", table=counts),
        ReportSection("Images", table=_images_table(report)),
    ]
    if report.unreadable:
        rows = [{"file": u["path"], "error": u["error"]} for u in report.unreadable]
        sections.append(ReportSection("Unreadable files", table=rows))
    sections.append(ReportSection("Duplicates", table=duplicates))
    for summary in (report.exact, report.near):
        if summary.groups:
            shown = min(MAX_GROUPS_SHOWN, summary.n_groups)
            text = f"{shown} of {summary.n_groups} groups; crossing splits or labels first."
            sections.append(
                ReportSection(
                    f"{summary.kind.capitalize()} duplicate groups", text, _group_rows(summary)
                )
            )
    for title, rows in (
        ("Mask problems", report.mask_problems),
        ("Case problems", report.case_problems),
    ):
        if rows:
            sections.append(ReportSection(f"{title} ({len(rows)})", table=rows))
    if report.label_values:
        values = ", ".join(f"{v:g}" for v in report.label_values)
        sections.append(ReportSection("Label values", f"Values in the label volumes: {values}"))
    return sections


def render_audit_html(report: AuditReport) -> str:
    """The report as one HTML page (escaped; no external assets)."""
    subtitle = (
        f"{report.root}"
        + (f" · layout {report.layout}" if report.layout else "")
        + f" · {report.n_samples} samples · pHash threshold {report.phash_threshold}"
        + f" · {report.seconds:.1f} s"
    )
    return render_report("Dataset audit", audit_sections(report), subtitle)


def write_audit_html(report: AuditReport, path: str | Path) -> None:
    """Write the HTML page atomically."""
    write_text_atomic(path, render_audit_html(report))


def write_audit_json(report: AuditReport, path: str | Path) -> None:
    """Write the JSON report atomically."""
    write_text_atomic(path, report.to_json() + "\n")
