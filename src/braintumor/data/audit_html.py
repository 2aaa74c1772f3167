"""Write an audit report as JSON and as one self-contained HTML page (tables, no scripts)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from braintumor.atomic import write_text_atomic
from braintumor.data.audit import AuditReport

# Groups listed in full in the page; the JSON always has them all.
MAX_GROUPS_SHOWN = 50

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Dataset audit: {{ r.root }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.n { text-align: right; }
.bad { color: #a00; font-weight: bold; }
code { font-size: 90%; }
</style></head><body>
<h1>Dataset audit</h1>
<p><code>{{ r.root }}</code>{% if r.layout %} &middot; layout <b>{{ r.layout }}</b>{% endif %}
 &middot; {{ r.n_samples }} samples &middot; pHash threshold {{ r.phash_threshold }}
 &middot; {{ "%.1f"|format(r.seconds) }} s</p>

<h2>Counts</h2>
<table><tr><th>split</th>{% for l in labels %}<th>{{ l }}</th>{% endfor %}<th>total</th></tr>
{% for split, row in r.counts.items() %}<tr><td>{{ split }}</td>
{% for l in labels %}<td class="n">{{ row.get(l, 0) }}</td>{% endfor %}
<td class="n">{{ row.values()|sum }}</td></tr>{% endfor %}</table>

<h2>Images</h2>
<table>
<tr><th>distinct sizes</th><td>{{ r.sizes.get("distinct", 0) }}</td></tr>
<tr><th>smallest / largest</th><td>{{ r.sizes.get("min") }} / {{ r.sizes.get("max") }}</td></tr>
<tr><th>most common</th><td>{% for s in r.sizes.get("most_common", []) %}
{{ s[:-1]|join("x") }} ({{ s[-1] }}){% if not loop.last %}, {% endif %}{% endfor %}</td></tr>
<tr><th>modes</th><td>{% for k, v in r.modes.items() %}{{ k }} {{ v }} {% endfor %}</td></tr>
<tr><th>formats</th><td>{% for k, v in r.formats.items() %}{{ k }} {{ v }} {% endfor %}</td></tr>
<tr><th>unreadable</th><td{% if r.unreadable %} class="bad"{% endif %}>
{{ r.unreadable|length }}</td></tr>
</table>
{% if r.unreadable %}<table><tr><th>file</th><th>error</th></tr>
{% for u in r.unreadable %}<tr><td>{{ u.path }}</td><td>{{ u.error }}</td></tr>{% endfor %}
</table>{% endif %}

<h2>Duplicates</h2>
<table><tr><th></th><th>exact (SHA-256)</th><th>near (pHash &le; {{ r.phash_threshold }})</th></tr>
{% for key, name in rows %}<tr><th>{{ name }}</th>
<td class="n">{{ fmt(r.exact[key]) }}</td><td class="n">{{ fmt(r.near[key]) }}</td></tr>
{% endfor %}</table>
{% for summary in [r.exact, r.near] if summary.groups %}
<h3>{{ summary.kind }} duplicate groups, those crossing splits or labels first
({{ shown(summary)|length }} of {{ summary.n_groups }} shown)</h3>
<table><tr><th>files</th><th>splits</th><th>labels</th>
{% if summary.kind == "near" %}<th>max distance</th>{% endif %}</tr>
{% for g in shown(summary) %}<tr><td>{% for i in g.ids %}{{ i }}<br>{% endfor %}</td>
<td{% if g.splits|length > 1 %} class="bad"{% endif %}>{{ g.splits|join(", ") }}</td>
<td{% if g.labels|length > 1 %} class="bad"{% endif %}>{{ g.labels|join(", ") }}</td>
{% if summary.kind == "near" %}<td class="n">{{ g.max_distance }}</td>{% endif %}</tr>
{% endfor %}</table>{% endfor %}

{% for title, rows_ in [("Mask problems", r.mask_problems), ("Case problems", r.case_problems)]
   if rows_ %}
<h2>{{ title }} ({{ rows_|length }})</h2>
<table><tr><th>sample</th><th>problem</th></tr>
{% for p in rows_ %}<tr><td>{{ p.id }}</td><td>{{ p.problem }}</td></tr>{% endfor %}</table>
{% endfor %}
{% if r.label_values %}<p>Label values in the volumes: {{ r.label_values|join(", ") }}</p>
{% endif %}
</body></html>
"""

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


def _shown(summary) -> list:
    """Groups that matter for splits first (crossing splits or labels), then the rest."""
    ranked = sorted(summary.groups, key=lambda g: len(g.splits) + len(g.labels), reverse=True)
    return ranked[:MAX_GROUPS_SHOWN]


def render_audit_html(report: AuditReport) -> str:
    """The report as an HTML page (escaped; no external assets)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    labels = sorted({label for row in report.counts.values() for label in row})
    return env.from_string(_TEMPLATE).render(
        r=report, labels=labels, rows=_SUMMARY_ROWS, fmt=_fmt, shown=_shown
    )


def write_audit_html(report: AuditReport, path: str | Path) -> None:
    """Write the HTML page atomically."""
    write_text_atomic(path, render_audit_html(report))


def write_audit_json(report: AuditReport, path: str | Path) -> None:
    """Write the JSON report atomically."""
    write_text_atomic(path, report.to_json() + "\n")
