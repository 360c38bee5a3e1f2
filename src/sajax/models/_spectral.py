"""Spectral normalization of a critic's weights (Miyato et al. 2018, "Spectral
Normalization for Generative Adversarial Networks"; review Sec. 3.2.4, item 2).

Every weight matrix W of the critic is replaced by W / σ̂(W), where σ̂(W) is
a power-iteration estimate of its largest singular value, so each layer is
(about) 1-Lipschitz and so is the critic (with 1-Lipschitz activations).
Miyato et al.'s Algorithm 1 with Flax's kernel layout ``K [in, out]``
(``Dense(x) = x @ K + b``, so W = Kᵀ), a vector ``u [out]`` carried over
from the previous training call::

    repeat n_steps:   v ← K u / ‖K u‖,   u ← Kᵀ v / ‖Kᵀ v‖
    σ̂ = vᵀ K u,       K̄ = K / σ̂.

``u`` and ``v`` are constants for the gradient (as in the paper: ∂σ̂/∂K =
v uᵀ), so the gradient w.r.t. K flows through K / σ̂ with σ̂ = vᵀ K u.
Since the weights change slowly, one power iteration per training call
(``n_steps=1``) keeps ``u`` near the top right-singular vector.

Where ``u`` lives.  ``u`` (and the last ``sigma``) are variables of the
mutable collection ``"spectral"`` (:data:`COLLECTION`), not parameters.
A module applied with ``mutable=["spectral"]`` updates them (a training
call); applied without, it still normalizes with a fresh power iteration
from the stored ``u`` but stores nothing (evaluation).  The adapters of
:mod:`sajax.models._gan` thread this collection as the critic's state
(``Critic.apply(ψ, state, x) -> (v, state)``, ``Critic.init_state(key)``),
and the adversarial estimators thread it as their own state.

Convolutions: the kernel ``[kh, kw, in, out]`` is normalized as the matrix
``[kh·kw·in, out]`` (Miyato et al.'s choice); this bounds that matrix's
norm, not exactly the convolution operator's.

Example::

    >>> import jax, jax.numpy as jnp
    >>> w = jnp.diag(jnp.array([3.0, 1.0]))
    >>> sigma, u = spectral_norm_estimate(w, jnp.array([1.0, 1.0]), n_steps=20)
    >>> round(float(sigma), 4)
    3.0
    >>> layer = SpectralDense(4)
    >>> variables = layer.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
    >>> sorted(variables), sorted(variables["spectral"])
    (['params', 'spectral'], ['sigma', 'u'])
    >>> y, new = layer.apply(variables, jnp.ones((2, 3)), mutable=["spectral"])
    >>> y.shape, new["spectral"]["u"].shape
    ((2, 4), (4,))
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax.core import check_positive_int

__all__ = ["COLLECTION", "SpectralConv", "SpectralDense", "spectral_norm_estimate", "spectral_normalize"]

COLLECTION = "spectral"
_EPS = 1e-12


def _l2_normalize(a, eps: float = _EPS):
    return a * jax.lax.rsqrt(jnp.sum(jnp.square(a)) + eps)


def spectral_norm_estimate(w, u, n_steps: int = 1, eps: float = _EPS):
    """σ̂(W) of Miyato et al. (2018), Algorithm 1, after ``n_steps`` power iterations.

    Args:
      w: a matrix ``[m, n]`` (Flax's ``[in, out]`` layout; higher-rank kernels
        are reshaped to ``[-1, out]`` first by the caller).
      u: the previous right vector ``[n]`` (need not be normalized).
      n_steps: power iterations, >= 1 (static).
    Returns: ``(sigma, u_new)``: σ̂ = vᵀ W u (a scalar, differentiable in
      ``w`` with u, v held constant) and the updated unit vector ``u [n]``.
    """
    n_steps = check_positive_int("n_steps", n_steps)
    if w.ndim != 2 or u.shape != (w.shape[-1],):
        raise ValueError(f"spectral_norm_estimate needs w [m, n] and u [n]; got w {w.shape}, u {u.shape}")
    w_const = jax.lax.stop_gradient(w)
    u = jax.lax.stop_gradient(u)
    for _ in range(n_steps):
        v = _l2_normalize(w_const @ u, eps)
        u = _l2_normalize(w_const.T @ v, eps)
    sigma = v @ (w @ u)
    return sigma, u


def spectral_normalize(kernel, u, n_steps: int = 1, eps: float = _EPS):
    """``(kernel / σ̂, u_new, σ̂)``: a kernel of any rank >= 2 normalized as the
    matrix ``[-1, out]`` (:func:`spectral_norm_estimate`); shape kept."""
    sigma, u_new = spectral_norm_estimate(kernel.reshape(-1, kernel.shape[-1]), u, n_steps, eps)
    return kernel / sigma, u_new, sigma


def _normalized_kernel(mdl: nn.Module, kernel, n_steps: int):
    """``kernel / σ̂`` inside a Flax module, ``u``/``sigma`` in :data:`COLLECTION`.

    The initial ``u`` is a random unit vector (rng ``"params"``); the stored
    ``u``/``sigma`` are overwritten only when the collection is mutable and
    the module is not initializing (so ``init`` gives the initial state).
    """
    out = kernel.shape[-1]
    u_var = mdl.variable(COLLECTION, "u",
                         lambda: _l2_normalize(jax.random.normal(mdl.make_rng("params"), (out,), kernel.dtype)))
    sigma_var = mdl.variable(COLLECTION, "sigma", lambda: jnp.ones((), kernel.dtype))
    normalized, u_new, sigma = spectral_normalize(kernel, u_var.value, n_steps)
    if mdl.is_mutable_collection(COLLECTION) and not mdl.is_initializing():
        u_var.value = u_new
        sigma_var.value = jax.lax.stop_gradient(sigma)
    return normalized


class SpectralDense(nn.Module):
    """``Dense`` with a spectrally normalized kernel: ``x @ (K / σ̂(K)) + b``.

    Same parameters as ``flax.linen.Dense`` (``kernel [in, out]``, ``bias
    [out]``) plus ``u [out]`` and ``sigma []`` in the ``"spectral"``
    collection.  Shapes: ``[..., in] -> [..., features]``.
    """

    features: int
    use_bias: bool = True
    n_steps: int = 1
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        y = x @ _normalized_kernel(self, kernel, self.n_steps)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y


class SpectralConv(nn.Module):
    """2-D convolution (NHWC) with a spectrally normalized kernel ``[kh, kw, in, out]``.

    Same parameters as ``flax.linen.Conv`` plus ``u [out]``, ``sigma []`` in
    ``"spectral"``.  Shapes: ``[B, H, W, in] -> [B, H', W', features]``.
    """

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    padding: str = "SAME"
    use_bias: bool = True
    n_steps: int = 1
    kernel_init: Callable = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        shape = tuple(self.kernel_size) + (x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        y = jax.lax.conv_general_dilated(
            x, _normalized_kernel(self, kernel, self.n_steps), tuple(self.strides), self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y
