"""Metropolis independence sampler (MIS), a sajax kernel (``init``, ``build_kernel``, ``step``; :mod:`sajax.kernels`).

The Markov kernel of JSA learning (review Sec. 3.2.3, footnote 14; Xu & Ou
2016; Ou & Song 2020).  The target is the posterior p_θ(h|x) of a fixed
observation x, the proposal an inference model q_φ(h|x) that does not depend
on the current state.  With the importance weight

    w(h) = p_θ(x, h) / q_φ(h|x)

a proposed h' replaces the current h with probability

    min{1, w(h') / w(h)},

in which the intractable p_θ(x) cancels because x is the same in both weights.
Every example of a batch runs its own independent chain: states carry a
leading batch axis ``[B, ...]`` and the test is done per example.

``k`` moves of the kernel are a ``lax.scan`` (:func:`sajax.kernels.repeat_moves`),
which returns every visited state, as Algorithm 2 ("SA with multiple moves") needs.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sajax._numeric import select_per_chain

__all__ = ["MISState", "MISInfo", "init", "accept_reject", "build_kernel"]


class MISState(NamedTuple):
    """State of a batch of independent MIS chains.

    Attributes:
      position: the current latents h, a pytree with leaves ``[B, ...]``.
      log_weight: ``[B]`` log w(h) = log p(x, h) - log q(h|x) of the current h.
    """

    position: Any
    log_weight: jax.Array


class MISInfo(NamedTuple):
    """What one MIS transition did, per chain.

    Attributes:
      acceptance_rate: ``[B]`` the acceptance probability min(1, w(h')/w(h)).
      is_accepted: ``[B]`` bool, whether h' was taken.
      proposal_log_weight: ``[B]`` log w(h') of the proposal.
    """

    acceptance_rate: jax.Array
    is_accepted: jax.Array
    proposal_log_weight: jax.Array


def init(position, log_weight) -> MISState:
    """Start chains at ``position`` (leaves ``[B, ...]``) with log-weights ``[B]``."""
    return MISState(position, jnp.asarray(log_weight))


def accept_reject(key, state: MISState, proposal, proposal_log_weight):
    """The Metropolis test of an independence proposal whose weight is already known.

    Accept h' (leaves ``[B, ...]``, log-weight ``[B]``) with probability
    min{1, w(h')/w(h)}, per example.  Useful when many proposals are drawn and
    weighted in one batched call (JSA) and only the cheap tests run in a scan.

    Returns: ``(MISState, MISInfo)``.
    """
    log_ratio = proposal_log_weight - state.log_weight
    # a NaN ratio (e.g. -inf - -inf) is a rejection, never a silent acceptance
    log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
    u = jax.random.uniform(key, log_ratio.shape, dtype=log_ratio.dtype)
    accepted = jnp.log(u) <= log_ratio
    new_state = MISState(select_per_chain(accepted, proposal, state.position),
                         jnp.where(accepted, proposal_log_weight, state.log_weight))
    info = MISInfo(jnp.exp(jnp.minimum(log_ratio, 0.0)), accepted, proposal_log_weight)
    return new_state, info


def build_kernel(log_target: Callable, proposal_sample_and_log_prob: Callable) -> Callable:
    """Build one MIS transition ``step(key, state) -> (MISState, MISInfo)``.

    Args:
      log_target: ``h -> [B]`` unnormalized log target per chain, e.g.
        ``lambda h: log_joint(model, θ, x, h)`` for the posterior p_θ(h|x)
        (an unnormalized target is enough: the normalizer cancels per chain).
      proposal_sample_and_log_prob: ``key -> (h', log q(h'))`` with leaves
        ``[B, ...]`` and ``[B]``: one independent proposal per chain, e.g.
        q_φ(h|x) with its first (sample) axis squeezed.

    The weight of the current state is taken from ``state.log_weight``; when
    the target or the proposal changed since it was computed (new parameters),
    recompute it first, as JSA does.
    """
    if not callable(log_target):
        raise TypeError("log_target must be a callable h -> [B] log density")
    if not callable(proposal_sample_and_log_prob):
        raise TypeError("proposal_sample_and_log_prob must be a callable key -> (h, log_q)")

    def step(key, state: MISState):
        k_prop, k_acc = jax.random.split(key)
        proposal, log_q = proposal_sample_and_log_prob(k_prop)
        proposal = jax.lax.stop_gradient(proposal)
        return accept_reject(k_acc, state, proposal, log_target(proposal) - log_q)

    return step
