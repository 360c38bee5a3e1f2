"""Variational learning with discrete latent variables (review Sec. 3.2.1,
item 2, "Handling of discrete latent variables").

The ELBO L(x; θ, φ) of Eq. 7 is maximized jointly over the generative model
p_θ(x, h) and the inference model q_φ(h|x) as in Algorithm 3, but h is
discrete (Bernoulli or categorical), so the reparameterization trick of
Eq. 12-13 does not apply.  The θ-gradient ∇_θ log p_θ(x, h) at h ~ q is always
well behaved; the estimators below differ in how they estimate the φ-gradient
(Eq. 11, second line):

Unbiased (score-function family, any discrete latents):

* :func:`reinforce` - Algorithm 3 as is (Williams 1992).
* :func:`nvil` - REINFORCE with centering by a running mean, an
  input-dependent baseline network and variance normalization
  (Mnih & Gregor 2014).  :func:`nvil_baseline` is the default baseline net.
* :func:`rloo` - REINFORCE with the leave-one-out baseline over K samples
  (Kool, van Hoof & Welling 2019).
* :func:`vimco` - the IW-LB I_K of Eq. 19 with leave-one-out baselines built
  from the geometric mean of the other samples (Mnih & Rezende 2016).

Unbiased, using the layer structure of q (Bernoulli; MuProp also categorical):

* :func:`muprop` - first-order Taylor control variate around the mean field
  of q (Gu, Levine, Sutskever & Mnih 2015).
* :func:`disarm` - antithetic DisARM gradient (Dong, Mnih & Tucker 2020),
  Bernoulli only.

Biased relaxations (the review: "the gradients of these relaxations are
biased"):

* :func:`straight_through` - hard sample forward, gradient through the
  probabilities backward (Bengio, Léonard & Courville 2013).
* :func:`gumbel_softmax` - binary Concrete / Gumbel-softmax relaxation, with a
  straight-through variant ``hard=True`` (Jang, Gu & Poole 2017; Maddison,
  Mnih & Teh 2017).

Layer-wise access to q.  The score-function estimators only need the
:class:`sajax.core.ConditionalSampler` protocol.  The others sample q layer
by layer, q_φ(h|x) = Π_l q_φ(h_l | h_{l-1}) with h_{-1} = x, through a
:class:`DiscreteLayers` description: ``layer_logits(φ, l, parent)`` gives the
logits of layer l given x (l = 0) or the sample of the layer below.  It is
passed as ``layers=`` or found on the guide (see :func:`discrete_layers`).

Conventions (DESIGN.md): params ``{"model": θ, "guide": φ}`` (NVIL adds
``"baseline": ψ``); ``grads`` is a DESCENT direction averaged over the K
samples and the batch; metrics are batch means with their natural sign
(``elbo`` or ``iw_bound``, higher is better).  Shapes: ``batch.x`` ``[B, D]``;
latent leaves ``[K, B, d]`` (Bernoulli) or ``[K, B, d, C]`` one-hot
(categorical); log-densities ``[K, B]``.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from sajax.core import (
    ConditionalSampler,
    Estimate,
    Estimator,
    LatentVariableModel,
    batch_data as _data,
    check_positive_int,
    check_protocols as _check_protocols,
    log_joint,
    log_mean_exp as _log_mean_exp,
    neg,
    no_state as _init,
)

__all__ = [
    "DiscreteLayers",
    "discrete_layers",
    "reinforce",
    "nvil",
    "nvil_baseline",
    "NVILState",
    "rloo",
    "vimco",
    "muprop",
    "disarm",
    "straight_through",
    "gumbel_softmax",
]

_sg = jax.lax.stop_gradient
_KINDS = ("bernoulli", "categorical")


# --------------------------------------------------------------------------
# Layer-wise description of q_φ(h|x).


class DiscreteLayers(NamedTuple):
    """Layer-by-layer access to a discrete inference model
    q_φ(h|x) = Π_{l=0}^{L-1} q_φ(h_l | h_{l-1}), h_{-1} = x.

    Attributes:
      layer_logits: ``(φ, l, parent) -> logits``; ``parent`` is x ``[..., B, D]``
        for l = 0, else the (possibly relaxed) value of layer l-1.  Bernoulli
        logits are ``[..., B, d_l]``; categorical logits ``[..., B, d_l, C]``.
      num_layers: L.
      kind: "bernoulli" (h_l ∈ {0,1}^{d_l}) or "categorical" (h_l one-hot over
        the last axis).
      pack: ``[h_0, ..., h_{L-1}] -> h`` in the structure the model's
        log-densities take; None: a tuple of layers (as ``sajax.models.sbn``).
    """

    layer_logits: Callable
    num_layers: int
    kind: str = "bernoulli"
    pack: Optional[Callable] = None


def discrete_layers(guide, layers: Optional[DiscreteLayers] = None) -> DiscreteLayers:
    """The :class:`DiscreteLayers` of ``guide``.

    Looks, in order, at ``layers`` (returned as is after checks); a guide that
    is itself a :class:`DiscreteLayers`; a guide with ``layer_logits`` and
    ``num_layers`` attributes (optional ``kind``); an SBN spec with
    ``guide_layer_logits`` and ``latent_sizes`` (``sajax.models.sbn.SBNSpec``);
    a one-layer categorical spec with ``guide_logits(φ, x)`` and
    ``num_classes`` (``sajax.models.sbn.CategoricalSpec``).  A plain
    :class:`ConditionalSampler` has no layer access: pass the spec itself,
    e.g. ``muprop(spec.model, spec)`` or ``layers=discrete_layers(spec)``.

    Raises:
      TypeError: none of these is available.
      ValueError: bad ``num_layers`` or ``kind``.
    """
    if layers is None:
        if isinstance(guide, DiscreteLayers):
            layers = guide
        elif callable(getattr(guide, "layer_logits", None)) and hasattr(guide, "num_layers"):
            layers = DiscreteLayers(guide.layer_logits, guide.num_layers,
                                    getattr(guide, "kind", "bernoulli"))
        elif callable(getattr(guide, "guide_layer_logits", None)) and hasattr(guide, "latent_sizes"):
            layers = DiscreteLayers(guide.guide_layer_logits, len(guide.latent_sizes), "bernoulli")
        elif callable(getattr(guide, "guide_logits", None)) and hasattr(guide, "num_classes"):
            logits_of = guide.guide_logits
            layers = DiscreteLayers(lambda phi, l, parent: logits_of(phi, parent), 1, "categorical",
                                    pack=lambda hs: hs[0])
        else:
            raise TypeError(
                "this estimator samples q_φ(h|x) layer by layer: pass layers=DiscreteLayers("
                "layer_logits=(φ, l, parent) -> logits, num_layers=L), or a guide with "
                f"layer_logits/num_layers attributes; got guide of type {type(guide).__name__}")
    if not isinstance(layers, DiscreteLayers):
        if isinstance(layers, tuple) and len(layers) in (2, 3, 4):
            layers = DiscreteLayers(*layers)
        else:
            raise TypeError(f"layers must be a DiscreteLayers, got {type(layers).__name__}")
    if not callable(layers.layer_logits):
        raise TypeError("layers.layer_logits must be callable (φ, l, parent) -> logits")
    check_positive_int("layers.num_layers", layers.num_layers)
    if layers.pack is not None and not callable(layers.pack):
        raise TypeError("layers.pack must be callable or None")
    if layers.kind not in _KINDS:
        raise ValueError(f"layers.kind must be one of {_KINDS}, got {layers.kind!r}")
    return layers


# Per-layer distribution pieces.  Bernoulli: logits [..., d]; categorical:
# logits [..., d, C] and one-hot values.


def _event_sum(kind, t):
    return jnp.sum(t, axis=-1) if kind == "bernoulli" else jnp.sum(t, axis=(-2, -1))


def _layer_log_prob(kind, h, logits):
    """log q(h_l | parent) [...]; linear in h, so it is also defined at relaxed h."""
    if kind == "bernoulli":
        return jnp.sum(h * logits - jax.nn.softplus(logits), axis=-1)
    return _event_sum(kind, h * jax.nn.log_softmax(logits, axis=-1))


def _layer_mean(kind, logits):
    """E[h_l | parent]: the mean field (MuProp's expansion point, ST's backward path)."""
    return jax.nn.sigmoid(logits) if kind == "bernoulli" else jax.nn.softmax(logits, axis=-1)


def _layer_noise(kind, key, shape):
    """Logistic noise (Bernoulli: 1[α + ε > 0] ~ Bern(σ(α))) or Gumbel noise
    (categorical: one_hot(argmax(α + g)) ~ Cat(softmax(α)), the Gumbel-max trick)."""
    if kind == "bernoulli":
        return jax.random.logistic(key, shape)
    return jax.random.gumbel(key, shape)


def _layer_hard(kind, perturbed):
    """The exact sample from perturbed logits α + noise."""
    if kind == "bernoulli":
        return (perturbed > 0).astype(perturbed.dtype)
    return jax.nn.one_hot(jnp.argmax(perturbed, axis=-1), perturbed.shape[-1], dtype=perturbed.dtype)


def _layer_relaxed(kind, perturbed, temperature):
    """Binary Concrete σ((α + ε)/τ) or Gumbel-softmax softmax((α + g)/τ)."""
    if kind == "bernoulli":
        return jax.nn.sigmoid(perturbed / temperature)
    return jax.nn.softmax(perturbed / temperature, axis=-1)


def _descend(layers, phi, parent, keys, value_fn, start=0):
    """Run q from layer ``start`` to the top: layer l takes value
    ``value_fn(l, logits_l, keys[l])``, fed as the parent of layer l+1.

    Returns (values, logits), lists over layers start..L-1.
    """
    values, logits = [], []
    for l in range(start, layers.num_layers):
        a = layers.layer_logits(phi, l, parent)
        parent = value_fn(l, a, keys[l])
        values.append(parent)
        logits.append(a)
    return values, logits


def _exact_value(kind):
    """value_fn drawing an exact sample of the layer from its key."""
    def value(l, a, k):
        return _layer_hard(kind, a + _layer_noise(kind, k, a.shape))
    return value


def _log_q_layers(layers, phi, x_n, h):
    """log q_φ(h|x) = Σ_l log q_φ(h_l | h_{l-1}) from the layer logits, [n, B]."""
    total, parent = 0.0, x_n
    for l in range(layers.num_layers):
        total = total + _layer_log_prob(layers.kind, h[l], layers.layer_logits(phi, l, parent))
        parent = h[l]
    return total


# --------------------------------------------------------------------------
# Shared pieces.




def _check_loo_samples(num_samples, who: str) -> int:
    """K >= 2: a leave-one-out baseline needs at least one other sample."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise TypeError(f"{who} needs num_samples (K) to be an integer >= 2, got K={num_samples!r}")
    if num_samples < 2:
        raise ValueError(
            f"{who} needs num_samples (K) >= 2: its leave-one-out baseline for sample k is built "
            f"from the other K-1 samples; got K={num_samples}")
    return num_samples


def _check_temperature(temperature) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a positive float, got {temperature!r}") from None
    if not (t > 0.0 and math.isfinite(t)):
        raise ValueError(f"temperature must be a positive finite float, got {temperature!r}")
    return t






def _tile(x, n):
    """x [B, D...] -> [n, B, D...], the parent of layer 0 for n samples."""
    return jnp.broadcast_to(x, (n,) + x.shape)




# --------------------------------------------------------------------------
# (a) REINFORCE: Algorithm 3.


def reinforce(model: LatentVariableModel, guide: ConditionalSampler,
              num_samples: int = 1) -> Estimator:
    """Variational learning with the score-function estimator (Algorithm 3, Eq. 11).

    With h_k ~ q_φ(h|x), k = 1..K, drawn without gradient, the ascent
    directions are

      θ: (1/K) Σ_k ∇_θ log p_θ(x, h_k),
      φ: (1/K) Σ_k l(x, h_k) ∇_φ log q_φ(h_k|x),   l = log p_θ(x, h) - log q_φ(h|x),

    unbiased for ∇L (footnote 8 of the review; Williams 1992).  No variance
    reduction: that is what :func:`nvil`, :func:`rloo`, :func:`muprop`,
    :func:`disarm` add.  Works for any discrete (or continuous) latents.

    Args:
      model: p_θ(x, h) as a :class:`LatentVariableModel`.
      guide: q_φ(h|x) as a :class:`ConditionalSampler`.
      num_samples: K >= 1 samples per example.

    Returns:
      Estimator over ``{"model": θ, "guide": φ}``; state ``()``; metrics
      ``{"elbo"}``: batch mean of (1/K) Σ_k l(x, h_k).
    """
    _check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)

    def estimate(params, state, key, batch):
        x = _data(batch)
        h, _ = guide.sample_and_log_prob(params["guide"], key, x, k)
        h = _sg(h)

        def surrogate(p):
            log_p = log_joint(model, p["model"], x, h)          # [K, B]
            log_q = guide.log_prob(p["guide"], x, h)            # [K, B]
            signal = _sg(log_p - log_q)
            return jnp.mean(log_p + signal * log_q), jnp.mean(signal)

        ascent, elbo = jax.grad(surrogate, has_aux=True)(
            {"model": params["model"], "guide": params["guide"]})
        return Estimate(neg(ascent), state, {"elbo": elbo})

    return Estimator(_init, estimate)


# --------------------------------------------------------------------------
# (b) NVIL.


def nvil_baseline(x_dim: int, hidden: int = 100):
    """Default input-dependent baseline C_ψ(x) of NVIL: an MLP x -> tanh(hidden) -> scalar.

    Mnih & Gregor (2014) use one hidden layer of 100 tanh units.  The output
    layer starts at zero so that the baseline starts as "no baseline".

    Returns:
      ``(init, apply)``: ``init(key) -> ψ``; ``apply(ψ, x [B, x_dim]) -> [B]``.
    """
    x_dim = check_positive_int("x_dim", x_dim)
    hidden = check_positive_int("hidden", hidden)

    def init(key):
        w1 = jax.random.normal(key, (x_dim, hidden), jnp.float32) / math.sqrt(x_dim)
        return {"w1": w1, "b1": jnp.zeros((hidden,), jnp.float32),
                "w2": jnp.zeros((hidden,), jnp.float32), "b2": jnp.zeros((), jnp.float32)}

    def apply(psi, x):
        x = jnp.reshape(x, x.shape[:1] + (-1,)).astype(psi["w1"].dtype)
        return jnp.tanh(x @ psi["w1"] + psi["b1"]) @ psi["w2"] + psi["b2"]

    return init, apply


class NVILState(NamedTuple):
    """NVIL's running moments of the baseline-corrected learning signal
    r = l(x, h) - C_ψ(x): ``mean`` is the data-independent baseline c,
    ``var`` the running estimate v of Var[r - c] used for normalization."""

    mean: jax.Array
    var: jax.Array


def nvil(model: LatentVariableModel, guide: ConditionalSampler, baseline_net=None, *,
         x_dim: Optional[int] = None, alpha: float = 0.8, num_samples: int = 1,
         normalize: bool = True, warm_start: int = 256) -> Estimator:
    """Neural variational inference and learning (Mnih & Gregor 2014; review
    Sec. 3.2.1 item 2): REINFORCE (Algorithm 3) with three variance reductions
    of the learning signal l(x, h) = log p_θ(x, h) - log q_φ(h|x):

    1. centering by a running mean c of l - C_ψ(x) (a constant baseline);
    2. an input-dependent baseline C_ψ(x), a network with its own parameter
       group ``"baseline"`` trained to regress l - c;
    3. variance normalization: the centered signal is divided by
       max(1, sqrt(v)), v a running estimate of its variance.

    Ascent directions, with A = (l - c - C_ψ(x)) / max(1, sqrt(v)):

      θ: (1/K) Σ_k ∇_θ log p_θ(x, h_k)
      φ: (1/K) Σ_k A_k ∇_φ log q_φ(h_k|x)
      ψ: (1/K) Σ_k A_k ∇_ψ C_ψ(x)     (descent on ½ (l - c - C_ψ(x))² / max(1, sqrt(v)))

    What it is unbiased for: c, v come from ``state`` (earlier iterations only)
    and C_ψ(x) does not depend on h, so the baselines leave the mean unchanged:
    E[θ-part] = ∇_θ L and E[φ-part] = ∇_φ L / max(1, sqrt(v)), the ELBO gradient
    (Eq. 7) times a positive, state-dependent step-size factor.  With
    ``normalize=False`` the φ-part is unbiased for ∇_φ L itself.  (Mnih &
    Gregor update c, v with the current minibatch before using them, which
    adds an O(1/B) bias; here they are updated after.)  The state update is
    c ← α c + (1-α) mean(l - C_ψ(x)),  v ← α v + (1-α) mean((l - C_ψ(x) - c)²).

    Args:
      model: p_θ(x, h).
      guide: q_φ(h|x) (any discrete latents; samples carry no gradient).
      baseline_net: ``(init, apply)`` with ``apply(ψ, x) -> [B]``; default
        :func:`nvil_baseline` ``(x_dim)``.  ``params["baseline"]`` must hold ψ,
        e.g. ``params["baseline"] = init(key)``.
      x_dim: data dimension, needed only for the default baseline net.
      alpha: running-average decay in [0, 1) (0.8 in the paper).
      num_samples: K >= 1 samples per example sharing one baseline.
      normalize: divide by max(1, sqrt(v)) (step 3).
      warm_start: ``init`` sets c, v from one draw on the first
        ``warm_start`` examples of the data (0: c = 0, v = 1).

    Returns:
      Estimator over ``{"model": θ, "guide": φ, "baseline": ψ}``; state
      :class:`NVILState`; metrics ``{"elbo", "signal_mean", "signal_std"}``
      (batch mean of l; c and sqrt(v) after the update).
    """
    _check_protocols(model, guide)
    k = check_positive_int("num_samples", num_samples)
    warm = check_positive_int("warm_start", warm_start, minimum=0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be a float in [0, 1), got {alpha!r}")
    if baseline_net is None:
        if x_dim is None:
            raise ValueError("nvil needs baseline_net=(init, apply) or x_dim to build the "
                             "default nvil_baseline(x_dim)")
        baseline_net = nvil_baseline(x_dim)
    if not (isinstance(baseline_net, tuple) and len(baseline_net) == 2
            and all(callable(f) for f in baseline_net)):
        raise TypeError("baseline_net must be a pair (init, apply) of callables, "
                        f"got {type(baseline_net).__name__}")
    _, apply_baseline = baseline_net
    alpha = float(alpha)

    def _psi(params):
        if "baseline" not in params:
            raise ValueError(
                "nvil needs params['baseline'] (ψ of the input-dependent baseline C_ψ(x)); "
                "add it with params['baseline'] = baseline_net[0](key), e.g. "
                "nvil_baseline(x_dim)[0](key)")
        return params["baseline"]

    def init(key, params, data_or_batch):
        if warm == 0:
            return NVILState(jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32))
        x = jnp.asarray(_data(data_or_batch))[:warm].astype(jnp.float32)
        return _warm_moments(params, key, x)

    @jax.jit
    def _warm_moments(params, key, x):
        # Traced x: grayscale training data (dynamic binarization) is accepted
        # here; Bernoulli log-likelihoods are linear in x, so this is the
        # signal averaged over binarizations, a fair starting point for c, v.
        h, log_q = guide.sample_and_log_prob(params["guide"], key, x, 1)
        r = log_joint(model, params["model"], x, h) - log_q - apply_baseline(_psi(params), x)
        c = jnp.mean(r)
        return NVILState(c, jnp.mean(jnp.square(r - c)))

    def estimate(params, state, key, batch):
        x = _data(batch)
        psi = _psi(params)
        h, _ = guide.sample_and_log_prob(params["guide"], key, x, k)
        h = _sg(h)
        scale = jnp.maximum(1.0, jnp.sqrt(state.var)) if normalize else 1.0

        def surrogate(p):
            log_p = log_joint(model, p["model"], x, h)          # [K, B]
            log_q = guide.log_prob(p["guide"], x, h)            # [K, B]
            b = apply_baseline(p["baseline"], x)                # [B]
            signal = _sg(log_p - log_q)
            residual = signal - _sg(b)                          # l - C_ψ(x)
            a = _sg((residual - state.mean) / scale)
            obj = jnp.mean(log_p + a * log_q) + jnp.mean(a * b)
            return obj, (signal, residual)

        groups = {"model": params["model"], "guide": params["guide"], "baseline": psi}
        ascent, (signal, residual) = jax.grad(surrogate, has_aux=True)(groups)
        c = alpha * state.mean + (1.0 - alpha) * jnp.mean(residual)
        v = alpha * state.var + (1.0 - alpha) * jnp.mean(jnp.square(residual - c))
        grads = dict(neg(ascent))
        for name in params:       # keep the params tree (extra groups get zero)
            if name not in grads:
                grads[name] = jax.tree_util.tree_map(jnp.zeros_like, params[name])
        metrics = {"elbo": jnp.mean(signal), "signal_mean": c, "signal_std": jnp.sqrt(v)}
        return Estimate(grads, NVILState(c, v), metrics)

    return Estimator(init, estimate)


# --------------------------------------------------------------------------
# (c) RLOO and (d) VIMCO: leave-one-out baselines over K samples.


def rloo(model: LatentVariableModel, guide: ConditionalSampler, num_samples: int = 2) -> Estimator:
    """REINFORCE leave-one-out on the ELBO (Kool, van Hoof & Welling 2019).

    With K samples h_k ~ q_φ(h|x) and l_k = log p_θ(x, h_k) - log q_φ(h_k|x),
    the baseline of sample k is the mean of the other K-1 signals, which does
    not depend on h_k, so the estimator stays unbiased for ∇L (Eq. 7):

      φ: (1/K) Σ_k (l_k - (1/(K-1)) Σ_{j≠k} l_j) ∇_φ log q_φ(h_k|x)
         = (1/(K-1)) Σ_k (l_k - l̄) ∇_φ log q_φ(h_k|x),
      θ: (1/K) Σ_k ∇_θ log p_θ(x, h_k)      (Algorithm 3).

    Args:
      model, guide: protocols (any discrete latents).
      num_samples: K >= 2.

    Returns:
      Estimator over ``{"model": θ, "guide": φ}``; state ``()``; metrics
      ``{"elbo"}``: batch mean of (1/K) Σ_k l_k.

    Raises:
      ValueError: K < 2.
    """
    _check_protocols(model, guide)
    k = _check_loo_samples(num_samples, "rloo")

    def estimate(params, state, key, batch):
        x = _data(batch)
        h, _ = guide.sample_and_log_prob(params["guide"], key, x, k)
        h = _sg(h)

        def surrogate(p):
            log_p = log_joint(model, p["model"], x, h)
            log_q = guide.log_prob(p["guide"], x, h)
            signal = _sg(log_p - log_q)                                        # [K, B]
            advantage = (signal - jnp.mean(signal, axis=0)) * (k / (k - 1.0))  # l_k - mean_{j≠k} l_j
            return jnp.mean(log_p + advantage * log_q), jnp.mean(signal)

        ascent, elbo = jax.grad(surrogate, has_aux=True)(
            {"model": params["model"], "guide": params["guide"]})
        return Estimate(neg(ascent), state, {"elbo": elbo})

    return Estimator(_init, estimate)


def _vimco_leave_one_out(log_w):
    """L̂_{-k}: log (1/K)(Σ_{j≠k} w_j + ŵ_{-k}), ŵ_{-k} = exp(mean_{j≠k} log w_j)
    (the geometric mean of the other weights); log_w [K, B] -> [K, B]."""
    k = log_w.shape[0]
    others_mean = (jnp.sum(log_w, axis=0, keepdims=True) - log_w) / (k - 1)   # [K, B]
    eye = jnp.eye(k, dtype=bool)[:, :, None]                                   # [K(k), K(j), 1]
    replaced = jnp.where(eye, others_mean[:, None, :], log_w[None, :, :])      # row k: l_k -> mean_{j≠k} l_j
    return _log_mean_exp(replaced, axis=1)


def vimco(model: LatentVariableModel, guide: ConditionalSampler, num_samples: int = 5) -> Estimator:
    """Variational inference for Monte Carlo objectives (Mnih & Rezende 2016;
    review Sec. 3.2.1 item 2: "NVIL plus using the tighter bound IW-LB Eq. 19").

    The objective is I_K(x; θ, φ) = E[L̂], L̂ = log (1/K) Σ_k w_k,
    w_k = p_θ(x, h_k) / q_φ(h_k|x) (Eq. 19).  With normalized weights w̄_k and
    the leave-one-out estimate L̂_{-k} in which w_k is replaced by the
    geometric mean of the other K-1 weights, the ascent directions are

      θ: Σ_k w̄_k ∇_θ log p_θ(x, h_k),
      φ: Σ_k (L̂ - L̂_{-k}) ∇_φ log q_φ(h_k|x) - Σ_k w̄_k ∇_φ log q_φ(h_k|x).

    L̂_{-k} does not depend on h_k, so the estimator is unbiased for ∇I_K.

    Args:
      model, guide: protocols (any discrete latents).
      num_samples: K >= 2.

    Returns:
      Estimator over ``{"model": θ, "guide": φ}``; state ``()``; metrics
      ``{"iw_bound"}``: batch mean of L̂.

    Raises:
      ValueError: K < 2 (no other sample to build the baseline from).
    """
    _check_protocols(model, guide)
    k = _check_loo_samples(num_samples, "vimco")

    def estimate(params, state, key, batch):
        x = _data(batch)
        h, _ = guide.sample_and_log_prob(params["guide"], key, x, k)
        h = _sg(h)

        def surrogate(p):
            log_p = log_joint(model, p["model"], x, h)
            log_q = guide.log_prob(p["guide"], x, h)
            log_w = _sg(log_p - log_q)                                  # [K, B]
            bound = _log_mean_exp(log_w)                                # [B]
            signal = bound - _vimco_leave_one_out(log_w)                # [K, B]
            w_bar = jax.nn.softmax(log_w, axis=0)
            per_example = jnp.sum(signal * log_q + w_bar * (log_p - log_q), axis=0)
            return jnp.mean(per_example), jnp.mean(bound)

        ascent, bound = jax.grad(surrogate, has_aux=True)(
            {"model": params["model"], "guide": params["guide"]})
        return Estimate(neg(ascent), state, {"iw_bound": bound})

    return Estimator(_init, estimate)


# --------------------------------------------------------------------------
# Layer-wise estimators: MuProp, DisARM, straight-through, Gumbel-softmax.


def _signal_fn(model, layers, theta, phi, x, x_n):
    """h -> l(x, h) = log p_θ(x, h) - log q_φ(h|x), [n, B], defined at relaxed h too."""
    def signal(h):
        return log_joint(model, theta, x, _pack(layers, h)) - _log_q_layers(layers, phi, x_n, h)
    return signal


def _pack(layers, h):
    """A list of layer values in the model's latent structure."""
    return tuple(h) if layers.pack is None else layers.pack(list(h))


def muprop(model: LatentVariableModel, guide, num_samples: int = 1, *,
           layers: Optional[DiscreteLayers] = None) -> Estimator:
    """MuProp: REINFORCE with a first-order Taylor control variate around the
    mean field of q (Gu, Levine, Sutskever & Mnih 2015, ICLR 2016; review Sec. 3.2.1 item 2).

    For a one-layer q with mean μ_φ = E_q[h] the learning signal
    f(h) = l(x, h) (parameters held fixed; E_q ∇_φ l = -E_q ∇_φ log q = 0) is
    expanded at the deterministic mean h̄ = μ_φ:
    f̃(h) = f(h̄) + f'(h̄)·(h - h̄), and

      φ: [f(h) - f̃(h)] ∇_φ log q_φ(h|x) + f'(h̄)·∇_φ μ_φ,

    where the second term is ∇_φ E_q[f̃(h)] computed analytically, so the sum
    is unbiased for ∇_φ L.  For a layer-wise q_φ(h|x) = Π_l q_φ(h_l|h_{l-1})
    every layer gets its own control variate: given the sampled layers below,
    f_l(z) evaluates f with layer l set to z and the layers above it set to
    their mean-field propagation from z; it is expanded at the mean field
    h̄_l = E[h_l | h_{l-1}].  The control variate uses only h_{<l} and h_l,
    so each layer's term stays unbiased.  Needs p and q log-densities that
    are differentiable in (relaxed) h, as SBN ones are.  Categorical layers
    work the same way with μ = softmax(logits).  θ: Algorithm 3.

    Args:
      model: p_θ(x, h).
      guide: q_φ(h|x) carrying its :class:`DiscreteLayers` (see
        :func:`discrete_layers`), or anything if ``layers`` is given.
      num_samples: K >= 1 samples per example.
      layers: layer-wise description of q.

    Returns:
      Estimator over ``{"model": θ, "guide": φ}``; state ``()``; metrics ``{"elbo"}``.
    """
    _check_protocols(model, guide, need_sampler=False)
    lay = discrete_layers(guide, layers)
    k = check_positive_int("num_samples", num_samples)
    kind, n_layers = lay.kind, lay.num_layers

    def estimate(params, state, key, batch):
        x = _data(batch)
        x_n = _tile(x, k)
        theta, phi = params["model"], params["guide"]
        theta_c, phi_c = _sg(theta), _sg(phi)
        h, _ = _descend(lay, phi_c, x_n, jax.random.split(key, n_layers), _exact_value(kind))
        h = [_sg(v) for v in h]
        f_of = _signal_fn(model, lay, theta_c, phi_c, x, x_n)
        f = f_of(h)                                                    # [K, B]

        def mean_field_from(l, z):
            """Layers l+1.. as their means given layer l = z."""
            above, _ = _descend(lay, phi_c, z, [None] * n_layers,
                                lambda _, a, __: _layer_mean(kind, a), start=l + 1)
            return above

        def surrogate(th, ph):
            out = jnp.mean(log_joint(model, th, x, _pack(lay, h)))
            for l in range(n_layers):
                parent = x_n if l == 0 else h[l - 1]
                h_bar = _sg(_layer_mean(kind, lay.layer_logits(phi_c, l, parent)))

                def f_l(z, l=l):
                    return f_of(h[:l] + [z] + mean_field_from(l, z))

                # every (k, b) output depends only on its own row of z, so one
                # vector-Jacobian product with ones gives every per-example f_l'(h̄)
                f_bar, vjp = jax.vjp(f_l, h_bar)
                (slope,) = vjp(jnp.ones_like(f_bar))
                control = f_bar + _event_sum(kind, slope * (h[l] - h_bar))
                logits = lay.layer_logits(ph, l, parent)
                out = out + jnp.mean(_sg(f - control) * _layer_log_prob(kind, h[l], logits)
                                     + _event_sum(kind, _sg(slope) * _layer_mean(kind, logits)))
            return out

        g_theta, g_phi = jax.grad(surrogate, argnums=(0, 1))(theta, phi)
        return Estimate(neg({"model": g_theta, "guide": g_phi}), state, {"elbo": jnp.mean(f)})

    return Estimator(_init, estimate)


def disarm(model: LatentVariableModel, guide, num_samples: int = 1, *,
           layers: Optional[DiscreteLayers] = None) -> Estimator:
    """DisARM: antithetic REINFORCE for Bernoulli latents (Dong, Mnih & Tucker
    2020; review Sec. 3.2.1 item 2).

    For one Bernoulli layer with logits α, an antithetic pair from one logistic
    noise ε: b = 1[α + ε > 0], b̃ = 1[α - ε > 0] (b from u, b̃ from 1-u; both
    ~ Bern(σ(α))).  The DisARM gradient w.r.t. the logits is

      g_α = ½ (f(b) - f(b̃)) · (-1)^{b̃} · 1[b ≠ b̃] · σ(|α|),

    unbiased for ∇_α E_q[f], and chained to φ through α = α_φ(x).  Here
    f = l(x, h) with parameters held fixed (E_q ∇_φ l = 0), so the result is
    unbiased for ∇_φ L (Eq. 7).  Layer-wise q (as in the paper's multi-layer
    experiments): for each layer l, given the sampled layers below, an
    antithetic pair at layer l, and the layers above drawn for each branch
    with common random numbers; each layer's term is unbiased given the layers
    below, so the sum is.  θ: Algorithm 3 averaged over the layer-0 pair
    (two exact draws from q).  Cost: L pairs of passes through the layers above.

    Args:
      model: p_θ(x, h).
      guide: q_φ(h|x) with Bernoulli :class:`DiscreteLayers` (see
        :func:`discrete_layers`), or anything if ``layers`` is given.
      num_samples: number of antithetic pairs per example (K >= 1).
      layers: layer-wise description of q; ``kind`` must be "bernoulli".

    Returns:
      Estimator over ``{"model": θ, "guide": φ}``; state ``()``; metrics
      ``{"elbo"}`` (mean over both members of the layer-0 pair).

    Raises:
      ValueError: categorical layers (DisARM is defined for binary variables).
    """
    _check_protocols(model, guide, need_sampler=False)
    lay = discrete_layers(guide, layers)
    if lay.kind != "bernoulli":
        raise ValueError(f"disarm needs Bernoulli layers (kind='bernoulli'), got kind={lay.kind!r}")
    k = check_positive_int("num_samples", num_samples)
    n_layers = lay.num_layers
    up = _exact_value("bernoulli")

    def estimate(params, state, key, batch):
        x = _data(batch)
        x_n = _tile(x, k)
        theta, phi = params["model"], params["guide"]
        phi_c = _sg(phi)
        f_of = _signal_fn(model, lay, _sg(theta), phi_c, x, x_n)
        pair_keys = jax.random.split(key, n_layers)
        below, first_pair, terms = [], None, []   # below: an exact draw of the layers under l
        for l in range(n_layers):
            k_noise, k_up = jax.random.split(pair_keys[l])
            up_keys = jax.random.split(k_up, n_layers)      # common random numbers for both branches
            prefix = below[:l]
            parent = x_n if l == 0 else prefix[l - 1]
            alpha = lay.layer_logits(phi_c, l, parent)
            eps = jax.random.logistic(k_noise, alpha.shape)
            b = (alpha + eps > 0).astype(alpha.dtype)
            b_tilde = (alpha - eps > 0).astype(alpha.dtype)
            h_b = prefix + [b] + _descend(lay, phi_c, b, up_keys, up, start=l + 1)[0]
            h_bt = prefix + [b_tilde] + _descend(lay, phi_c, b_tilde, up_keys, up, start=l + 1)[0]
            f_b, f_bt = f_of(h_b), f_of(h_bt)
            g_alpha = (0.5 * (f_b - f_bt)[..., None] * (1.0 - 2.0 * b_tilde)
                       * (b != b_tilde).astype(alpha.dtype) * jax.nn.sigmoid(jnp.abs(alpha)))
            terms.append((parent, _sg(g_alpha)))
            if l == 0:
                first_pair = (h_b, h_bt, f_b, f_bt)
                below = h_b      # exact draw from q; its layers < l condition the pair at l
        h_b, h_bt, f_b, f_bt = first_pair

        def surrogate(th, ph):
            out = 0.5 * jnp.mean(log_joint(model, th, x, _pack(lay, h_b)) + log_joint(model, th, x, _pack(lay, h_bt)))
            for l, (parent, g_alpha) in enumerate(terms):
                out = out + jnp.sum(g_alpha * lay.layer_logits(ph, l, parent)) / (k * x.shape[0])
            return out

        g_theta, g_phi = jax.grad(surrogate, argnums=(0, 1))(theta, phi)
        elbo = 0.5 * (jnp.mean(f_b) + jnp.mean(f_bt))
        return Estimate(neg({"model": g_theta, "guide": g_phi}), state, {"elbo": elbo})

    return Estimator(_init, estimate)


def _relaxed_estimator(model, lay, k, value_fn, *, hard_forward: bool):
    """Pathwise gradient of l(x, z) at a differentiable sample z(φ, noise).

    ``value_fn(kind, logits, noise) -> z`` gives a layer's value; noise is the
    logistic/Gumbel noise of an exact draw, so 1[z-chain] and the exact chain
    share it.  ``hard_forward``: z equals the exact draw in the forward pass,
    so the objective value is an ELBO sample.
    """
    kind, n_layers = lay.kind, lay.num_layers

    def estimate(params, state, key, batch):
        x = _data(batch)
        x_n = _tile(x, k)
        keys = jax.random.split(key, n_layers)

        def relaxed_signal(p):
            z = _descend(lay, p["guide"], x_n, keys,
                         lambda l, a, kk: value_fn(kind, a, _layer_noise(kind, kk, a.shape)))[0]
            value = _signal_fn(model, lay, p["model"], p["guide"], x, x_n)(z)
            return jnp.mean(value)

        groups = {"model": params["model"], "guide": params["guide"]}
        relaxed, ascent = jax.value_and_grad(relaxed_signal)(groups)
        if hard_forward:
            metrics = {"elbo": relaxed}
        else:
            phi_c = _sg(params["guide"])
            h = _descend(lay, phi_c, x_n, keys, _exact_value(kind))[0]
            elbo = jnp.mean(_signal_fn(model, lay, _sg(params["model"]), phi_c, x, x_n)(h))
            metrics = {"elbo": elbo, "relaxed_elbo": relaxed}
        return Estimate(neg(ascent), state, metrics)

    return estimate


def straight_through(model: LatentVariableModel, guide, num_samples: int = 1, *,
                     layers: Optional[DiscreteLayers] = None) -> Estimator:
    """Straight-through estimator (Bengio, Léonard & Courville 2013; used by
    VQ-VAE, review Sec. 3.2.1 item 2).  BIASED.

    Forward: an exact sample h_l ~ q_φ(h_l|h_{l-1}) of every layer.  Backward:
    h_l is treated as its mean μ_l = E[h_l | h_{l-1}] (sigmoid or softmax of the
    logits), i.e. z_l = μ_l + stop_gradient(h_l - μ_l).  Both groups ascend
    ∇ l(x, z) (Eq. 7 integrand, differentiated through z and directly).  The
    θ-part equals Algorithm 3's and is unbiased; the φ-part is biased (it
    ignores the discontinuity of h in φ); the bias is measured in the tests,
    not assumed away.

    Args:
      model: p_θ(x, h), log-densities differentiable in relaxed h.
      guide: q_φ(h|x) with :class:`DiscreteLayers`, or anything if ``layers``.
      num_samples: K >= 1.
      layers: layer-wise description of q (Bernoulli or categorical).

    Returns:
      Estimator over ``{"model": θ, "guide": φ}``; state ``()``; metrics
      ``{"elbo"}`` (an exact ELBO sample: the forward pass is hard).
    """
    _check_protocols(model, guide, need_sampler=False)
    lay = discrete_layers(guide, layers)
    k = check_positive_int("num_samples", num_samples)

    def value(kind, logits, noise):
        mu = _layer_mean(kind, logits)
        return mu + _sg(_layer_hard(kind, logits + noise) - mu)

    return Estimator(_init, _relaxed_estimator(model, lay, k, value, hard_forward=True))


def gumbel_softmax(model: LatentVariableModel, guide, num_samples: int = 1, *,
                   temperature: float = 0.5, hard: bool = False,
                   layers: Optional[DiscreteLayers] = None) -> Estimator:
    """Gumbel-softmax / Concrete relaxation (Jang, Gu & Poole 2017; Maddison,
    Mnih & Teh 2017; review Sec. 3.2.1 item 2).  BIASED.

    Each layer is replaced by its continuous relaxation at temperature τ:
    Bernoulli: z = σ((α + ε)/τ), ε logistic (the binary Concrete);
    categorical: z = softmax((α + g)/τ), g Gumbel.  The relaxed sample is fed
    to the next layer of q and to p, and both groups ascend the pathwise
    gradient of l(x, z) = log p_θ(x, z) - log q_φ(z|x), with the Bernoulli /
    categorical log-densities evaluated at the relaxed point.  This is unbiased
    for the gradient of the relaxed objective E_z[l(x, z)], not of the ELBO;
    the relaxed objective tends to the ELBO as τ → 0 while the gradient
    variance grows.  ``hard=True`` (straight-through Gumbel): the forward pass
    uses the exact sample 1[z > ½] (argmax), the backward pass the relaxed z.

    Args:
      model: p_θ(x, h), log-densities differentiable in relaxed h.
      guide: q_φ(h|x) with :class:`DiscreteLayers`, or anything if ``layers``.
      num_samples: K >= 1.
      temperature: τ > 0.
      hard: straight-through variant.
      layers: layer-wise description of q (Bernoulli or categorical).

    Returns:
      Estimator over ``{"model": θ, "guide": φ}``; state ``()``; metrics
      ``{"elbo"}`` (an exact ELBO sample from the same noise) and, for
      ``hard=False``, ``{"relaxed_elbo"}`` (the relaxed objective's sample).
    """
    _check_protocols(model, guide, need_sampler=False)
    lay = discrete_layers(guide, layers)
    k = check_positive_int("num_samples", num_samples)
    tau = _check_temperature(temperature)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be a bool, got {hard!r}")

    def value(kind, logits, noise):
        z = _layer_relaxed(kind, logits + noise, tau)
        if hard:
            z = z + _sg(_layer_hard(kind, logits + noise) - z)
        return z

    return Estimator(_init, _relaxed_estimator(model, lay, k, value, hard_forward=hard))
