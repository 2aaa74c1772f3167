"""Evaluation of trained 2D models on labelled samples: metrics, predictions.csv and report."""
