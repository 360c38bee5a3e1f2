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
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # what type checkers and IDEs see; at run time the names load on first use
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
        Estimate,
        Estimator,
        ImplicitGenerator,
        ImplicitSampler,
        LatentVariableModel,
        NoiseModel,
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

# The names are listed three times on purpose: above for type checkers, in the literal ``__all__`` (which
# linters read) and here for loading; tests/test_style.py checks that the last two agree.
_SUBMODULES = ("data", "diagnostics", "estimators", "evaluate", "kernels", "models", "sa")
_HOMES = {  # public name -> the module that defines it
    **dict.fromkeys(("BASELINE", "CRITIC", "ENCODER", "GENERATOR", "GUIDE", "MODEL", "OBJECTIVE", "POTENTIAL",
                     "REVERSE", "SAMPLER", "Batch", "ConditionalSampler", "Critic", "EnergyModel", "NoiseModel",
                     "Estimate", "Estimator", "ImplicitGenerator", "ImplicitSampler", "LatentVariableModel",
                     "TractableModel", "log_joint"), "sajax.core"),
    **dict.fromkeys(("GradStats", "gradient_stats"), "sajax.diagnostics"),
    **dict.fromkeys(("iw_log_likelihood", "iw_nll", "sample_grid"), "sajax.evaluate"),
    **dict.fromkeys(("FitResult", "NonFiniteError", "TrainState", "fit", "init_train_state", "make_step"), "sajax.sa"),
}


def __getattr__(name: str):
    """Loads a public name on first use (PEP 562), so that ``import sajax`` and the light commands
    (``sajax list``, ``sajax launch``) do not import JAX, Flax and distrax."""
    if name in _SUBMODULES:
        value = importlib.import_module(f"sajax.{name}")
    elif name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module 'sajax' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    """The public names too, before their first use."""
    return sorted(set(globals()) | set(__all__))
