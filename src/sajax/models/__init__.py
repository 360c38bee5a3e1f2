"""Model definitions (review Sec. 3.1) as Flax modules behind sajax protocols.

Each factory returns a spec NamedTuple holding ``model``
(:class:`sajax.core.LatentVariableModel`, with its ``observation`` kind),
``guide`` (:class:`sajax.core.ConditionalSampler`) and ``init(key) ->
{"model": θ, "guide": φ}``, so any estimator can train it.  Specs with
discrete latents also hold ``layers`` (:class:`sajax.core.DiscreteLayers`).

* :func:`vae`, :func:`iwae_one_layer`, :func:`iwae_two_layer`: VAE (Eq. 4)
  and DLGM (Eq. 3) with Gaussian latents, built from :class:`MLP` and the heads.
* :func:`sbn`, :func:`paper_sbn`: sigmoid belief nets (Eq. 2);
  :func:`sbn_weights` reads W_l, b_l of a linear one.
* :func:`categorical_vae`: a small model with categorical latents.

The implementations live in private modules (``_vae``, ``_sbn``,
``_categorical``) so that no function shadows its own module.
"""
from sajax.models._categorical import CategoricalSpec, categorical_vae
from sajax.models._sbn import PAPER_ARCHITECTURES, SBNSpec, paper_sbn, sbn, sbn_weights
from sajax.models._vae import (
    ACTIVATIONS,
    LIKELIHOODS,
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
    "sbn_weights",
    "PAPER_ARCHITECTURES",
    "ACTIVATIONS",
    "LIKELIHOODS",
    "MLP",
    "BernoulliHead",
    "DiagGaussianHead",
    "HomoscedasticGaussianHead",
    "VAESpec",
    "iwae_one_layer",
    "iwae_two_layer",
    "vae",
]
