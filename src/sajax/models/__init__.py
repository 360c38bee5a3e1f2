"""Model definitions (review Sec. 3.1) as Flax modules behind sajax protocols.

Each factory returns a spec NamedTuple holding ``model``
(:class:`sajax.core.LatentVariableModel`), ``guide``
(:class:`sajax.core.ConditionalSampler`) and ``init(key) -> {"model": θ,
"guide": φ}``, so any estimator can train it.

* :mod:`sajax.models.vae`: VAE (Eq. 4) and DLGM (Eq. 3) with Gaussian latents.
* :mod:`sajax.models.sbn`: sigmoid belief nets (Eq. 2) and a categorical-latent model.
"""
from sajax.models.sbn import CategoricalSpec, SBNSpec, categorical_vae, paper_sbn, sbn
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
    "CategoricalSpec",
    "SBNSpec",
    "categorical_vae",
    "paper_sbn",
    "sbn",
    "MLP",
    "BernoulliHead",
    "DiagGaussianHead",
    "HomoscedasticGaussianHead",
    "VAESpec",
    "iwae_one_layer",
    "iwae_two_layer",
    "vae",
]
