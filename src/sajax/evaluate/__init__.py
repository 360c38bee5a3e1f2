"""Evaluation: importance-weighted log-likelihood (review Eq. 17 / 19), sample
pictures and training curves.

What applies depends on what the model offers (DESIGN.md, "Several players"):
IW-NLL needs a prescribed model with a guide (:func:`supports_iw_nll`),
pictures need a sampler (:func:`can_sample`).
"""
from sajax.evaluate.curves import plot_curves, read_metrics
from sajax.evaluate.nll import LIVE_ACTIVATIONS, iw_log_likelihood, iw_nll, k_chunk_for_budget, supports_iw_nll
from sajax.evaluate.pictures import can_sample, image_grid, sample_grid, save_image_grid

__all__ = [
    "LIVE_ACTIVATIONS",
    "can_sample",
    "image_grid",
    "iw_log_likelihood",
    "iw_nll",
    "k_chunk_for_budget",
    "plot_curves",
    "read_metrics",
    "sample_grid",
    "save_image_grid",
    "supports_iw_nll",
]
