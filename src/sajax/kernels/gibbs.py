"""Block Gibbs sampling of a two-layer undirected model (an RBM), in BlackJAX's kernel shape.

The classic Monte Carlo step of SML / persistent contrastive divergence
(review Sec. 4.2.1, Algorithm 7; Younes 1989, Tieleman 2008) for a restricted
Boltzmann machine, whose layers are conditionally independent given each other:

    h ~ p(h|v),  then  v ~ p(v|h).

For a binary RBM p(v, h) ∝ exp(vᵀ W h + bᵀ v + cᵀ h),

    p(h_j = 1 | v) = σ(vᵀ W + c)_j,   p(v_i = 1 | h) = σ(W h + b)_i,

which :func:`rbm_conditionals` builds; any other pair of exact conditional
samplers (Gaussian–Bernoulli RBM, a DBM's even/odd layers) plugs in the same.
The joint p(v, h) is invariant under each half-step, so under the sweep.

Chains are batched: leaves of ``visible`` and ``hidden`` are ``[C, ...]``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sajax.kernels.langevin import per_chain_sum

__all__ = ["GibbsState", "GibbsInfo", "init", "build_kernel", "rbm_conditionals"]


class GibbsState(NamedTuple):
    """State of C independent block-Gibbs chains.

    Attributes:
      visible: v, leaves ``[C, ...]``.
      hidden: h, leaves ``[C, ...]``, a draw from p(h|v) of the current v.
    """

    visible: Any
    hidden: Any


class GibbsInfo(NamedTuple):
    """What one sweep did, per chain.

    Attributes:
      visible_change_rate: ``[C]`` the fraction of visible units whose value
        changed (a mixing gauge: 0 means the chain is stuck).
    """

    visible_change_rate: jax.Array


def _check_sampler(name: str, fn) -> Callable:
    if not callable(fn):
        raise TypeError(f"{name} must be a callable (key, layer) -> other layer, got {type(fn).__name__}")
    return fn


def init(key, visible, sample_hidden: Callable) -> GibbsState:
    """Start C chains at ``visible`` (leaves ``[C, ...]``) with h ~ p(h|v)."""
    _check_sampler("sample_hidden", sample_hidden)
    return GibbsState(visible, sample_hidden(key, visible))


def build_kernel(sample_hidden: Callable, sample_visible: Callable) -> Callable:
    """Build one block-Gibbs sweep ``step(key, state) -> (GibbsState, GibbsInfo)``.

    Args:
      sample_hidden: ``(key, v) -> h ~ p(h|v)``, batched over chains.
      sample_visible: ``(key, h) -> v ~ p(v|h)``, batched over chains.

    Example (a 3-visible, 2-hidden binary RBM, C = 5 chains)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import gibbs
        >>> params = {"W": jnp.ones((3, 2)), "b": jnp.zeros(3), "c": -jnp.ones(2)}
        >>> sample_h, sample_v = gibbs.rbm_conditionals(params)
        >>> state = gibbs.init(jax.random.PRNGKey(0), jnp.zeros((5, 3)), sample_h)
        >>> state, info = jax.jit(gibbs.build_kernel(sample_h, sample_v))(jax.random.PRNGKey(1), state)
        >>> state.visible.shape, state.hidden.shape, info.visible_change_rate.shape
        ((5, 3), (5, 2), (5,))
    """
    _check_sampler("sample_hidden", sample_hidden)
    _check_sampler("sample_visible", sample_visible)

    def step(key, state: GibbsState):
        k_h, k_v = jax.random.split(key)
        hidden = sample_hidden(k_h, state.visible)
        visible = sample_visible(k_v, hidden)
        changed = jax.tree_util.tree_map(lambda a, b: (a != b).astype(jnp.float32), visible, state.visible)
        size = sum(jnp.size(a) // jnp.shape(a)[0] for a in jax.tree_util.tree_leaves(visible))
        return GibbsState(visible, hidden), GibbsInfo(per_chain_sum(changed) / size)

    return step


def rbm_conditionals(params) -> tuple[Callable, Callable]:
    """The two exact conditionals of a binary RBM p(v, h) ∝ exp(vᵀWh + bᵀv + cᵀh).

    Args:
      params: ``{"W": [V, H], "b": [V], "c": [H]}``.

    Returns:
      ``(sample_hidden, sample_visible)``: ``(key, v [C, V]) -> h [C, H]`` with
      h_j ~ Bernoulli(σ(vW + c)_j), and ``(key, h [C, H]) -> v [C, V]`` with
      v_i ~ Bernoulli(σ(hWᵀ + b)_i); draws are float 0/1 in the params' dtype.
    """
    missing = {"W", "b", "c"} - set(params)
    if missing:
        raise ValueError(f"params needs keys 'W' [V, H], 'b' [V], 'c' [H]; missing {sorted(missing)}")
    w, b, c = params["W"], params["b"], params["c"]
    if jnp.ndim(w) != 2 or jnp.shape(b) != jnp.shape(w)[:1] or jnp.shape(c) != jnp.shape(w)[1:]:
        raise ValueError(f"RBM params must be W [V, H], b [V], c [H]; got shapes "
                         f"{jnp.shape(w)}, {jnp.shape(b)}, {jnp.shape(c)}")
    from sajax.models._rbm import _sample_hidden, _sample_visible_fn   # the one copy of the formulas

    sample_visible = _sample_visible_fn("bernoulli")
    return (lambda key, v: _sample_hidden(params, key, v)), (lambda key, h: sample_visible(params, key, h))
