"""2D segmentation speed: the project's training and inference pipeline against a plain loop.

Usage: ``python benchmarks/speed_segment.py [DATA] [--steps 15] [--warmup 3]``. ``DATA`` is an
``images/`` + ``masks/`` folder (default: the shared ``figshare-seg``, else a synthetic set
written to a temporary folder). Writes ``benchmarks/results/speed_segment.json`` and prints a
markdown table.

Both sides train the recipe's model (``fast-cpu-seg``: MONAI U-Net, grey 128 px) with the same
batch size, MONAI ``DiceCELoss`` (sigmoid) and AdamW, in one process, timed in alternating
order:

- reference: a plain ``Dataset`` that reads the image and mask PNGs with PIL per item and
  applies torchvision ``transforms.v2`` to the pair, DataLoader with 0 and with 2 workers, fp32,
  contiguous NCHW; inference reads the images only, unaugmented, under ``inference_mode``.
- ours: image/mask pairs decoded once by ``decode_slices`` (its one-off time reported apart),
  batched fetch from ``SliceDataset``, ``augment_batch`` on image and mask together,
  ``normalise_batch`` (channels_last) and bf16 autocast where the CPU has it, in a plain loop
  calling these components the way ``SegmentationModule.training_step`` does (no Lightning).
  Inference: ``Predictor.segment`` on files (decoding and the resize back to each image's size
  included), and from the decoded cache in fp32 and bf16.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from braintumor.config import Recipe, load_recipe
from braintumor.data.layouts import detect_layout
from braintumor.data.preprocess import PreprocessSpec, normalise_batch
from braintumor.data.samples import Sample
from braintumor.data.synthetic import write_synthetic_dataset
from braintumor.errors import DataError
from braintumor.losses import build_loss
from braintumor.models import build_model
from braintumor.models.folder import ModelInfo
from braintumor.training.augment import AugmentConfig, augment_batch
from braintumor.training.datamodule import SliceDataModule, SliceDataset
from braintumor.training.setup import preprocess_spec
from matmul_peak import peak_for_this_cpu
from speed_common import (
    Variant,
    count_flops,
    loop_result,
    loop_setup,
    machine_info,
    script_main,
    shared_data_root,
    time_phases,
)
from speed_pipelines import (
    cached_infer_variant,
    our_data_variant,
    our_train_variants,
    precisions,
    predictor_variant,
    reference_variants,
    resolve_precision,
    timed_decode,
)

RECIPE = "fast-cpu-seg"


def default_data() -> Path | None:
    """The shared Figshare segmentation folder, when present."""
    folder = shared_data_root() / "figshare-seg"
    return folder if folder.is_dir() else None


def reference_transform(spec: PreprocessSpec, aug: AugmentConfig | None) -> v2.Compose:
    """Paired torchvision v2 transforms: geometry moves image and mask, intensity the image."""
    steps: list[Any] = [v2.Resize((spec.image_size, spec.image_size), antialias=True)]
    if aug is not None:
        steps += [
            v2.RandomHorizontalFlip(aug.hflip),
            v2.RandomAffine(
                degrees=aug.rotate,
                translate=(aug.translate, aug.translate) if aug.translate else None,
                scale=(1 - aug.zoom, 1 + aug.zoom) if aug.zoom else None,
                shear=aug.shear or None,
            ),
            v2.ColorJitter(brightness=aug.brightness, contrast=aug.contrast),
        ]
    steps += [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(spec.mean, spec.std),
    ]
    return v2.Compose(steps)


class PairedPngDataset(Dataset):
    """Image and mask files read with PIL per item, then the paired transform.

    Items are ``(image, mask)`` float tensors, the mask (1, S, S) in {0, 1}; without masks,
    the image alone.
    """

    def __init__(self, samples: list[Sample], transform: v2.Compose, masks: bool, channels: int):
        self.samples = samples
        self.transform = transform
        self.masks = masks
        self.mode = "L" if channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        sample = self.samples[index]
        with Image.open(sample.image) as handle:
            image = tv_tensors.Image(pil_to_tensor(handle.convert(self.mode)))
        if not self.masks:
            return self.transform(image)
        with Image.open(sample.mask) as handle:
            mask = tv_tensors.Mask((pil_to_tensor(handle.convert("L")) > 0).to(torch.uint8))
        image, mask = self.transform(image, mask)
        return image, mask.float()


def our_variants(
    decoded: Any, spec: PreprocessSpec, model: torch.nn.Module, recipe: Recipe, precision: str
) -> tuple[list[Variant], list[Variant], list[Variant]]:
    """Training, inference and input-only variants of the project's pipeline."""
    aug = AugmentConfig.from_dict(recipe.augment)
    dataset = SliceDataset(decoded, seed=recipe.seed)
    data = SliceDataModule(dataset, dataset, batch_size=recipe.batch_size, seed=recipe.seed)
    loss_fn = build_loss(recipe.loss, "segment", **recipe.loss_args)

    def prepare(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        # SegmentationModule._prepare for training: image and mask share one affine.
        masks = batch["mask"].unsqueeze(1).float()
        x, masks = augment_batch(batch["image"].float().div_(255.0), masks, aug)
        return normalise_batch(x, spec), masks

    train = our_train_variants(model, recipe, data.train_dataloader(), prepare, loss_fn, precision)
    info = ModelInfo(
        task="segment",
        architecture=recipe.model,
        num_outputs=1,
        in_channels=recipe.in_channels,
        class_names=["background", "tumor"],
        image_size=recipe.image_size,
        model_args=dict(recipe.model_args),
        preprocessing=spec.to_dict(),
    )
    files = [s.image for s in decoded.samples]
    infer = [predictor_variant(model, info, files, recipe.batch_size)]
    for p in precisions(precision):
        infer.append(cached_infer_variant(model, data.val_dataloader(), spec, p))
    return train, infer, [our_data_variant(data.train_dataloader(), prepare)]


def _flops_per_image(model: torch.nn.Module, recipe: Recipe) -> tuple[float, float]:
    """Counted FLOPs per image of one training step (forward + backward) and one forward."""
    net = copy.deepcopy(model).train()
    size, b = recipe.image_size, recipe.batch_size
    x = torch.randn(b, recipe.in_channels, size, size)
    y = (torch.rand(b, 1, size, size) > 0.9).float()
    loss_fn = DiceCELoss(sigmoid=True)
    train = count_flops(lambda: loss_fn(net(x), y).backward())
    with torch.inference_mode():
        infer = count_flops(lambda: net.eval()(x))
    return train / b, infer / b


def run_segment_benchmark(
    data: Path | None = None,
    recipe_name: str = RECIPE,
    overrides: list[str] | None = None,
    warmup: int = 3,
    steps: int = 15,
    rounds: int = 3,
    workers: tuple[int, ...] = (0, 2),
    limit: int | None = None,
    precision: str = "auto",
    cache_dir: Path | None = None,
    peak: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time both pipelines and return the result record written to ``speed_segment.json``."""
    machine = machine_info()
    recipe = load_recipe(recipe_name, overrides)
    precision = resolve_precision(precision)
    spec = preprocess_spec(recipe)
    with tempfile.TemporaryDirectory(prefix="speed-segment-") as tmp:
        if data is None:
            data = default_data() or write_synthetic_dataset(Path(tmp) / "synthetic", "segment")
        layout = detect_layout(data)
        pairs = [s for s in layout.samples if s.mask]
        if not pairs:
            raise DataError(f"{data}: no image/mask pairs in its {layout.name} layout")
        rng = np.random.default_rng(recipe.seed)
        n = len(pairs) if limit is None else min(limit, len(pairs))
        pairs = [pairs[i] for i in sorted(rng.permutation(len(pairs))[:n].tolist())]
        decoded, decode = timed_decode(pairs, spec, True, cache_dir or Path(tmp) / "cache")

        torch.manual_seed(recipe.seed)
        model = build_model(
            recipe.model, num_classes=1, in_channels=recipe.in_channels, **recipe.model_args
        )
        aug = AugmentConfig.from_dict(recipe.augment)
        channels = recipe.in_channels
        reference = reference_variants(
            PairedPngDataset(pairs, reference_transform(spec, aug), True, channels),
            PairedPngDataset(pairs, reference_transform(spec, None), False, channels),
            model,
            DiceCELoss(sigmoid=True),
            recipe,
            list(workers),
        )
        ours = our_variants(decoded, spec, model, recipe, precision)
        phases = time_phases(reference, ours, warmup, steps, rounds)

    peak = peak or peak_for_this_cpu()
    setup = {
        "data": str(data),
        "layout": layout.name,
        "images": len(decoded.samples),
        "loss": f"reference: monai DiceCELoss(sigmoid=True); ours: recipe loss {recipe.loss}",
        **loop_setup(recipe, warmup, steps, rounds),
    }
    flops = _flops_per_image(model, recipe)
    return loop_result("segment", machine, setup, decode, flops, peak, phases)


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], run_segment_benchmark, "speed_segment.json")
