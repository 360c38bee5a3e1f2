"""A small VAE-shaped model with categorical latents (for JSA, Gumbel-softmax, ...).

p_θ(h) = Π_i Cat(h_i | softmax(c_i)), p_θ(x|h) = FB[x | σ(MLP_θ(flatten(h)))],
q_φ(h|x) = Π_i Cat(h_i | softmax(MLP_φ(x)_i)); ``h`` is one-hot ``[..., B, n, C]``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from sajax._densities import bernoulli_log_prob
from sajax.core import GUIDE, MODEL, ConditionalSampler, DiscreteLayers, LatentVariableModel, check_positive_int
from sajax.models._common import _bernoulli_sample, _check_x, _Transform

__all__ = ["CategoricalSpec", "categorical_vae"]


class CategoricalSpec(NamedTuple):
    """A small VAE-shaped model with categorical latents (for JSA, Gumbel-softmax...).

    Attributes:
      model, guide, init: as in :class:`sajax.models.SBNSpec`
        (``model.observation="bernoulli"``).  ``h`` is one array of one-hot
        vectors ``[K, B, n, C]`` (n latent variables with C classes each).
      x_dim, num_latents, num_classes: D, n, C.
      prior_logits: ``θ -> [n, C]`` logits of the factorial categorical prior.
      decoder_logits: ``(θ, h) -> [..., D]`` Bernoulli logits of p_θ(x|h).
      guide_logits: ``(φ, x) -> [B, n, C]`` logits of q_φ(h|x).
      layers: :class:`sajax.core.DiscreteLayers`: one categorical layer
        (``layer_logits(φ, 0, x) = guide_logits(φ, x)``, ``pack=hs -> hs[0]``),
        e.g. ``muprop(spec.model, spec.layers, num_samples=1)``.

    Parameters: θ = ``{"prior": {"logits": [n, C]}, "decoder": {"Dense_0",
    "Dense_1"}}``, φ = ``{"encoder": {"Dense_0", "Dense_1"}}`` (Flax kernels ``[in, out]``).
    """

    model: LatentVariableModel
    guide: ConditionalSampler
    init: Callable
    x_dim: int
    num_latents: int
    num_classes: int
    prior_logits: Callable
    decoder_logits: Callable
    guide_logits: Callable
    layers: DiscreteLayers


def _cat_log_prob(logits, h):
    """Σ_i log Cat(h_i | softmax(logits_i)) over the last two axes ``[n, C]``."""
    return jnp.sum(jnp.sum(h * jax.nn.log_softmax(logits, axis=-1), axis=-1), axis=-1)


class _CategoricalNets(NamedTuple):
    """The static part of :func:`categorical_vae`: sizes, decoder and encoder."""

    x_dim: int
    n: int
    C: int
    decoder: _Transform
    encoder: _Transform

    def init(self, key):
        k_dec, k_enc = jax.random.split(key)
        theta = {"prior": {"logits": jnp.zeros((self.n, self.C), jnp.float32)},
                 "decoder": self.decoder.init(k_dec, jnp.zeros((1, self.n * self.C)))["params"]}
        phi = {"encoder": self.encoder.init(k_enc, jnp.zeros((1, self.x_dim)))["params"]}
        return {MODEL: theta, GUIDE: phi}

    def prior_logits(self, theta):
        return theta["prior"]["logits"]

    def decoder_logits(self, theta, h):
        return self.decoder.apply({"params": theta["decoder"]}, h.reshape(h.shape[:-2] + (self.n * self.C,)))

    def guide_logits(self, phi, x):
        out = self.encoder.apply({"params": phi["encoder"]}, x)
        return out.reshape(out.shape[:-1] + (self.n, self.C))

    def layer_logits(self, phi, l, parent):
        del l   # one stochastic layer
        return self.guide_logits(phi, parent)


def _categorical_model(nets: _CategoricalNets) -> LatentVariableModel:
    def log_prior(theta, h):
        return _cat_log_prob(nets.prior_logits(theta), h)

    def log_likelihood(theta, x, h):
        x = _check_x(x, nets.x_dim)
        return bernoulli_log_prob(nets.decoder_logits(theta, h), x)

    def sample(theta, key, count):
        k_h, k_x = jax.random.split(key)
        logits = jnp.broadcast_to(nets.prior_logits(theta), (count, nets.n, nets.C))
        h = jax.nn.one_hot(jax.random.categorical(k_h, logits), nets.C, dtype=jnp.float32)
        x = _bernoulli_sample(k_x, nets.decoder_logits(theta, h))
        return x, h

    def mean(theta, h):
        return jax.nn.sigmoid(nets.decoder_logits(theta, h))

    return LatentVariableModel(log_prior=log_prior, log_likelihood=log_likelihood,
                               sample=sample, mean=mean, observation="bernoulli")


def _categorical_guide(nets: _CategoricalNets) -> ConditionalSampler:
    def sample_and_log_prob(phi, key, x, count):
        x = _check_x(x, nets.x_dim)
        logits = nets.guide_logits(phi, x)
        logits = jnp.broadcast_to(logits, (count,) + logits.shape)
        h = jax.nn.one_hot(jax.random.categorical(key, logits), nets.C, dtype=logits.dtype)
        h = jax.lax.stop_gradient(h)
        return h, _cat_log_prob(logits, h)

    def log_prob(phi, x, h):
        return _cat_log_prob(nets.guide_logits(phi, x), h)

    return ConditionalSampler(sample_and_log_prob=sample_and_log_prob, log_prob=log_prob)


def _first(hs):
    return hs[0]


def categorical_vae(x_dim: int, num_latents: int, num_classes: int, hidden: int = 200) -> CategoricalSpec:
    """A small model with n categorical latents of C classes each.

    p_θ(h) = Π_i Cat(h_i | softmax(c_i)) with learnable logits c [n, C];
    p_θ(x|h) = FB[x | σ(MLP_θ(flatten(h)))] (one tanh hidden layer);
    q_φ(h|x) = Π_i Cat(h_i | softmax(MLP_φ(x)_i)) (one tanh hidden layer).
    ``h`` is one-hot, ``[K, B, n, C]``; samples carry no gradient path.
    """
    x_dim = check_positive_int("x_dim", x_dim)
    n = check_positive_int("num_latents", num_latents)
    C = check_positive_int("num_classes", num_classes, minimum=2)
    hidden = check_positive_int("hidden", hidden)
    nets = _CategoricalNets(x_dim, n, C, _Transform(x_dim, (hidden,)), _Transform(n * C, (hidden,)))
    layers = DiscreteLayers(nets.layer_logits, 1, "categorical", pack=_first)
    return CategoricalSpec(_categorical_model(nets), _categorical_guide(nets), nets.init, x_dim, n, C,
                           nets.prior_logits, nets.decoder_logits, nets.guide_logits, layers)
