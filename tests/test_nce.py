"""NCE and dynamic NCE (review Sec. 4.2.4, Algorithm 9, Eq. 45-49) against exact answers.

* gradients: on an enumerable binary model (an RBM's free-energy potential over {0,1}^4)
  with a uniform (NCE) or product-Bernoulli (DNCE) noise, the expectations of the
  objectives are exact sums; the estimators' mean gradient over many keys must match
  the exact gradient (z-test with stated power), a broken variant must fail;
* a 5-D Gaussian: NCE recovers mean, covariance and log Z (c), and moves closer to the
  maximum-likelihood estimate (its ν → ∞ limit) as ν grows from 1 to 10;
* a small RBM: the learned c approaches the exact log Z of the learned parameters.
"""
import itertools
import math
from functools import partial

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from stats import assert_detects, assert_power, assert_unbiased

from sajax._densities import bernoulli_log_prob
from sajax.core import POTENTIAL, SAMPLER, Batch, EnergyModel
from sajax.estimators._nce import (
    NoiseModel,
    dnce,
    dnce_objective,
    fit_gaussian_noise,
    gaussian_noise_model,
    gaussian_noise_params,
    nce,
    nce_objective,
    split_log_z,
    with_log_z,
)
from sajax.models._rbm import rbm, rbm_log_partition

RBM_MODEL = rbm(4, 2).model          # u(v) = bᵀv + Σ_j softplus(c_j + vᵀW_j), V = 4
N_KEYS = 1000


def _rbm_theta(seed, v, h, scale=1.0):
    """Random RBM parameters (NumPy's generator: no compiles)."""
    rng = np.random.default_rng(seed)
    return {"W": jnp.asarray(scale * rng.normal(size=(v, h)), jnp.float32),
            "b": jnp.asarray(0.5 * rng.normal(size=v), jnp.float32),
            "c": jnp.asarray(0.5 * rng.normal(size=h), jnp.float32)}


def _all_states(d):
    return jnp.asarray(list(itertools.product([0.0, 1.0], repeat=d)), jnp.float32)


def _draws(est, params, x, n=N_KEYS):
    """Grads of ``n`` independent estimates (one compile), as a pytree with a leading axis n."""
    one = lambda k: est.estimate(params, (), k, x).grads  # noqa: E731
    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(7), n))


# --------------------------------------------------------------------------- gradients


@pytest.fixture(scope="module")
def small_case():
    theta = _rbm_theta(1, 4, 2)
    params = {POTENTIAL: with_log_z(theta, 1.5)}
    x = jnp.asarray([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0], [1, 0, 0, 0],
                     [1, 1, 0, 1]], jnp.float32)
    return params, x, _all_states(4)


@partial(jax.jit, static_argnums=3)
def _exact_nce_grad(params, x, states, nu):
    """-∇J with E_{p_n} an exact sum over the 16 states (uniform p_n = 1/16)."""
    log_pn = -4 * math.log(2.0)

    def objective(g):
        theta, c = split_log_z(g, "exact")
        g_x = RBM_MODEL.potential(theta, x) - c - log_pn - math.log(nu)
        g_s = RBM_MODEL.potential(theta, states) - c - log_pn - math.log(nu)
        return jnp.mean(jax.nn.log_sigmoid(g_x)) + nu * jnp.mean(jax.nn.log_sigmoid(-g_s))

    return {POTENTIAL: jax.tree_util.tree_map(jnp.negative, jax.grad(objective)(params[POTENTIAL]))}


def test_nce_gradient_matches_exact_gradient(small_case):
    """Mean of 1,000 NCE gradient estimates (ν = 2: 12 noise draws per batch of 6) vs the
    exact -∇J (Eq. 48 with the noise expectation summed); power: the detectable bias is
    <= 10% of ||∇J||.  Dropping log ν from the logit (a wrong Eq. 46) must be caught."""
    params, x, states = small_case
    uniform = distrax.Independent(distrax.Bernoulli(probs=jnp.full(4, 0.5), dtype=jnp.float32), 1)
    exact = _exact_nce_grad(params, x, states, 2.0)
    t = assert_unbiased(_draws(nce(RBM_MODEL, uniform, nu=2.0), params, x), exact, "nce grad",
                        atol=1e-5)
    assert_power(t, 0.1, "nce grad")
    broken = nce(RBM_MODEL, uniform, nu=2.0, _logit=lambda lm, ln, nu: lm - ln)
    assert_detects(_draws(broken, params, x), exact, "nce grad without log nu", atol=1e-5)


def _bernoulli_noise():
    return NoiseModel(
        sample=lambda phi, key, n: jax.random.bernoulli(
            key, jax.nn.sigmoid(phi["logits"]), (n, phi["logits"].shape[0])).astype(jnp.float32),
        log_prob=lambda phi, x: bernoulli_log_prob(phi["logits"], x))


@partial(jax.jit, static_argnums=(3, 4, 5))
def _exact_dnce_grad(params, x, states, nu, alpha, noise):
    """-∇J_α for θ̂ (noise expectations summed exactly over the 16 states) and
    -mean ∇_φ log q_φ(x) for φ."""
    phi = params[SAMPLER]
    log_q_s = noise.log_prob(phi, states)
    q_s = jnp.exp(log_q_s)

    def objective(g):
        theta, c = split_log_z(g, "exact")
        lp_x = RBM_MODEL.potential(theta, x) - c
        lp_s = RBM_MODEL.potential(theta, states) - c

        def logit(lp, lq):
            return jnp.logaddexp(math.log(alpha) + lp, math.log1p(-alpha) + lq) - lq - math.log(nu)

        return (alpha * jnp.mean(jax.nn.log_sigmoid(logit(lp_x, noise.log_prob(phi, x))))
                + (1 - alpha) * jnp.sum(q_s * jax.nn.log_sigmoid(logit(lp_s, log_q_s)))
                + nu * jnp.sum(q_s * jax.nn.log_sigmoid(-logit(lp_s, log_q_s))))

    g_theta = jax.grad(objective)(params[POTENTIAL])
    g_phi = jax.grad(lambda p: jnp.mean(noise.log_prob(p, x)))(phi)
    return jax.tree_util.tree_map(jnp.negative, {POTENTIAL: g_theta, SAMPLER: g_phi})


def test_dnce_gradient_matches_exact_gradient(small_case):
    """DNCE (α = 0.5, ν = 2) with a product-Bernoulli q_φ: the mean gradient over 1,000 keys
    matches the exact -∇J_α for θ̂ and the exact ML gradient for φ (deterministic given the
    batch); the NCE gradient (α = 1) is not the gradient of J_0.5 and must be caught."""
    params, x, states = small_case
    noise = _bernoulli_noise()
    params = {**params, SAMPLER: {"logits": jnp.asarray([0.3, -0.5, 0.1, 0.8])}}
    exact = _exact_dnce_grad(params, x, states, 2.0, 0.5, noise)
    t = assert_unbiased(_draws(dnce(RBM_MODEL, noise, nu=2.0, alpha=0.5), params, x), exact,
                        "dnce grad", atol=1e-5)
    assert_power(t, 0.1, "dnce grad")
    assert_detects(_draws(dnce(RBM_MODEL, noise, nu=2.0, alpha=1.0), params, x), exact,
                   "dnce grad with alpha = 1 vs J_0.5", atol=1e-5)


def test_dnce_objective_at_alpha_one_is_nce():
    lp, lq = jnp.asarray([0.1, -2.0]), jnp.asarray([-1.0, -0.5])
    got = dnce_objective(lp, lq, lp, lq, lp, lq, 3.0, 1.0)
    want = nce_objective(lp - lq - math.log(3.0), lp - lq - math.log(3.0), 3.0)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


# --------------------------------------------------------------------------- errors


def test_argument_errors(small_case):
    params, x, _ = small_case
    noise = distrax.Independent(distrax.Bernoulli(probs=jnp.full(4, 0.5), dtype=jnp.float32), 1)
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="nu"):
            nce(RBM_MODEL, noise, nu=bad)
    with pytest.raises(TypeError, match="nu"):
        nce(RBM_MODEL, noise, nu="10")
    with pytest.raises(TypeError, match="noise"):
        nce(RBM_MODEL, object())
    with pytest.raises(ValueError, match="alpha"):
        dnce(RBM_MODEL, _bernoulli_noise(), alpha=0.0)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="log_z"):
        nce(RBM_MODEL, noise).estimate({POTENTIAL: _rbm_theta(1, 4, 2)}, (), key, x)
    with pytest.raises(ValueError, match="potential"):
        nce(RBM_MODEL, noise).estimate({"model": params[POTENTIAL]}, (), key, x)
    per_unit = EnergyModel(lambda t, v: v * t["b"])          # [B, V], not [B]
    with pytest.raises(ValueError, match="one scalar per example"):
        nce(per_unit, noise).estimate(params, (), key, x)
    with pytest.raises(ValueError, match="sampler"):
        dnce(RBM_MODEL, _bernoulli_noise()).estimate(params, (), key, x)


# --------------------------------------------------------------------------- learning


def _train(est, params, x, key, steps, lr):
    """``steps`` SA iterations of ``est`` on the full batch ``x`` with Adam (cosine-decayed
    step size), as one ``lax.scan``."""
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.01))

    def step(carry, k):
        p, s = carry
        updates, s = opt.update(est.estimate(p, (), k, x).grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
    return params


D, N_GAUSS, SEEDS = 5, 400, 3


def _tril(t):
    return jnp.tril(t, -1) + jnp.diag(jnp.exp(jnp.diag(t)))


def _quadratic(theta, x):
    """u(x) = -½ (x - m)ᵀ P (x - m), P = L Lᵀ, L from theta["t"] (diagonal log-parameterized)."""
    z = (x - theta["m"]) @ _tril(theta["t"])
    return -0.5 * jnp.sum(z * z, axis=-1)


def _gaussian_truth():
    a = np.random.default_rng(42).normal(size=(D, D)) * 0.5
    cov = a @ a.T + 0.5 * np.eye(D)
    return np.linspace(-1.0, 1.0, D), cov


def _fitted_gaussian(theta):
    """(mean m, covariance P⁻¹, c, log Z of P) of a fitted quadratic potential."""
    prec = _tril(theta["t"]) @ _tril(theta["t"]).T
    log_z = 0.5 * D * math.log(2 * math.pi) - 0.5 * jnp.linalg.slogdet(prec)[1]
    return theta["m"], jnp.linalg.inv(prec), theta["log_z"], log_z


def _fit_gaussian_nce(nu, data):
    """NCE fits of the quadratic potential for each data set ``[S, N, D]`` (vmap): returns
    (mean [S, D], covariance P⁻¹ [S, D, D], c [S], log Z of the fitted P [S])."""
    noise = distrax.MultivariateNormalDiag(jnp.zeros(D), 2.0 * jnp.ones(D))
    est = nce(EnergyModel(_quadratic), noise, nu=nu)
    p0 = {POTENTIAL: with_log_z({"m": jnp.zeros(D), "t": jnp.zeros((D, D))})}

    def one(x, key):
        return _fitted_gaussian(_train(est, p0, x, key, 600, 0.1)[POTENTIAL])

    keys = jax.random.split(jax.random.PRNGKey(11), data.shape[0])
    return jax.jit(jax.vmap(one))(data, keys)


@pytest.fixture(scope="module")
def gaussian_fits():
    mean, cov = _gaussian_truth()
    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.multivariate_normal(mean, cov, size=(SEEDS, N_GAUSS)), jnp.float32)
    return mean, cov, data, {nu: _fit_gaussian_nce(nu, data) for nu in (1.0, 10.0)}


def _errors(fit, mean, cov, log_z):
    """Per data set: max |m - mean|, ||C - cov||_F / ||cov||_F, |c - log_z|."""
    m, c_mat, c, _ = (np.asarray(a) for a in fit)
    return (np.abs(m - mean).max(-1),
            np.linalg.norm(c_mat - cov, axis=(1, 2)) / np.linalg.norm(cov, axis=(-2, -1)),
            np.abs(c - log_z))


@pytest.mark.runtime_bound
def test_nce_recovers_a_gaussian(gaussian_fits):
    """ν = 10, N = 400, noise N(0, 2² I): mean, covariance and c = log Z against the truth.
    Tolerances = the maximum-likelihood estimator's own sampling error at N = 400 (sd of a
    mean coordinate <= √(max Σ_ii / N) ≈ 0.08, of ½ log det Σ̂ ≈ √(D / 2N) ≈ 0.08, relative
    Frobenius error of Σ̂ ≈ 0.1) times ~3; and c within 0.05 of the fitted model's own log Z
    (NCE self-normalizes, Theorem 2)."""
    mean, cov, _, fits = gaussian_fits
    true_log_z = 0.5 * D * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(cov)[1]
    e_m, e_cov, e_c = _errors(fits[10.0], mean, cov, true_log_z)
    print(f"nu=10: max|m - mean| {e_m}, rel cov err {e_cov}, |c - log Z| {e_c}")
    assert np.all(e_m < 0.25) and np.all(e_cov < 0.3) and np.all(e_c < 0.25)
    own = np.abs(np.asarray(fits[10.0][2]) - np.asarray(fits[10.0][3]))
    print(f"|c - log Z(fitted P)| {own}")
    assert np.all(own < 0.05)


def test_nce_approaches_maximum_likelihood_as_nu_grows(gaussian_fits):
    """Same data, 3 data sets: the distance of NCE's fit to the MLE (sample mean, (1/N)
    sample covariance, its log Z) — the ν → ∞ limit (Gutmann & Hyvärinen 2010, Sec. 2.4) —
    summed over mean, covariance and c and averaged over the data sets, shrinks by at least a
    third from ν = 1 to ν = 10."""
    _, _, data, fits = gaussian_fits
    x = np.asarray(data, np.float64)
    m_hat = x.mean(1)
    cov_hat = np.einsum("snd,sne->sde", x - m_hat[:, None], x - m_hat[:, None]) / x.shape[1]
    log_z_hat = 0.5 * D * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(cov_hat)[1]
    dist = {}
    for nu, fit in fits.items():
        parts = _errors(fit, m_hat, cov_hat, log_z_hat)
        dist[nu] = float(np.mean(sum(parts)))
        print(f"nu={nu}: distance to the MLE (mean, cov, c) = {[p.mean() for p in parts]}")
    assert dist[10.0] < 0.67 * dist[1.0], dist


def _exact_rbm_samples(theta, n, seed):
    states = np.asarray(_all_states(theta["W"].shape[0]))
    log_p = np.asarray(rbm(*theta["W"].shape).model.potential(theta, states), np.float64)
    p = np.exp(log_p - log_p.max())
    idx = np.random.default_rng(seed).choice(len(states), size=n, p=p / p.sum())
    return jnp.asarray(states[idx])


@pytest.mark.runtime_bound
def test_nce_log_z_parameter_approaches_the_exact_log_z_of_an_rbm():
    """RBM (V = 8, H = 3) fitted by NCE (ν = 5, product-Bernoulli noise of the data means)
    on 2,000 exact samples of an RBM of the same shape: the learned c is within 0.05 nats
    of the exact log Z (enumeration) of the learned parameters (NCE self-normalizes:
    Theorem 2, p_θ̂ = p_0 at the optimum, so c = log Z(θ))."""
    x = _exact_rbm_samples(_rbm_theta(3, 8, 3), 2000, seed=0)
    noise = distrax.Independent(distrax.Bernoulli(
        probs=jnp.clip(x.mean(0), 0.02, 0.98), dtype=jnp.float32), 1)
    est = nce(rbm(8, 3).model, noise, nu=5.0)
    p0 = {POTENTIAL: with_log_z(_rbm_theta(4, 8, 3, scale=0.1))}
    fitted = jax.jit(lambda k: _train(est, p0, x, k, 600, 0.2))(jax.random.PRNGKey(5))
    theta, c = split_log_z(fitted[POTENTIAL], "test")
    exact = float(jax.jit(rbm_log_partition)(theta))
    start = float(jax.jit(rbm_log_partition)(split_log_z(p0[POTENTIAL], "test")[0]))
    print(f"c = {float(c):.4f}, exact log Z of the fit = {exact:.4f} (initial gap {start:.2f})")
    assert abs(float(c) - exact) < 0.05


def test_fit_gaussian_noise_has_the_sample_moments():
    x = np.random.default_rng(1).normal(size=(50, 3)) @ np.array([[1, 0, 0], [0.5, 1, 0], [0, 0.3, 2]])
    mean, cov = jax.jit(lambda d: (fit_gaussian_noise(d).mean(), fit_gaussian_noise(d).covariance()))(x)
    assert np.allclose(mean, x.mean(0), atol=1e-5)
    assert np.allclose(cov, np.cov(x, rowvar=False, bias=True), atol=1e-4)


@pytest.mark.runtime_bound
def test_dnce_learns_a_gaussian_and_its_noise():
    """DNCE (ν = 2, α = 0.5) from a noise q_φ = N(0, 3² I) far from the data: the noise
    reaches the ML fit (sample mean and covariance, within 0.05) and the potential recovers
    the data's mean, covariance and log Z with the NCE test's tolerances; c is within 0.05
    of the fitted model's own log Z."""
    mean, cov = _gaussian_truth()
    x = jnp.asarray(np.random.default_rng(5).multivariate_normal(mean, cov, size=N_GAUSS),
                    jnp.float32)
    phi0 = {"loc": jnp.zeros(D), "tril": math.log(3.0) * jnp.eye(D)}
    params = {POTENTIAL: with_log_z({"m": jnp.zeros(D), "t": jnp.zeros((D, D))}), SAMPLER: phi0}
    noise = gaussian_noise_model()
    est = dnce(EnergyModel(_quadratic), noise, nu=2.0, alpha=0.5)

    def run(key):      # one compile: training and every summary below
        fitted = _train(est, params, x, key, 600, 0.1)
        q = noise.dist(fitted[SAMPLER])
        return q.mean(), q.covariance(), _fitted_gaussian(fitted[POTENTIAL])

    q_mean, q_cov, fit = jax.jit(run)(jax.random.PRNGKey(2))
    x64 = np.asarray(x, np.float64)
    assert np.abs(np.asarray(q_mean) - x64.mean(0)).max() < 0.05
    assert np.abs(np.asarray(q_cov) - np.cov(x64, rowvar=False, bias=True)).max() < 0.05
    fit = tuple(np.asarray(a)[None] for a in fit)
    true_log_z = 0.5 * D * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(cov)[1]
    e_m, e_cov, e_c = _errors(fit, mean, cov, true_log_z)
    print(f"dnce: max|m - mean| {e_m}, rel cov err {e_cov}, |c - log Z| {e_c}")
    assert e_m[0] < 0.25 and e_cov[0] < 0.3 and e_c[0] < 0.25
    assert abs(float(fit[2][0] - fit[3][0])) < 0.05


# --------------------------------------------------------------------------- composing by hand (issue 17, item 9)


def test_nce_and_dnce_take_the_rbm_spec_or_its_model(small_case):
    """nce/dnce accept the spec pcd/cd take (rbm(...): its EnergyModel is spec.model) and give
    the same estimate as with spec.model.  The learned log Z (c of Eq. 45) is stored under
    "log_z", apart from the RBM's hidden bias "c"."""
    params, x, _ = small_case
    spec, batch, key = rbm(4, 2), Batch(x, jnp.arange(x.shape[0])), jax.random.PRNGKey(3)
    noise = distrax.Independent(distrax.Bernoulli(probs=jnp.full(4, 0.5), dtype=jnp.float32), 1)
    for a, b in ((nce(spec, noise, nu=2.0), nce(spec.model, noise, nu=2.0)),
                 (dnce(spec, _bernoulli_noise()), dnce(spec.model, _bernoulli_noise()))):
        p = dict(params, **{SAMPLER: {"logits": jnp.zeros(4)}})
        ga, gb = jax.jit(a.estimate)(p, (), key, batch).grads, jax.jit(b.estimate)(p, (), key, batch).grads
        jax.tree_util.tree_map(np.testing.assert_array_equal, ga, gb)
    theta, c = split_log_z(params[POTENTIAL], "test")
    assert sorted(params[POTENTIAL]) == ["W", "b", "c", "log_z"] and float(c) == 1.5
    np.testing.assert_array_equal(theta["c"], _rbm_theta(1, 4, 2)["c"])      # the hidden bias
    with pytest.raises(TypeError, match="EnergyModel"):
        nce(object(), noise)


def test_noise_draws_must_be_of_the_data_kind(small_case):
    """distrax.Bernoulli draws int32 by default: for float data, NCE's noise needs
    dtype=jnp.float32 (one TypeError that says so, not a silent int potential); a noise
    over single coordinates (log_prob [n, D], not [n]) is refused naming Independent."""
    params, x, _ = small_case
    batch, key = Batch(x, jnp.arange(x.shape[0])), jax.random.PRNGKey(0)
    int_noise = distrax.Independent(distrax.Bernoulli(probs=jnp.full(4, 0.5)), 1)
    with pytest.raises(TypeError, match=r"nce: the noise draws int32.*data are float32.*dtype=jnp.float32"):
        nce(RBM_MODEL, int_noise).estimate(params, (), key, batch)
    per_coordinate = distrax.Bernoulli(probs=jnp.full(4, 0.5), dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"nce: noise.log_prob.*\[6\].*distrax.Independent"):
        nce(RBM_MODEL, per_coordinate).estimate(params, (), key, batch)
    int_q = _bernoulli_noise()._replace(sample=lambda phi, k, n: jax.random.bernoulli(k, 0.5, (n, 4)))
    with pytest.raises(TypeError, match=r"dnce: the noise draws bool.*float32"):
        dnce(RBM_MODEL, int_q).estimate(dict(params, **{SAMPLER: {"logits": jnp.zeros(4)}}), (), key, batch)


def test_log_z_and_the_fitted_noise_keep_float64_under_x64():
    """with_log_z's c and gaussian_noise_params follow their inputs' precision (float64 under
    x64, float32 otherwise) rather than a fixed float32."""
    import jax.experimental

    x64 = jax.enable_x64(True) if hasattr(jax, "enable_x64") else jax.experimental.enable_x64()
    data = np.random.default_rng(0).normal(size=(20, 2))
    with x64:
        assert with_log_z({"m": jnp.zeros(2, jnp.float64)})["log_z"].dtype == jnp.float64
        assert gaussian_noise_params(data)["loc"].dtype == jnp.float64
        assert gaussian_noise_params(data.astype(np.float32))["loc"].dtype == jnp.float32
    assert with_log_z({"m": jnp.zeros(2)})["log_z"].dtype == jnp.float32
    assert gaussian_noise_params(data)["loc"].dtype == jnp.float32
