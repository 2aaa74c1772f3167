"""The cross-dataset audit as report sections, JSON, and one HTML page with the per-file audit."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from braintumor.atomic import write_text_atomic
from braintumor.data.audit import AuditReport
from braintumor.data.audit_html import audit_sections
from braintumor.data.cross_sources import CrossSourceReport
from braintumor.data.near_confirm import MIN_CORRELATION
from braintumor.report.html import ReportSection, render_report


def _matrix_rows(matrix: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> list:
    return [
        {
            "files of \u2193 with a copy in \u2192": row,
            "files": str(sum(counts.get(row, {}).values())),
            **{col: str(n) for col, n in cells.items()},
        }
        for row, cells in matrix.items()
    ]


def cross_source_sections(report: CrossSourceReport) -> list[ReportSection]:
    """Sources, overlap matrices, pairs of sources, label conflicts."""
    labels = sorted({label for row in report.counts.values() for label in row})
    sources = [
        {
            "source": name,
            **{label: str(row.get(label, 0)) for label in labels},
            "total": str(sum(row.values())),
        }
        for name, row in report.counts.items()
    ]
    pairs = [
        {
            "sources": f"{p.a} / {p.b}",
            "files of first with a near copy in second": str(p.a_files_with_near_copy),
            "files of second with a near copy in first": str(p.b_files_with_near_copy),
            "near pairs": str(p.near_pairs),
            "exact pairs": str(p.exact_pairs),
            "files of first / second with a byte copy": (
                f"{p.a_files_with_exact_copy} / {p.b_files_with_exact_copy}"
            ),
            "pairs with conflicting labels": str(p.label_conflict_pairs),
        }
        for p in report.pairs
    ]
    threshold = report.phash_threshold
    sections = [
        ReportSection("Sources", table=sources),
        ReportSection(
            "Overlap matrix (exact or near copies)",
            text=(
                f"Row source's files that have an exact (SHA-256) or near (pHash distance <= "
                f"{threshold}) copy in the column source; the diagonal counts copies within a "
                f"source. {report.cross_source_groups} duplicate clusters "
                f"({report.files_in_cross_source_groups} files) span two or more sources and "
                "are kept on one side of every split."
                + _unconfirmed_sentence(report.unconfirmed_near_pairs)
            ),
            table=_matrix_rows(report.near_matrix, report.counts),
        ),
        ReportSection(
            "Overlap matrix (byte-identical copies)",
            table=_matrix_rows(report.exact_matrix, report.counts),
        ),
        ReportSection("Pairs of sources", table=pairs),
    ]
    if report.label_conflicts:
        sections.append(
            ReportSection(
                "Label conflicts across sources",
                text="Near copies whose labels cannot both be right (tumor agrees with any "
                "tumour type).",
                table=[{k: str(v) for k, v in row.items()} for row in report.label_conflicts],
            )
        )
    return sections


def cross_audit_json(audit: AuditReport, cross: CrossSourceReport) -> str:
    """Both parts as one JSON document: ``cross_sources`` and the pooled ``audit``."""
    return json.dumps({"cross_sources": cross.to_dict(), "audit": asdict(audit)}, indent=1)


def write_cross_audit(
    audit: AuditReport,
    cross: CrossSourceReport,
    json_out: str | Path | None = None,
    html_out: str | Path | None = None,
) -> None:
    """Write the JSON and/or HTML report atomically."""
    if json_out:
        write_text_atomic(json_out, cross_audit_json(audit, cross) + "\n")
    if html_out:
        subtitle = (
            f"{len(cross.sources)} sources \u00b7 {audit.n_samples} samples \u00b7 pHash threshold "
            f"{cross.phash_threshold} \u00b7 {audit.seconds:.1f} s"
        )
        sections = cross_source_sections(cross) + audit_sections(audit)
        write_text_atomic(html_out, render_report("Cross-dataset audit", sections, subtitle))


def _unconfirmed_sentence(count: int) -> str:
    """Why the LGG cells may be lower than pHash alone would say."""
    if not count:
        return ""
    return (
        f" {count} pHash pairs between different patients of a weak-pHash source (LGG's dark "
        "slices) are left out: their pixels do not correlate (< "
        f"{MIN_CORRELATION}), as a split requires."
    )
