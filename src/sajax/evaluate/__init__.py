"""Evaluation: importance-weighted log-likelihood (review Eq. 17 / 19) and sample pictures."""
from sajax.evaluate.nll import LIVE_ACTIVATIONS, iw_log_likelihood, iw_nll, k_chunk_for_budget
from sajax.evaluate.pictures import image_grid, sample_grid, save_image_grid

__all__ = [
    "LIVE_ACTIVATIONS",
    "image_grid",
    "iw_log_likelihood",
    "iw_nll",
    "k_chunk_for_budget",
    "sample_grid",
    "save_image_grid",
]
