"""Classification speed: the project's training and inference pipeline against a plain loop.

Usage: ``python benchmarks/speed_classify.py [DATA] [--steps 15] [--warmup 3]``. ``DATA`` is a
folder of class folders (default: ``sartaj-4class/Training`` of the shared data, else a
synthetic set written to a temporary folder). Writes ``benchmarks/results/speed_classify.json``
and prints a markdown table.

Both sides train the recipe's model (``fast-cpu-4class``: ResNet-18, grey 128 px) with the
same batch size, loss and AdamW, in one process, timed in alternating order:

- reference: ``torchvision.datasets.ImageFolder`` with per-item PIL transforms, DataLoader with
  0 and with 2 workers, fp32, contiguous NCHW; inference with the same loader unaugmented under
  ``torch.inference_mode``.
- ours: images decoded once by ``decode_slices`` (its one-off time is reported apart), batched
  fetch from ``SliceDataset``, ``augment_batch`` + ``normalise_batch`` (channels_last input) and
  bf16 autocast where the CPU has it, in a plain loop calling these components the way
  ``ClassificationModule.training_step`` does (no Lightning, so no logging or callback costs are
  timed). Inference: ``Predictor`` on files (decoding included), and from the decoded cache in
  fp32 and bf16.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset
from torchvision import datasets
from torchvision import transforms as T

from braintumor.config import Recipe, load_recipe
from braintumor.data.preprocess import PreprocessSpec, normalise_batch
from braintumor.data.samples import Sample
from braintumor.data.synthetic import write_synthetic_dataset
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

RECIPE = "fast-cpu-4class"


def default_data() -> Path | None:
    """The shared 4-class training folder, when present."""
    folder = shared_data_root() / "sartaj-4class" / "Training"
    return folder if folder.is_dir() else None


def reference_transform(spec: PreprocessSpec, aug: AugmentConfig | None) -> T.Compose:
    """Per-item PIL transforms of the usual torchvision recipe, with the recipe's ranges."""
    steps: list[Any] = [
        T.Grayscale(num_output_channels=spec.in_channels),
        T.Resize((spec.image_size, spec.image_size)),
    ]
    if aug is not None:
        steps += [
            T.RandomHorizontalFlip(aug.hflip),
            T.RandomAffine(
                degrees=aug.rotate,
                translate=(aug.translate, aug.translate) if aug.translate else None,
                scale=(1 - aug.zoom, 1 + aug.zoom) if aug.zoom else None,
                shear=aug.shear or None,
            ),
            T.ColorJitter(brightness=aug.brightness, contrast=aug.contrast),
        ]
    steps += [T.ToTensor(), T.Normalize(spec.mean, spec.std)]
    return T.Compose(steps)


def our_variants(
    decoded: Any,
    labels: np.ndarray,
    spec: PreprocessSpec,
    model: torch.nn.Module,
    recipe: Recipe,
    class_names: list[str],
    precision: str,
) -> tuple[list[Variant], list[Variant], list[Variant]]:
    """Training, inference and input-only variants of the project's pipeline."""
    aug = AugmentConfig.from_dict(recipe.augment)
    dataset = SliceDataset(decoded, labels, seed=recipe.seed)
    data = SliceDataModule(dataset, dataset, batch_size=recipe.batch_size, seed=recipe.seed)
    loss_args = dict(recipe.loss_args)
    if recipe.label_smoothing:
        loss_args.setdefault("label_smoothing", recipe.label_smoothing)
    loss_fn = build_loss(recipe.loss, "classify", **loss_args)

    def prepare(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        # ClassificationModule._inputs for training: augment in [0, 1], then normalise.
        x, _ = augment_batch(batch["image"].float().div_(255.0), None, aug)
        return normalise_batch(x, spec), batch["label"]

    train = our_train_variants(model, recipe, data.train_dataloader(), prepare, loss_fn, precision)
    info = ModelInfo(
        task="classify",
        architecture=recipe.model,
        num_outputs=len(class_names),
        in_channels=recipe.in_channels,
        class_names=class_names,
        image_size=recipe.image_size,
        preprocessing=spec.to_dict(),
    )
    files = [s.image for s in decoded.samples]
    infer = [predictor_variant(model, info, files, recipe.batch_size)]
    for p in precisions(precision):
        infer.append(cached_infer_variant(model, data.val_dataloader(), spec, p))
    return train, infer, [our_data_variant(data.train_dataloader(), prepare)]


def _flops_per_image(model: torch.nn.Module, recipe: Recipe, k: int) -> tuple[float, float]:
    """Counted FLOPs per image of one training step (forward + backward) and one forward."""
    net = copy.deepcopy(model).train()
    x = torch.randn(recipe.batch_size, recipe.in_channels, recipe.image_size, recipe.image_size)
    y = torch.randint(0, k, (recipe.batch_size,))
    train = count_flops(lambda: F.cross_entropy(net(x), y).backward())
    with torch.inference_mode():
        infer = count_flops(lambda: net.eval()(x))
    return train / recipe.batch_size, infer / recipe.batch_size


def run_classify_benchmark(
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
    """Time both pipelines and return the result record written to ``speed_classify.json``."""
    machine = machine_info()
    recipe = load_recipe(recipe_name, overrides)
    precision = resolve_precision(precision)
    spec = preprocess_spec(recipe)
    with tempfile.TemporaryDirectory(prefix="speed-classify-") as tmp:
        if data is None:
            data = default_data() or write_synthetic_dataset(Path(tmp) / "synthetic", "classify")
        folder = datasets.ImageFolder(data)
        rng = np.random.default_rng(recipe.seed)
        n = len(folder.samples) if limit is None else min(limit, len(folder.samples))
        indices = sorted(rng.permutation(len(folder.samples))[:n].tolist())
        samples = [
            Sample(id=str(Path(p).relative_to(data)), image=p, label=folder.classes[c])
            for p, c in (folder.samples[i] for i in indices)
        ]
        decoded, decode = timed_decode(samples, spec, False, cache_dir or Path(tmp) / "cache")
        index = {name: i for i, name in enumerate(folder.classes)}
        labels = np.array([index[s.label] for s in decoded.samples], dtype=np.int64)

        torch.manual_seed(recipe.seed)
        model = build_model(
            recipe.model,
            num_classes=len(folder.classes),
            in_channels=recipe.in_channels,
            **recipe.model_args,
        )
        aug = AugmentConfig.from_dict(recipe.augment)
        reference = reference_variants(
            Subset(datasets.ImageFolder(data, reference_transform(spec, aug)), indices),
            Subset(datasets.ImageFolder(data, reference_transform(spec, None)), indices),
            model,
            F.cross_entropy,
            recipe,
            list(workers),
        )
        ours = our_variants(decoded, labels, spec, model, recipe, folder.classes, precision)
        phases = time_phases(reference, ours, warmup, steps, rounds)
        n_images = len(decoded.samples)

    peak = peak or peak_for_this_cpu()
    setup = {
        "data": str(data),
        "images": n_images,
        "classes": folder.classes,
        **loop_setup(recipe, warmup, steps, rounds),
    }
    flops = _flops_per_image(model, recipe, len(folder.classes))
    return loop_result("classify", machine, setup, decode, flops, peak, phases)


if __name__ == "__main__":
    script_main(__doc__.splitlines()[0], run_classify_benchmark, "speed_classify.json")
