"""``braintumor data``: look at a dataset folder, audit it, split it without leaks, or write
a synthetic one."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from braintumor.cli.errors import user_errors
from braintumor.data.audit import NO_IMAGE, NO_MASK, AuditReport, count_by_split
from braintumor.data.audit_html import write_audit_html, write_audit_json
from braintumor.data.cross_sources import CrossSourceReport, count_cross_source_groups
from braintumor.data.layouts_base import DetectedLayout
from braintumor.data.near_confirm import (
    MIN_CORRELATION,
    near_groups_across_patients,
    near_link_filter,
)
from braintumor.data.splits import (
    EXCLUDED,
    check_no_leak,
    kfold_splits,
    layout_extra_groups,
    layout_split_groups,
    split_counts,
    train_val_test_split,
    write_splits,
)
from braintumor.errors import DataError
from braintumor.preflight import check_output_file

data_app = typer.Typer(help="Inspect, audit, split and synthesise datasets.", no_args_is_help=True)


def _console() -> Console:
    # Made per call so that captured stdout (tests, pipes) is the one written to.
    return Console(highlight=False)


def _counts_table(title: str, counts: dict[str, dict[str, int]], first: str = "split") -> Table:
    labels = sorted({label for row in counts.values() for label in row})
    table = Table(title=title)
    table.add_column(first)
    for label in labels:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    for name, row in counts.items():
        table.add_row(name, *(str(row.get(label, 0)) for label in labels), str(sum(row.values())))
    return table


@data_app.command()
def info(path: Path = typer.Argument(..., help="Dataset folder.")) -> None:
    """Show which layout the folder has, its task, its counts and notes."""
    from braintumor.data.layouts import detect_layout

    console = _console()
    with user_errors():
        layout = detect_layout(path)
    console.print(
        f"layout [bold]{layout.name}[/bold], task [bold]{layout.task}[/bold], "
        f"{len(layout.samples)} samples in {layout.root}"
    )
    if layout.classes:
        console.print("classes: " + ", ".join(layout.classes))
    console.print(_counts_table("samples per split and class", count_by_split(layout.samples)))
    for note in layout.notes:
        console.print(f"note: {note}", markup=False)


def _summary_table(report: AuditReport) -> Table:
    table = Table(
        title=f"audit of {report.root} ({report.n_samples} samples, {report.seconds:.1f} s)"
    )
    table.add_column("finding")
    table.add_column("exact (SHA-256)", justify="right")
    table.add_column(f"near (pHash <= {report.phash_threshold})", justify="right")
    for key, name in [
        ("n_groups", "duplicate groups"),
        ("n_files", "files in groups"),
        ("n_extra_copies", "extra copies"),
        ("cross_split_groups", "groups crossing splits"),
        ("files_with_copy_elsewhere", "files with a copy in another split"),
        ("label_conflict_groups", "groups with more than one label"),
        ("label_conflict_pairs", "pairs with different labels"),
    ]:
        exact, near = getattr(report.exact, key), getattr(report.near, key)
        table.add_row(name, _show(exact), _show(near))
    table.add_section()
    table.add_row("unreadable files", str(len(report.unreadable)), "")
    table.add_row("mask problems", str(len(report.mask_problems)), "")
    table.add_row("case problems", str(len(report.case_problems)), "")
    sizes = report.sizes
    if sizes:
        common = ", ".join("x".join(map(str, s[:-1])) + f" ({s[-1]})" for s in sizes["most_common"])
        table.add_row("distinct sizes", str(sizes["distinct"]), common)
    return table


def _show(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "0"
    return str(value)


def _audit(
    paths: list[str],
    phash_threshold: int,
    workers: int,
    full_decode: bool,
    confirm_weak: bool = False,
) -> tuple[DetectedLayout, AuditReport, list]:
    """The layout of one or several sources, its audit, and the per-file results.
    ``confirm_weak`` builds the near clusters from pHash pairs that stand by
    :func:`~braintumor.data.near_confirm.near_link_filter` (LGG's slices); ``split`` leaves it
    off and confirms whole clusters as training does, so its groups match a run's."""
    from braintumor.data.audit import audit_results, check_samples
    from braintumor.data.sources import load_data

    start = time.perf_counter()
    layout = load_data(paths, task=None)
    if not layout.samples:
        raise DataError(f"{', '.join(paths)}: the {layout.name} layout found no samples")
    results = check_samples(
        layout.samples, layout.root, workers, progress=True, use_draft=not full_decode
    )
    report = audit_results(
        layout.samples,
        layout.root,
        results,
        phash_threshold,
        start,
        layout.orphan_masks,
        keep_near=near_link_filter(layout) if confirm_weak else None,
    )
    report.layout = layout.name
    return layout, report, results


@data_app.command()
def audit(
    paths: list[str] = typer.Argument(
        ..., help="Dataset folder(s); several add the cross-dataset part (NAME=PATH names one)."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full report as JSON."),
    html_out: Path | None = typer.Option(None, "--html", help="Write the report as HTML."),
    phash_threshold: int = typer.Option(6, min=0, max=64, help="Near duplicate: pHash bits."),
    workers: int = typer.Option(2, min=1, help="Processes that hash files."),
    full_decode: bool = typer.Option(
        False, help="Decode JPEGs at full size for pHash (slower; exact imagehash values)."
    ),
) -> None:
    """Check integrity, duplicates, split leakage, label conflicts and masks; with several
    folders, also the copies and label conflicts between them."""
    console = _console()
    with user_errors():
        for option, target in (("--json", json_out), ("--html", html_out)):
            if target is not None:
                check_output_file(target, option)
        layout, report, results = _audit(
            paths, phash_threshold, workers, full_decode, confirm_weak=True
        )
        cross = None
        if len({s.source for s in layout.samples}) > 1:
            from braintumor.data.cross_sources import cross_source_report
            from braintumor.data.cross_sources_html import write_cross_audit

            cross = cross_source_report(
                layout.samples, results, phash_threshold, keep_near=near_link_filter(layout)
            )
            write_cross_audit(report, cross, json_out, html_out)
        else:
            if json_out:
                write_audit_json(report, json_out)
            if html_out:
                write_audit_html(report, html_out)
    console.print(_counts_table("samples per split and class", report.counts))
    console.print(_summary_table(report))
    if near_link_filter(layout) is not None:
        inside, across = near_groups_across_patients(report, layout)
        console.print(
            f"near groups with LGG slices: {inside} inside one patient (neighbouring slices of "
            f"a stack, not copies), {across} across patients (pixel correlation >= "
            f"{MIN_CORRELATION})"
        )
    if cross is not None:
        _print_cross(console, cross)
    for row in report.unreadable[:10]:
        console.print(f"unreadable: {row['path']}: {row['error']}", markup=False)
    pairing = [r for r in report.mask_problems if r["problem"] in (NO_MASK, NO_IMAGE)]
    others = [r for r in report.mask_problems + report.case_problems if r not in pairing]
    for row in pairing + others[:10]:  # every unpaired file, the first other problems
        console.print(f"{row['id']}: {row['problem']}", markup=False)
    for name, out in (("JSON", json_out), ("HTML", html_out)):
        if out:
            console.print(f"{name} report: {out}", markup=False)


def _print_cross(console: Console, cross: CrossSourceReport) -> None:
    """The overlap matrix, and the label conflicts between sources."""
    from braintumor.data.balance import shortcut_warnings

    table = Table(title="files of row source with an exact or near copy in column source")
    table.add_column("source")
    for name in cross.sources:
        table.add_column(name, justify="right")
    for name, row in cross.near_matrix.items():
        table.add_row(name, *(str(row[col]) for col in cross.sources))
    console.print(table)
    console.print(
        f"{cross.cross_source_groups} duplicate clusters ({cross.files_in_cross_source_groups} "
        "files) span two or more sources"
    )
    if cross.unconfirmed_near_pairs:
        console.print(
            f"{cross.unconfirmed_near_pairs} pHash pairs with an LGG slice of another patient "
            f"not counted: their pixels do not confirm them (correlation < {MIN_CORRELATION})"
        )
    for row in cross.label_conflicts[:10]:
        console.print(
            f"label conflict: {row['source_a']} {row['label_a']} ~ {row['source_b']} "
            f"{row['label_b']}: {row['pairs']} pairs (e.g. {row['example']})",
            markup=False,
        )
    for source, counts in cross.counts.items():
        console.print(
            f"{source} contributes: " + ", ".join(f"{c} {n}" for c, n in counts.items()),
            markup=False,
        )
    for warning in shortcut_warnings(cross.counts):
        console.print(f"warning: {warning}", markup=False)


def _parse_fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError as error:
        raise DataError(
            f"--fractions must be three numbers like 0.7,0.15,0.15, not {text!r}"
        ) from error
    if len(values) != 3:
        raise DataError(f"--fractions must be three numbers like 0.7,0.15,0.15, not {text!r}")
    return values


@data_app.command()
def split(
    paths: list[str] = typer.Argument(
        ..., help="Dataset folder(s); several are split as one table (NAME=PATH names one)."
    ),
    out: Path = typer.Option(..., "--out", help="splits.csv to write."),
    folds: int | None = typer.Option(None, min=2, help="K-fold instead of train/val/test."),
    fractions: str = typer.Option("0.7,0.15,0.15", help="train,val,test fractions."),
    seed: int = typer.Option(0, help="Random seed."),
    phash_threshold: int = typer.Option(6, min=0, max=64, help="Near duplicate: pHash bits."),
    respect_given_test: bool = typer.Option(
        False, help="Keep the dataset's own test split; drop train duplicates of it."
    ),
    number_gap: int = typer.Option(
        2, min=0, help="Numbered image-mask sets: neighbours this close share a group."
    ),
    workers: int = typer.Option(2, min=1, help="Processes that hash files."),
) -> None:
    """Write leak-free splits: duplicates and patients never on two sides."""
    console = _console()
    with user_errors():
        check_output_file(out)
        layout, report, _ = _audit(paths, phash_threshold, workers, full_decode=False)
        samples = layout.samples
        groups = layout_split_groups(layout, report, phash_threshold, number_gap)
        numbered = layout_extra_groups(samples, layout.name, number_gap) is not None
        if folds is not None:
            assignment, column = kfold_splits(samples, folds, seed, groups), "fold"
        else:
            assignment = train_val_test_split(
                samples, _parse_fractions(fractions), seed, groups, respect_given_test
            )
            column = "split"
        check_no_leak(samples, assignment, groups)
        write_splits(out, samples, assignment, groups, column)
        merged = count_cross_source_groups(samples, groups)
    console.print(
        _counts_table(f"samples per {column} and class", split_counts(samples, assignment), column)
    )
    console.print(
        f"{len(set(groups))} groups for {len(samples)} samples "
        f"(layout groups, exact and near duplicates"
        f"{', numbered neighbours' if numbered else ''})"
    )
    if len({s.source for s in samples}) > 1:
        console.print(f"{merged} groups span two or more sources (merged across datasets)")
    excluded = assignment.count(EXCLUDED)
    if excluded:
        console.print(f"{excluded} samples excluded: duplicates of the given test split")
    console.print(f"wrote {out}", markup=False)


@data_app.command()
def synth(
    out: Path = typer.Argument(..., help="Folder to write."),
    task: str = typer.Option(..., help="classify, segment or brats."),
    n: int | None = typer.Option(None, min=1, help="Images per class, pairs, or cases."),
    size: int | None = typer.Option(None, min=32, help="Slice side in pixels."),
    seed: int = typer.Option(0, help="Random seed."),
    source_shift: int = typer.Option(
        0,
        min=0,
        help="classify: write this many datasets that differ by source (contrast, bias "
        "field, noise) under OUT instead of one.",
    ),
) -> None:
    """Write a small synthetic dataset (phantoms) for trying things out."""
    from braintumor.data.synthetic import write_synthetic_dataset

    with user_errors():
        if source_shift:
            from braintumor.data.synth_sources import STYLES, write_source_shift_datasets

            if task != "classify":
                raise DataError("--source-shift writes classification datasets (--task classify)")
            names = list(STYLES)
            styles = [names[i % len(names)] for i in range(source_shift)]
            folders = write_source_shift_datasets(
                out, styles, n_per_class=n or 40, size=size or 128, seed=seed
            )
            for folder in folders:
                _console().print(f"wrote source {folder}", markup=False)
            return
        written = write_synthetic_dataset(out, task, n=n, size=size, seed=seed)
    _console().print(f"wrote a synthetic {task} dataset to {written}", markup=False)
