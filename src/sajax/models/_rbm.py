"""Restricted Boltzmann machines as random fields over the visibles (review Sec. 4.1, Eq. 38).

Two kinds, with visibles v ``[V]``, binary hiddens h ``[H]`` and parameters
(a fixed layout; the AIS helper and :func:`rbm_log_partition` rely on it)

    θ = {"W": [V, H], "b": [V] (visible bias), "c": [H] (hidden bias)}:

* ``"bernoulli"`` (binary–binary, Smolensky 1986; Hinton 2002):
  p(v, h) ∝ exp(vᵀWh + bᵀv + cᵀh), v ∈ {0, 1}^V;
* ``"gaussian"`` (Gaussian–binary with unit-variance visibles):
  p(v, h) ∝ exp(-|v - b|²/2 + vᵀWh + cᵀh), v ∈ R^V.

Summing the hiddens out analytically gives the potential (minus the free
energy) of Eq. 38, so an RBM is a :class:`sajax.core.EnergyModel` over v:

    u(v) = log Σ_h exp(...) = bᵀv + Σ_j softplus(c_j + (vᵀW)_j)          (binary)
    u(v) = -|v - b|²/2 + Σ_j softplus(c_j + (vᵀW)_j)                      (Gaussian)

The conditionals are factorial: p(h_j = 1|v) = σ(c_j + (vᵀW)_j), and
p(v_i = 1|h) = σ(b_i + (Wh)_i) (binary) or p(v|h) = N(b + Wh, I) (Gaussian).
:func:`rbm` packs the model, its conditionals (what a Gibbs sampler, CD and
PCD need) and ``init`` into an :class:`RBMSpec`; the parameter group is
``"potential"`` (:data:`sajax.core.POTENTIAL`).  :func:`rbm_log_partition`
gives log Z exactly for small models by enumerating the smaller layer.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from sajax.core import POTENTIAL, EnergyModel, check_data, check_positive_int
from sajax.kernels import gibbs, repeat_moves
from sajax.models._common import _bernoulli_sample

__all__ = ["RBMSpec", "rbm", "rbm_conditionals", "rbm_log_partition", "rbm_log_hidden_marginal"]

_KINDS = ("bernoulli", "gaussian")
_LOG_2PI = math.log(2.0 * math.pi)
_CHUNK_BITS = 12  # enumerate 2^12 configurations per lax.map step (memory bound)


class RBMSpec(NamedTuple):
    """A restricted Boltzmann machine, as protocols and conditionals.

    Attributes:
      model: :class:`sajax.core.EnergyModel` over v; ``potential(θ, v [..., B, V])
        -> [..., B]`` is u(v) above; ``sample(θ, key, n) -> v [n, V]`` runs a
        Gibbs chain (``sample_sweeps`` sweeps from noise); ``observation`` is the kind.
      init: ``key -> {"potential": θ}``.
      num_visible, num_hidden: V and H.
      sample_hidden: ``(θ, key, v [..., V]) -> h [..., H]`` float {0, 1}.
      sample_visible: ``(θ, key, h [..., H]) -> v [..., V]``.
      kind: ``"bernoulli"`` or ``"gaussian"``.
      hidden_probs: ``(θ, v) -> [..., H]`` p(h_j = 1|v).
      visible_mean: ``(θ, h) -> [..., V]`` E[v|h] (= p(v_i = 1|h) for binary v).
    """

    model: EnergyModel
    init: Callable
    num_visible: int
    num_hidden: int
    sample_hidden: Callable
    sample_visible: Callable
    kind: str
    hidden_probs: Optional[Callable] = None
    visible_mean: Optional[Callable] = None


def _hidden_logits(theta, v):
    return theta["c"] + v @ theta["W"]


def _visible_mean_fn(kind):
    def visible_mean(theta, h):
        a = theta["b"] + h @ theta["W"].T
        return jax.nn.sigmoid(a) if kind == "bernoulli" else a

    return visible_mean


def hidden_probs(theta, v):
    """p(h_j = 1 | v) = σ(c_j + (vᵀW)_j), ``[..., V] -> [..., H]``."""
    return jax.nn.sigmoid(_hidden_logits(theta, v))


def _sample_hidden(theta, key, v):
    """h ~ p(h|v), float {0, 1} ``[..., H]``."""
    return _bernoulli_sample(key, _hidden_logits(theta, v))


def _sample_visible_fn(kind):
    def sample_visible(theta, key, h):
        a = theta["b"] + h @ theta["W"].T
        if kind == "bernoulli":
            return _bernoulli_sample(key, a)
        return jax.lax.stop_gradient(a + jax.random.normal(key, a.shape, a.dtype))

    return sample_visible


def rbm_conditionals(params) -> tuple[Callable, Callable]:
    """The two exact conditionals of a binary RBM p(v, h) ∝ exp(vᵀWh + bᵀv + cᵀh), θ bound.

    The pair :func:`sajax.kernels.gibbs.build_kernel` takes, for a Gibbs chain
    on fixed parameters (SML / PCD, review Sec. 4.2.1, Algorithm 7).

    Args:
      params: ``{"W": [V, H], "b": [V], "c": [H]}``.

    Returns:
      ``(sample_hidden, sample_visible)``: ``(key, v [C, V]) -> h [C, H]`` with
      h_j ~ Bernoulli(σ(vW + c)_j), and ``(key, h [C, H]) -> v [C, V]`` with
      v_i ~ Bernoulli(σ(hWᵀ + b)_i); draws are float 0/1 in the params' dtype.

    Example (C = 5 chains of a 3-visible, 2-hidden RBM)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import gibbs
        >>> from sajax.models import rbm_conditionals
        >>> params = {"W": jnp.ones((3, 2)), "b": jnp.zeros(3), "c": -jnp.ones(2)}
        >>> sample_h, sample_v = rbm_conditionals(params)
        >>> state = gibbs.init(jax.random.PRNGKey(0), jnp.zeros((5, 3)), sample_h)
        >>> state, _ = gibbs.build_kernel(sample_h, sample_v)(jax.random.PRNGKey(1), state)
        >>> state.visible.shape, state.hidden.shape
        ((5, 3), (5, 2))
    """
    missing = {"W", "b", "c"} - set(params)
    if missing:
        raise ValueError(f"params needs keys 'W' [V, H], 'b' [V], 'c' [H]; missing {sorted(missing)}")
    w, b, c = params["W"], params["b"], params["c"]
    if jnp.ndim(w) != 2 or jnp.shape(b) != jnp.shape(w)[:1] or jnp.shape(c) != jnp.shape(w)[1:]:
        raise ValueError(f"RBM params must be W [V, H], b [V], c [H]; got shapes "
                         f"{jnp.shape(w)}, {jnp.shape(b)}, {jnp.shape(c)}")
    sample_visible = _sample_visible_fn("bernoulli")
    return (lambda key, v: _sample_hidden(params, key, v)), (lambda key, h: sample_visible(params, key, h))


def _free_potential(theta, v, kind):
    """u(v) of the module docstring, ``[..., V] -> [...]`` (no checks)."""
    free = jnp.sum(jax.nn.softplus(_hidden_logits(theta, v)), axis=-1)
    if kind == "bernoulli":
        return v @ theta["b"] + free
    return -0.5 * jnp.sum(jnp.square(v - theta["b"]), axis=-1) + free


def _potential_fn(kind, num_visible):
    """u(v) with concrete v validated (event shape V, binary for ``"bernoulli"``)."""

    def potential(theta, v):
        check_data(v, name="v", event_shape=(num_visible,), binary=kind == "bernoulli")
        return _free_potential(theta, v, kind)

    return potential


def _gibbs_sampler(kind, num_visible, sample_visible, sweeps):
    """``(θ, key, n) -> v [n, V]``: ``sweeps`` block-Gibbs sweeps from noise."""

    def sample(theta, key, n):
        k0, k1, k2 = jax.random.split(key, 3)
        if kind == "bernoulli":
            v0 = jax.random.bernoulli(k0, 0.5, (n, num_visible)).astype(theta["W"].dtype)
        else:
            v0 = theta["b"] + jax.random.normal(k0, (n, num_visible), theta["W"].dtype)
        step = gibbs.build_kernel(lambda k, v: _sample_hidden(theta, k, v),
                                  lambda k, h: sample_visible(theta, k, h))
        state = gibbs.init(k1, v0, lambda k, v: _sample_hidden(theta, k, v))
        final, _ = repeat_moves(step, sweeps, keep_states=False)(k2, state)
        return final.visible

    return sample


def rbm(num_visible: int, num_hidden: int, kind: str = "bernoulli", init_scale: float = 0.01,
        sample_sweeps: int = 1000) -> RBMSpec:
    """An RBM of the module docstring as an :class:`RBMSpec`.

    Args:
      num_visible, num_hidden: V and H.
      kind: ``"bernoulli"`` (binary visibles) or ``"gaussian"`` (unit variance).
      init_scale: W ~ N(0, init_scale²) at init; b = c = 0.
      sample_sweeps: Gibbs sweeps of ``model.sample``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> spec = rbm(6, 3)
      >>> theta = spec.init(jax.random.PRNGKey(0))["potential"]
      >>> sorted((k, v.shape) for k, v in theta.items())
      [('W', (6, 3)), ('b', (6,)), ('c', (3,))]
      >>> spec.model.potential(theta, jnp.zeros((2, 6))).shape   # u(v) = 3 log 2 at W = 0
      (2,)
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    V = check_positive_int("num_visible", num_visible)
    H = check_positive_int("num_hidden", num_hidden)
    sweeps = check_positive_int("sample_sweeps", sample_sweeps)
    if not (isinstance(init_scale, (int, float)) and init_scale >= 0):
        raise ValueError(f"init_scale must be a number >= 0, got {init_scale!r}")

    def init(key):
        W = init_scale * jax.random.normal(key, (V, H), jnp.float32)
        return {POTENTIAL: {"W": W, "b": jnp.zeros((V,), jnp.float32), "c": jnp.zeros((H,), jnp.float32)}}

    sample_visible = _sample_visible_fn(kind)
    model = EnergyModel(_potential_fn(kind, V), _gibbs_sampler(kind, V, sample_visible, sweeps), kind)
    return RBMSpec(model, init, V, H, _sample_hidden, sample_visible, kind, hidden_probs,
                   _visible_mean_fn(kind))


def _binary_configurations(n: int, start=0, count: Optional[int] = None) -> jax.Array:
    """The binary vectors of integers ``start, ..., start + count - 1``, ``[count, n]`` float32
    (bit i of the integer is coordinate i; ``count`` defaults to all 2^n)."""
    count = 2 ** n if count is None else count
    ints = start + jnp.arange(count, dtype=jnp.int32)
    return ((ints[:, None] >> jnp.arange(n, dtype=jnp.int32)) & 1).astype(jnp.float32)


def _enumerated_logsumexp(f: Callable, n: int) -> jax.Array:
    """log Σ_{s ∈ {0,1}^n} exp f(s), ``f: [M, n] -> [M]``, in chunks of 2^12 configurations."""
    if n <= _CHUNK_BITS:
        return jax.nn.logsumexp(f(_binary_configurations(n)))
    size = 2 ** _CHUNK_BITS

    def chunk(j):
        return jax.nn.logsumexp(f(_binary_configurations(n, j * size, size)))

    return jax.nn.logsumexp(jax.lax.map(chunk, jnp.arange(2 ** (n - _CHUNK_BITS))))


def rbm_log_hidden_marginal(theta, h, kind: str = "bernoulli"):
    """The unnormalized log-marginal of the hiddens, log p̃(h) = log Σ_v exp(...)
    (binary) or log ∫ exp(...) dv (Gaussian), ``h [M, H] -> [M]``:
    cᵀh + Σ_i softplus(b_i + (Wh)_i) (binary), or
    cᵀh + bᵀWh + |Wh|²/2 + (V/2) log 2π (Gaussian, the Gaussian integral over v).
    log Z = log Σ_h exp of it (:func:`rbm_log_partition`)."""
    a = h @ theta["W"].T
    if kind == "bernoulli":
        return h @ theta["c"] + jnp.sum(jax.nn.softplus(theta["b"] + a), axis=-1)
    return (h @ theta["c"] + a @ theta["b"] + 0.5 * jnp.sum(jnp.square(a), axis=-1)
            + 0.5 * a.shape[-1] * _LOG_2PI)


def rbm_log_partition(theta, kind: str = "bernoulli", max_units: int = 20) -> jax.Array:
    """Exact log Z(θ) of an RBM (Eq. 38), a scalar.

    Binary–binary: enumerates the smaller layer and sums the other analytically
    (log Z = log Σ_h exp(cᵀh + Σ_i softplus(b_i + (Wh)_i)) or log Σ_v exp u(v)).
    Gaussian–binary: enumerates h and integrates v in closed form.  At most
    ``max_units`` (default 20) units are enumerated, else ValueError.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    V, H = theta["W"].shape
    n = H if (kind == "gaussian" or H <= V) else V
    if n > max_units:
        raise ValueError(f"rbm_log_partition enumerates 2^{n} configurations of the "
                         f"{'hidden' if n == H else 'visible'} layer; at most max_units={max_units} "
                         f"units are allowed (V={V}, H={H}, kind={kind!r})")
    if n == H:
        return _enumerated_logsumexp(lambda h: rbm_log_hidden_marginal(theta, h, kind), H)
    return _enumerated_logsumexp(lambda v: _free_potential(theta, v, kind), V)
