"""Read and write the image formats brain-tumour datasets come in; one format per module.

Everything that goes wrong while reading raises :class:`braintumor.errors.ImageReadError`.
"""

from braintumor.io.base import LoadedImage
from braintumor.io.coco import coco_polygons_to_mask, read_coco_mask
from braintumor.io.dicom import read_dicom, read_dicom_series
from braintumor.io.masks import mask_to_labels, read_mask
from braintumor.io.mat import FigshareRecord, read_figshare_label, read_figshare_mat
from braintumor.io.nifti import read_nifti, write_nifti
from braintumor.io.raster import to_grey, to_rgb, write_png
from braintumor.io.reader import read_image
from braintumor.io.sniff import MAX_BYTES, MAX_PIXELS, SUPPORTED_SUFFIXES, is_image_file

__all__ = [
    "MAX_BYTES",
    "MAX_PIXELS",
    "SUPPORTED_SUFFIXES",
    "FigshareRecord",
    "LoadedImage",
    "coco_polygons_to_mask",
    "is_image_file",
    "mask_to_labels",
    "read_coco_mask",
    "read_dicom",
    "read_dicom_series",
    "read_figshare_label",
    "read_figshare_mat",
    "read_image",
    "read_mask",
    "read_nifti",
    "to_grey",
    "to_rgb",
    "write_nifti",
    "write_png",
]
