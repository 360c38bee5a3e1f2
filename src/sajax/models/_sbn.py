"""Sigmoid belief networks (review Sec. 3.1.1, Eq. 2).

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

Parameter trees (Flax ``nn.Dense``, whose kernel is ``[in, out]``: the
transpose of W in T(h) = W h + b).  For the 2-layer linear SBN
``sbn(784, (200, 100))``::

    θ = {"top":    {"logits": [100]},                               # c_L of p(h_2)
         "layer0": {"Dense_0": {"kernel": [200, 784], "bias": [784]}},  # T_0: x | h_1
         "layer1": {"Dense_0": {"kernel": [100, 200], "bias": [200]}}}  # T_1: h_1 | h_2
    φ = {"layer0": {"Dense_0": {"kernel": [784, 200], "bias": [200]}},  # q(h_1 | x)
         "layer1": {"Dense_0": {"kernel": [200, 100], "bias": [100]}}}  # q(h_2 | h_1)

so T_l(h) = h @ kernel + bias = W_l h + b_l with W_l = kernel.T.
:func:`sbn_weights` returns the ``(W_l [out, in], b_l)`` pairs.  With
``kind="mlp"`` each ``layer{l}`` holds ``Dense_0, ..., Dense_{len(hidden)}``
(tanh between them; the last one gives the logits).

DARN (Gregor et al. 2014): :func:`darn_sbn` is a one-layer SBN whose prior is
autoregressive, p_θ(h) = Π_i p_θ(h_i | h_<i) (a MADE over binary h), with
p_θ(x|h) a Bernoulli MLP (or a MADE over x with h as context) and an
autoregressive inference model q_φ(h|x) (a MADE over h with x as context),
sampled one unit at a time (:func:`sajax.models.ancestral_scan`).  It speaks
:class:`~sajax.core.LatentVariableModel` / :class:`~sajax.core.ConditionalSampler`,
so RWS, VIMCO, NVIL and JSA train it; its latents are one array ``[..., B, d]``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax._densities import bernoulli_log_prob
from sajax.core import GUIDE, MODEL, ConditionalSampler, DiscreteLayers, LatentVariableModel, check_positive_int
from sajax.models._autoregressive import _module_init, ancestral_scan
from sajax.models._common import _bernoulli_sample, _check_x, _Transform
from sajax.models._made import MADE
from sajax.models._vae import ACTIVATIONS

__all__ = [
    "SBNSpec",
    "sbn",
    "paper_sbn",
    "sbn_weights",
    "PAPER_ARCHITECTURES",
    "DARNSpec",
    "darn_sbn",
    "DARN_LIKELIHOODS",
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
      model: :class:`sajax.core.LatentVariableModel` for p_θ(x, h) (Eq. 2),
        ``observation="bernoulli"``.
      guide: :class:`sajax.core.ConditionalSampler` for q_φ(h|x).
      init: ``key -> {"model": θ, "guide": φ}`` (trees in the module
        docstring; :func:`sbn_weights` reads W_l, b_l of a linear SBN).
      x_dim: number of binary pixels D.
      latent_sizes: ``(d_1, ..., d_L)``, top layer last.
      model_layer_logits: ``(θ, l, parent) -> logits``.  ``l = 0``: logits of
        x given ``parent = h_1``; ``0 < l < L``: logits of h_l given
        ``parent = h_{l+1}``; ``l = L``: the top prior's logits ``[d_L]``
        broadcast to ``parent.shape[:-1] + (d_L,)`` (``parent=None`` gives ``[d_L]``).
      guide_layer_logits: ``(φ, l, parent) -> logits`` of layer h_{l+1} of q:
        ``parent = x`` for ``l = 0``, ``parent = h_l`` (a sample of the layer
        below) for ``l > 0``.
      layers: :class:`sajax.core.DiscreteLayers` ``(guide_layer_logits, L,
        "bernoulli")``: layer-wise access to q for MuProp, DisARM,
        straight-through and Gumbel-softmax, e.g. ``muprop(spec.model, spec.layers, num_samples=1)``.
    """

    model: LatentVariableModel
    guide: ConditionalSampler
    init: Callable
    x_dim: int
    latent_sizes: tuple
    model_layer_logits: Callable
    guide_layer_logits: Callable
    layers: DiscreteLayers


def _hidden_tuple(kind, hidden):
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if kind == "linear":
        return ()
    widths = (hidden,) if isinstance(hidden, (int,)) and not isinstance(hidden, bool) else tuple(hidden)
    if not widths:
        raise ValueError("hidden must name at least one width for kind='mlp'")
    return tuple(check_positive_int("hidden", w) for w in widths)


def _check_sbn_args(x_dim, latent_sizes, kind, hidden):
    """Validated ``(x_dim, latent_sizes, hidden)`` of :func:`sbn`; ValueError/TypeError naming the argument."""
    x_dim = check_positive_int("x_dim", x_dim)
    if isinstance(latent_sizes, int):
        latent_sizes = (latent_sizes,)
    latent_sizes = tuple(check_positive_int("latent_sizes", d) for d in latent_sizes)
    if not latent_sizes:
        raise ValueError("latent_sizes must name at least one stochastic layer")
    return x_dim, latent_sizes, _hidden_tuple(kind, hidden)


class _SBNNets(NamedTuple):
    """The static part of an SBN: sizes and the transforms T_l of p and q.

    ``model_mods[l]`` maps h_{l+1} to the logits of x (l = 0) or of h_l;
    ``guide_mods[l]`` maps x (l = 0) or h_l to the logits of h_{l+1}.
    """

    x_dim: int
    latent_sizes: tuple
    model_mods: tuple
    guide_mods: tuple

    @property
    def num_layers(self) -> int:
        return len(self.latent_sizes)

    def init(self, key):
        L = self.num_layers
        in_guide = (self.x_dim,) + self.latent_sizes[:-1]
        keys = jax.random.split(key, 2 * L)
        theta = {"top": {"logits": jnp.zeros((self.latent_sizes[-1],), jnp.float32)}}
        phi = {}
        for l in range(L):
            theta[f"layer{l}"] = self.model_mods[l].init(keys[l], jnp.zeros((1, self.latent_sizes[l])))["params"]
            phi[f"layer{l}"] = self.guide_mods[l].init(keys[L + l], jnp.zeros((1, in_guide[l])))["params"]
        return {MODEL: theta, GUIDE: phi}

    def model_layer_logits(self, theta, l, parent=None):
        L = self.num_layers
        if l == L:
            top = theta["top"]["logits"]
            return top if parent is None else jnp.broadcast_to(top, parent.shape[:-1] + top.shape)
        if not 0 <= l < L:
            raise ValueError(f"model layer l must be in [0, {L}], got {l}")
        return self.model_mods[l].apply({"params": theta[f"layer{l}"]}, parent)

    def guide_layer_logits(self, phi, l, parent):
        if not 0 <= l < self.num_layers:
            raise ValueError(f"guide layer l must be in [0, {self.num_layers - 1}], got {l}")
        return self.guide_mods[l].apply({"params": phi[f"layer{l}"]}, parent)


def _sbn_model(nets: _SBNNets) -> LatentVariableModel:
    """p_θ(x, h_{1:L}) of Eq. 2 as a :class:`LatentVariableModel`."""
    L, layer_logits = nets.num_layers, nets.model_layer_logits

    def log_prior(theta, h):
        h = tuple(h)
        lp = bernoulli_log_prob(layer_logits(theta, L, h[-1]), h[-1])
        for l in range(1, L):
            lp = lp + bernoulli_log_prob(layer_logits(theta, l, h[l]), h[l - 1])
        return lp

    def log_likelihood(theta, x, h):
        x = _check_x(x, nets.x_dim)
        return bernoulli_log_prob(layer_logits(theta, 0, tuple(h)[0]), x)

    def sample(theta, key, n):
        keys = jax.random.split(key, L + 1)
        top = layer_logits(theta, L)
        hs = [None] * L
        hs[L - 1] = _bernoulli_sample(keys[L], jnp.broadcast_to(top, (n,) + top.shape))
        for l in range(L - 1, 0, -1):
            hs[l - 1] = _bernoulli_sample(keys[l], layer_logits(theta, l, hs[l]))
        x = _bernoulli_sample(keys[0], layer_logits(theta, 0, hs[0]))
        return x, tuple(hs)

    def mean(theta, h):
        return jax.nn.sigmoid(layer_logits(theta, 0, tuple(h)[0]))

    return LatentVariableModel(log_prior=log_prior, log_likelihood=log_likelihood,
                               sample=sample, mean=mean, observation="bernoulli")


def _sbn_guide(nets: _SBNNets) -> ConditionalSampler:
    """q_φ(h_{1:L}|x) = q_φ(h_1|x) Π_l q_φ(h_{l+1}|h_l) as a :class:`ConditionalSampler`."""
    L, layer_logits = nets.num_layers, nets.guide_layer_logits

    def sample_and_log_prob(phi, key, x, n):
        x = _check_x(x, nets.x_dim)
        keys = jax.random.split(key, L)
        logits = layer_logits(phi, 0, x)
        logits = jnp.broadcast_to(logits, (n,) + logits.shape)   # encoder of x runs once
        hs, log_q = [], 0.0
        for l in range(L):
            if l > 0:
                logits = layer_logits(phi, l, hs[-1])
            hl = _bernoulli_sample(keys[l], logits)
            log_q = log_q + bernoulli_log_prob(logits, hl)
            hs.append(hl)
        return tuple(hs), log_q

    def log_prob(phi, x, h):
        h = tuple(h)
        lq = bernoulli_log_prob(layer_logits(phi, 0, x), h[0])
        for l in range(1, L):
            lq = lq + bernoulli_log_prob(layer_logits(phi, l, h[l - 1]), h[l])
        return lq

    return ConditionalSampler(sample_and_log_prob=sample_and_log_prob, log_prob=log_prob)


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
      q(h_2|h_1), ...}``; each ``layer{l}`` is a Flax ``nn.Dense`` tree with
      kernels ``[in, out]`` (the module docstring shows the whole tree of a
      2-layer linear SBN; :func:`sbn_weights` gives W_l ``[out, in]`` and b_l).

    Example:
      >>> import jax
      >>> spec = sbn(784, (200, 100))
      >>> theta = spec.init(jax.random.PRNGKey(0))["model"]
      >>> theta["layer1"]["Dense_0"]["kernel"].shape   # h_2 (100) -> h_1 (200), [in, out]
      (100, 200)
      >>> [w.shape for w, b in sbn_weights(spec, theta)]   # W_l [out, in]
      [(784, 200), (200, 100)]
    """
    x_dim, latent_sizes, hidden = _check_sbn_args(x_dim, latent_sizes, kind, hidden)
    out_sizes = (x_dim,) + latent_sizes[:-1]
    nets = _SBNNets(x_dim, latent_sizes,
                    tuple(_Transform(out_sizes[l], hidden) for l in range(len(latent_sizes))),
                    tuple(_Transform(d, hidden) for d in latent_sizes))
    layers = DiscreteLayers(nets.guide_layer_logits, nets.num_layers, "bernoulli")
    return SBNSpec(_sbn_model(nets), _sbn_guide(nets), nets.init, x_dim, latent_sizes,
                   nets.model_layer_logits, nets.guide_layer_logits, layers)


def sbn_weights(spec: SBNSpec, params) -> list:
    """``[(W_0, b_0), ..., (W_{L-1}, b_{L-1})]`` of a linear SBN's θ or φ, W_l ``[out, in]``.

    For θ = ``params["model"]``: T_l(h_{l+1}) = W_l h_{l+1} + b_l gives the
    logits of x (l = 0) or of h_l (Eq. 2); the top prior's logits c_L are
    ``θ["top"]["logits"]`` and are not in the list.  For φ =
    ``params["guide"]``: W_l x + b_l (l = 0) or W_l h_l + b_l gives the logits
    of h_{l+1} under q.  ``W_l`` is the transpose of Flax's kernel
    (``θ["layer{l}"]["Dense_0"]["kernel"]`` is ``[in, out]``).

    Raises:
      ValueError: ``params`` is the whole ``{"model", "guide"}`` dict, lacks
        a layer, or is not a linear SBN's (``kind="mlp"``).
    """
    if not hasattr(params, "keys"):
        raise TypeError(f"params must be an SBN parameter group (a dict), got {type(params).__name__}")
    if MODEL in params or GUIDE in params:
        raise ValueError("params must be one group: pass params['model'] (θ) or params['guide'] (φ), "
                         f"not the whole dict with groups {sorted(params)}")
    weights = []
    for l in range(len(spec.latent_sizes)):
        layer = params.get(f"layer{l}")
        if layer is None:
            raise ValueError(f"params has no 'layer{l}' (has {sorted(params)}); "
                             f"expected θ or φ of an SBN with {len(spec.latent_sizes)} stochastic layers")
        if set(layer) != {"Dense_0"}:
            raise ValueError(f"sbn_weights needs a linear SBN (kind='linear'); params['layer{l}'] "
                             f"holds {sorted(layer)} (an MLP transform)")
        weights.append((jnp.transpose(layer["Dense_0"]["kernel"]), layer["Dense_0"]["bias"]))
    return weights


def paper_sbn(name: str, x_dim: int = 784) -> SBNSpec:
    """One of the JSA paper's SBN architectures by name: ``"linear"``,
    ``"linear-2"`` or ``"nonlinear"`` (see the module docstring for the reading)."""
    if name not in PAPER_ARCHITECTURES:
        raise ValueError(f"name must be one of {sorted(PAPER_ARCHITECTURES)}, got {name!r}")
    return sbn(x_dim, **PAPER_ARCHITECTURES[name])


# --------------------------------------------------------------------------
# DARN: an SBN layer with an autoregressive prior and guide (Gregor et al. 2014)

DARN_LIKELIHOODS = ("mlp", "made")


class DARNSpec(NamedTuple):
    """A DARN-style model p_θ(h) p_θ(x|h) with its autoregressive q_φ(h|x).

    Attributes:
      model: :class:`sajax.core.LatentVariableModel`, ``h`` one array ``[..., B, d]``.
      guide: :class:`sajax.core.ConditionalSampler` (autoregressive over h).
      init: ``key -> {"model": θ, "guide": φ}``.
      x_dim, latent_dim: D, d.
      prior_logits: ``(θ, h) -> [..., d]`` logits of p_θ(h_i = 1 | h_<i).
      guide_logits: ``(φ, x, h) -> [..., B, d]`` logits of q_φ(h_i = 1 | h_<i, x).
    """

    model: LatentVariableModel
    guide: ConditionalSampler
    init: Callable
    x_dim: int
    latent_dim: int
    prior_logits: Callable
    guide_logits: Callable



class _DARNNets(NamedTuple):
    """The static part of :func:`darn_sbn`: sizes and the three Flax modules."""

    x_dim: int
    latent_dim: int
    likelihood: str
    prior: nn.Module        # MADE over h
    decoder: nn.Module      # tanh MLP h -> x logits, or MADE over x with context h
    encoder: nn.Module      # MADE over h with context x

    def init(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        d, dx = self.latent_dim, self.x_dim
        dec = (_module_init(self.decoder, k2, d) if self.likelihood == "mlp"
               else _module_init(self.decoder, k2, dx, d))
        theta = {"prior": _module_init(self.prior, k1, d), "likelihood": dec}
        return {MODEL: theta, GUIDE: _module_init(self.encoder, k3, d, dx)}

    def prior_logits(self, theta, h):
        return self.prior.apply({"params": theta["prior"]}, h)[..., 0]

    def x_logits(self, theta, x, h):
        if self.likelihood == "mlp":
            return self.decoder.apply({"params": theta["likelihood"]}, h)
        x, h = _broadcast_lead(x, h)
        return self.decoder.apply({"params": theta["likelihood"]}, x, h)[..., 0]

    def q_logits(self, phi, x, h):
        x, h = _broadcast_lead(x, h)
        return self.encoder.apply({"params": phi}, h, x)[..., 0]


def _broadcast_lead(a, b):
    """``a [..., m]`` and ``b [..., n]`` broadcast to common leading axes."""
    lead = jnp.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return jnp.broadcast_to(a, lead + a.shape[-1:]), jnp.broadcast_to(b, lead + b.shape[-1:])


def _darn_model(nets: _DARNNets) -> LatentVariableModel:
    """p_θ(h) p_θ(x|h) with the autoregressive prior of DARN (Gregor et al. 2014)."""
    d, dx = nets.latent_dim, nets.x_dim

    def log_prior(theta, h):
        return bernoulli_log_prob(nets.prior_logits(theta, h), h)

    def log_likelihood(theta, x, h):
        x = _check_x(x, dx)
        return bernoulli_log_prob(nets.x_logits(theta, x, h), x)

    def sample(theta, key, n):
        k_h, k_x = jax.random.split(key)
        h = ancestral_scan(lambda hh: nets.prior_logits(theta, hh), jnp.arange(d), k_h, jnp.zeros((n, d)))
        if nets.likelihood == "mlp":
            return _bernoulli_sample(k_x, nets.x_logits(theta, None, h)), h
        x = ancestral_scan(lambda xx: nets.x_logits(theta, xx, h), jnp.arange(dx), k_x, jnp.zeros((n, dx)))
        return x, h

    def mean(theta, h):
        return jax.nn.sigmoid(nets.x_logits(theta, None, h))

    return LatentVariableModel(log_prior=log_prior, log_likelihood=log_likelihood, sample=sample,
                               mean=mean if nets.likelihood == "mlp" else None, observation="bernoulli")


def _darn_guide(nets: _DARNNets) -> ConditionalSampler:
    """q_φ(h|x) = Π_i q_φ(h_i | h_<i, x): a MADE over h with x as context."""
    d, dx = nets.latent_dim, nets.x_dim

    def log_prob(phi, x, h):
        return bernoulli_log_prob(nets.q_logits(phi, x, h), h)

    def sample_and_log_prob(phi, key, x, n):
        x = _check_x(x, dx)
        ctx = jnp.broadcast_to(x, (n,) + x.shape).reshape((-1, dx))
        h = ancestral_scan(lambda hh: nets.q_logits(phi, ctx, hh), jnp.arange(d), key,
                           jnp.zeros((ctx.shape[0], d)))
        h = h.reshape((n, x.shape[0], d))
        return h, log_prob(phi, x, h)

    return ConditionalSampler(sample_and_log_prob=sample_and_log_prob, log_prob=log_prob)


def darn_sbn(x_dim: int, latent_dim: int, hidden=(64,), likelihood: str = "mlp",
             activation: str = "relu") -> DARNSpec:
    """A DARN-style model with one autoregressive binary stochastic layer (Gregor et al. 2014).

    p_θ(h) = Π_i σ(±MADE_θ(h)_i) (a MADE over h, identity order); p_θ(x|h) a
    factorial Bernoulli from a tanh MLP (``likelihood="mlp"``) or a MADE over
    x with h as context (``"made"``); q_φ(h|x) = Π_i q_φ(h_i | h_<i, x), a MADE
    over h with x as context.  ``hidden``: the hidden widths of every net.

    Returns: :class:`DARNSpec`; θ = ``{"prior": MADE, "likelihood": MLP or MADE}``,
      φ = the guide MADE's parameters; h is one array ``[..., B, latent_dim]``.
    """
    x_dim, latent_dim = check_positive_int("x_dim", x_dim), check_positive_int("latent_dim", latent_dim)
    hidden = tuple(check_positive_int("hidden width", w) for w in hidden)
    if likelihood not in DARN_LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {DARN_LIKELIHOODS}, got {likelihood!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    decoder = (_Transform(x_dim, hidden) if likelihood == "mlp"
               else MADE(x_dim, hidden, activation=activation, context_dim=latent_dim))
    nets = _DARNNets(x_dim, latent_dim, likelihood, MADE(latent_dim, hidden, activation=activation),
                     decoder, MADE(latent_dim, hidden, activation=activation, context_dim=x_dim))
    return DARNSpec(_darn_model(nets), _darn_guide(nets), nets.init, x_dim, latent_dim,
                    nets.prior_logits, nets.q_logits)
