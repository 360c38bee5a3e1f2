"""Estimators that sample a discrete q_φ(h|x) layer by layer (review Sec. 3.2.1,
item 2, "Handling of discrete latent variables").

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

They all take the model and a :class:`sajax.core.DiscreteLayers` (layer-wise
access q_φ(h|x) = Π_l q_φ(h_l | h_{l-1}), h_{-1} = x), e.g.
``muprop(spec.model, spec.layers, num_samples=1)``; :func:`discrete_layers` converts what
they are given.  The score-function estimators (``reinforce``, ``nvil``,
``rloo``, ``vimco``) need only the guide's :class:`ConditionalSampler`.

Conventions (DESIGN.md): params ``{MODEL: θ, GUIDE: φ}``; ``grads`` is a
DESCENT direction averaged over the K samples and the batch; metrics are
batch means with their natural sign (``elbo``, also under ``objective``).
Shapes: ``batch.x`` ``[B, D]``; latent layers ``[K, B, d]`` (Bernoulli) or
``[K, B, d, C]`` one-hot (categorical); log-densities ``[K, B]``.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sajax._densities import bernoulli_log_prob
from sajax.core import (
    GUIDE,
    MODEL,
    DiscreteLayers,
    Estimate,
    Estimator,
    LatentVariableModel,
    batch_data,
    check_positive_int,
    check_protocols,
    log_joint,
    no_state,
)
from sajax.estimators._common import _sg, descent, ascent_groups, model_guide, with_objective

__all__ = ["DiscreteLayers", "discrete_layers", "muprop", "disarm", "straight_through",
           "gumbel_softmax"]

_KINDS = ("bernoulli", "categorical")


# --------------------------------------------------------------------------
# What the estimators are given -> DiscreteLayers.


def _as_layers(obj) -> DiscreteLayers:
    if isinstance(obj, DiscreteLayers):
        return obj
    if isinstance(getattr(obj, "layers", None), DiscreteLayers):       # a model spec
        return obj.layers
    if callable(getattr(obj, "layer_logits", None)) and hasattr(obj, "num_layers"):
        return DiscreteLayers(obj.layer_logits, obj.num_layers, getattr(obj, "kind", "bernoulli"),
                              getattr(obj, "pack", None))
    if callable(getattr(obj, "sample_and_log_prob", None)):            # a ConditionalSampler
        raise TypeError(
            "this estimator samples q_φ(h|x) layer by layer and got a plain ConditionalSampler, "
            "which has no layer access: pass spec.layers (a sajax.core.DiscreteLayers) — "
            "e.g. muprop(spec.model, spec.layers, num_samples=1)")
    if type(obj) is tuple and 2 <= len(obj) <= 4:
        return DiscreteLayers(*obj)
    raise TypeError(
        "layers must be a sajax.core.DiscreteLayers(layer_logits=(φ, l, parent) -> logits, "
        f"num_layers=L), or a model spec with .layers; got {type(obj).__name__}")


def discrete_layers(layers) -> DiscreteLayers:
    """The :class:`sajax.core.DiscreteLayers` that ``layers`` describes, checked.

    Accepts a DiscreteLayers; a model spec with a ``layers`` field (e.g.
    ``sajax.models.sbn(...)``'s spec); any object with ``layer_logits`` and
    ``num_layers`` (optional ``kind``, ``pack``); or a plain tuple
    ``(layer_logits, num_layers[, kind[, pack]])``.

    Raises:
      TypeError: none of these, e.g. a plain ConditionalSampler (which has no
        layer access: pass ``spec.layers``).
      ValueError: bad ``num_layers`` or ``kind``.
    """
    lay = _as_layers(layers)
    if not callable(lay.layer_logits):
        raise TypeError("layers.layer_logits must be callable (φ, l, parent) -> logits")
    check_positive_int("layers.num_layers", lay.num_layers)
    if lay.pack is not None and not callable(lay.pack):
        raise TypeError("layers.pack must be callable or None")
    if lay.kind not in _KINDS:
        raise ValueError(f"layers.kind must be one of {_KINDS}, got {lay.kind!r}")
    return lay


# --------------------------------------------------------------------------
# Per-layer distribution pieces.  Bernoulli: logits [..., d]; categorical:
# logits [..., d, C] and one-hot values.


def _event_sum(kind, t):
    return jnp.sum(t, axis=-1) if kind == "bernoulli" else jnp.sum(t, axis=(-2, -1))


def _layer_log_prob(kind, h, logits):
    """log q(h_l | parent) [...]; linear in h, so it is also defined at relaxed h."""
    if kind == "bernoulli":
        return bernoulli_log_prob(logits, h)
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


def _pack(layers, h):
    """A list of layer values in the model's latent structure."""
    return tuple(h) if layers.pack is None else layers.pack(list(h))


def _signal_fn(model, layers, theta, phi, x, x_n):
    """h -> l(x, h) = log p_θ(x, h) - log q_φ(h|x), [n, B], defined at relaxed h too."""
    def signal(h):
        return log_joint(model, theta, x, _pack(layers, h)) - _log_q_layers(layers, phi, x_n, h)
    return signal


def _tile(x, n):
    """x [B, D...] -> [n, B, D...], the parent of layer 0 for n samples."""
    return jnp.broadcast_to(x, (n,) + x.shape)


def _check_temperature(temperature) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a positive float, got {temperature!r}") from None
    if not (t > 0.0 and math.isfinite(t)):
        raise ValueError(f"temperature must be a positive finite float, got {temperature!r}")
    return t


def _elbo_estimate(params, grads_theta, grads_phi, state, elbo):
    return Estimate(descent(params, {MODEL: grads_theta, GUIDE: grads_phi}), state,
                    with_objective({"elbo": elbo}, "elbo"))


# --------------------------------------------------------------------------
# MuProp


def _muprop_layer_term(lay, f_of, f, h, x_n, phi_c, ph, l):
    """Layer l's surrogate: [f - f̃_l] log q(h_l|h_{l-1}) + f_l'(h̄_l)·μ_φ(h_{l-1}), mean over [K, B]."""
    kind = lay.kind
    parent = x_n if l == 0 else h[l - 1]
    h_bar = _sg(_layer_mean(kind, lay.layer_logits(phi_c, l, parent)))

    def f_l(z):
        """f with layer l = z and the layers above at their mean field given z."""
        above, _ = _descend(lay, phi_c, z, [None] * lay.num_layers,
                            lambda _, a, __: _layer_mean(kind, a), start=l + 1)
        return f_of(h[:l] + [z] + above)

    # every (k, b) output depends only on its own row of z, so one
    # vector-Jacobian product with ones gives every per-example f_l'(h̄)
    f_bar, vjp = jax.vjp(f_l, h_bar)
    (slope,) = vjp(jnp.ones_like(f_bar))
    control = f_bar + _event_sum(kind, slope * (h[l] - h_bar))
    logits = lay.layer_logits(ph, l, parent)
    return jnp.mean(_sg(f - control) * _layer_log_prob(kind, h[l], logits)
                    + _event_sum(kind, _sg(slope) * _layer_mean(kind, logits)))


def muprop(model: LatentVariableModel, layers: DiscreteLayers, *, num_samples: int) -> Estimator:
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
      layers: q_φ(h|x) layer by layer, e.g. ``spec.layers`` (anything
        :func:`discrete_layers` accepts).
      num_samples: K >= 1 samples per example.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics ``elbo`` = ``objective``.

    Example:
      >>> import jax, sajax
      >>> spec = sajax.models.sbn(8, (4, 3))
      >>> est = sajax.estimators.muprop(spec.model, spec.layers, num_samples=2)
      >>> params = spec.init(jax.random.PRNGKey(0))
      >>> out = jax.jit(est.estimate)(params, (), jax.random.PRNGKey(1), jax.numpy.ones((3, 8)))
      >>> float(out.metrics["objective"]) < 0.0
      True
    """
    check_protocols(model, None, need_sampler=False)
    lay = discrete_layers(layers)
    k = check_positive_int("num_samples", num_samples)

    def estimate(params, state, key, batch):
        theta, phi = model_guide(params, "muprop")
        x = batch_data(batch)
        x_n = _tile(x, k)
        theta_c, phi_c = _sg(theta), _sg(phi)
        h, _ = _descend(lay, phi_c, x_n, jax.random.split(key, lay.num_layers),
                        _exact_value(lay.kind))
        h = [_sg(v) for v in h]
        f_of = _signal_fn(model, lay, theta_c, phi_c, x, x_n)
        f = f_of(h)                                                    # [K, B]

        def surrogate(th, ph):
            out = jnp.mean(log_joint(model, th, x, _pack(lay, h)))
            for l in range(lay.num_layers):
                out = out + _muprop_layer_term(lay, f_of, f, h, x_n, phi_c, ph, l)
            return out

        g_theta, g_phi = jax.grad(surrogate, argnums=(0, 1))(theta, phi)
        return _elbo_estimate(params, g_theta, g_phi, state, jnp.mean(f))

    return Estimator(no_state, estimate)


# --------------------------------------------------------------------------
# DisARM


def _disarm_pair(lay, f_of, phi_c, parent, prefix, key, l):
    """The antithetic pair at layer l given the layers ``prefix`` below it.

    Returns (h_b, h_b̃, f(h_b), f(h_b̃), g_α) with g_α the DisARM gradient
    w.r.t. layer l's logits [K, B, d_l]."""
    k_noise, k_up = jax.random.split(key)
    up_keys = jax.random.split(k_up, lay.num_layers)     # common random numbers for both branches
    up = _exact_value("bernoulli")
    alpha = lay.layer_logits(phi_c, l, parent)
    eps = jax.random.logistic(k_noise, alpha.shape)
    b = (alpha + eps > 0).astype(alpha.dtype)
    b_tilde = (alpha - eps > 0).astype(alpha.dtype)
    h_b = prefix + [b] + _descend(lay, phi_c, b, up_keys, up, start=l + 1)[0]
    h_bt = prefix + [b_tilde] + _descend(lay, phi_c, b_tilde, up_keys, up, start=l + 1)[0]
    f_b, f_bt = f_of(h_b), f_of(h_bt)
    g_alpha = (0.5 * (f_b - f_bt)[..., None] * (1.0 - 2.0 * b_tilde)
               * (b != b_tilde).astype(alpha.dtype) * jax.nn.sigmoid(jnp.abs(alpha)))
    return h_b, h_bt, f_b, f_bt, _sg(g_alpha)


def disarm(model: LatentVariableModel, layers: DiscreteLayers, *, num_pairs: int) -> Estimator:
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
      layers: q_φ(h|x) layer by layer with Bernoulli layers, e.g. ``spec.layers``
        (anything :func:`discrete_layers` accepts).
      num_pairs: antithetic pairs per example (>= 1); each pair costs two
        draws, so it matches ``2 * num_pairs`` samples of REINFORCE.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``elbo`` = ``objective`` (mean over both members of the layer-0 pair).

    Raises:
      ValueError: categorical layers (DisARM is defined for binary variables).
    """
    check_protocols(model, None, need_sampler=False)
    lay = discrete_layers(layers)
    if lay.kind != "bernoulli":
        raise ValueError(f"disarm needs Bernoulli layers (kind='bernoulli'), got kind={lay.kind!r}")
    k = check_positive_int("num_pairs", num_pairs)

    def estimate(params, state, key, batch):
        theta, phi = model_guide(params, "disarm")
        x = batch_data(batch)
        x_n = _tile(x, k)
        phi_c = _sg(phi)
        f_of = _signal_fn(model, lay, _sg(theta), phi_c, x, x_n)
        below, first, terms = [], None, []   # below: an exact draw of the layers under l
        for l, key_l in enumerate(jax.random.split(key, lay.num_layers)):
            parent = x_n if l == 0 else below[l - 1]
            pair = _disarm_pair(lay, f_of, phi_c, parent, below[:l], key_l, l)
            terms.append((parent, pair[-1]))
            if l == 0:
                first = pair
                below = pair[0]      # exact draw from q; its layers < l condition the pair at l
        h_b, h_bt, f_b, f_bt, _ = first

        def surrogate(th, ph):
            out = 0.5 * jnp.mean(log_joint(model, th, x, _pack(lay, h_b))
                                 + log_joint(model, th, x, _pack(lay, h_bt)))
            for l, (parent, g_alpha) in enumerate(terms):
                out = out + jnp.sum(g_alpha * lay.layer_logits(ph, l, parent)) / (k * x.shape[0])
            return out

        g_theta, g_phi = jax.grad(surrogate, argnums=(0, 1))(theta, phi)
        return _elbo_estimate(params, g_theta, g_phi, state, 0.5 * (jnp.mean(f_b) + jnp.mean(f_bt)))

    return Estimator(no_state, estimate)


# --------------------------------------------------------------------------
# Relaxations: straight-through and Gumbel-softmax.


def _relaxed_estimator(model, lay, k, value_fn, *, hard_forward: bool, who: str):
    """Pathwise gradient of l(x, z) at a differentiable sample z(φ, noise).

    ``value_fn(kind, logits, noise) -> z`` gives a layer's value; noise is the
    logistic/Gumbel noise of an exact draw, so the relaxed chain and the exact
    chain share it.  ``hard_forward``: z equals the exact draw in the forward
    pass, so the objective value is an ELBO sample.
    """
    kind, n_layers = lay.kind, lay.num_layers

    def estimate(params, state, key, batch):
        groups = ascent_groups(params, who)
        x = batch_data(batch)
        x_n = _tile(x, k)
        keys = jax.random.split(key, n_layers)

        def relaxed_signal(p):
            z = _descend(lay, p[GUIDE], x_n, keys,
                         lambda l, a, kk: value_fn(kind, a, _layer_noise(kind, kk, a.shape)))[0]
            return jnp.mean(_signal_fn(model, lay, p[MODEL], p[GUIDE], x, x_n)(z))

        relaxed, ascent = jax.value_and_grad(relaxed_signal)(groups)
        if hard_forward:
            metrics = {"elbo": relaxed}
        else:
            phi_c = _sg(groups[GUIDE])
            h = _descend(lay, phi_c, x_n, keys, _exact_value(kind))[0]
            elbo = jnp.mean(_signal_fn(model, lay, _sg(groups[MODEL]), phi_c, x, x_n)(h))
            metrics = {"elbo": elbo, "relaxed_elbo": relaxed}
        return Estimate(descent(params, ascent), state, with_objective(metrics, "elbo"))

    return Estimator(no_state, estimate)


def straight_through(model: LatentVariableModel, layers: DiscreteLayers, *,
                     num_samples: int) -> Estimator:
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
      layers: q_φ(h|x) layer by layer (Bernoulli or categorical), e.g. ``spec.layers``.
      num_samples: K >= 1.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``elbo`` = ``objective`` (an exact ELBO sample: the forward pass is hard).
    """
    check_protocols(model, None, need_sampler=False)
    lay = discrete_layers(layers)
    k = check_positive_int("num_samples", num_samples)

    def value(kind, logits, noise):
        mu = _layer_mean(kind, logits)
        return mu + _sg(_layer_hard(kind, logits + noise) - mu)

    return _relaxed_estimator(model, lay, k, value, hard_forward=True, who="straight_through")


def gumbel_softmax(model: LatentVariableModel, layers: DiscreteLayers, *, num_samples: int,
                   temperature: float = 0.5, hard: bool = False) -> Estimator:
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
      layers: q_φ(h|x) layer by layer (Bernoulli or categorical), e.g. ``spec.layers``.
      num_samples: K >= 1.
      temperature: τ > 0.
      hard: straight-through variant.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state ``()``; metrics
      ``elbo`` = ``objective`` (an exact ELBO sample from the same noise) and,
      for ``hard=False``, ``relaxed_elbo`` (the relaxed objective's sample).
    """
    check_protocols(model, None, need_sampler=False)
    lay = discrete_layers(layers)
    k = check_positive_int("num_samples", num_samples)
    tau = _check_temperature(temperature)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be a bool, got {hard!r}")

    def value(kind, logits, noise):
        z = _layer_relaxed(kind, logits + noise, tau)
        if hard:
            z = z + _sg(_layer_hard(kind, logits + noise) - z)
        return z

    return _relaxed_estimator(model, lay, k, value, hard_forward=hard, who="gumbel_softmax")
