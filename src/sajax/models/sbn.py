"""Sigmoid belief networks and a small categorical-latent model (review Sec. 3.1.1, Eq. 2).

Generative model (Eq. 2), with binary stochastic layers h_1, ..., h_L:

    p_θ(x, h_{1:L}) = p_θ(h_L) p_θ(h_{L-1}|h_L) ... p_θ(h_1|h_2) p_θ(x|h_1),
    p_θ(h_L) = FB[h_L | σ(c_L)],   p_θ(h_l|h_{l+1}) = FB[h_l | σ(T_l(h_{l+1}))],

where FB is a factorial Bernoulli, c_L learnable top-level logits and T_l
either linear, T_l(h) = W_l h + b_l (the classic SBN of Neal 1992), or an MLP
with tanh hidden layers (``kind="mlp"``).  x is binary, p_θ(x|h_1) is the
analogous factorial Bernoulli.

Inference model (the "recognition" network of Helmholtz machines, NVIL, RWS,
JSA), mirrored layer by layer:

    q_φ(h_{1:L}|x) = q_φ(h_1|x) q_φ(h_2|h_1) ... q_φ(h_L|h_{L-1}),

each factor a factorial Bernoulli with the same kind of transform.

Latents are a tuple ``h = (h_1, ..., h_L)`` of float {0, 1} arrays whose leaves
are ``[K, B, d_l]`` (K samples per example, batch B); ``x`` is ``[B, x_dim]``.
Samples carry no gradient path (they are discrete): estimators for discrete
latents (REINFORCE/NVIL/VIMCO, RWS, JSA) differentiate ``log_prob`` instead.

The three architectures used in the JSA paper (Ou & Song 2020) and in the
REBAR/RELAX/ARM benchmarks it follows, for MNIST (x_dim = 784):

* ``"linear"``: one stochastic layer of 200 Bernoulli units, linear T:
  ``sbn(784, (200,), kind="linear")``;
* ``"linear-2"``: two stochastic layers 200-200, linear T:
  ``sbn(784, (200, 200), kind="linear")``;
* ``"nonlinear"``: read here as 784-200-200-(200): one stochastic layer of 200
  units reached from x through two deterministic tanh layers of 200 units
  (and the same MLP, mirrored, in the decoder):
  ``sbn(784, (200,), kind="mlp", hidden=(200, 200))``.

:func:`paper_sbn` builds them by name.  The data boundary is checked: a
concrete (non-traced) ``x`` that is not binary raises ValueError in
``log_likelihood`` and in the guide (``sajax.core.check_data``).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax.core import ConditionalSampler, LatentVariableModel, check_data, check_positive_int

__all__ = [
    "SBNSpec",
    "sbn",
    "paper_sbn",
    "PAPER_ARCHITECTURES",
    "CategoricalSpec",
    "categorical_vae",
    "bernoulli_log_prob",
]

_KINDS = ("linear", "mlp")

PAPER_ARCHITECTURES = {
    "linear": dict(latent_sizes=(200,), kind="linear"),
    "linear-2": dict(latent_sizes=(200, 200), kind="linear"),
    "nonlinear": dict(latent_sizes=(200,), kind="mlp", hidden=(200, 200)),
}


class SBNSpec(NamedTuple):
    """A sigmoid belief net with its inference model, as protocols.

    Attributes:
      model: :class:`sajax.core.LatentVariableModel` for p_θ(x, h) (Eq. 2).
      guide: :class:`sajax.core.ConditionalSampler` for q_φ(h|x).
      init: ``key -> {"model": θ, "guide": φ}``.
      x_dim: number of binary pixels D.
      latent_sizes: ``(d_1, ..., d_L)``, top layer last.
      model_layer_logits: ``(θ, l, parent) -> logits``.  ``l = 0``: logits of
        x given ``parent = h_1``; ``0 < l < L``: logits of h_l given
        ``parent = h_{l+1}``; ``l = L``: the top prior's logits ``[d_L]``
        broadcast to ``parent.shape[:-1] + (d_L,)`` (``parent=None`` gives ``[d_L]``).
      guide_layer_logits: ``(φ, l, parent) -> logits`` of layer h_{l+1} of q:
        ``parent = x`` for ``l = 0``, ``parent = h_l`` (a sample of the layer
        below) for ``l > 0``.
    """

    model: LatentVariableModel
    guide: ConditionalSampler
    init: Callable
    x_dim: int
    latent_sizes: tuple
    model_layer_logits: Callable
    guide_layer_logits: Callable


class CategoricalSpec(NamedTuple):
    """A small VAE-shaped model with categorical latents (for JSA, Gumbel-softmax...).

    Attributes:
      model, guide, init: as in :class:`SBNSpec`.  ``h`` is one array of one-hot
        vectors ``[K, B, n, C]`` (n latent variables with C classes each).
      x_dim, num_latents, num_classes: D, n, C.
      prior_logits: ``θ -> [n, C]`` logits of the factorial categorical prior.
      decoder_logits: ``(θ, h) -> [..., D]`` Bernoulli logits of p_θ(x|h).
      guide_logits: ``(φ, x) -> [B, n, C]`` logits of q_φ(h|x).
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


# --------------------------------------------------------------------------
# Shared pieces


def bernoulli_log_prob(logits, value):
    """Σ_i log B[value_i | σ(logits_i)] over the last axis (numerically stable form)."""
    return jnp.sum(value * logits - jax.nn.softplus(logits), axis=-1)


def _bernoulli_sample(key, logits):
    """Float {0, 1} sample of FB[σ(logits)]; no gradient path (discrete)."""
    u = jax.random.uniform(key, logits.shape, dtype=logits.dtype)
    return jax.lax.stop_gradient((u < jax.nn.sigmoid(logits)).astype(logits.dtype))


class _Transform(nn.Module):
    """T_l of Eq. 2: linear (``hidden=()``) or tanh MLP, output logits."""

    features: int
    hidden: tuple = ()

    @nn.compact
    def __call__(self, h):
        for width in self.hidden:
            h = jnp.tanh(nn.Dense(width)(h))
        return nn.Dense(self.features)(h)


def _check_x(x, x_dim):
    # Traced x passes through (checked where it entered); concrete x is validated.
    return check_data(x, name="x", event_shape=(x_dim,), binary=True)


def _hidden_tuple(kind, hidden):
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if kind == "linear":
        return ()
    widths = (hidden,) if isinstance(hidden, (int,)) and not isinstance(hidden, bool) else tuple(hidden)
    if not widths:
        raise ValueError("hidden must name at least one width for kind='mlp'")
    return tuple(check_positive_int("hidden", w) for w in widths)


# --------------------------------------------------------------------------
# SBN


def sbn(x_dim: int, latent_sizes: Sequence[int] = (200,), kind: str = "linear",
        hidden: Union[int, Sequence[int]] = 200) -> SBNSpec:
    """Build a sigmoid belief net p_θ(x, h_{1:L}) and its mirrored guide q_φ(h|x) (Eq. 2).

    Args:
      x_dim: number of binary observed units D.
      latent_sizes: stochastic layer widths ``(d_1, ..., d_L)``, top layer last.
      kind: ``"linear"`` (T_l(h) = W h + b, Neal 1992) or ``"mlp"`` (tanh
        hidden layers of widths ``hidden`` inside every T_l, model and guide).
      hidden: width (int) or widths (tuple) of the deterministic tanh layers
        for ``kind="mlp"``; ignored for ``"linear"``.

    Returns:
      :class:`SBNSpec`.  θ = ``{"top": {"logits": [d_L]}, "layer0": T_0 (x|h_1),
      "layer1": T_1 (h_1|h_2), ...}``; φ = ``{"layer0": q(h_1|x), "layer1":
      q(h_2|h_1), ...}`` (Flax ``nn.Dense`` parameter trees).
    """
    x_dim = check_positive_int("x_dim", x_dim)
    if isinstance(latent_sizes, int):
        latent_sizes = (latent_sizes,)
    latent_sizes = tuple(check_positive_int("latent_sizes", d) for d in latent_sizes)
    if not latent_sizes:
        raise ValueError("latent_sizes must name at least one stochastic layer")
    hidden = _hidden_tuple(kind, hidden)
    L = len(latent_sizes)
    # model layer l maps h_{l+1} -> (x if l == 0 else h_l)
    out_sizes = (x_dim,) + latent_sizes[:-1]
    model_mods = [_Transform(out_sizes[l], hidden) for l in range(L)]
    in_guide = (x_dim,) + latent_sizes[:-1]
    guide_mods = [_Transform(latent_sizes[l], hidden) for l in range(L)]

    def init(key):
        keys = jax.random.split(key, 2 * L)
        theta = {"top": {"logits": jnp.zeros((latent_sizes[-1],), jnp.float32)}}
        phi = {}
        for l in range(L):
            theta[f"layer{l}"] = model_mods[l].init(keys[l], jnp.zeros((1, latent_sizes[l])))["params"]
            phi[f"layer{l}"] = guide_mods[l].init(keys[L + l], jnp.zeros((1, in_guide[l])))["params"]
        return {"model": theta, "guide": phi}

    def model_layer_logits(theta, l, parent=None):
        if l == L:
            top = theta["top"]["logits"]
            return top if parent is None else jnp.broadcast_to(top, parent.shape[:-1] + top.shape)
        if not 0 <= l < L:
            raise ValueError(f"model layer l must be in [0, {L}], got {l}")
        return model_mods[l].apply({"params": theta[f"layer{l}"]}, parent)

    def guide_layer_logits(phi, l, parent):
        if not 0 <= l < L:
            raise ValueError(f"guide layer l must be in [0, {L - 1}], got {l}")
        return guide_mods[l].apply({"params": phi[f"layer{l}"]}, parent)

    def log_prior(theta, h):
        h = tuple(h)
        lp = bernoulli_log_prob(model_layer_logits(theta, L, h[-1]), h[-1])
        for l in range(1, L):
            lp = lp + bernoulli_log_prob(model_layer_logits(theta, l, h[l]), h[l - 1])
        return lp

    def log_likelihood(theta, x, h):
        x = _check_x(x, x_dim)
        return bernoulli_log_prob(model_layer_logits(theta, 0, tuple(h)[0]), x)

    def sample(theta, key, n):
        keys = jax.random.split(key, L + 1)
        top = model_layer_logits(theta, L)
        hs = [None] * L
        hs[L - 1] = _bernoulli_sample(keys[L], jnp.broadcast_to(top, (n,) + top.shape))
        for l in range(L - 1, 0, -1):
            hs[l - 1] = _bernoulli_sample(keys[l], model_layer_logits(theta, l, hs[l]))
        x = _bernoulli_sample(keys[0], model_layer_logits(theta, 0, hs[0]))
        return x, tuple(hs)

    def mean(theta, h):
        return jax.nn.sigmoid(model_layer_logits(theta, 0, tuple(h)[0]))

    def sample_and_log_prob(phi, key, x, n):
        x = _check_x(x, x_dim)
        keys = jax.random.split(key, L)
        logits = guide_layer_logits(phi, 0, x)
        logits = jnp.broadcast_to(logits, (n,) + logits.shape)
        hs, log_q = [], 0.0
        for l in range(L):
            if l > 0:
                logits = guide_layer_logits(phi, l, hs[-1])
            hl = _bernoulli_sample(keys[l], logits)
            log_q = log_q + bernoulli_log_prob(logits, hl)
            hs.append(hl)
        return tuple(hs), log_q

    def log_prob(phi, x, h):
        h = tuple(h)
        lq = bernoulli_log_prob(guide_layer_logits(phi, 0, x), h[0])
        for l in range(1, L):
            lq = lq + bernoulli_log_prob(guide_layer_logits(phi, l, h[l - 1]), h[l])
        return lq

    model = LatentVariableModel(log_prior=log_prior, log_likelihood=log_likelihood,
                                sample=sample, mean=mean)
    guide = ConditionalSampler(sample_and_log_prob=sample_and_log_prob, log_prob=log_prob)
    log_likelihood.likelihood = "bernoulli"   # read by sajax.evaluate to require binary data
    return SBNSpec(model, guide, init, x_dim, latent_sizes, model_layer_logits, guide_layer_logits)


def paper_sbn(name: str, x_dim: int = 784) -> SBNSpec:
    """One of the JSA paper's SBN architectures by name: ``"linear"``,
    ``"linear-2"`` or ``"nonlinear"`` (see the module docstring for the reading)."""
    if name not in PAPER_ARCHITECTURES:
        raise ValueError(f"name must be one of {sorted(PAPER_ARCHITECTURES)}, got {name!r}")
    return sbn(x_dim, **PAPER_ARCHITECTURES[name])


# --------------------------------------------------------------------------
# Categorical latents


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
    decoder = _Transform(x_dim, (hidden,))
    encoder = _Transform(n * C, (hidden,))

    def init(key):
        k_dec, k_enc = jax.random.split(key)
        theta = {"prior": {"logits": jnp.zeros((n, C), jnp.float32)},
                 "decoder": decoder.init(k_dec, jnp.zeros((1, n * C)))["params"]}
        phi = {"encoder": encoder.init(k_enc, jnp.zeros((1, x_dim)))["params"]}
        return {"model": theta, "guide": phi}

    def prior_logits(theta):
        return theta["prior"]["logits"]

    def decoder_logits(theta, h):
        return decoder.apply({"params": theta["decoder"]}, h.reshape(h.shape[:-2] + (n * C,)))

    def guide_logits(phi, x):
        out = encoder.apply({"params": phi["encoder"]}, x)
        return out.reshape(out.shape[:-1] + (n, C))

    def _cat_log_prob(logits, h):
        return jnp.sum(jnp.sum(h * jax.nn.log_softmax(logits, axis=-1), axis=-1), axis=-1)

    def log_prior(theta, h):
        return _cat_log_prob(prior_logits(theta), h)

    def log_likelihood(theta, x, h):
        x = _check_x(x, x_dim)
        return bernoulli_log_prob(decoder_logits(theta, h), x)

    def sample(theta, key, count):
        k_h, k_x = jax.random.split(key)
        logits = jnp.broadcast_to(prior_logits(theta), (count, n, C))
        h = jax.nn.one_hot(jax.random.categorical(k_h, logits), C, dtype=jnp.float32)
        x = _bernoulli_sample(k_x, decoder_logits(theta, h))
        return x, h

    def mean(theta, h):
        return jax.nn.sigmoid(decoder_logits(theta, h))

    def sample_and_log_prob(phi, key, x, count):
        x = _check_x(x, x_dim)
        logits = guide_logits(phi, x)
        logits = jnp.broadcast_to(logits, (count,) + logits.shape)
        h = jax.nn.one_hot(jax.random.categorical(key, logits), C, dtype=logits.dtype)
        h = jax.lax.stop_gradient(h)
        return h, _cat_log_prob(logits, h)

    def log_prob(phi, x, h):
        return _cat_log_prob(guide_logits(phi, x), h)

    model = LatentVariableModel(log_prior=log_prior, log_likelihood=log_likelihood,
                                sample=sample, mean=mean)
    guide = ConditionalSampler(sample_and_log_prob=sample_and_log_prob, log_prob=log_prob)
    log_likelihood.likelihood = "bernoulli"   # read by sajax.evaluate to require binary data
    return CategoricalSpec(model, guide, init, x_dim, n, C, prior_logits, decoder_logits, guide_logits)
