"""Multimodal 3D layouts: BraTS case folders (2013/2015, 2018-2021, 2023 naming) and nnU-Net raw."""

from __future__ import annotations

import json
import re
from pathlib import Path

from braintumor.data.layouts_base import (
    BRATS_DATA,
    SEGMENT_DATA,
    DetectedLayout,
    list_dir,
    normalise_split_name,
    relative_id,
    strip_image_suffix,
)
from braintumor.data.samples import Sample
from braintumor.errors import LayoutError

MODALITIES = ("t1", "t1ce", "t2", "flair")
LABEL = "label"
BRAINMASK = "brainmask"

# Suffix conventions: BraTS 2018-2021 (<case>_flair) and 2023 (<case>-t2f).
_SUFFIXES = {
    "_flair": "flair",
    "_t1ce": "t1ce",
    "_t1": "t1",
    "_t2": "t2",
    "_seg": LABEL,
    "-t2f": "flair",
    "-t1c": "t1ce",
    "-t1n": "t1",
    "-t2w": "t2",
    "-seg": LABEL,
}
# BraTS 2013/2015 names start with the sequence (Flair*, T1c*, T1*, T2*) or hold it after MR_.
_PREFIXES = (("flair", "flair"), ("t1c", "t1ce"), ("t1", "t1"), ("t2", "t2"))
_OT = re.compile(r"(^|[._\-])ot([._\-]|multiclass|$)")
_CHANNEL_SYNONYMS = {
    "flair": "flair",
    "t2f": "flair",
    "t2_flair": "flair",
    "t1": "t1",
    "t1w": "t1",
    "t1n": "t1",
    "native_t1": "t1",
    "t1ce": "t1ce",
    "t1c": "t1ce",
    "t1gd": "t1ce",
    "t1_gd": "t1ce",
    "t1_ce": "t1ce",
    "t1post": "t1ce",
    "t2": "t2",
    "t2w": "t2",
}
_NNUNET_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def canonical_modality(name: str) -> str:
    """FLAIR/T2f -> flair, T1w/T1n -> t1, T1gd/T1c/T1ce -> t1ce, T2w -> t2; others lower-cased."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return _CHANNEL_SYNONYMS.get(key, key)


def brats_file_role(name: str) -> str | None:
    """The role of a NIfTI file in a BraTS case folder: a modality, ``label``, ``brainmask``."""
    lower = name.lower()
    if not lower.endswith((".nii", ".nii.gz")):
        return None
    stem = strip_image_suffix(lower)
    for suffix, role in _SUFFIXES.items():
        if stem.endswith(suffix):
            return role
    if "brainmask" in stem or "brain_mask" in stem:
        return BRAINMASK
    if stem.startswith("otmulticlass") or _OT.search(stem):
        return LABEL
    body = stem.split("mr_", 1)[1] if "mr_" in stem else stem
    for prefix, role in _PREFIXES:
        if body.startswith(prefix):
            return role
    return None


def _case_files(folder: Path) -> tuple[dict[str, Path] | None, str | None]:
    """(role -> file) when ``folder`` is a case folder; else None and, if ambiguous, why."""
    _, files = list_dir(folder)
    roles: dict[str, Path] = {}
    for name in files:
        role = brats_file_role(name)
        if role is None:
            continue
        if role in roles:
            return None, f"{folder}: both {roles[role].name} and {name} look like its {role}"
        roles[role] = folder / name
    if not any(role in MODALITIES for role in roles):
        return None, None
    return roles, None


def detect_brats(root: Path, max_depth: int = 3) -> DetectedLayout | None:
    """Case folders up to ``max_depth`` below ``root`` (or ``root`` itself) with BraTS files.

    Modalities map to t1/t1ce/t2/flair (plus ``brainmask``); the label file is the mask.
    HGG/LGG parent folders become the label, split-named ancestors the split.
    """
    cases: list[tuple[Path, dict[str, Path]]] = []
    ambiguous: list[str] = []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        roles, problem = _case_files(folder)
        if problem:
            ambiguous.append(problem)
        if roles is not None:
            cases.append((folder, roles))
            continue
        if depth < max_depth:
            dirs, _ = list_dir(folder)
            stack.extend((folder / d, depth + 1) for d in dirs)
    if not cases:
        return None
    samples = []
    for folder, roles in sorted(cases, key=lambda item: str(item[0])):
        parts = folder.relative_to(root).parts[:-1]
        grade = next((p.lower() for p in parts if p.lower() in ("hgg", "lgg")), None)
        split = next((normalise_split_name(p) for p in parts if normalise_split_name(p)), None)
        label_file = roles.pop(LABEL, None)
        samples.append(
            Sample(
                id=relative_id(folder, root) if folder != root else folder.name,
                image=str(folder),
                label=grade,
                mask=None if label_file is None else str(label_file),
                group=folder.name,
                split=split,
                modalities={k: str(v) for k, v in sorted(roles.items())},
            )
        )
    notes = [f"skipped {p}" for p in ambiguous]
    present = sorted({m for s in samples for m in s.modalities if m in MODALITIES})
    notes.append(f"modalities found: {', '.join(present)}")
    incomplete = [
        s.id for s in samples if {m for m in s.modalities if m in MODALITIES} != set(present)
    ]
    if incomplete:
        notes.append(f"{len(incomplete)} cases lack some modality: {', '.join(incomplete[:3])}")
    unlabelled = sum(s.mask is None for s in samples)
    if unlabelled:
        notes.append(f"{unlabelled} cases have no label file (inference only)")
    classes = sorted({s.label for s in samples if s.label})
    return DetectedLayout("brats", BRATS_DATA, root, samples, classes, notes)


def _channel_names(root: Path, meta: dict) -> dict[str, str]:
    names = meta.get("channel_names") or meta.get("modality")
    if not isinstance(names, dict) or not names:
        raise LayoutError(f"{root / 'dataset.json'}: no channel_names (or modality) mapping")
    return {f"{int(k):04d}": canonical_modality(str(v)) for k, v in names.items()}


def detect_nnunet_raw(root: Path) -> DetectedLayout | None:
    """nnU-Net raw: ``dataset.json`` + ``imagesTr/<case>_0000.nii.gz`` ... + ``labelsTr/``
    (and ``imagesTs/`` as the test split). Channel names come from dataset.json.
    """
    if not (root / "dataset.json").is_file() or not (root / "imagesTr").is_dir():
        return None
    try:
        meta = json.loads((root / "dataset.json").read_text())
    except (OSError, ValueError) as exc:
        raise LayoutError(f"{root / 'dataset.json'}: unreadable ({exc})") from None
    channels = _channel_names(root, meta)
    ending = str(meta.get("file_ending", ".nii.gz"))
    samples: list[Sample] = []
    notes: list[str] = []
    for images_dir, labels_dir, split in (
        ("imagesTr", "labelsTr", "train"),
        ("imagesTs", "labelsTs", "test"),
    ):
        _, files = list_dir(root / images_dir)
        cases: dict[str, dict[str, tuple[str, str]]] = {}
        for name in files:
            if not name.endswith(ending):
                continue
            match = _NNUNET_FILE.match(name[: -len(ending)])
            if match is None:
                raise LayoutError(f"{root / images_dir / name}: not named <case>_<XXXX>{ending}")
            channel = channels.get(match["channel"], f"channel{match['channel']}")
            path = str(root / images_dir / name)
            cases.setdefault(match["case"], {})[channel] = (match["channel"], path)
        for case, files_by_channel in sorted(cases.items()):
            modalities = {name: path for name, (_, path) in sorted(files_by_channel.items())}
            first = min(files_by_channel.values())[1]
            label = root / labels_dir / f"{case}{ending}"
            missing = set(channels.values()) - set(modalities)
            if missing:
                notes.append(f"{images_dir}/{case}: missing channels {sorted(missing)}")
            samples.append(
                Sample(
                    id=f"{images_dir}/{case}",
                    image=first,
                    mask=str(label) if label.is_file() else None,
                    group=case,
                    split=split,
                    modalities=modalities,
                )
            )
    if not samples:
        raise LayoutError(f"{root}: dataset.json and imagesTr/ found but no {ending} images")
    unlabelled = sum(s.mask is None and s.split == "train" for s in samples)
    if unlabelled:
        notes.append(f"{unlabelled} training cases have no file in labelsTr/")
    notes.append(f"channels: {', '.join(channels[k] for k in sorted(channels))}")
    known = set(channels.values()) <= set(MODALITIES)
    return DetectedLayout(
        "nnunet-raw", BRATS_DATA if known else SEGMENT_DATA, root, samples, [], notes
    )
