"""Grad-CAM for the classifiers: which pixels pushed the network towards a class.

MONAI's :class:`monai.visualize.GradCAM` does the work. Two things it lacks are added here:
vision transformers give tokens ``(B, 1 + N, D)`` rather than feature maps, so their tokens are
routed through an identity layer shaped as a ``(B, D, h, w)`` grid (class token dropped) that
MONAI can hook; and MONAI's hooks are never removed, so they are put on a private copy of the
network, cached per model, never on the copy that serves predictions.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.visualize import GradCAM
from PIL import Image
from torch import nn

from braintumor.errors import BrainTumorError
from braintumor.io.base import LoadedImage
from braintumor.io.raster import write_png
from braintumor.models.ensemble import first_member
from braintumor.models.folder import LoadedModel
from braintumor.tasks.registry import CLASSES, model_task

_NORM_TYPES = (nn.Conv2d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)


class _CamNet(nn.Module):
    """A private copy of a network whose chosen layer's output passes through ``grid``.

    ``grid`` is an identity that MONAI hooks. Its output is cloned before the network goes on,
    so in-place operations after the layer (``x += shortcut`` in ResNets) do not clash with the
    backward hook; token outputs are shown to it as a ``(B, D, h, w)`` grid.
    """

    def __init__(self, net: nn.Module, layer: str, vit_tokens: bool) -> None:
        super().__init__()
        self.net = net
        self.grid = nn.Identity()
        self.vit_tokens = vit_tokens
        # where the token layout is read: the network, or an ensemble's first member
        self.token_net = first_member(net)[0]
        net.get_submodule(layer).register_forward_hook(self._through_grid)

    def _through_grid(self, _module: nn.Module, _inputs: Any, output: torch.Tensor):
        if not self.vit_tokens:
            return self.grid(output).clone()
        # (B, prefix + h*w, D) -> (B, D, h, w) -> identity -> back; gradients flow unchanged.
        prefix = int(getattr(self.token_net, "num_prefix_tokens", 1))
        patches = output[:, prefix:]
        b, n, d = patches.shape
        h, w = _token_grid(self.token_net, n)
        grid = self.grid(patches.transpose(1, 2).reshape(b, d, h, w)).clone()
        return torch.cat([output[:, :prefix], grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _token_grid(net: nn.Module, n_tokens: int) -> tuple[int, int]:
    """Patch-grid shape of a ViT: from ``patch_embed.grid_size``, else a square."""
    grid = getattr(getattr(net, "patch_embed", None), "grid_size", None)
    if grid is not None and int(grid[0]) * int(grid[1]) == n_tokens:
        return int(grid[0]), int(grid[1])
    side = round(n_tokens**0.5)
    if side * side != n_tokens:
        raise BrainTumorError(f"cannot arrange {n_tokens} ViT tokens as a square grid")
    return side, side


def _is_token_model(net: nn.Module) -> bool:
    return hasattr(net, "patch_embed") and hasattr(net, "blocks")


def choose_layer(net: nn.Module, architecture: str | None = None) -> tuple[str, bool]:
    """The layer to explain and whether its output is ViT tokens.

    The model registry's ``gradcam_layer`` wins; otherwise a ViT's last block input norm
    (the last block's output only feeds the head through the class token), else the last
    convolution or normalisation layer. An ensemble is explained through its first member's
    layer: the map shows what moved that member towards the ensemble's class.
    """
    member, prefix = first_member(net)
    if prefix:
        layer, tokens = choose_layer(member, architecture)
        return prefix + layer, tokens
    spec = None
    if architecture:
        import braintumor.models  # noqa: F401  (registers every model)
        from braintumor.models.registry import get_spec

        with contextlib.suppress(BrainTumorError):
            spec = get_spec(architecture)
        if spec is not None and getattr(spec, "gradcam_layer", None):
            return spec.gradcam_layer, bool(getattr(spec, "vit_tokens", False))
    if _is_token_model(net):
        return f"blocks.{len(net.blocks) - 1}.norm1", True
    names = [name for name, mod in net.named_modules() if isinstance(mod, _NORM_TYPES)]
    if not names:
        raise BrainTumorError("no convolution or normalisation layer to explain in this network")
    return names[-1], False


def _min_max(cam: torch.Tensor) -> torch.Tensor:
    """Scale each map to [0, 1]; a flat map (no positive evidence) becomes zeros.

    MONAI's default normaliser maps (min, max) to (1, 0), the reverse of what is drawn here.
    """
    flat = cam.reshape(cam.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, *[1] * (cam.ndim - 1))
    span = (flat.max(dim=1).values.view(-1, *[1] * (cam.ndim - 1)) - low).clamp_min(1e-12)
    scaled = (cam - low) / span
    return torch.where(torch.isfinite(scaled), scaled, torch.zeros_like(scaled)).clamp(0, 1)


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[str, GradCAM]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _cam_for(net: nn.Module, layer: str, vit_tokens: bool) -> GradCAM:
    with _CACHE_LOCK:
        per_model = _CACHE.setdefault(net, {})
        key = f"{layer}|{vit_tokens}"
        if key not in per_model:
            if layer not in dict(net.named_modules()):
                raise BrainTumorError(f"Grad-CAM layer {layer!r} is not in this network")
            cam_net = _CamNet(copy.deepcopy(net), layer, vit_tokens)
            per_model[key] = GradCAM(cam_net, target_layers="grid", postprocessing=_min_max)
        return per_model[key]


def gradcam(
    loaded_or_model: LoadedModel | nn.Module,
    input_tensor: torch.Tensor,
    target_class: int | None = None,
    layer: str | None = None,
) -> np.ndarray:
    """Grad-CAM heat map ``(H, W)`` in [0, 1] for a ``(1, C, H, W)`` input.

    ``target_class`` defaults to the predicted class; ``layer`` (a dotted module path) defaults
    to :func:`choose_layer`. A map of zeros means no pixel raised the target's score.
    """
    if isinstance(loaded_or_model, LoadedModel):
        net, architecture = loaded_or_model.model, loaded_or_model.info.architecture
    else:
        net, architecture = loaded_or_model, None
    if input_tensor.ndim != 4 or input_tensor.shape[0] != 1:
        shape = tuple(input_tensor.shape)
        raise BrainTumorError(f"Grad-CAM wants one (1, C, H, W) input, got {shape}")
    if layer is None:
        layer, vit_tokens = choose_layer(net, architecture)
    else:
        vit_tokens = _is_token_model(first_member(net)[0])
    cam = _cam_for(net, layer, vit_tokens)
    cam_net = cam.nn_module.model
    # The copy follows the served network's weights and device; cheap next to a backward pass.
    cam_net.net.load_state_dict(net.state_dict())
    device = next(net.parameters()).device
    cam_net.to(device)
    with torch.enable_grad():
        heat = cam(input_tensor.to(device=device, dtype=torch.float32), class_idx=target_class)
    return heat[0, 0].detach().cpu().numpy().astype(np.float32)


def _display_rgb(image: LoadedImage) -> np.ndarray:
    """The original 2D image as uint8 RGB, contrast-stretched to its 0.5-99.5 percentiles."""
    arr = np.asarray(image.array, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3]
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 and not (arr.ndim == 3 and arr.shape[-1] == 3):
        raise BrainTumorError(f"{image.path}: Grad-CAM overlays need a 2D image, got {arr.shape}")
    low, high = np.percentile(arr, [0.5, 99.5])
    grey = np.clip((arr - low) / max(high - low, 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1) if grey.ndim == 2 else grey
    return (rgb * 255).astype(np.uint8)


def cam_overlay(image: LoadedImage, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Jet-coloured ``heat`` resized to the image and blended on it: uint8 RGB (H, W, 3)."""
    from matplotlib import colormaps

    base = _display_rgb(image)
    h, w = base.shape[:2]
    resized = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize(
        (w, h), Image.BILINEAR
    )
    colour = colormaps["jet"](np.asarray(resized, dtype=np.float32) / 255.0)[..., :3] * 255
    # Weight by the heat so cold regions keep the anatomy visible.
    weight = alpha * (np.asarray(resized, dtype=np.float32)[..., None] / 255.0) ** 0.5
    return (base * (1 - weight) + colour * weight).round().clip(0, 255).astype(np.uint8)


def resolve_target(target: str | int | None, class_names: list[str]) -> int | None:
    """A class given by name or index -> its index (None stays None)."""
    if target is None or target == "":
        return None
    if isinstance(target, int) or str(target).lstrip("-").isdigit():
        index = int(target)
        if not 0 <= index < len(class_names):
            raise BrainTumorError(f"target class {index} out of range 0..{len(class_names) - 1}")
        return index
    if target not in class_names:
        raise BrainTumorError(f"unknown target class {target!r}; classes: {', '.join(class_names)}")
    return class_names.index(str(target))


def check_explainable(loaded: LoadedModel) -> None:
    """Raise :class:`BrainTumorError` unless ``loaded`` is a classifier (Grad-CAM needs one)."""
    if model_task(loaded.info.task, loaded.path).outputs != CLASSES:
        raise BrainTumorError(
            f"{loaded.path}: Grad-CAM explains classifiers; this model's task is "
            f"{loaded.info.task!r} (its segmentation mask is its explanation)"
        )


def explain_image(
    loaded: LoadedModel,
    image: LoadedImage,
    out_dir: str | Path | None,
    target: str | int | None = None,
    predictor: Any = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Class probabilities and a Grad-CAM overlay for one 2D image.

    Writes ``<name>_gradcam.png`` (``name`` defaults to the image's file stem) into ``out_dir``
    (when given) and returns a dict with
    ``probabilities`` (class -> p), ``predicted_class``, ``target_class``, ``layer``,
    ``overlay`` (the RGB array) and ``overlay_path``.
    """
    from braintumor.data.preprocess import normalise_batch
    from braintumor.inference.predictor import Predictor

    info = loaded.info
    check_explainable(loaded)
    predictor = predictor or Predictor(loaded)
    probs = np.asarray(predictor.classify([image]))[0]
    target_index = resolve_target(target, info.class_names)
    predicted = int(np.argmax(probs))
    chosen = predicted if target_index is None else target_index
    layer, _ = choose_layer(loaded.model, info.architecture)
    x = normalise_batch(predictor.prepare(image)[None], predictor.spec)
    square = gradcam(loaded, x, target_class=chosen)
    # Back onto the original pixels: undo resize, padding and any brain crop, as masks are.
    heat = predictor.restore(square, image)
    overlay = cam_overlay(image, heat)
    result: dict[str, Any] = {
        "id": str(image.path),
        "probabilities": {name: float(p) for name, p in zip(info.class_names, probs, strict=True)},
        "predicted_class": info.class_names[predicted],
        "target_class": info.class_names[chosen],
        "layer": layer,
        "overlay": overlay,
        "overlay_path": None,
    }
    if out_dir is not None:
        dest = Path(out_dir) / f"{name or Path(image.path).stem}_gradcam.png"
        write_png(overlay, dest)
        result["overlay_path"] = str(dest)
    return result
