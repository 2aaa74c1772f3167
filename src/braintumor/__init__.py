"""braintumor: brain-tumour MRI classification, segmentation, localisation and serving."""

__version__ = "0.1.0"
