"""Small model folders for the export, serve and browser tests (untrained, 64 px, fast)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from braintumor.engine.model_io import ModelInfo, save_model_dir
from braintumor.engine.preprocess import PreprocessSpec
from braintumor.models import build_model

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]


def make_model_dir(folder: Path, task: str = "classify", size: int = 64) -> Path:
    """A saved resnet18 classifier (4 classes) or U-Net segmenter over 1-channel input."""
    torch.manual_seed(0)
    if task == "classify":
        arch, outputs, names, args = "resnet18", 4, CLASSES, {"zero_init_last": False}
    else:
        arch, outputs, names, args = "unet", 1, ["tumor"], {}
    net = build_model(arch, num_classes=outputs, in_channels=1, **args)
    info = ModelInfo(
        task=task,
        architecture=arch,
        num_outputs=outputs,
        in_channels=1,
        class_names=names,
        image_size=size,
        model_args=args,
        preprocessing=PreprocessSpec(image_size=size, in_channels=1).to_dict(),
        metrics={"accuracy": 0.25},
        data_fingerprint={"digest": "synthetic"},
        recipe={"name": "test"},
    )
    return save_model_dir(net, info, folder)


def png_bytes(height: int = 70, width: int = 90, seed: int = 0) -> bytes:
    """A grey PNG with a bright blob, as bytes."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((height, width)) * 80).astype(np.uint8)
    pixels[20:40, 30:55] = 240
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
