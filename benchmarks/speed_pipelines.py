"""The two pipelines under test, as timed :class:`~speed_common.Variant` steps.

- reference: a per-item ``Dataset`` + ``DataLoader`` (0 or more workers), fp32, contiguous
  NCHW, the plain forward / loss / backward / AdamW loop;
- ours: the decoded-slice cache, batched fetch, batched augmentation, channels_last input,
  bf16 autocast where the CPU has it, and the :class:`~braintumor.inference.predictor.Predictor`.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from braintumor.config import Recipe
from braintumor.data.cache import DecodedSlices, decode_slices
from braintumor.data.preprocess import normalise_batch
from braintumor.data.samples import Sample
from braintumor.inference.inputs import DECODE_THREADS
from braintumor.inference.precision import bf16_pays
from braintumor.inference.predictor import Predictor
from braintumor.io import read_image
from braintumor.models.folder import LoadedModel, ModelInfo
from braintumor.training.optim import build_optimizer
from braintumor.training.trainer import resolve_compile
from speed_common import Variant

#: A cached batch -> (network input, target), augmented and normalised.
Prepare = Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]
#: (network output, target) -> scalar loss.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def endless(loader: Iterable[Any]) -> Iterator[Any]:
    """Batches of ``loader`` forever (a DataLoader with persistent workers keeps them)."""
    while True:
        yield from loader


def resolve_precision(name: str) -> str:
    """``auto`` -> ``bf16`` where the toolkit's ``auto`` takes it (``bf16_pays``), else ``fp32``."""
    if name == "auto":
        return "bf16" if bf16_pays() else "fp32"
    if name not in ("bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, not {name!r}")
    return name


def autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    """CPU bf16 autocast (what Lightning's ``bf16-mixed`` does on a CPU) or nothing."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class LoaderFeed:
    """Endless batches of a DataLoader whose worker processes live only while in use.

    :meth:`pause` drops the iterator, which stops its workers at once, so no batch is prepared
    in the background while another pipeline is timed; the next batch starts them again.
    """

    def __init__(self, loader: DataLoader) -> None:
        self.loader = loader
        self.iterator: Iterator[Any] | None = None

    def next(self) -> Any:
        """The next batch, starting over at the end of the data."""
        if self.iterator is None:
            self.iterator = iter(self.loader)
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)

    def pause(self) -> None:
        """Stop the worker processes (a loader without workers keeps its place)."""
        if self.loader.num_workers > 0:
            self.iterator = None


def _loader(dataset: Any, batch_size: int, workers: int, shuffle: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )


def reference_variants(
    train_set: Dataset,
    eval_set: Dataset,
    model: nn.Module,
    loss_fn: LossFn,
    recipe: Recipe,
    workers: list[int],
) -> tuple[list[Variant], list[Variant], list[Variant]]:
    """The plain PyTorch pipeline: per-item datasets, DataLoader, fp32 NCHW, one per worker count.

    ``train_set`` yields ``(input, target)``; ``eval_set`` yields the input (or a tuple whose
    first item is the input). Training is forward, loss, backward, AdamW step; inference is a
    forward under ``torch.inference_mode``. Returns training, inference and input-only variants;
    the input-only one fetches augmented training batches in the main process (workers would
    only move the same work to the same cores).
    """
    data_feed = LoaderFeed(_loader(train_set, recipe.batch_size, 0, shuffle=True))

    def data_step() -> int:
        return len(data_feed.next()[0])

    train, infer, data = [], [], [Variant("reference_workers0", data_step, "-")]
    for w in workers:
        net = copy.deepcopy(model).train()
        optimizer = torch.optim.AdamW(
            net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
        )
        feed = LoaderFeed(_loader(train_set, recipe.batch_size, w, shuffle=True))

        def train_step(net=net, optimizer=optimizer, feed=feed) -> int:
            x, y = feed.next()
            loss = loss_fn(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return len(x)

        eval_net = copy.deepcopy(model).eval()
        eval_feed = LoaderFeed(_loader(eval_set, recipe.batch_size, w, shuffle=False))

        def infer_step(net=eval_net, feed=eval_feed) -> int:
            x = feed.next()
            x = x[0] if isinstance(x, list | tuple) else x
            with torch.inference_mode():
                net(x)
            return len(x)

        # Restarted workers: one batch to start them, one per worker to fill their queue.
        settle = w + 1 if w else 0
        name = f"reference_workers{w}"
        train.append(Variant(name, train_step, "fp32", settle, feed.pause))
        infer.append(Variant(name, infer_step, "fp32", settle, eval_feed.pause))
    return train, infer, data


def our_train_variants(
    model: nn.Module,
    recipe: Recipe,
    loader: Iterable[dict[str, torch.Tensor]],
    prepare: Prepare,
    loss_fn: LossFn,
    precision: str,
) -> list[Variant]:
    """Our training step: ``prepare`` (augment + normalise) a cached batch, then the network
    and loss under autocast (as Lightning's ``bf16-mixed`` runs ``training_step``), backward
    and the recipe's optimiser. One variant uncompiled in each of :func:`precisions`, and
    first, when the recipe's ``compile`` resolves to on for a CPU run, one compiled in place
    (as the training module does) in ``precision``; its compile falls in the warm-up steps."""

    def variant(precision: str, compiled: bool) -> Variant:
        net = copy.deepcopy(model).train()
        if compiled:
            net.compile()
        optimizer = build_optimizer(net, recipe)
        batches = endless(loader)

        def step() -> int:
            x, target = prepare(next(batches))
            with autocast(precision):
                loss = loss_fn(net(x), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return len(x)

        name = f"ours_{precision}_compiled" if compiled else f"ours_{precision}"
        return Variant(name, step, precision)

    eager = [variant(p, compiled=False) for p in precisions(precision)]
    if not resolve_compile(recipe, "cpu"):
        return eager
    return [variant(precision, compiled=True), *eager]


def our_data_variant(loader: Iterable[dict[str, torch.Tensor]], prepare: Prepare) -> Variant:
    """Our input pipeline alone: a cached batch, augmented and normalised, no network."""
    batches = endless(loader)

    def step() -> int:
        return len(prepare(next(batches))[0])

    return Variant("ours", step, "-")


def precisions(precision: str) -> tuple[str, ...]:
    """Our variants run in the chosen precision, and in fp32 too when that is bf16."""
    return ("bf16", "fp32") if precision == "bf16" else ("fp32",)


def cached_infer_variant(
    model: nn.Module, loader: Iterable[dict[str, torch.Tensor]], spec: Any, precision: str
) -> Variant:
    """Inference from the decoded cache: ``normalise_batch`` (channels_last) and a forward."""
    net = copy.deepcopy(model).to(memory_format=torch.channels_last).eval()
    batches = endless(loader)

    def step() -> int:
        x = normalise_batch(next(batches)["image"], spec)
        with torch.inference_mode(), autocast(precision):
            net(x)
        return len(x)

    return Variant(f"ours_cached_{precision}", step, precision)


def predictor_variant(
    model: nn.Module, info: ModelInfo, files: list[str], batch_size: int
) -> Variant:
    """End-to-end inference on files as ``predict`` does it: ``read_image`` in the decode
    threads, then :class:`Predictor` (fp32, channels_last)."""
    loaded = LoadedModel(copy.deepcopy(model).eval(), info, Path(info.architecture))
    predictor = Predictor(loaded, device="cpu", batch_size=batch_size, precision="fp32")
    run = predictor.classify if info.task == "classify" else predictor.segment
    paths = endless(files)

    def step() -> int:
        batch = [next(paths) for _ in range(batch_size)]
        return len(run(list(DECODE_THREADS.map(read_image, batch))))

    return Variant("ours_predictor_fp32", step)


def timed_decode(
    samples: list[Sample], spec: Any, with_masks: bool, cache_dir: Path
) -> tuple[DecodedSlices, dict[str, float]]:
    """``decode_slices`` into ``cache_dir`` (the one-off cost), then again (a cache hit)."""
    start = time.perf_counter()
    decode_slices(samples, spec, with_masks=with_masks, cache_dir=cache_dir)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode_slices(samples, spec, with_masks=with_masks, cache_dir=cache_dir)
    reload = time.perf_counter() - start
    return decoded, {
        "seconds": round(seconds, 2),
        "images_per_s": round(len(decoded.samples) / seconds, 1),
        "reload_from_cache_seconds": round(reload, 3),
    }
