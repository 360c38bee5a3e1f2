"""sajax: learning deep generative models in JAX as stochastic approximation.

Implements the learning methods of Ou (2019), "A review of learning with deep
generative models from perspective of graphical modeling".  Every learning
method is an :class:`Estimator` ``(init, estimate)`` of pure functions; the SA
driver (:mod:`sajax.sa`) combines one with an optax transform and runs whole
chunks of training as one jitted ``lax.scan``.

``params`` is a dict of named groups; their names are exported here
(:data:`MODEL` ``"model"``, :data:`GUIDE` ``"guide"``, :data:`BASELINE`,
:data:`GENERATOR`, :data:`CRITIC`, :data:`ENCODER`, :data:`POTENTIAL`,
:data:`SAMPLER`, :data:`REVERSE`), with :data:`OBJECTIVE` ``"objective"``, the
metric under which every estimator reports its objective.
"""
from sajax import data, diagnostics, estimators, evaluate, kernels, models, sa
from sajax.core import (
    BASELINE,
    CRITIC,
    ENCODER,
    GENERATOR,
    GUIDE,
    MODEL,
    OBJECTIVE,
    POTENTIAL,
    REVERSE,
    SAMPLER,
    Batch,
    ConditionalSampler,
    Critic,
    EnergyModel,
    NoiseModel,
    Estimate,
    Estimator,
    ImplicitGenerator,
    ImplicitSampler,
    LatentVariableModel,
    TractableModel,
    log_joint,
)
from sajax.diagnostics import GradStats, gradient_stats
from sajax.evaluate import iw_log_likelihood, iw_nll, sample_grid
from sajax.sa import FitResult, NonFiniteError, TrainState, fit, init_train_state, make_step

__version__ = "0.1.0"

__all__ = [
    "data",
    "diagnostics",
    "estimators",
    "evaluate",
    "kernels",
    "models",
    "sa",
    "FitResult",
    "GradStats",
    "NonFiniteError",
    "TrainState",
    "fit",
    "gradient_stats",
    "init_train_state",
    "iw_log_likelihood",
    "iw_nll",
    "make_step",
    "sample_grid",
    "Batch",
    "ConditionalSampler",
    "Critic",
    "EnergyModel",
    "NoiseModel",
    "ImplicitGenerator",
    "ImplicitSampler",
    "Estimate",
    "Estimator",
    "LatentVariableModel",
    "TractableModel",
    "log_joint",
    # parameter-group names and the objective's metric key
    "MODEL",
    "GUIDE",
    "BASELINE",
    "GENERATOR",
    "CRITIC",
    "ENCODER",
    "POTENTIAL",
    "SAMPLER",
    "REVERSE",
    "OBJECTIVE",
]
