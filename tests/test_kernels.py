"""The gradient-based kernels (Langevin/SGLD, MALA, SGHMC) and RBM block Gibbs
(review Sec. 4, Algorithms 7–8) against exact answers.

Continuous kernels run many independent chains on a correlated 2-D Gaussian
N(μ, Σ); after burn-in the chain ends are independent draws, and their means
and centered second moments are z-tested (tests/stats.py) against the exact
stationary law: N(μ, Σ) for MALA, and the closed-form discretization-biased
N(μ, S) for ULA and SGHMC (derivations in the kernels' module docstrings).
Block Gibbs is checked against the enumerated joint of a tiny binary RBM by
total variation.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sajax.kernels import gibbs, langevin, mala, repeat_moves, sghmc
from sajax.models import rbm_conditionals
from stats import assert_detects, assert_power, assert_unbiased

MU = np.array([1.0, -0.5])
SIGMA = np.array([[1.0, 0.6], [0.6, 1.0]])  # eigenvalues 1.6 and 0.4
PREC = np.linalg.inv(SIGMA)
START = MU + np.array([3.0, -3.0])  # every chain starts here, far in the tail


def gaussian_log_target(x):
    """log N(x; μ, Σ) + const per chain: x [C, 2] -> [C]."""
    d = x - jnp.asarray(MU, x.dtype)
    return -0.5 * jnp.einsum("ci,ij,cj->c", d, jnp.asarray(PREC, x.dtype), d)


def moments(x):
    """Per chain: x_1, x_2 and the centered (x-μ)_1², (x-μ)_1(x-μ)_2, (x-μ)_2²: [C, 5]."""
    d = x - jnp.asarray(MU, x.dtype)
    return jnp.stack([x[:, 0], x[:, 1], d[:, 0] ** 2, d[:, 0] * d[:, 1], d[:, 1] ** 2], axis=1)


def exact_moments(cov):
    return np.array([MU[0], MU[1], cov[0, 0], cov[0, 1], cov[1, 1]])


def ula_covariance(step_size):
    """ULA's exact stationary covariance on N(μ, Σ): (Σ⁻¹ - ε/2 Σ⁻²)⁻¹ (langevin docstring)."""
    return np.linalg.inv(PREC - 0.5 * step_size * PREC @ PREC)


def sghmc_covariance(step_size, friction):
    """SGHMC's (Chen et al. Eq. 15) exact stationary covariance: (Σ⁻¹ - η/(2(2-α)) Σ⁻²)⁻¹."""
    return np.linalg.inv(PREC - step_size / (2.0 * (2.0 - friction)) * PREC @ PREC)


def run_to_end(step, state, key, num_moves):
    final, _ = repeat_moves(step, num_moves, keep_states=False)(key, state)
    return final


def start(num_chains):
    return jnp.broadcast_to(jnp.asarray(START, jnp.float32), (num_chains, 2))


# --------------------------------------------------------------------------
# Langevin (ULA): the exact O(ε) bias, at three step sizes

ULA_STEPS = (0.2, 0.1, 0.05)


@pytest.mark.runtime_bound
def test_langevin_matches_exact_ula_law_and_bias_shrinks_with_step():
    """ULA's chain ends match N(μ, S(ε)) at ε = 0.2, 0.1, 0.05 (S in closed form); the bias
    ||Ĉ - Σ|| is visible (the z-test against Σ fails at ε = 0.2, 0.1) and shrinks monotonically
    with ε, tracking ||S(ε) - Σ||.  One compile: the step size is vmapped, the noise shared."""
    n, burn_in = 100_000, 400

    @jax.jit
    def ends(key, step_size):
        step = langevin.build_kernel(gaussian_log_target, step_size)
        return run_to_end(step, langevin.init(start(n), gaussian_log_target), key, burn_in).position

    xs = jax.vmap(ends, in_axes=(None, 0))(jax.random.PRNGKey(0), jnp.asarray(ULA_STEPS))
    measured = []
    for eps, x in zip(ULA_STEPS, xs):
        draws = moments(x)
        t = assert_unbiased(draws, exact_moments(ula_covariance(eps)), f"ULA eps={eps}")
        assert_power(t, 0.03, f"ULA eps={eps}")
        if eps >= 0.1:  # the bias is several times the detectable one: the target itself must fail
            assert_detects(draws, exact_moments(SIGMA), f"ULA eps={eps} vs the target")
        cov = np.cov(np.asarray(x, np.float64).T)
        measured.append(np.linalg.norm(cov - SIGMA))
    closed = [np.linalg.norm(ula_covariance(e) - SIGMA) for e in ULA_STEPS]
    print("ULA covariance bias: measured", np.round(measured, 4), "closed form", np.round(closed, 4))
    assert measured[0] > measured[1] > measured[2]
    np.testing.assert_allclose(measured, closed, rtol=0.35)


# --------------------------------------------------------------------------
# MALA: unbiased on the Gaussian and on a mixture

@pytest.mark.runtime_bound
def test_mala_unbiased_on_correlated_gaussian():
    n, burn_in, eps = 50_000, 250, 0.2
    step = mala.build_kernel(gaussian_log_target, eps)
    run = jax.jit(lambda key: run_to_end(step, mala.init(start(n), gaussian_log_target), key, burn_in))
    final = run(jax.random.PRNGKey(1))
    draws = moments(final.position)
    t = assert_unbiased(draws, exact_moments(SIGMA), "MALA on N(mu, Sigma)")
    assert_power(t, 0.05, "MALA on N(mu, Sigma)")
    # the same step size without the Metropolis correction (ULA) is visibly off
    assert_detects(draws, exact_moments(ula_covariance(eps)), "MALA vs ULA's biased law")


MIX_W = np.array([0.3, 0.7])
MIX_M = np.array([-1.0, 1.2])
MIX_S = np.array([0.6, 0.5])


def mixture_log_target(x):
    """log Σ_k w_k N(x; m_k, s_k²) for x [C, 1] -> [C]."""
    z = (x - MIX_M) / MIX_S  # [C, 2] by broadcasting the one coordinate
    return jax.nn.logsumexp(-0.5 * z ** 2 - np.log(MIX_S) + np.log(MIX_W), axis=1)


def mixture_moments():
    """Exact E x, E x², E x³ of the mixture."""
    m, s2 = MIX_M, MIX_S ** 2
    return np.array([MIX_W @ m, MIX_W @ (m ** 2 + s2), MIX_W @ (m ** 3 + 3 * m * s2)])


@pytest.mark.runtime_bound
def test_mala_unbiased_on_gaussian_mixture_and_ula_is_not():
    """MALA's chain ends match the first three moments of a two-component mixture; ULA with the
    same step (the kernel without its Metropolis–Hastings correction) fails the same test."""
    n, burn_in, eps = 30_000, 250, 0.2
    x0 = jax.random.normal(jax.random.PRNGKey(2), (n, 1)) * 2.0

    def powers(x):
        return jnp.concatenate([x, x ** 2, x ** 3], axis=1)

    @jax.jit
    def both(key):
        k1, k2 = jax.random.split(key)
        m = run_to_end(mala.build_kernel(mixture_log_target, eps),
                       mala.init(x0, mixture_log_target), k1, burn_in)
        u = run_to_end(langevin.build_kernel(mixture_log_target, eps),
                       langevin.init(x0, mixture_log_target), k2, burn_in)
        return powers(m.position), powers(u.position)

    good, broken = both(jax.random.PRNGKey(3))
    t = assert_unbiased(good, mixture_moments(), "MALA on a Gaussian mixture")
    assert_power(t, 0.08, "MALA on a Gaussian mixture")
    assert_detects(broken, mixture_moments(), "ULA (no MH correction) on the mixture")


# --------------------------------------------------------------------------
# SGHMC: the exact discretization bias of Chen et al.'s Eq. (15)

@pytest.mark.runtime_bound
def test_sghmc_matches_exact_discretized_law():
    """SGHMC (η = 0.2, α = 0.2) chain ends match N(μ, S) with S = (Σ⁻¹ - η/(2(2-α)) Σ⁻²)⁻¹,
    a relative bias η/(2(2-α)σ²) of 3.5% and 14% on the two eigen-directions, which the test
    sees: the target Σ itself fails."""
    n, burn_in, eta, alpha = 100_000, 250, 0.2, 0.2
    step = sghmc.build_kernel(gaussian_log_target, eta, friction=alpha)
    run = jax.jit(lambda key: run_to_end(step, sghmc.init(start(n), gaussian_log_target), key, burn_in))
    final = run(jax.random.PRNGKey(4))
    draws = moments(final.position)
    t = assert_unbiased(draws, exact_moments(sghmc_covariance(eta, alpha)), "SGHMC")
    assert_power(t, 0.03, "SGHMC")
    assert_detects(draws, exact_moments(SIGMA), "SGHMC vs the target (discretization bias)")


def test_sghmc_with_full_friction_is_ula():
    """α = 1 forgets the momentum: x' = x + η∇ + sqrt(2η)ξ, ULA's move with the same noise."""
    x = jax.random.normal(jax.random.PRNGKey(5), (7, 2))

    @jax.jit
    def both(key):
        s, _ = sghmc.build_kernel(gaussian_log_target, 0.1, friction=1.0)(
            key, sghmc.init(x, gaussian_log_target, momentum=jnp.ones_like(x)))
        u, _ = langevin.build_kernel(gaussian_log_target, 0.1)(key, langevin.init(x, gaussian_log_target))
        return s, u

    s, u = both(jax.random.PRNGKey(6))
    np.testing.assert_allclose(s.position, u.position, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.grad, u.grad, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# Block Gibbs on a tiny binary RBM against its enumerated joint

V, H = 4, 3


def rbm_params():
    kw, kb, kc = jax.random.split(jax.random.PRNGKey(7), 3)
    return {"W": jax.random.normal(kw, (V, H)), "b": 0.5 * jax.random.normal(kb, (V,)),
            "c": 0.5 * jax.random.normal(kc, (H,))}


def rbm_exact_joint(params):
    """p(v, h) over all 2^(V+H) states, indexed by the binary code of (v, h): [128]."""
    states = np.array(list(itertools.product([0.0, 1.0], repeat=V + H)))
    v, h = states[:, :V], states[:, V:]
    w, b, c = (np.asarray(params[k], np.float64) for k in ("W", "b", "c"))
    logits = np.einsum("ki,ij,kj->k", v, w, h) + v @ b + h @ c
    p = np.exp(logits - logits.max())
    return p / p.sum()


def gibbs_histogram(params_hidden, params_visible, key, num_chains=2000, burn_in=50, num_sweeps=200):
    """Empirical distribution of (v, h) over chains × sweeps after burn-in: [128].

    h|v is drawn with ``params_hidden``'s conditional, v|h with ``params_visible``'s (the same
    params for the real kernel; a broken c for the broken one)."""
    sample_hidden = rbm_conditionals(params_hidden)[0]
    sample_visible = rbm_conditionals(params_visible)[1]
    step = gibbs.build_kernel(sample_hidden, sample_visible)
    k0, k1, k2 = jax.random.split(key, 3)
    state = gibbs.init(k0, jnp.zeros((num_chains, V)), sample_hidden)
    state = run_to_end(step, state, k1, burn_in)
    _, (states, _) = repeat_moves(step, num_sweeps)(k2, state)
    codes = jnp.concatenate([states.visible, states.hidden], axis=-1) @ (2.0 ** jnp.arange(V + H - 1, -1, -1))
    counts = jnp.bincount(codes.astype(jnp.int32).ravel(), length=2 ** (V + H))
    return counts / counts.sum()


def test_block_gibbs_matches_enumerated_rbm_joint():
    """TV(empirical (v, h) of 2000 chains × 200 sweeps, exact joint) < 0.02; flipping the sign of
    c in p(h|v) (a broken kernel) fails the same bound.  One compile: the two kernels are vmapped."""
    params = rbm_params()
    exact = rbm_exact_joint(params)
    params_hidden = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), params, {**params, "c": -params["c"]})
    hists = jax.jit(jax.vmap(gibbs_histogram, in_axes=(0, None, None)))(
        params_hidden, params, jax.random.PRNGKey(8))
    tv, tv_broken = 0.5 * np.abs(np.asarray(hists, np.float64) - exact).sum(axis=1)
    print(f"block Gibbs TV = {tv:.4f}; with the sign of c flipped TV = {tv_broken:.4f}")
    assert tv < 0.02
    assert tv_broken > 0.02


# --------------------------------------------------------------------------
# Bad input fails early and clearly

def test_bad_inputs_raise_clear_errors():
    f = gaussian_log_target
    for build in (lambda s: langevin.build_kernel(f, s), lambda s: mala.build_kernel(f, s),
                  lambda s: sghmc.build_kernel(f, s)):
        for bad in (0.0, -0.1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="step_size"):
                build(bad)
        with pytest.raises(TypeError, match="step_size"):
            build("0.1")
    with pytest.raises(ValueError, match="noise_scale"):
        langevin.build_kernel(f, 0.1, noise_scale=-1.0)
    with pytest.raises(ValueError, match="noise_scale"):
        sghmc.build_kernel(f, 0.1, noise_scale=-1.0)
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="friction"):
            sghmc.build_kernel(f, 0.1, friction=bad)
    for module in (langevin, mala, sghmc):
        with pytest.raises(TypeError, match="log_target"):
            module.build_kernel("not a function", 0.1)
        with pytest.raises(TypeError, match="log_target"):
            module.init(jnp.zeros((3, 2)), None)
        with pytest.raises(ValueError, match=r"shape \(3,\)"):
            module.init(jnp.zeros((3, 2)), lambda x: jnp.sum(x))  # a scalar, not [C]
        with pytest.raises(ValueError, match=r"shape \(3,\)"):
            module.init(jnp.zeros((3, 2)), lambda x: -0.5 * x ** 2)  # [C, D], not [C]
    with pytest.raises(ValueError, match="chain axis"):
        langevin.init({"a": jnp.zeros((3, 2)), "b": jnp.zeros((4,))}, lambda x: x["b"])
    with pytest.raises(ValueError, match="momentum"):
        sghmc.init(jnp.zeros((3, 2)), f, momentum=jnp.zeros((3, 3)))
    with pytest.raises(TypeError, match="sample_visible"):
        gibbs.build_kernel(lambda k, v: v, None)
    with pytest.raises(TypeError, match="sample_hidden"):
        gibbs.init(jax.random.PRNGKey(0), jnp.zeros((2, V)), 3)
    with pytest.raises(ValueError, match="W"):
        rbm_conditionals({"W": jnp.zeros((V, H)), "b": jnp.zeros(V + 1), "c": jnp.zeros(H)})



def test_mala_and_langevin_share_one_state():
    """MALA's state is ``LangevinState``: a Langevin chain can be continued by MALA as is."""
    log_target = lambda x: -0.5 * jnp.sum(x ** 2, axis=-1)  # noqa: E731
    state = langevin.init(jnp.ones((3, 2)), log_target)
    state, _ = langevin.build_kernel(log_target, 0.1)(jax.random.PRNGKey(0), state)
    moved, _ = mala.build_kernel(log_target, 0.1)(jax.random.PRNGKey(1), state)
    assert type(mala.init(state.position, log_target)) is langevin.LangevinState
    assert type(moved) is langevin.LangevinState
    np.testing.assert_allclose(moved.log_density, log_target(moved.position), rtol=1e-6)

def test_shape_check_fires_at_trace_time_inside_jit():
    """A log target that changes shape after init is caught when the step is traced."""
    step = langevin.build_kernel(lambda x: jnp.sum(x), 0.1)
    state = langevin.init(jnp.zeros((3, 2)), lambda x: jnp.zeros(3))
    with pytest.raises(ValueError, match="log_target must return"):
        jax.jit(step)(jax.random.PRNGKey(0), state)


def test_pytree_positions():
    """Positions may be pytrees with leaves [C, ...]; every kernel keeps their structure."""
    pos = {"a": jnp.zeros((5, 2)), "b": jnp.ones((5, 1, 3))}
    log_target = lambda x: -0.5 * (jnp.sum(x["a"] ** 2, 1) + jnp.sum(x["b"] ** 2, (1, 2)))
    kernels = ((langevin, {}), (mala, {}), (sghmc, {"friction": 0.5}))

    @jax.jit
    def moved(key):
        return [module.build_kernel(log_target, 0.1, **kw)(key, module.init(pos, log_target))[0]
                for module, kw in kernels]

    for state in moved(jax.random.PRNGKey(0)):
        assert jax.tree_util.tree_map(jnp.shape, state.position) == jax.tree_util.tree_map(jnp.shape, pos)
        assert state.log_density.shape == (5,)
        np.testing.assert_allclose(state.log_density, log_target(state.position), rtol=1e-6)


def test_repeat_moves_runs_only_the_active_moves_with_the_full_runs_keys():
    """``num_active`` (traced): moves j >= n keep the state and report zero infos; the
    moves run are those of a full run with the same key."""
    step = lambda key, x: (x + jax.random.uniform(key), {"moved": jnp.float32(1.0)})  # noqa: E731
    run = repeat_moves(step, 4)
    key = jax.random.PRNGKey(3)
    _, (full, _) = run(key, jnp.float32(0.0))
    for n in (1, 3, 4):
        final, (states, infos) = jax.jit(lambda k, n: run(k, jnp.float32(0.0), num_active=n))(key, n)
        assert float(final) == float(full[n - 1])
        np.testing.assert_array_equal(states[n:], full[n - 1])
        assert np.asarray(infos["moved"]).tolist() == [1.0] * n + [0.0] * (4 - n)
