"""sajax: learning deep generative models in JAX as stochastic approximation.

Implements the learning methods of Ou (2019), "A review of learning with deep
generative models from perspective of graphical modeling".  Every learning
method is an :class:`Estimator` ``(init, estimate)`` of pure functions; the SA
driver (:mod:`sajax.sa`) combines one with an optax transform and runs whole
chunks of training as one jitted ``lax.scan``.
"""
from sajax.core import (
    Batch,
    ConditionalSampler,
    Estimate,
    Estimator,
    LatentVariableModel,
    log_joint,
)

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "ConditionalSampler",
    "Estimate",
    "Estimator",
    "LatentVariableModel",
    "log_joint",
]
