"""Report figures, the self-contained HTML report, and the evaluation report builders."""

from braintumor.report.evaluation import (
    classification_report,
    pick_panel_ids,
    segmentation_report,
)
from braintumor.report.html import ReportFigure, ReportSection, render_report, write_report

__all__ = [
    "ReportFigure",
    "ReportSection",
    "classification_report",
    "pick_panel_ids",
    "render_report",
    "segmentation_report",
    "write_report",
]
