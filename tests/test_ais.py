"""AIS estimates of log Z against exact answers (enumeration, closed forms).

* RBM (V = 20, H = 10, weights N(0, 1)): the exact log Z by enumerating the 2^10 hidden
  states (:func:`sajax.models._rbm.rbm_log_partition`); S&M's AIS from a base-rate model must land within 0.1 nats and within 3 of its
  own delta-method standard errors; a wrong base log Z and a Gibbs kernel that does not
  leave π_β invariant must both fail that check.
* 1-D Gaussians with known normalizers for the generic geometric-path AIS.
"""
import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sajax.evaluate.ais import (
    AISResult,
    ais_log_likelihood,
    anneal,
    annealed_importance_sampling,
    base_rate_biases,
    linear_betas,
    rbm_ais,
    rbm_annealing_path,
    sigmoid_betas,
    sm_betas,
    summarize,
)
from sajax.models._rbm import rbm, rbm_log_partition

V, H = 20, 10


def _rbm(seed, v, h, w_scale=1.0):
    """Random RBM parameters, W ~ N(0, w_scale²), biases N(0, 0.25) (NumPy: no compiles)."""
    rng = np.random.default_rng(seed)
    return {"W": jnp.asarray(w_scale * rng.normal(size=(v, h)), jnp.float32),
            "b": jnp.asarray(0.5 * rng.normal(size=v), jnp.float32),
            "c": jnp.asarray(0.5 * rng.normal(size=h), jnp.float32)}


def _exact_samples(params, n, seed):
    """Exact draws v ~ p(v): h from its enumerated marginal, then v | h."""
    w, b, c = (np.asarray(params[k], np.float64) for k in ("W", "b", "c"))
    hs = ((np.arange(2 ** w.shape[1])[:, None] >> np.arange(w.shape[1])) & 1).astype(np.float64)
    log_p = hs @ c + np.logaddexp(0.0, hs @ w.T + b).sum(-1)
    p = np.exp(log_p - log_p.max())
    rng = np.random.default_rng(seed)
    h = hs[rng.choice(len(hs), size=n, p=p / p.sum())]
    return (rng.random((n, w.shape[0])) < 1 / (1 + np.exp(-(h @ w.T + b)))).astype(np.float32)


def _covers(res: AISResult, exact: float) -> bool:
    return abs(float(res.log_z) - exact) <= min(0.1, 3.0 * float(res.log_z_se))


@pytest.fixture(scope="module")
def rbm_case():
    params = _rbm(0, V, H)
    data = _exact_samples(params, 2000, seed=0)
    return params, data, float(jax.jit(rbm_log_partition)(params))


def test_rbm_ais_matches_exact_log_z(rbm_case):
    """Both bases, 1,000 linear β, 100 runs: within 0.1 nats and within 3 se; the
    base-rate model starts closer to the RBM (larger ESS)."""
    params, data, exact = rbm_case
    res = {base: rbm_ais(jax.random.PRNGKey(3), params, num_temps=1000, num_runs=100,
                         base=base, data=data) for base in ("base_rate", "uniform")}
    for base, r in res.items():
        print(f"{base}: AIS {float(r.log_z):.4f} ± {float(r.log_z_se):.4f} vs exact {exact:.4f}, "
              f"ESS {float(r.ess):.1f}")
        assert _covers(r, exact), base
        assert r.log_weights.shape == (100,)
    # the broken variant: the base's log Z without the H log 2 of the hidden units
    r = res["base_rate"]
    bad = r._replace(log_z=r.log_z - H * math.log(2.0))
    assert not _covers(bad, exact)


def test_rbm_ais_with_a_non_invariant_kernel_fails(rbm_case):
    """A Gibbs sweep at β = 1 whatever β (so T_β does not leave π_β invariant) is caught."""
    params, data, exact = rbm_case
    b_a = base_rate_biases(data)
    log_f, transition, sample_base, log_z0 = rbm_annealing_path(params, b_a)

    def broken(key, v, beta):
        return transition(key, v, jnp.where(beta > 0, 1.0, beta))

    def run(key):      # one compile
        k0, k1 = jax.random.split(key)
        return summarize(anneal(k1, log_f, sample_base(k0, 100), broken, linear_betas(1000)), log_z0)

    res = jax.jit(run)(jax.random.PRNGKey(3))
    print(f"broken kernel: {float(res.log_z):.4f} ± {float(res.log_z_se):.4f} vs exact {exact:.4f}")
    assert not _covers(res, exact)


def test_ais_log_likelihood_is_exact_with_exact_log_z():
    params = _rbm(2, 5, 3)
    x = _exact_samples(params, 7, seed=1)
    log_z = rbm_log_partition(params)
    w, b, c = (np.asarray(params[k], np.float64) for k in ("W", "b", "c"))
    hs = np.array(list(itertools.product([0, 1], repeat=3)), np.float64)
    log_p = [np.logaddexp.reduce(v @ w @ hs.T + b @ v + hs @ c) - float(log_z) for v in x]
    potential = rbm(5, 3).model.potential
    got = ais_log_likelihood(potential, params, x, log_z)
    assert float(got) == pytest.approx(np.mean(log_p), abs=1e-4)
    res = AISResult(log_z, jnp.asarray(0.0), jnp.zeros(1), jnp.asarray(1.0))
    assert float(ais_log_likelihood(potential, params, x, res)) == pytest.approx(float(got))


def _rw_metropolis(log_f, step_size, num_steps):
    """``num_steps`` random-walk Metropolis moves leaving exp(log_f(x, β)) invariant."""
    def transition(key, x, beta):
        def body(i, x):
            k1, k2 = jax.random.split(jax.random.fold_in(key, i))
            y = x + step_size * jax.random.normal(k1, x.shape)
            accept = jnp.log(jax.random.uniform(k2, x.shape)) < log_f(y, beta) - log_f(x, beta)
            return jnp.where(accept, y, x)
        return jax.lax.fori_loop(0, num_steps, body, x)
    return transition


def test_generic_ais_on_1d_gaussians():
    """Base N(0, 2²) (normalized), target u(x) = exp(-(x - 1)² / (2·0.5²)), Z = 0.5 √(2π);
    three random-walk Metropolis steps per β; both schedules within 3 se and 0.05."""
    def log_base(x):
        return -0.5 * (x / 2.0) ** 2 - math.log(2.0 * math.sqrt(2.0 * math.pi))

    def log_target(x):
        return -0.5 * ((x - 1.0) / 0.5) ** 2

    def log_f(x, beta):
        return (1.0 - beta) * log_base(x) + beta * log_target(x)

    exact = math.log(0.5 * math.sqrt(2.0 * math.pi))
    transition = _rw_metropolis(log_f, 0.7, 3)
    run = jax.jit(lambda key, betas: annealed_importance_sampling(
        key, log_base, log_target, lambda k, n: 2.0 * jax.random.normal(k, (n,)), transition,
        betas, 500))
    for betas in (linear_betas(200), sigmoid_betas(200)):
        res = run(jax.random.PRNGKey(0), betas)
        print(f"AIS {float(res.log_z):.4f} ± {float(res.log_z_se):.4f} vs exact {exact:.4f}")
        assert abs(float(res.log_z) - exact) <= min(0.05, 3 * float(res.log_z_se))
        assert 1.0 <= float(res.ess) <= 500.0


def test_schedules_and_argument_errors():
    assert sm_betas().shape == (14501,)
    assert np.all(np.diff(np.asarray(sm_betas())) > 0)
    s = sigmoid_betas(50)
    assert float(s[0]) == 0.0 and float(s[-1]) == pytest.approx(1.0)
    params = _rbm(0, 4, 2)
    with pytest.raises(ValueError, match="betas"):
        annealed_importance_sampling(jax.random.PRNGKey(0), jnp.sin, jnp.sin, None, None,
                                     jnp.array([0.0, 0.5]), 3)
    with pytest.raises(ValueError, match="data"):
        rbm_ais(jax.random.PRNGKey(0), params, num_temps=10, num_runs=2)
    with pytest.raises(ValueError, match="base"):
        rbm_ais(jax.random.PRNGKey(0), params, num_temps=10, num_runs=2, base="zero")
    with pytest.raises(ValueError, match="W"):
        rbm_ais(jax.random.PRNGKey(0), {"W": jnp.zeros((3, 2)), "b": jnp.zeros(2), "c": jnp.zeros(2)},
                num_temps=10, num_runs=2, base="uniform")
    with pytest.raises(TypeError, match="PRNG key"):
        rbm_ais(0, params, num_temps=10, num_runs=2, base="uniform")


# --------------------------------------------------------------------------- silent slips (issue 17, item 9)


def _x64():
    """Context manager turning jax_enable_x64 on (jax.enable_x64; older jax: jax.experimental)."""
    import jax.experimental

    return jax.enable_x64(True) if hasattr(jax, "enable_x64") else jax.experimental.enable_x64()


def test_sm_schedule_refuses_a_num_temps_it_would_ignore():
    """schedule='sm' has its own 14,501 β: a different num_temps is an error, not ignored."""
    params = _rbm(0, 4, 2)
    with pytest.raises(ValueError, match=r"schedule='sm'.*num_temps=100"):
        rbm_ais(jax.random.PRNGKey(0), params, num_temps=100, num_runs=2, base="uniform", schedule="sm")


def test_short_schedule_warns_that_the_weights_are_degenerate():
    """A sharp RBM (V = 16, H = 4, W ~ N(0, 4²); exact log Z by enumeration) with 5 β:
    the final importance weights have ESS = (Σw)²/Σw² < 10 % of the 100 runs, so the
    delta-method se is unreliable and rbm_ais warns, naming the ESS; the ESS it returns
    is that of its log-weights.  3,000 β on the same RBM: ESS near R, no warning, and
    within 3 se of the exact log Z."""
    params = _rbm(5, 16, 4, w_scale=4.0)
    exact = float(rbm_log_partition(params))
    with pytest.warns(UserWarning, match=r"effective sample size \d+\.\d of 100 runs"):
        short = rbm_ais(jax.random.PRNGKey(1), params, num_temps=5, num_runs=100, base="uniform")
    w = np.exp(np.asarray(short.log_weights, np.float64) - np.max(short.log_weights))
    assert float(short.ess) == pytest.approx(w.sum() ** 2 / (w ** 2).sum(), rel=1e-4)
    assert float(short.ess) < 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        long = rbm_ais(jax.random.PRNGKey(1), params, num_temps=3000, num_runs=100, base="uniform")
    print(f"5 β: ESS {float(short.ess):.1f}; 3000 β: ESS {float(long.ess):.1f}, "
          f"{float(long.log_z):.4f} ± {float(long.log_z_se):.4f} vs exact {exact:.4f}")
    assert float(long.ess) > 90.0 and abs(float(long.log_z) - exact) < 3 * float(long.log_z_se)


def test_rbm_ais_is_float64_under_x64():
    """With jax_enable_x64 and float64 parameters, AIS runs in float64 (it failed: a float32
    log-weight carry met float64 increments) and matches the exact log Z to its se."""
    with _x64():
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), _rbm(2, 6, 3))
        exact = rbm_log_partition(params)
        res = rbm_ais(jax.random.PRNGKey(0), params, num_temps=200, num_runs=50, base="uniform")
        assert res.log_z.dtype == jnp.float64 and res.log_weights.dtype == jnp.float64
        assert exact.dtype == jnp.float64
        assert abs(float(res.log_z) - float(exact)) < max(3 * float(res.log_z_se), 1e-3)
