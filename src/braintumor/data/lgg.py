"""The LGG (Buda et al., Kaggle ``kaggle_3m``) slices: which sequence each TIFF channel holds,
and how a recipe's colour handling maps onto them.

Each slice is a 3-channel TIFF of three MRI sequences, not a colour photograph, so a plain grey
conversion would average pre-contrast, FLAIR and post-contrast. A ``grey`` recipe on LGG takes
the FLAIR channel instead (the sequence the masks were drawn on) and says so; ``keep`` recipes
get the three sequences as three input channels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LGG_LAYOUT = "lgg-kaggle-3m"
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
