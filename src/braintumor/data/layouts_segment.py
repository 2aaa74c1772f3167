"""2D segmentation layouts told by file names or annotation files: a folder of Figshare
``.mat`` files, and COCO polygon annotations (LGG patient folders: ``layouts_lgg``).
"""

from __future__ import annotations

from pathlib import Path

from braintumor.data.layouts_base import (
    SEGMENT_DATA,
    DetectedLayout,
    list_dir,
    normalise_class_name,
    normalise_split_name,
    relative_id,
    walk_files,
)
from braintumor.data.samples import Sample
from braintumor.errors import BrainTumorError, LayoutError
from braintumor.io.coco import coco_mask_ref, load_coco
from braintumor.io.mat import read_figshare_label

COCO_FILES = ("_annotations.coco.json", "annotations.json")


def detect_figshare_mat(root: Path) -> DetectedLayout | None:
    """A folder (any depth) of Figshare ``.mat`` files: label and PID are read from each file
    (only those two fields, not the pixels). Other ``.mat`` files (``cvind.mat``) are skipped.
    """
    mats = [p for p in walk_files(root, max_depth=3) if p.name.lower().endswith(".mat")]
    if not mats:
        return None
    samples: list[Sample] = []
    skipped: list[str] = []
    first_problem = ""
    for path in mats:
        try:
            label, patient = read_figshare_label(path)
        except BrainTumorError as exc:
            skipped.append(path.name)
            first_problem = first_problem or str(exc)
            continue
        samples.append(
            Sample(
                id=relative_id(path, root),
                image=str(path),
                label=label,
                mask=str(path),
                group=patient or None,
            )
        )
    if not samples:
        raise LayoutError(
            f"{root}: {len(mats)} .mat files but none is a Figshare cjdata file ({first_problem})"
        )
    notes = ["mask = the tumorMask inside each .mat; group = cjdata.PID"]
    if skipped:
        shown = ", ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        notes.append(f"skipped {len(skipped)} .mat files without cjdata: {shown}")
    classes = sorted({s.label for s in samples if s.label})
    return DetectedLayout("figshare-mat", SEGMENT_DATA, root, samples, classes, notes)


def _coco_files(root: Path) -> list[Path]:
    found = []
    dirs, files = list_dir(root)
    for folder, names in [(root, files)] + [(root / d, list_dir(root / d)[1]) for d in dirs]:
        found.extend(folder / n for n in names if n.lower() in COCO_FILES)
    return found


def _coco_samples(root: Path, json_path: Path, notes: list[str]) -> list[Sample]:
    document = load_coco(json_path)
    folder = json_path.parent
    split = normalise_split_name(folder.name) if folder != root else None
    categories = {str(c.get("id")): str(c.get("name")) for c in document["categories"] or []}
    samples = []
    missing = 0
    for image_id, image in sorted(document["images"].items(), key=lambda item: item[0]):
        name = str(image.get("file_name", ""))
        path = next((p for p in (folder / name, folder / "images" / name) if p.is_file()), None)
        if path is None:
            missing += 1
            continue
        used = {
            categories.get(str(a.get("category_id")))
            for a in document["annotations"].get(image_id, [])
        }
        used.discard(None)
        label = normalise_class_name(used.pop()) if len(used) == 1 else None
        samples.append(
            Sample(
                id=relative_id(path, root),
                image=str(path),
                label=label,
                mask=coco_mask_ref(json_path, image_id),
                split=split,
            )
        )
    if missing:
        notes.append(f"{relative_id(json_path, root)}: {missing} listed images are missing")
    return samples


def detect_coco(root: Path) -> DetectedLayout | None:
    """``_annotations.coco.json`` or ``annotations.json`` beside its images, in the root or in
    split folders (train/valid/test); masks are drawn from the polygons when read.
    """
    json_files = _coco_files(root)
    if not json_files:
        return None
    notes: list[str] = []
    samples: list[Sample] = []
    for json_path in json_files:
        samples.extend(_coco_samples(root, json_path, notes))
    if not samples:
        raise LayoutError(f"{root}: COCO annotations found but none of their images exist")
    notes.append("mask = coco:<json>#<image id>, drawn from the polygons by read_mask")
    classes = sorted({s.label for s in samples if s.label})
    return DetectedLayout("coco", SEGMENT_DATA, root, samples, classes, notes)
