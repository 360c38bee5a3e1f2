"""f-divergences and the critic's output activations of VDM / f-GAN (review
Sec. 3.2.4, Eq. 30-36; Nowozin, Cseke & Tomioka 2016), as one table.

An f-divergence is D_f[p0 || pθ] = ∫ pθ(x) f(p0(x)/pθ(x)) dx (Eq. 30), f convex
with f(1) = 0; VDM bounds it from below by F_f = E_p0[T] - E_pθ[f†(T)] over
critics T = g_f(V_ψ(x)) (Eq. 31-34), where f† is the Fenchel conjugate and the
output activation g_f maps R into dom f†.

The table :data:`DIVERGENCES` and its conventions (u = p0/pθ; each D_f is
exactly ∫ pθ f(u), so the constants below are part of the definition):

* ``"gan"``: f(u) = u log u - (u+1) log(1+u); D_f = 2·JS(p0, pθ) - log 4,
  in [-log 4, 0]: the value of Goodfellow et al.'s game at the optimal
  discriminator (Eq. 28-29).
* ``"js"``: f(u) = u log u - (u+1) log((1+u)/2); D_f = 2·JS(p0, pθ), in
  [0, 2 log 2], where JS = ½ KL(p0 ‖ m) + ½ KL(pθ ‖ m), m = (p0 + pθ)/2.  This
  is Nowozin et al.'s f; their Table 1 writes the divergence with a factor ½
  (JS itself), this f gives twice that.
* ``"kl"``: f(u) = u log u; D_f = KL(p0 ‖ pθ), the forward KL (mode covering).
* ``"reverse_kl"``: f(u) = -log u; D_f = KL(pθ ‖ p0), the reverse KL (mode seeking).
* ``"pearson"``: f(u) = (u - 1)²; D_f = Pearson χ²(p0 ‖ pθ) = ∫ (p0 - pθ)² / pθ.
* ``"squared_hellinger"``: f(u) = (√u - 1)²; D_f = ∫ (√p0 - √pθ)², in [0, 2]:
  TWICE the common convention H²(p0, pθ) = ½ ∫ (√p0 - √pθ)², in [0, 1] (the f
  of Nowozin et al.'s Table 1).

Activations (:class:`Activation`, :func:`check_activation`):

* ``"principled"``: g_f(v) = f'(e^v) (Eq. 36), under which the optimal critic
  is V* = log p0/pθ for EVERY f, with f†(g_f(v)) = e^v f'(e^v) - f(e^v) fused
  in a numerically stable form (``conjugate_principled``);
* ``"nowozin"``: g_f of Nowozin et al.'s Table 2 (V* = 1 + log p0/pθ for
  "kl", 2(p0/pθ - 1) for "pearson", ½ log p0/pθ for "squared_hellinger",
  log p0/pθ for the others);
* ``"identity"``: g_f(v) = v (only where dom f† = R);
* any ``Activation(name, g, (lo, hi))`` whose range lies in dom f†.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

__all__ = ["DIVERGENCES", "Divergence", "Activation", "check_activation", "conjugate_of_activation"]

_LOG2 = math.log(2.0)
_INF = math.inf



class Divergence(NamedTuple):
    """An f-divergence D_f[p0 || pθ] = ∫ pθ f(p0/pθ) dx (Eq. 30) and its pieces.

    Attributes:
      f, f_prime: the f-function (convex, f(1) = 0) and its derivative, on u > 0.
      conjugate: the Fenchel conjugate f†(t) (Eq. 31), on ``domain``.
      domain: dom f† as an open interval (lo, hi).
      principled: g_f(v) = f'(e^v) (Eq. 36), in a numerically stable form.
      conjugate_principled: f†(f'(e^v)) = e^v f'(e^v) - f(e^v) (Eq. 36), stable.
      principled_range: the range of ``principled`` as (lo, hi).
      nowozin: g_f of Table 2 of Nowozin et al. (2016); ``nowozin_range`` its range.
    """

    f: Callable
    f_prime: Callable
    conjugate: Callable
    domain: tuple
    principled: Callable
    conjugate_principled: Callable
    principled_range: tuple
    nowozin: Callable
    nowozin_range: tuple


def _xlogx(u):
    return jnp.where(u > 0, u * jnp.log(jnp.where(u > 0, u, 1.0)), 0.0)


_log_sigmoid = jax.nn.log_sigmoid
_softplus = jax.nn.softplus

# The conventions of every entry are in the module docstring's table.
DIVERGENCES = {
    "gan": Divergence(
        f=lambda u: _xlogx(u) - (u + 1) * jnp.log1p(u),
        f_prime=lambda u: jnp.log(u) - jnp.log1p(u),
        conjugate=lambda t: -jnp.log(-jnp.expm1(t)), domain=(-_INF, 0.0),
        principled=_log_sigmoid, conjugate_principled=_softplus, principled_range=(-_INF, 0.0),
        nowozin=_log_sigmoid, nowozin_range=(-_INF, 0.0)),
    "js": Divergence(
        f=lambda u: _xlogx(u) - (u + 1) * (jnp.log1p(u) - _LOG2),
        f_prime=lambda u: _LOG2 + jnp.log(u) - jnp.log1p(u),
        conjugate=lambda t: -_LOG2 - jnp.log(-jnp.expm1(t - _LOG2)), domain=(-_INF, _LOG2),
        principled=lambda v: _LOG2 + _log_sigmoid(v),
        conjugate_principled=lambda v: _softplus(v) - _LOG2, principled_range=(-_INF, _LOG2),
        nowozin=lambda v: _LOG2 + _log_sigmoid(v), nowozin_range=(-_INF, _LOG2)),
    "kl": Divergence(
        f=_xlogx, f_prime=lambda u: 1.0 + jnp.log(u),
        conjugate=lambda t: jnp.exp(t - 1.0), domain=(-_INF, _INF),
        principled=lambda v: 1.0 + v, conjugate_principled=jnp.exp, principled_range=(-_INF, _INF),
        nowozin=lambda v: v, nowozin_range=(-_INF, _INF)),
    "reverse_kl": Divergence(
        f=lambda u: -jnp.log(u), f_prime=lambda u: -1.0 / u,
        conjugate=lambda t: -1.0 - jnp.log(-t), domain=(-_INF, 0.0),
        principled=lambda v: -jnp.exp(-v), conjugate_principled=lambda v: v - 1.0,
        principled_range=(-_INF, 0.0),
        nowozin=lambda v: -jnp.exp(-v), nowozin_range=(-_INF, 0.0)),
    "pearson": Divergence(
        f=lambda u: jnp.square(u - 1.0), f_prime=lambda u: 2.0 * (u - 1.0),
        conjugate=lambda t: 0.25 * jnp.square(t) + t, domain=(-_INF, _INF),
        principled=lambda v: 2.0 * jnp.expm1(v), conjugate_principled=lambda v: jnp.expm1(2.0 * v),
        principled_range=(-2.0, _INF),
        nowozin=lambda v: v, nowozin_range=(-_INF, _INF)),
    "squared_hellinger": Divergence(
        f=lambda u: jnp.square(jnp.sqrt(u) - 1.0), f_prime=lambda u: 1.0 - jax.lax.rsqrt(u),
        conjugate=lambda t: t / (1.0 - t), domain=(-_INF, 1.0),
        principled=lambda v: -jnp.expm1(-0.5 * v), conjugate_principled=lambda v: jnp.expm1(0.5 * v),
        principled_range=(-_INF, 1.0),
        nowozin=lambda v: -jnp.expm1(-v), nowozin_range=(-_INF, 1.0)),
}


class Activation(NamedTuple):
    """An output activation g_f: R -> dom f† (Eq. 34), with its range (lo, hi).

    ``conjugate_of``: optional fused, numerically stable v -> f†(g_f(v)); None:
    compose ``divergence.conjugate`` with ``g``.  A custom activation is any
    ``Activation(g, (lo, hi))``; :func:`check_activation` checks the range.
    """

    name: str
    g: Callable
    range: tuple
    conjugate_of: Optional[Callable] = None


_ACTIVATIONS = ("principled", "nowozin", "identity")


def _activation(divergence: str, activation) -> Activation:
    """The :class:`Activation` named ``activation`` for ``divergence``."""
    if isinstance(activation, Activation):
        return activation
    div = DIVERGENCES[divergence]
    if activation == "principled":
        return Activation("principled", div.principled, div.principled_range, div.conjugate_principled)
    if activation == "nowozin":
        return Activation("nowozin", div.nowozin, div.nowozin_range)
    if activation == "identity":
        return Activation("identity", lambda v: v, (-_INF, _INF))
    raise ValueError(f"activation must be one of {list(_ACTIVATIONS)} or an Activation(name, g, range); "
                     f"got {activation!r}")


def check_activation(divergence: str, activation="principled") -> Activation:
    """The activation g_f for ``divergence``, or ValueError if its range leaves dom f†.

    T = g_f(V) must lie in dom f† for Eq. 34 to be defined (Sec. 3.2.4,
    "Representation for the variational function").  Both are open intervals;
    the check is range(g_f) ⊆ dom f†.
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; known: {sorted(DIVERGENCES)}")
    act = _activation(divergence, activation)
    lo, hi = DIVERGENCES[divergence].domain
    if act.range[0] < lo or act.range[1] > hi:
        raise ValueError(
            f"activation {act.name!r} has range {act.range}, which leaves dom f† = {(lo, hi)} of the "
            f"divergence {divergence!r}: f†(g_f(v)) would be undefined (choose 'principled' or 'nowozin')")
    return act


def conjugate_of_activation(divergence: str, act: Activation, v):
    """f†(g_f(v)) elementwise (the second term of Eq. 34)."""
    if act.conjugate_of is not None:
        return act.conjugate_of(v)
    return DIVERGENCES[divergence].conjugate(act.g(v))
