"""The LGG (Buda et al., Kaggle ``kaggle_3m``) slices: which sequence each TIFF channel holds,
and how a recipe's colour handling maps onto them.

Each slice is a 3-channel TIFF of three MRI sequences, not a colour photograph, so a plain grey
conversion would average pre-contrast, FLAIR and post-contrast. A ``grey`` recipe on LGG takes
the FLAIR channel instead (the sequence the masks were drawn on) and says so; ``keep`` recipes
get the three sequences as three input channels. The same holds for an LGG slice anywhere else
(one source among several, a file given to ``predict``): a slice named as kaggle_3m names them
(``TCGA_xx_xxxx_YYYYMMDD/TCGA_xx_xxxx_YYYYMMDD_N.tif``) is read as FLAIR by a grey model
(:func:`slice_spec`).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

from braintumor.data.preprocess import PreprocessSpec

LGG_LAYOUT = "lgg-kaggle-3m"
#: A kaggle_3m patient folder's name.
LGG_PATIENT = re.compile(r"^TCGA_[A-Z0-9]{2}_[A-Z0-9]{4}_\d{8}$", re.IGNORECASE)
#: The TIFF channels, in order (the data set's README).
LGG_CHANNELS = ("pre-contrast", "FLAIR", "post-contrast")
FLAIR = 1


def channel_names(layout_name: str, channels: list[int] | None) -> list[str] | None:
    """Names of the chosen channels for an LGG layout (all three for ``None``); else None."""
    if layout_name != LGG_LAYOUT:
        return None
    chosen = range(len(LGG_CHANNELS)) if channels is None else channels
    return [LGG_CHANNELS[i] if 0 <= i < len(LGG_CHANNELS) else f"channel {i}" for i in chosen]


def lgg_preprocess(layout_name: str, preprocess: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The recipe's ``preprocess`` section fitted to the layout, and a note ('' if unchanged).

    On LGG a ``grey`` section without ``channels`` becomes FLAIR only (``channels: [1]``), so
    sequences are never silently mixed; every other section is returned as it is.
    """
    color = preprocess.get("color", "grey")
    if layout_name != LGG_LAYOUT or color != "grey" or preprocess.get("channels") is not None:
        return preprocess, ""
    note = (
        "LGG slices hold pre-contrast, FLAIR and post-contrast: the grey recipe takes FLAIR "
        "(preprocess.channels=[1]); set preprocess.color=keep for all three"
    )
    return {**preprocess, "channels": [FLAIR]}, note


def flair_view(array: np.ndarray) -> np.ndarray:
    """What an LGG slice is shown as: its FLAIR channel (other rasters are returned as they are)."""
    return array[..., FLAIR] if array.ndim == 3 and array.shape[2] == 3 else array


def is_lgg_slice(path: Path) -> bool:
    """True for a kaggle_3m slice file: ``<patient>/<patient>_<N>.tif`` (not its mask)."""
    patient = path.parent.name
    if not LGG_PATIENT.match(patient) or path.suffix.lower() not in (".tif", ".tiff"):
        return False
    prefix, _, index = path.stem.rpartition("_")
    return prefix == patient and index.isdigit()


def slice_spec(path: Path, array: np.ndarray, spec: PreprocessSpec) -> PreprocessSpec:
    """The preprocessing of one slice: ``spec``, except that a grey spec without its own
    ``channels`` takes FLAIR alone from a 3-channel LGG slice (:func:`is_lgg_slice`) instead of
    averaging three sequences into a grey that no scanner makes."""
    if spec.color != "grey" or spec.channels is not None:
        return spec
    if array.ndim != 3 or array.shape[2] != len(LGG_CHANNELS) or not is_lgg_slice(path):
        return spec
    return dataclasses.replace(spec, channels=[FLAIR])
