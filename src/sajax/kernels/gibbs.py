"""Block Gibbs sampling of a two-layer undirected model (an RBM), a sajax kernel (``init``, ``build_kernel``, ``step``).

The classic Monte Carlo step of SML / persistent contrastive divergence
(review Sec. 4.2.1, Algorithm 7; Younes 1989, Tieleman 2008) for a restricted
Boltzmann machine, whose layers are conditionally independent given each other:

    h ~ p(h|v),  then  v ~ p(v|h).

For a binary RBM p(v, h) ∝ exp(vᵀ W h + bᵀ v + cᵀ h),

    p(h_j = 1 | v) = σ(vᵀ W + c)_j,   p(v_i = 1 | h) = σ(W h + b)_i,

which :func:`sajax.models.rbm_conditionals` builds.  The kernel itself is
generic: it takes the pair of exact conditional samplers, so a Gaussian–Bernoulli
RBM (``sajax.models.rbm(..., kind="gaussian")``'s ``sample_hidden`` /
``sample_visible`` with θ bound) or a
DBM's even/odd layers plug in the same.  The joint p(v, h) is invariant under
each half-step, so under the sweep.

Chains are batched: leaves of ``visible`` and ``hidden`` are ``[C, ...]``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sajax._numeric import per_chain_sum

__all__ = ["GibbsState", "GibbsInfo", "init", "build_kernel"]


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

    Example (a 3-visible, 2-hidden binary RBM with W = 1, b = 0, c = -1, C = 5
    chains; :func:`sajax.models.rbm_conditionals` builds the same pair)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.kernels import gibbs
        >>> w = jnp.ones((3, 2))
        >>> def bernoulli(key, logits):
        ...     return jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(logits.dtype)
        >>> sample_h = lambda key, v: bernoulli(key, v @ w - 1.0)
        >>> sample_v = lambda key, h: bernoulli(key, h @ w.T)
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
