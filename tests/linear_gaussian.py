"""Linear-Gaussian latent-variable models with exact answers (DESIGN.md,
"How to know an estimator is right").

Model (factor analysis with isotropic noise)::

    h ~ N(0, I_d),   x | h ~ N(W h + b, σ² I_D),   θ = {W [D, d], b [D], log_sigma []}

so p(x) = N(b, W Wᵀ + σ² I) and p(h|x) = N(Σ Wᵀ(x - b)/σ², Σ) with
Σ = (I + WᵀW/σ²)⁻¹.  Inference model::

    q(h|x) = N(A x + c, diag exp(2 s)),   φ = {A [d, D], c [d], s [d]},

reparameterized as h = A x + c + exp(s) ⊙ ε.  When W has orthogonal columns
Σ is diagonal and some φ makes q exact (:func:`exact_posterior_params`).  The
ELBO is a Gaussian expectation of a quadratic, so it has a closed form
(:func:`elbo`) whose ``jax.grad`` is the exact ELBO gradient.  The IW-LB I_K
has no closed form; :func:`iw_bound_by_quadrature` computes it (and, through
``jax.grad``, its gradient) by tensor-product Gauss-Hermite quadrature over
the K·d noise variables, accurate to float precision for small K·d.

Also the Gaussian toy of Rainforth et al. (2018), Sec. 4: z ~ N(μ, I_D),
x|z ~ N(z, I_D), q(z|x) = N(A x + b, (2/3) I_D).

Everything is pure jnp on float32, latents are a single array leaf
``[K, B, d]``; ``x`` is ``[B, D]``.
"""
from __future__ import annotations

import itertools
import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import GUIDE, MODEL, ConditionalSampler, LatentVariableModel

LATENT_DIM = 2   # d
DATA_DIM = 3     # D
BATCH = 4        # B

_LOG_2PI = math.log(2.0 * math.pi)


def _normal_log_prob(x, mean, log_std):
    """Sum over the last axis of log N(x; mean, exp(log_std)²)."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - 0.5 * _LOG_2PI, axis=-1)


# --------------------------------------------------------------------------
# Linear-Gaussian model and Gaussian guide as sajax protocols.


def _log_prior(theta, h):
    return _normal_log_prob(h, 0.0, 0.0)


def _decode(theta, h):
    return h @ theta["W"].T + theta["b"]


def _log_likelihood(theta, x, h):
    return _normal_log_prob(x, _decode(theta, h), theta["log_sigma"])


def _sample(theta, key, n):
    d = theta["W"].shape[1]
    kh, kx = jax.random.split(key)
    h = jax.random.normal(kh, (n, d))
    x = _decode(theta, h) + jnp.exp(theta["log_sigma"]) * jax.random.normal(kx, (n, theta["b"].shape[0]))
    return x, h


def _prior(theta):
    d = theta["W"].shape[1]
    return distrax.MultivariateNormalDiag(jnp.zeros(d), jnp.ones(d))


def model() -> LatentVariableModel:
    """The linear-Gaussian p_θ(x, h) as a :class:`LatentVariableModel`."""
    return LatentVariableModel(log_prior=_log_prior, log_likelihood=_log_likelihood,
                               sample=_sample, prior=_prior, mean=_decode)


def _guide_mean(phi, x):
    return x @ phi["A"].T + phi["c"]


def _guide_log_prob(phi, x, h):
    return _normal_log_prob(h, _guide_mean(phi, x), phi["s"])


def _guide_sample_and_log_prob(phi, key, x, n):
    mean = _guide_mean(phi, x)
    eps = jax.random.normal(key, (n,) + mean.shape)
    h = mean + jnp.exp(phi["s"]) * eps
    return h, _guide_log_prob(phi, x, h)


def _guide_dist(phi, x):
    mean = _guide_mean(phi, x)
    return distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(jnp.exp(phi["s"]), mean.shape))


def guide() -> ConditionalSampler:
    """The Gaussian q_φ(h|x) = N(A x + c, diag exp(2 s)), reparameterized."""
    return ConditionalSampler(sample_and_log_prob=_guide_sample_and_log_prob,
                              log_prob=_guide_log_prob, dist=_guide_dist)


# --------------------------------------------------------------------------
# Parameters and data.


def make_theta(key, latent_dim: int = LATENT_DIM, data_dim: int = DATA_DIM,
               scales=(1.5, 0.7), sigma: float = 0.8):
    """θ with orthogonal columns of W (so the exact posterior is diagonal)."""
    kq, kb = jax.random.split(key)
    q, _ = jnp.linalg.qr(jax.random.normal(kq, (data_dim, data_dim)))
    w = q[:, :latent_dim] * jnp.asarray(scales[:latent_dim])
    return {"W": w, "b": 0.5 * jax.random.normal(kb, (data_dim,)),
            "log_sigma": jnp.asarray(math.log(sigma), jnp.float32)}


def make_data(theta, key, n: int = BATCH):
    """n examples x ~ p_θ(x), shape [n, D]."""
    x, _ = _sample(theta, key, n)
    return x


def perturb(tree, key, scale: float):
    """tree + scale · N(0, 1) noise, leaf by leaf."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [a + scale * jax.random.normal(k, jnp.shape(a)) for a, k in zip(leaves, keys)])


# --------------------------------------------------------------------------
# Closed forms.


def log_marginal(theta, x):
    """log p_θ(x) = log N(x; b, W Wᵀ + σ² I), shape [B]."""
    w, b = theta["W"], theta["b"]
    cov = w @ w.T + jnp.exp(2.0 * theta["log_sigma"]) * jnp.eye(w.shape[0])
    chol = jnp.linalg.cholesky(cov)
    z = jax.scipy.linalg.solve_triangular(chol, (x - b).T, lower=True)   # [D, B]
    return (-0.5 * jnp.sum(jnp.square(z), axis=0) - jnp.sum(jnp.log(jnp.diag(chol)))
            - 0.5 * w.shape[0] * _LOG_2PI)


def posterior(theta, x):
    """Exact p_θ(h|x) = N(mean [B, d], cov [d, d])."""
    w = theta["W"]
    prec = jnp.eye(w.shape[1]) + w.T @ w * jnp.exp(-2.0 * theta["log_sigma"])
    cov = jnp.linalg.inv(prec)
    mean = (x - theta["b"]) @ (cov @ w.T * jnp.exp(-2.0 * theta["log_sigma"])).T
    return mean, cov


def exact_posterior_params(theta):
    """φ with q_φ(h|x) = p_θ(h|x) for every x (needs WᵀW diagonal).

    Raises ValueError if W's columns are not orthogonal, since a diagonal q
    cannot then match the full-covariance posterior.
    """
    w = np.asarray(theta["W"], np.float64)
    gram = w.T @ w
    off = gram - np.diag(np.diag(gram))
    if np.max(np.abs(off)) > 1e-5 * np.max(np.abs(gram)):
        raise ValueError("theta['W'] must have orthogonal columns for a diagonal q to be exact")
    sigma2 = jnp.exp(2.0 * theta["log_sigma"])
    prec_diag = 1.0 + jnp.sum(jnp.square(theta["W"]), axis=0) / sigma2     # [d]
    a = (theta["W"] / sigma2).T / prec_diag[:, None]                         # [d, D]
    return {"A": a, "c": -a @ theta["b"], "s": -0.5 * jnp.log(prec_diag)}


def elbo(theta, phi, x):
    """Closed-form L(x; θ, φ) = E_q log p(x|h) + E_q log p(h) + H[q] (Eq. 9), [B].

    With q = N(m, diag v): E_q ||x - W h - b||² = ||x - W m - b||² + Σ_j v_j ||W_:j||²
    and E_q ||h||² = ||m||² + Σ_j v_j.
    """
    w, log_sigma = theta["W"], theta["log_sigma"]
    d_obs, d_lat = w.shape
    m = _guide_mean(phi, x)
    v = jnp.exp(2.0 * phi["s"])
    resid = x - _decode(theta, m)
    sq_err = jnp.sum(jnp.square(resid), axis=-1) + jnp.sum(v * jnp.sum(jnp.square(w), axis=0))
    expected_log_lik = -0.5 * sq_err * jnp.exp(-2.0 * log_sigma) - d_obs * log_sigma - 0.5 * d_obs * _LOG_2PI
    expected_log_prior = -0.5 * (jnp.sum(jnp.square(m), axis=-1) + jnp.sum(v)) - 0.5 * d_lat * _LOG_2PI
    entropy = jnp.sum(phi["s"]) + 0.5 * d_lat * (1.0 + _LOG_2PI)
    return expected_log_lik + expected_log_prior + entropy


def mean_elbo(params, x):
    """Batch mean of :func:`elbo` over ``params = {"model": θ, "guide": φ}``."""
    return jnp.mean(elbo(params[MODEL], params[GUIDE], x))


def elbo_grad(params, x):
    """Exact ∇_{θ,φ} of the batch-mean ELBO (ascent direction)."""
    return jax.grad(mean_elbo)(params, x)


def log_marginal_grad(theta, x):
    """Exact ∇_θ of the batch-mean log p_θ(x) (ascent direction)."""
    return jax.grad(lambda t: jnp.mean(log_marginal(t, x)))(theta)


def _gauss_hermite_grid(dim: int, order: int):
    """Tensor-product Gauss-Hermite nodes [M, dim] and weights [M] for N(0, I_dim)."""
    nodes_1d, weights_1d = np.polynomial.hermite_e.hermegauss(order)
    weights_1d = weights_1d / math.sqrt(2.0 * math.pi)
    nodes = np.array(list(itertools.product(nodes_1d, repeat=dim)))
    weights = np.prod(np.array(list(itertools.product(weights_1d, repeat=dim))), axis=1)
    return jnp.asarray(nodes, jnp.float32), jnp.asarray(weights, jnp.float32)


def iw_bound_by_quadrature(params, x, num_samples: int, order: int = 16):
    """I_K(x; θ, φ) of Eq. 19 by Gauss-Hermite quadrature over ε_{1:K}, [B].

    I_K = E_{ε_1..ε_K ~ N(0, I_d)} log (1/K) Σ_k w(h_φ(x, ε_k)); the integrand
    is smooth in ε (a log-sum-exp of quadratics), so a tensor grid with
    ``order`` nodes per axis over the K·d dimensions is accurate to float
    precision for K·d <= 4.  ``jax.grad`` of it is ∇I_K through the nodes
    (reparameterized), an independent route from Monte Carlo.
    """
    theta, phi = params[MODEL], params[GUIDE]
    d = phi["c"].shape[0]
    nodes, weights = _gauss_hermite_grid(num_samples * d, order)
    eps = nodes.reshape(-1, num_samples, d)                       # [M, K, d]
    mean = _guide_mean(phi, x)                                    # [B, d]
    h = mean[None, None] + jnp.exp(phi["s"]) * eps[:, :, None, :]  # [M, K, B, d]
    log_w = (_log_prior(theta, h) + _log_likelihood(theta, x, h)
             - _guide_log_prob(phi, x, h))                        # [M, K, B]
    integrand = jax.nn.logsumexp(log_w, axis=1) - math.log(num_samples)
    return jnp.einsum("m,mb->b", weights, integrand)


def mean_iw_bound_by_quadrature(params, x, num_samples: int, order: int = 16):
    """Batch mean of :func:`iw_bound_by_quadrature`."""
    return jnp.mean(iw_bound_by_quadrature(params, x, num_samples, order))


# --------------------------------------------------------------------------
# Gaussian toy of Rainforth et al. (2018), Sec. 4.

RAINFORTH_GUIDE_VAR = 2.0 / 3.0


def _toy_log_prior(theta, z):
    return _normal_log_prob(z, theta["mu"], 0.0)


def _toy_log_likelihood(theta, x, z):
    return _normal_log_prob(x, z, 0.0)


def rainforth_model() -> LatentVariableModel:
    """z ~ N(μ, I_D), x|z ~ N(z, I_D); θ = {"mu": [D]}."""
    return LatentVariableModel(log_prior=_toy_log_prior, log_likelihood=_toy_log_likelihood)


def _toy_guide_log_prob(phi, x, z):
    return _normal_log_prob(z, x @ phi["A"].T + phi["b"], 0.5 * math.log(RAINFORTH_GUIDE_VAR))


def _toy_guide_sample_and_log_prob(phi, key, x, n):
    mean = x @ phi["A"].T + phi["b"]
    z = mean + math.sqrt(RAINFORTH_GUIDE_VAR) * jax.random.normal(key, (n,) + mean.shape)
    return z, _toy_guide_log_prob(phi, x, z)


def rainforth_guide() -> ConditionalSampler:
    """q(z|x) = N(A x + b, (2/3) I_D); φ = {"A": [D, D], "b": [D]}."""
    return ConditionalSampler(sample_and_log_prob=_toy_guide_sample_and_log_prob,
                              log_prob=_toy_guide_log_prob)


def rainforth_setup(key, dim: int = 20, num_data: int = 1024, noise: float = 0.01):
    """Data and perturbed near-optimal parameters as in Rainforth et al. (2018).

    μ_true ~ N(0, I); ``num_data`` points from the model; the optimum is
    θ* = mean(x) (the MLE), A* = I/2, b* = θ*/2 (the posterior mean is
    (μ + x)/2); every parameter is then perturbed by N(0, noise²).

    Returns: (params = {"model": θ, "guide": φ}, data [num_data, dim]).
    """
    k_mu, k_z, k_x, k_p = jax.random.split(key, 4)
    mu_true = jax.random.normal(k_mu, (dim,))
    z = mu_true + jax.random.normal(k_z, (num_data, dim))
    x = z + jax.random.normal(k_x, (num_data, dim))
    mu_hat = jnp.mean(x, axis=0)
    optimum = {MODEL: {"mu": mu_hat}, GUIDE: {"A": 0.5 * jnp.eye(dim), "b": 0.5 * mu_hat}}
    return perturb(optimum, k_p, noise), x
