"""Diagnostics of estimators: gradient mean, variance and SNR over many keys,
estimators compared side by side against reference directions, and exact
gradients by enumeration for tiny binary-latent models."""
from sajax.diagnostics.compare import (
    Candidate,
    burn_in,
    compare_estimators,
    cosine,
    exact_reference,
    format_table,
    high_k_reference,
    plot_comparison,
)
from sajax.diagnostics.exact import ExactGradients, exact_gradients
from sajax.diagnostics.gradients import GradStats, gradient_stats

__all__ = [
    "Candidate",
    "burn_in",
    "ExactGradients",
    "GradStats",
    "compare_estimators",
    "cosine",
    "exact_gradients",
    "exact_reference",
    "format_table",
    "gradient_stats",
    "high_k_reference",
    "plot_comparison",
]
