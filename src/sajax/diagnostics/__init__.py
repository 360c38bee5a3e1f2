"""Diagnostics of estimators: gradient mean, variance and SNR over many keys."""
from sajax.diagnostics.gradients import GradStats, gradient_stats

__all__ = ["GradStats", "gradient_stats"]
