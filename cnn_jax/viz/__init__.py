"""Visualisation: first-layer filters, feature maps, learning curves, confusion matrices,
per-class accuracy, and the shift-consistency measure.

Importing this package is cheap; plotting functions live in :mod:`cnn_jax.viz.plots`
(matplotlib, Agg backend) and shift consistency in :mod:`cnn_jax.viz.shift`.
"""
