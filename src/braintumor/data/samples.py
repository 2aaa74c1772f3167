"""The samples table: one row per image (or per multimodal case) of a dataset."""

from __future__ import annotations

from dataclasses import dataclass, field

NO_TUMOR = "no_tumor"
#: The generic positive class of tumour / no-tumour data, and the types it covers.
TUMOR = "tumor"
TUMOUR_TYPES = ("glioma", "meningioma", "pituitary")


@dataclass
class Sample:
    """One unit of a dataset.

    ``id`` is unique within the dataset (the relative path: file names repeat across classes).
    ``image`` is the image file, or the case folder for multimodal cases whose files are in
    ``modalities`` (modality name -> file). ``group`` ties samples that must share a split side
    (patient id, duplicate cluster). ``split`` is the split the dataset's own layout gives
    (``train``/``val``/``test``) or None. ``source`` names the dataset folder a sample comes
    from when several are used together (ids are then prefixed ``<source>/``).
    """

    id: str
    image: str
    label: str | None = None
    mask: str | None = None
    group: str | None = None
    split: str | None = None
    modalities: dict[str, str] = field(default_factory=dict)
    source: str | None = None
