"""Learning methods as estimators: ``factory(...) -> Estimator(init, estimate)``.

One module per family of the review:

* :mod:`~sajax.estimators.variational`: variational learning with continuous
  latents (Sec. 3.2.1): REINFORCE (Algorithm 3), reparameterized ELBO (Eq. 13),
  STL, IWAE (Eq. 19), DReG.
* :mod:`~sajax.estimators.discrete`: variational learning with discrete latents
  (Sec. 3.2.1, item 2): REINFORCE, NVIL, MuProp, VIMCO, RLOO, DisARM,
  straight-through, Gumbel-softmax.  (Split from ``variational`` because the
  discrete estimators share their own layer-wise machinery.)
* :mod:`~sajax.estimators.wake_sleep`: wake-sleep and reweighted wake-sleep (Sec. 3.2.2).
* :mod:`~sajax.estimators.jsa`: joint stochastic approximation (Sec. 3.2.3).
"""
from sajax.estimators.discrete import (
    DiscreteLayers,
    NVILState,
    discrete_layers,
    disarm,
    gumbel_softmax,
    muprop,
    nvil,
    nvil_baseline,
    reinforce,
    rloo,
    straight_through,
    vimco,
)
from sajax.estimators.jsa import JSAState, cache_nbytes, jsa
from sajax.estimators.variational import dreg, iwae, reinforce_elbo, reparam_elbo, stl_elbo
from sajax.estimators.wake_sleep import rws, wake_sleep

__all__ = [
    "JSAState",
    "cache_nbytes",
    "jsa",
    "rws",
    "wake_sleep",
    "DiscreteLayers",
    "NVILState",
    "discrete_layers",
    "disarm",
    "dreg",
    "gumbel_softmax",
    "iwae",
    "muprop",
    "nvil",
    "nvil_baseline",
    "reinforce",
    "reinforce_elbo",
    "reparam_elbo",
    "rloo",
    "stl_elbo",
    "straight_through",
    "vimco",
]
