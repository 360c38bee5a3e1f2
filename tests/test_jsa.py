"""JSA learning (review Sec. 3.2.3, Algorithm 5, Eq. 26-27) against exact answers.

* With the SA driver, JSA reaches the maximum-likelihood log-likelihood of a
  tiny two-layer SBN, computed by enumeration and maximized directly (Adam on
  the exact objective from several initializations).
* At fixed parameters the per-example chains (cache + MIS) sample the exact
  posterior p(h|x): Bernoulli latents (bit-packed cache), categorical latents
  (index cache), continuous latents (linear-Gaussian, closed-form posterior).
* The cache is compact (n·d/8 bytes for d binary latents) and survives a
  checkpoint round trip; jsa_state writes given latents into it and
  ``estimate`` reads exactly those back; bad input fails with ValueError.
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import linear_gaussian as lg
from exact import exact_log_marginal, exact_posterior
from exact import enumerate_latents
from sajax.core import GUIDE, MODEL, OBJECTIVE, Batch, log_joint
from sajax.estimators import JSAState, cache_nbytes, jsa, jsa_latents, jsa_state
from sajax.models import categorical_vae, paper_sbn, sbn
from sajax.sa import fit, restore_checkpoint, robbins_monro, save_checkpoint
from stats import assert_unbiased

X_DIM, SIZES = 8, (3, 2)
D_LATENT = sum(SIZES)


# --------------------------------------------------------------------------
# Convergence to the maximum-likelihood solution


@pytest.fixture(scope="module")
def ml_problem():
    """5000 examples from a two-layer SBN (3-2 latents, 8 pixels).

    The exact log-likelihood is evaluated over the (at most 256) distinct
    patterns weighted by their counts.  With this much data the maximum is
    reached from every initialization tried to within ~1e-3 nats.  With 20-50
    examples it is not: the model memorizes the few distinct patterns and the
    likelihood keeps creeping up as weights diverge (measured: Adam's ||θ||
    grows 35 -> 78 over 10k exact steps on 40 examples while the value still
    moves), so "the maximum" depends on how long one optimizes.
    """
    spec = sbn(X_DIM, SIZES, kind="linear")
    true = jax.tree_util.tree_map(lambda a: 1.5 * a, jax.jit(spec.init)(jax.random.PRNGKey(100)))
    data, _ = jax.jit(spec.model.sample, static_argnums=2)(true[MODEL], jax.random.PRNGKey(101), 5000)
    patterns, counts = np.unique(np.asarray(data), axis=0, return_counts=True)
    patterns, freq = jnp.asarray(patterns), jnp.asarray(counts / data.shape[0], jnp.float32)

    @jax.jit
    def exact_ll(theta):
        """Mean over the data of log p_θ(x), by enumeration."""
        lp = exact_log_marginal(lambda h: log_joint(spec.model, theta, patterns, h), patterns, SIZES)
        return jnp.sum(freq * lp)

    return spec, data, exact_ll


def _exact_maximum(exact_ll, thetas, steps=2000):
    """Adam on the exact objective from each initialization (vmapped); final values."""
    opt = optax.adam(optax.cosine_decay_schedule(0.05, steps, 0.01))

    def run(theta):
        def body(carry, _):
            t, s = carry
            g = jax.grad(lambda t: -exact_ll(t))(t)
            u, s = opt.update(g, s, t)
            return (optax.apply_updates(t, u), s), None

        (t, _), _ = jax.lax.scan(body, (theta, opt.init(theta)), None, steps)
        return exact_ll(t)

    return jax.jit(jax.vmap(run))(thetas)


@pytest.fixture(scope="module")
def jsa_run(ml_problem):
    spec, data, _ = ml_problem
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    est = jsa(spec.model, spec.guide, num_moves=8)
    # Robbins-Monro: constant for 500 steps, then γ_t ∝ 1/t.  Adam's steps do not
    # shrink with the gradient noise, only with γ_t, so γ must decay to reach
    # the optimum; a large batch keeps the drift per step high meanwhile.
    opt = optax.adam(robbins_monro(0.05, decay_start=500, tau=100.0))
    res = fit(est, opt, params, data, key=jax.random.PRNGKey(5), batch_size=500,
              num_steps=1500, progress=False)
    return params, res


@pytest.mark.runtime_bound
def test_jsa_converges_to_maximum_likelihood(ml_problem, jsa_run):
    spec, data, exact_ll = ml_problem
    params0, res = jsa_run
    inits = jax.jit(jax.vmap(spec.init))(jax.random.split(jax.random.PRNGKey(0), 3))[MODEL]
    # include JSA's own starting point among the direct optimizations
    inits = jax.tree_util.tree_map(lambda a, b: a.at[0].set(b), inits, params0[MODEL])
    direct = np.asarray(_exact_maximum(exact_ll, inits))
    ll_jsa = float(exact_ll(res.state.params[MODEL]))
    ll_init = float(exact_ll(params0[MODEL]))
    print(f"log-likelihood per example: init {ll_init:.4f}, JSA {ll_jsa:.4f}, "
          f"direct maximization {np.round(direct, 4)} (best {direct.max():.4f}); "
          f"final acceptance {res.history[-1]['acceptance_rate']:.3f}")
    assert ll_jsa > direct.max() - 0.01
    assert ll_jsa > ll_init + 0.5  # it moved, from far away


def test_cache_is_packed_and_survives_checkpoint(ml_problem, jsa_run, tmp_path):
    _, data, _ = ml_problem
    _, res = jsa_run
    state = res.state.est_state
    assert isinstance(state, JSAState)
    assert state.cache["bits"].dtype == jnp.uint8
    n = data.shape[0]
    assert cache_nbytes(state) == n * math.ceil(D_LATENT / 8)
    path = save_checkpoint(tmp_path, res.state)
    restored = restore_checkpoint(path, res.state)
    for name, arr in state.cache.items():
        back = restored.est_state.cache[name]
        assert back.dtype == arr.dtype
        np.testing.assert_array_equal(np.asarray(back), np.asarray(arr))


def test_cache_bytes_for_paper_sbn():
    """The JSA paper's linear 200-200 SBN: n·400/8 bytes for n examples."""
    spec = paper_sbn("linear-2")

    @jax.jit
    def cache_state():
        """The estimator's initial state for 16 random binary images."""
        params = spec.init(jax.random.PRNGKey(0))
        x = (jax.random.uniform(jax.random.PRNGKey(1), (16, 784)) < 0.3).astype(jnp.float32)
        return jsa(spec.model, spec.guide).init(jax.random.PRNGKey(2), params, x)

    state = cache_state()
    assert state.cache["bits"].shape == (16, 50)
    assert cache_nbytes(state) == 16 * 400 // 8


# --------------------------------------------------------------------------
# The chains sample the exact posterior at fixed parameters


def _run_fixed(est, params, state, x, num_steps, burn_in, reduce_fn):
    """Iterate ``estimate`` at fixed params on the full batch; reduce the cache after burn-in."""
    batch = Batch(x, jnp.arange(x.shape[0]))

    @jax.jit
    def run(state, key):
        def body(st, k):
            st = est.estimate(params, st, k, batch).state
            return st, reduce_fn(st.cache)

        _, out = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return jax.tree_util.tree_map(lambda a: a[burn_in:], out)

    return run(state, jax.random.PRNGKey(11))


def _repeat(x, reps):
    return jnp.repeat(x, reps, axis=0), jnp.repeat(jnp.arange(x.shape[0]), reps)


def test_bernoulli_chains_sample_exact_posterior():
    spec = sbn(X_DIM, SIZES)
    xs = jnp.asarray([[1, 0, 1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 1, 1], [1, 1, 0, 0, 1, 0, 0, 0]],
                     jnp.float32)

    @jax.jit
    def setup():
        """Parameters (model weights doubled: exact in float32) and the repeated data."""
        p0 = spec.init(jax.random.PRNGKey(3))
        params = {MODEL: jax.tree_util.tree_map(lambda a: 2.0 * a, p0[MODEL]), GUIDE: p0[GUIDE]}
        return params, _repeat(xs, 2000)  # 2000 independent chains per distinct x

    params, (x, which) = setup()
    est = jsa(spec.model, spec.guide, num_moves=1, num_proposals=2)
    state = jax.jit(est.init)(jax.random.PRNGKey(4), params, x)
    # packbits is big-endian: the 5 latent bits h1 (3), h2 (2) are the byte's top bits,
    # the first one most significant, as in exact.enumerate_latents
    codes = _run_fixed(est, params, state, x, 80, 30, lambda c: c["bits"][:, 0] >> (8 - D_LATENT))
    post = np.asarray(jax.jit(lambda th: exact_posterior(lambda h: log_joint(spec.model, th, xs, h), xs, SIZES))(
        params[MODEL]))
    m = 2 ** D_LATENT
    counts = np.zeros((3, m))
    np.add.at(counts, (np.broadcast_to(np.asarray(which), codes.shape), np.asarray(codes)), 1)
    freq = counts / counts.sum(1, keepdims=True)
    tv = 0.5 * np.abs(freq - post.T).sum(1)
    print(f"JSA Bernoulli chains vs exact posterior: TV {np.round(tv, 4)}")
    assert np.all(tv < 0.03), tv


def test_categorical_chains_sample_exact_posterior():
    n_lat, n_cls = 2, 3
    spec = categorical_vae(X_DIM, n_lat, n_cls, hidden=8)
    p0 = jax.jit(spec.init)(jax.random.PRNGKey(5))
    # 3a + 0.2 in NumPy: the float32 bits of op-by-op jnp (one XLA program would fuse it into an FMA)
    params = {MODEL: jax.tree_util.tree_map(lambda a: jnp.asarray(3.0 * np.asarray(a) + 0.2), p0[MODEL]),
              GUIDE: p0[GUIDE]}
    xs = jnp.asarray([[1, 0, 1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 1, 1]], jnp.float32)
    x, which = jax.jit(_repeat, static_argnums=1)(xs, 800)
    est = jsa(spec.model, spec.guide, latent="categorical", num_moves=2)
    state = jax.jit(est.init)(jax.random.PRNGKey(6), params, x)
    assert state.cache["leaf0"].dtype == jnp.uint8 and state.cache["leaf0"].shape == (x.shape[0], n_lat)
    # max_h p(h|x)/q(h|x) is ~20 here: 50 steps (100 MIS transitions) of burn-in
    # bound the distance to the posterior by (1 - 1/20)^100 < 0.01 (Mengersen & Tweedie 1996)
    codes = _run_fixed(est, params, state, x, 90, 50, lambda c: c["leaf0"][:, 0] * n_cls + c["leaf0"][:, 1])
    configs = np.asarray([np.eye(n_cls)[[i, j]] for i, j in itertools.product(range(n_cls), repeat=2)],
                         np.float32)                                       # [9, 2, 3]

    @jax.jit
    def posterior(th):
        """p(h|x) for the 9 configurations, by enumeration: [9, 2]."""
        h = jnp.broadcast_to(configs[:, None], (9, 2, n_lat, n_cls))
        lj = log_joint(spec.model, th, xs, h)                              # [9, 2]
        return jnp.exp(lj - jax.nn.logsumexp(lj, axis=0))

    post = np.asarray(posterior(params[MODEL]))
    counts = np.zeros((2, 9))
    np.add.at(counts, (np.broadcast_to(np.asarray(which), codes.shape), np.asarray(codes, np.int64)), 1)
    tv = 0.5 * np.abs(counts / counts.sum(1, keepdims=True) - post.T).sum(1)
    print(f"JSA categorical chains vs exact posterior: TV {np.round(tv, 4)}")
    assert np.all(tv < 0.03), tv


def test_continuous_chains_sample_exact_posterior():
    """Linear-Gaussian model, a wrong Gaussian q as proposal: the chains' posterior
    mean and second moment match the closed form (tests/stats.py's z-test on
    independent chains' time averages).

    q is shifted and wider than the posterior, so w = p/q is bounded and MIS is
    uniformly ergodic (a q narrower than p has unbounded weights and mixes
    too slowly for a short test)."""
    theta = jax.jit(lg.make_theta)(jax.random.PRNGKey(0))   # bit-identical to op by op (checked)
    phi = lg.perturb(lg.exact_posterior_params(theta), jax.random.PRNGKey(2), 0.1)
    phi = {"A": phi["A"], "c": phi["c"] + 0.3, "s": phi["s"] + 0.3}
    params = {MODEL: theta, GUIDE: phi}
    xs = jax.jit(lg.make_data, static_argnums=2)(theta, jax.random.PRNGKey(1), 2)
    chains = 1000
    x, _ = jax.jit(_repeat, static_argnums=1)(xs, chains)
    est = jsa(lg.model(), lg.guide(), latent="continuous", num_moves=1)
    state = est.init(jax.random.PRNGKey(7), params, x)
    assert state.cache["leaf0"].dtype == jnp.float32
    h = _run_fixed(est, params, state, x, 80, 20, lambda c: c["leaf0"])    # [T, N, d]
    h = np.asarray(h, np.float64).reshape(h.shape[0], 2, chains, -1)       # [T, x, chain, d]
    mean, cov = jax.jit(lg.posterior)(theta, xs)
    for i in range(2):
        per_chain = h[:, i].mean(0)                                       # [chain, d]
        second = np.einsum("tcd,tce->cde", h[:, i], h[:, i]) / h.shape[0]  # [chain, d, d]
        exact_second = np.asarray(cov) + np.outer(mean[i], mean[i])
        assert_unbiased(per_chain, np.asarray(mean[i]), f"x{i} posterior mean", atol=1e-4)
        assert_unbiased(second, exact_second, f"x{i} posterior second moment", atol=1e-4)


# --------------------------------------------------------------------------
# Interface and validation


def _sbn_and_data(n):
    """An SBN, its parameters (key 0) and n random binary rows (key 1), from one program."""
    spec = sbn(X_DIM, SIZES)
    setup = jax.jit(lambda k0, k1: (spec.init(k0), (jax.random.uniform(k1, (n, X_DIM)) < 0.5).astype(jnp.float32)))
    return (spec, *setup(jax.random.PRNGKey(0), jax.random.PRNGKey(1)))


def test_estimate_jits_and_vmaps_over_keys():
    spec, params, x = _sbn_and_data(12)
    est = jsa(spec.model, spec.guide, num_moves=3)
    state = jax.jit(est.init)(jax.random.PRNGKey(2), params, x)
    batch = Batch(x[3:7], jnp.arange(3, 7))
    out = jax.jit(jax.vmap(est.estimate, in_axes=(None, None, 0, None)))(
        params, state, jax.random.split(jax.random.PRNGKey(3), 5), batch)
    assert out.state.cache["bits"].shape == (5, 12, 1)
    assert out.metrics["acceptance_rate"].shape == (5,)
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    # rows outside the batch are untouched
    np.testing.assert_array_equal(out.state.cache["bits"][:, :3], np.broadcast_to(state.cache["bits"][:3], (5, 3, 1)))


def test_packed_and_dense_caches_give_the_same_chain():
    """Bit-packing is lossless: both storage modes produce the same estimates and latents."""
    spec, params, x = _sbn_and_data(12)
    batch = Batch(x[2:10], jnp.arange(2, 10))
    outs = {}
    for mode in ("packed", "dense"):
        est = jsa(spec.model, spec.guide, num_moves=2, num_proposals=3, cache=mode)
        state = est.init(jax.random.PRNGKey(2), params, x)
        out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(3), batch)
        out = jax.jit(est.estimate)(params, out.state, jax.random.PRNGKey(4), batch)
        outs[mode] = out
    bits = np.unpackbits(np.asarray(outs["packed"].state.cache["bits"]), axis=1, count=D_LATENT)
    dense = np.concatenate([np.asarray(outs["dense"].state.cache[f"leaf{i}"]) for i in range(2)], axis=1)
    assert outs["dense"].state.cache["leaf0"].dtype == jnp.float32
    np.testing.assert_array_equal(bits, dense)
    for a, b in zip(jax.tree_util.tree_leaves(outs["packed"].grads), jax.tree_util.tree_leaves(outs["dense"].grads)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert float(outs["packed"].metrics["acceptance_rate"]) == float(outs["dense"].metrics["acceptance_rate"])


def test_bad_input_raises():
    spec, params, x = _sbn_and_data(10)
    est = jsa(spec.model, spec.guide)
    state = est.init(jax.random.PRNGKey(2), params, x)
    with pytest.raises(ValueError, match="index"):
        est.estimate(params, state, jax.random.PRNGKey(3), Batch(x[:4], None))
    with pytest.raises(ValueError, match="index"):
        est.estimate(params, state, jax.random.PRNGKey(3), x[:4])
    with pytest.raises(ValueError, match="binary"):
        est.init(jax.random.PRNGKey(2), params, x * 0.7)
    assert est.init(jax.random.PRNGKey(2), params, x[:9]).written.shape == (9,)   # sized by the data
    with pytest.raises(ValueError, match="training set"):
        est.init(jax.random.PRNGKey(2), params, None)
    with pytest.raises(ValueError, match="num_moves"):
        jsa(spec.model, spec.guide, num_moves=0)
    with pytest.raises(ValueError, match="cache"):
        jsa(spec.model, spec.guide, cache="zip")
    with pytest.raises(ValueError, match="latent"):
        jsa(spec.model, spec.guide, latent="gaussian")
    with pytest.raises(ValueError, match="leaves"):
        jsa(spec.model, spec.guide, latent=("bernoulli",)).init(jax.random.PRNGKey(2), params, x)


# --------------------------------------------------------------------------
# Setting the chain state from given latents


def _never_accepted(guide):
    """The same guide, but every proposal has weight 0 (log q = +inf): MIS keeps the state."""
    def sample_and_log_prob(phi, key, x, n):
        h, log_q = guide.sample_and_log_prob(phi, key, x, n)
        return h, jnp.full_like(log_q, jnp.inf)

    return guide._replace(sample_and_log_prob=sample_and_log_prob)


@pytest.fixture(scope="module")
def posterior_draws():
    """A two-layer SBN, 12 examples and one exact posterior draw h* ~ p(h|x) per example."""
    spec = sbn(X_DIM, SIZES)

    @jax.jit
    def draws():
        """Parameters (model weights doubled), data and the posterior draws, from one program."""
        p0 = spec.init(jax.random.PRNGKey(3))
        params = {MODEL: jax.tree_util.tree_map(lambda a: 2.0 * a, p0[MODEL]), GUIDE: p0[GUIDE]}
        x = (jax.random.uniform(jax.random.PRNGKey(1), (12, X_DIM)) < 0.5).astype(jnp.float32)
        post = exact_posterior(lambda h: log_joint(spec.model, params[MODEL], x, h), x, SIZES)   # [M, N]
        which = jax.random.categorical(jax.random.PRNGKey(2), jnp.log(post).T)                 # [N]
        return params, x, tuple(c[which] for c in enumerate_latents(SIZES))                   # [N, d_l]

    return (spec, *draws())


@pytest.mark.parametrize("cache", ["packed", "dense"])
def test_jsa_state_round_trip_and_estimate_reads_it(posterior_draws, cache):
    """Exact posterior draws written with jsa_state come back bit for bit, and
    ``estimate`` uses exactly them as the chains' current state: with every
    proposal rejected, the chain sample is h* and the gradient is that of
    log p(x, h*) + log q(h*|x)."""
    spec, params, x, latents = posterior_draws
    state = jsa_state(spec.guide, params, x, latents, cache=cache)
    assert isinstance(state, JSAState)
    for a, b in zip(jsa_latents(spec.guide, params, x, state, cache=cache), latents):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    est = jsa(spec.model, _never_accepted(spec.guide), num_moves=2, cache=cache)
    rows = jnp.arange(2, 9)
    out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(5), Batch(x[rows], rows))
    assert float(out.metrics["acceptance_rate"]) == 0.0
    h_star = tuple(a[rows][None] for a in latents)                                          # [1, B, d]
    exact = jax.jit(jax.grad(lambda p: jnp.mean(log_joint(spec.model, p[MODEL], x[rows], h_star))
                             + jnp.mean(spec.guide.log_prob(p[GUIDE], x[rows], h_star))))(params)
    for a, b in zip(jax.tree_util.tree_leaves(out.grads), jax.tree_util.tree_leaves(exact)):
        np.testing.assert_allclose(a, -b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jsa_latents(spec.guide, params, x, out.state, cache=cache), latents):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_jsa_state_rejects_bad_latents(posterior_draws):
    spec, params, x, latents = posterior_draws
    with pytest.raises(ValueError, match="shape"):
        jsa_state(spec.guide, params, x, (latents[0][:5], latents[1][:5]))
    with pytest.raises(ValueError, match="structure"):
        jsa_state(spec.guide, params, x, latents[0])
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        jsa_state(spec.guide, params, x, (0.5 * latents[0], latents[1]))
    with pytest.raises(ValueError, match="guide"):
        jsa_state(spec.guide, {MODEL: params[MODEL]}, x, latents)
    # a state built for other options does not fit the estimator
    dense = jsa_state(spec.guide, params, x, latents, cache="dense")
    est = jsa(spec.model, spec.guide)
    with pytest.raises(ValueError, match="does not fit"):
        est.estimate(params, dense, jax.random.PRNGKey(0), Batch(x[:3], jnp.arange(3)))


def test_interface_metrics_and_groups(posterior_draws):
    """OBJECTIVE is I_T over the T proposals (= elbo for T = 1); JAX-int sizes;
    a missing group is named; extra groups get zero grads."""
    spec, params, x, latents = posterior_draws
    batch = Batch(x[:6], jnp.arange(6))
    for moves, proposals in ((1, 1), (2, 3)):
        est = jsa(spec.model, spec.guide, num_moves=jnp.int32(moves),
                  num_proposals=np.int64(proposals))
        state = est.init(jax.random.PRNGKey(0), params, x)
        out = jax.jit(est.estimate)(dict(params, extra=jnp.ones(2)), state, jax.random.PRNGKey(1), batch)
        assert out.metrics[OBJECTIVE] == out.metrics["iw_bound"]
        if moves * proposals == 1:
            np.testing.assert_allclose(out.metrics["iw_bound"], out.metrics["elbo"], rtol=1e-6)
        else:
            assert out.metrics["iw_bound"] > out.metrics["elbo"]
        np.testing.assert_array_equal(out.grads["extra"], 0.0)
    with pytest.raises(ValueError, match="model"):
        est.estimate({GUIDE: params[GUIDE]}, state, jax.random.PRNGKey(1), batch)
    with pytest.raises(ValueError, match="guide"):
        est.init(jax.random.PRNGKey(0), {MODEL: params[MODEL]}, x)
