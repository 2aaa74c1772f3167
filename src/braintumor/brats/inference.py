"""Whole-case prediction: the model folder's preprocessing replayed, the network run over the
whole brain (2D slice by slice, 3D by Gaussian-weighted sliding window), optional mirror TTA,
the result pasted back onto the input grid and written as NIfTI with overlays and volumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import torch

from braintumor.atomic import write_text_atomic
from braintumor.brats.labels import (
    CONVENTIONS,
    activate,
    from_working,
    label_table,
    probabilities_to_labels,
    region_masks,
)
from braintumor.brats.patches import sliding_window_inferer
from braintumor.brats.preprocess import BratsPreprocess, Case, crop, load_case, paste, resample
from braintumor.brats.slices import from_plane, to_plane
from braintumor.data.samples import Sample
from braintumor.errors import DataError, ModelFormatError
from braintumor.inference.tta import NO_MIRRORS, every_axis, mirrored_mean
from braintumor.io import write_nifti, write_png
from braintumor.io.label_tables import write_label_tables
from braintumor.localize import draw_overlay
from braintumor.models.folder import LoadedModel

SLICE_BATCH = 32
# Outline colours (RGB): WT green, TC yellow, ET red, as in most BraTS figures.
REGION_COLOURS = {"WT": (0, 220, 0), "TC": (255, 220, 0), "ET": (255, 40, 40)}


@dataclass
class CasePrediction:
    """Working-convention labels on the input grid, with the case they came from."""

    labels: np.ndarray
    case: Case
    convention: str
    seconds: float


def brats_preprocessing(loaded: LoadedModel) -> dict[str, Any]:
    """The model's BraTS preprocessing record; a ModelFormatError if it is not a BraTS model."""
    pre = loaded.info.preprocessing
    if pre.get("kind") != "brats" or pre.get("mode") not in ("2d", "3d"):
        raise ModelFormatError(f"{loaded.path}: not a BraTS model (no BraTS preprocessing record)")
    return pre


@torch.inference_mode()
def predict_probabilities(
    loaded: LoadedModel, case: Case, tta: bool = False, overlap: float | None = None
) -> np.ndarray:
    """Output probabilities (K, working grid) of ``case`` (already preprocessed)."""
    pre = brats_preprocessing(loaded)
    model, label_mode = loaded.model.eval(), pre["label_mode"]
    device = next(model.parameters()).device
    image = torch.from_numpy(case.image)
    k = int(loaded.info.num_outputs)
    if pre["mode"] == "3d":
        inferer = sliding_window_inferer(
            pre["patch_size"],
            pre.get("sw_overlap", 0.5) if overlap is None else overlap,
            int(pre.get("sw_batch_size", 2)),
        )

        def run3d(x: torch.Tensor) -> torch.Tensor:
            # A network with one output gives the inferer's one-tensor result.
            return activate(cast(torch.Tensor, inferer(x, model)).float(), label_mode)

        flips = every_axis(3) if tta else NO_MIRRORS
        whole = mirrored_mean(run3d, image[None].to(device), flips)[0]
        return whole.cpu().numpy()
    size = int(pre["image_size"])
    n_x, n_y, n_z = case.image.shape[1:]
    probs = np.zeros((k, n_x, n_y, n_z), dtype=np.float32)
    if label_mode == "labels":
        probs[0] = 1.0  # slices without brain are background
    brain_slices = np.flatnonzero(case.brain.any(axis=(0, 1)))

    def run2d(x: torch.Tensor) -> torch.Tensor:
        return activate(model(x).float(), label_mode)

    for start in range(0, len(brain_slices), SLICE_BATCH):
        zs = brain_slices[start : start + SLICE_BATCH]
        x = to_plane(image[..., zs].permute(3, 0, 1, 2), size, "bilinear").to(device)
        y = mirrored_mean(run2d, x, every_axis(2) if tta else NO_MIRRORS)
        y = from_plane(y.cpu(), (n_x, n_y), "bilinear")
        probs[..., zs] = y.permute(1, 2, 3, 0).numpy()
    return probs


def _output_convention(pre: dict[str, Any], asked: str | None) -> str:
    conv = asked or pre.get("convention", "auto")
    if conv == "auto":
        conv = "brats2017"
    if conv not in CONVENTIONS:
        raise DataError(f"BraTS: unknown output convention {conv!r}; use one of {CONVENTIONS}")
    return conv


def predict_labels(
    loaded: LoadedModel,
    sample: Sample,
    tta: bool = False,
    overlap: float | None = None,
    convention: str | None = None,
) -> CasePrediction:
    """Predict one case; working-convention labels on the input's full grid."""
    pre = brats_preprocessing(loaded)
    start = time.perf_counter()
    settings = BratsPreprocess.from_dict(pre)
    case = load_case(sample, settings, with_labels=False)
    probs = predict_probabilities(loaded, case, tta=tta, overlap=overlap)
    brain = case.brain
    if tuple(probs.shape[1:]) != tuple(case.crop_shape):
        probs = resample(probs, case.crop_shape, "trilinear")
        brain = resample(brain[None].astype(np.float32), case.crop_shape, "nearest")[0] > 0.5
    labels = probabilities_to_labels(probs, pre["label_mode"])
    labels[~brain] = 0  # tumour lies inside the brain; stray outputs in the air are noise
    full = paste(labels, case.box, case.original_shape)
    return CasePrediction(
        full, case, _output_convention(pre, convention), time.perf_counter() - start
    )


def _overlay_slices(wt: np.ndarray, n: int = 3) -> list[int]:
    """The ``n`` axial slices with the largest tumour area (largest first)."""
    area = wt.sum(axis=(0, 1))
    order = [int(z) for z in np.argsort(-area, kind="stable") if area[z] > 0]
    return order[:n]


def _background(case: Case, modalities: list[str]) -> np.ndarray:
    """FLAIR (else the first modality) on the cropped original grid, for overlays."""
    channel = modalities.index("flair") if "flair" in modalities else 0
    image = case.image[channel : channel + 1]
    if tuple(image.shape[1:]) != tuple(case.crop_shape):
        image = resample(image, case.crop_shape, "trilinear")
    return image[0]


def overlay_png(background: np.ndarray, regions: dict[str, np.ndarray]) -> np.ndarray:
    """RGB overlay of one axial slice: WT tinted and outlined, TC and ET outlined.

    Shown rotated by 90 degrees so that anterior is up for the usual RAS-ordered volumes.
    """
    view = np.rot90
    rgb = draw_overlay(view(background), view(regions["WT"]), color=REGION_COLOURS["WT"], alpha=0.2)
    for name in ("TC", "ET"):
        mask = np.ascontiguousarray(view(regions[name])).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, REGION_COLOURS[name], thickness=1)
    return rgb


def region_volumes(labels: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    """WT, TC and ET volumes in mL of a working-convention label map."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {name: float(mask.sum()) * voxel_ml for name, mask in region_masks(labels).items()}


def write_prediction(
    loaded: LoadedModel, sample: Sample, pred: CasePrediction, out_dir: Path, overlays: bool = True
) -> dict[str, Any]:
    """Write ``<case>_seg.nii.gz`` with its colour tables (``.ctbl``, ``.itksnap.txt``), the
    overlay PNGs and ``<case>_seg.json``; returns the record."""
    out_dir = Path(out_dir)
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in sample.id)
    seg_path = out_dir / f"{name}_seg.nii.gz"
    write_nifti(from_working(pred.labels, pred.convention), seg_path, reference=pred.case.reference)
    tables = write_label_tables(seg_path, label_table(pred.convention))
    record: dict[str, Any] = {
        "case": sample.id,
        "segmentation": str(seg_path),
        "colour_tables": [str(path) for path in tables],
        "convention": pred.convention,
        "spacing_mm": list(pred.case.spacing),
        "volumes_ml": region_volumes(pred.labels, pred.case.spacing),
        "seconds": round(pred.seconds, 3),
        "overlays": [],
    }
    if overlays:
        modalities = BratsPreprocess.from_dict(brats_preprocessing(loaded)).modalities
        background = _background(pred.case, modalities)
        regions = region_masks(crop(pred.labels, pred.case.box))
        for rank, z in enumerate(_overlay_slices(regions["WT"])):
            png = out_dir / f"{name}_overlay{rank + 1}_z{z + pred.case.box[2][0]}.png"
            slice_regions = {r: m[..., z] for r, m in regions.items()}
            write_png(overlay_png(background[..., z], slice_regions), png)
            record["overlays"].append(str(png))
    write_text_atomic(out_dir / f"{name}_seg.json", json.dumps(record, indent=2))
    return record


def predict_case(
    loaded: LoadedModel,
    sample: Sample,
    out_dir: Path,
    tta: bool = False,
    overlap: float | None = None,
    convention: str | None = None,
    overlays: bool = True,
) -> dict[str, Any]:
    """Segment one case and write ``<case>_seg.nii.gz``, overlays and ``<case>_seg.json``.

    The NIfTI has the first modality's affine and header and holds labels in ``convention``
    (default: the convention of the training labels). ``overlap`` overrides the model's
    sliding-window overlap (3D); ``tta`` averages over mirrored inputs. Returns the JSON
    record (region volumes in mL, files written, seconds).
    """
    pred = predict_labels(loaded, sample, tta=tta, overlap=overlap, convention=convention)
    record = write_prediction(loaded, sample, pred, out_dir, overlays=overlays)
    return record | {"tta": tta}
