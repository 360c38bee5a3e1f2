"""Diagnostics of estimators: gradient mean, variance and SNR over many keys,
and exact gradients by enumeration for tiny binary-latent models."""
from sajax.diagnostics.exact import ExactGradients, exact_gradients
from sajax.diagnostics.gradients import GradStats, gradient_stats

__all__ = ["ExactGradients", "GradStats", "exact_gradients", "gradient_stats"]
