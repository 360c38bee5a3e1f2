"""Model definitions (review Sec. 3.1) as Flax modules behind sajax protocols.

Each factory returns a spec NamedTuple holding ``model``
(:class:`sajax.core.LatentVariableModel`), ``guide``
(:class:`sajax.core.ConditionalSampler`) and ``init(key) -> {"model": θ,
"guide": φ}``, so any estimator can train it.

* :mod:`sajax.models.vae`: VAE (Eq. 4) and DLGM (Eq. 3) with Gaussian latents.
"""
from sajax.models.vae import (
    MLP,
    BernoulliHead,
    DiagGaussianHead,
    HomoscedasticGaussianHead,
    VAESpec,
    iwae_one_layer,
    iwae_two_layer,
    vae,
)

__all__ = [
    "MLP",
    "BernoulliHead",
    "DiagGaussianHead",
    "HomoscedasticGaussianHead",
    "VAESpec",
    "iwae_one_layer",
    "iwae_two_layer",
    "vae",
]
