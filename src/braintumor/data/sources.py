"""Several datasets used as one: ``--data A --data NAME=PATH --data NAME=PATH:no_tumor``.

Each folder is detected on its own (:func:`~braintumor.data.layouts.detect_layout`), its class
names are harmonised onto one vocabulary, and its samples join one table in which every
sample carries its ``source`` and an id prefixed ``<source>/`` (ids repeat across datasets).
A segmentation set serves as a classification source: its ``labels.csv`` classes (Figshare),
or, without labels, tumour = non-empty mask (LGG).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from braintumor.data.layouts import DetectedLayout, detect_layout, normalise_class_name
from braintumor.data.samples import NO_TUMOR, TUMOR, TUMOUR_TYPES, Sample
from braintumor.data.splits import layout_extra_groups
from braintumor.errors import DataError, ImageReadError

#: The class list of a tumour / no-tumour recipe.
BINARY_CLASSES = [NO_TUMOR, TUMOR]
MULTI_LAYOUT = "multi-source"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class SourceSpec:
    """One ``--data`` value: the folder, the source's name and an optional class filter.

    ``only`` keeps just those (harmonised) classes of the source, e.g. the ``no_tumor``
    images of a yes/no set in a four-class run. ``rename`` gives some of the source's classes
    another name first (``tumor=glioma``: LGG's tumour slices are gliomas); the new names are
    in ``only``. ``named`` is True when the name was given (``NAME=PATH``) rather than taken
    from the folder.
    """

    path: Path
    name: str
    only: tuple[str, ...] = ()
    named: bool = False
    rename: tuple[tuple[str, str], ...] = ()


def parse_source(text: str) -> SourceSpec:
    """Parse ``PATH``, ``NAME=PATH``, ``PATH:CLASS[,CLASS]`` or ``NAME=PATH:CLASS[,CLASS]``.

    A filter entry ``OLD=NEW`` keeps class OLD under the name NEW (``lgg=PATH:tumor=glioma,
    no_tumor``). The class filter is recognised only when the whole text is not an existing
    path, so a folder whose name holds a colon still works. Class names go through the usual
    synonyms (``no`` -> ``no_tumor``).
    """
    text = text.strip()
    if not text:
        raise DataError("--data: empty value")
    name = None
    body = text
    head, sep, rest = text.partition("=")
    if sep and _NAME.match(head) and not Path(text).exists():
        name, body = head, rest
    only: list[str] = []
    rename: list[tuple[str, str]] = []
    if ":" in body and not Path(body).exists():
        where, _, classes = body.rpartition(":")
        if where and classes and "/" not in classes:
            body = where
            for entry in filter(None, (c.strip() for c in classes.split(","))):
                old, renamed, new = entry.partition("=")
                if renamed and not (old.strip() and new.strip()):
                    raise DataError(f"--data {text}: '{entry}' is not OLD=NEW")
                only.append(normalise_class_name(new if renamed else old))
                if renamed:
                    rename.append((normalise_class_name(old), only[-1]))
    path = Path(body).expanduser()
    # A folder name becomes the source name with odd characters made underscores.
    source_name = name or re.sub(r"[^A-Za-z0-9_.\-]", "_", path.absolute().name)
    return SourceSpec(
        path=path,
        name=source_name,
        only=tuple(only),
        named=name is not None,
        rename=tuple(rename),
    )


def parse_sources(texts: Sequence[str | Path]) -> list[SourceSpec]:
    """Parse every ``--data`` value; two sources may not share a name."""
    specs = [parse_source(str(text)) for text in texts]
    if not specs:
        raise DataError("--data: give at least one dataset folder")
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.name in seen:
            raise DataError(
                f"--data: two sources are named {spec.name} ({seen[spec.name]} and {spec.path}); "
                "name them with NAME=PATH"
            )
        seen[spec.name] = spec.path
    return specs


def is_plain(specs: Sequence[SourceSpec]) -> bool:
    """One folder given as a bare path: used exactly as before (ids not prefixed)."""
    return len(specs) == 1 and not specs[0].named and not specs[0].only


def map_label(label: str | None, classes: Sequence[str] | None) -> str | None:
    """A harmonised label on ``classes``: synonyms first, then a tumour type becomes ``tumor``
    where the classes are tumour / no tumour. None when it cannot be mapped."""
    if label is None:
        return None
    key = normalise_class_name(label)
    if classes is None or key in classes:
        return key
    if key in TUMOUR_TYPES and TUMOR in classes:
        return TUMOR
    return None


def mask_has_tumour(path: str) -> bool:
    """True when the mask file has any non-zero pixel (an LGG slice with tumour)."""
    try:
        with Image.open(path) as mask:
            return mask.getbbox() is not None
    except (OSError, UnidentifiedImageError):
        from braintumor.io import read_image  # .mat, NIfTI...: the project's readers

        try:
            return bool(read_image(path).array.any())
        except ImageReadError as error:
            raise DataError(f"{path}: cannot read the mask to label its slice ({error})") from None


def _labelled(layout: DetectedLayout, spec: SourceSpec, strict: bool = True) -> list[Sample]:
    """The layout's samples with a class each; unlabelled segmentation slices by their mask.
    ``strict``: samples left without a class are an error (else they stay unlabelled)."""
    samples = list(layout.samples)
    if all(s.label is None for s in samples) and all(s.mask for s in samples):
        samples = [
            dataclasses.replace(s, label=TUMOR if mask_has_tumour(str(s.mask)) else NO_TUMOR)
            for s in samples
        ]
    unlabelled = [s.id for s in samples if s.label is None]
    if unlabelled and strict:
        raise DataError(
            f"source {spec.name} ({layout.root}): {len(unlabelled)} samples have no class "
            f"(e.g. {unlabelled[0]}); give a labels.csv or class folders"
        )
    return samples


def _renamed(samples: list[Sample], spec: SourceSpec) -> list[Sample]:
    """The samples with the source's ``OLD=NEW`` renames applied (labels harmonised first)."""
    if not spec.rename:
        return samples
    renames = dict(spec.rename)
    return [
        dataclasses.replace(s, label=renames.get(key, key))
        if s.label is not None and (key := normalise_class_name(s.label)) in renames
        else s
        for s in samples
    ]


def _harmonise(
    samples: list[Sample], spec: SourceSpec, root: Path, classes: Sequence[str] | None
) -> list[Sample]:
    """Map labels onto ``classes`` and apply the source's class filter.

    A label the filter drops need not fit ``classes``: ``br35h=PATH:no_tumor`` serves a
    four-class model although br35h's other label, generic ``tumor``, has no four-class name.
    """
    mapped, bad, seen = [], set(), set()
    for sample in _renamed(samples, spec):
        target = map_label(sample.label, classes)
        key = target or (normalise_class_name(sample.label) if sample.label else None)
        seen.add(str(key))
        if spec.only and key not in spec.only:
            continue
        if target is None:
            bad.add(str(sample.label))
        mapped.append(dataclasses.replace(sample, label=target))
    if bad:
        raise DataError(
            f"source {spec.name} ({root}): labels {sorted(bad)} cannot be mapped onto the "
            f"classes {list(classes or [])}"
        )
    missing = [c for c in spec.only if c not in {s.label for s in mapped}]
    if missing:
        raise DataError(
            f"source {spec.name} ({root}): no sample of class {', '.join(missing)} to keep "
            f"(its classes: {', '.join(sorted(seen))})"
        )
    return mapped


def _check_vocabulary(by_source: dict[str, list[Sample]], specs: Sequence[SourceSpec]) -> None:
    """Generic ``tumor`` next to tumour types cannot be resolved without a binary recipe,
    unless its source kept it by name (``NAME=PATH:no_tumor,tumor``): then its tumour images
    train as tumours of unknown type (:mod:`braintumor.data.coarse_labels`)."""
    labels = {s.label for samples in by_source.values() for s in samples}
    if TUMOR in labels and labels & set(TUMOUR_TYPES):
        asked = {spec.name for spec in specs if TUMOR in spec.only}
        generic = [
            name
            for name, samples in by_source.items()
            if name not in asked and any(s.label == TUMOR for s in samples)
        ]
        if not generic:
            return
        raise DataError(
            f"source {', '.join(generic)}: label 'tumor' cannot be mapped onto "
            f"{', '.join(sorted(labels & set(TUMOUR_TYPES)))}; keep only its no_tumor images "
            f"(NAME=PATH:no_tumor), train its tumours as of unknown type "
            f"(NAME=PATH:no_tumor,tumor) or use a binary recipe (classes: [no_tumor, tumor])"
        )


def _tagged(samples: list[Sample], spec: SourceSpec, layout_name: str) -> list[Sample]:
    """Prefix ids and groups with the source; numbered-neighbour groups become layout groups."""
    extra = layout_extra_groups(samples, layout_name) or [None] * len(samples)
    return [
        dataclasses.replace(
            s,
            id=f"{spec.name}/{s.id}",
            group=f"{spec.name}:{s.group or more}" if (s.group or more) else None,
            source=spec.name,
        )
        for s, more in zip(samples, extra, strict=True)
    ]


def load_sources(
    specs: Sequence[SourceSpec],
    task: str | None = "classify",
    classes: Sequence[str] | None = None,
) -> DetectedLayout:
    """One samples table over every source, as a layout the training run can use.

    ``task`` is the recipe's task: for ``classify`` the labels are harmonised onto
    ``classes`` (None: the union of the sources' harmonised labels; tumour types and generic
    ``tumor`` may not mix). ``task`` None (the audit) takes any layout and labels what it can
    without requiring a common vocabulary. A single bare folder returns its own layout,
    samples tagged with its source but ids unchanged. Raises :class:`DataError` naming the
    source and labels that do not fit.
    """
    classify = task == "classify"
    by_source: dict[str, list[Sample]] = {}
    layouts: dict[str, DetectedLayout] = {}
    for spec in specs:
        layout = detect_layout(spec.path)
        wanted = "classify" if classify else ("segment" if task == "segment" else "brats")
        usable = layout.task == wanted or (classify and layout.task == "segment")
        if task is not None and not usable:
            raise DataError(
                f"source {spec.name} ({layout.root}): a {layout.task} layout ({layout.name}) "
                f"cannot serve a {task} recipe"
            )
        samples = layout.samples
        if classify:
            samples = _harmonise(_labelled(layout, spec), spec, layout.root, classes)
        elif task is None and layout.task != "brats" and not is_plain(specs):
            samples = _renamed(_labelled(layout, spec, strict=False), spec)
            if spec.only:
                samples = [s for s in samples if s.label in spec.only]
        elif spec.only:
            raise DataError(f"source {spec.name}: a class filter needs a classification recipe")
        layouts[spec.name] = layout
        by_source[spec.name] = samples
    if classify and classes is None:
        _check_vocabulary(by_source, specs)
    if is_plain(specs):
        spec = specs[0]
        layout = layouts[spec.name]
        samples = [dataclasses.replace(s, source=spec.name) for s in by_source[spec.name]]
        found = sorted({s.label for s in samples if s.label}) or layout.classes
        return dataclasses.replace(layout, samples=samples, classes=found)
    if task is not None and task.startswith("brats"):
        raise DataError("several --data folders are not supported for BraTS recipes")
    samples = [
        sample
        for spec in specs
        for sample in _tagged(by_source[spec.name], spec, layouts[spec.name].name)
    ]
    # Several sources have no common split of their own: the run makes one over all of them.
    samples = [dataclasses.replace(s, split=None) for s in samples]
    notes = [
        f"{spec.name}: {layouts[spec.name].name} layout, {len(by_source[spec.name])} samples"
        + (f" (only {', '.join(spec.only)})" if spec.only else "")
        for spec in specs
    ]
    roots = [str(layouts[spec.name].root) for spec in specs]
    root = Path(os.path.commonpath(roots)) if len(roots) > 1 else Path(roots[0])
    found = sorted({s.label for s in samples if s.label})
    kind = task or layouts[specs[0].name].task
    source_layouts = {spec.name: layouts[spec.name].name for spec in specs}
    return DetectedLayout(
        MULTI_LAYOUT, kind, root, samples, found, notes, source_layouts=source_layouts
    )


def source_names(samples: Sequence[Sample]) -> list[str]:
    """The sources of ``samples`` in order of first appearance."""
    return list(dict.fromkeys(s.source or "-" for s in samples))


def load_data(
    data: str | Path | Sequence[str | Path],
    task: str | None = "classify",
    classes: Sequence[str] | None = None,
) -> DetectedLayout:
    """:func:`load_sources` of one ``--data`` value or several."""
    texts = [data] if isinstance(data, str | Path) else list(data)
    return load_sources(parse_sources(texts), task, classes)
