"""Inference of trained 2D models: reading inputs, the batched predictor, the validation-chosen
settings (TTA, largest component) and the files predict writes."""
