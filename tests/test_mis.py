"""The Metropolis independence sampler (review Sec. 3.2.3, footnote 14) against
the exact posterior p(h|x) of a tiny SBN, computed by enumeration."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exact import broadcast_latents, enumerate_latents, exact_posterior
from sajax.core import GUIDE, MODEL, log_joint
from sajax.kernels import mis, repeat_moves
from sajax.models import sbn

X_DIM, SIZES = 8, (4, 3)
N_LATENT = sum(SIZES)
M = 2 ** N_LATENT
POW = 2.0 ** jnp.arange(N_LATENT - 1, -1, -1)  # code order of exact.enumerate_latents


@pytest.fixture(scope="module")
def setup():
    spec = sbn(X_DIM, SIZES, kind="linear")
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    # a sharper model than the init so the posterior is far from uniform; the
    # guide keeps its init scale, so max_h p(h|x)/q(h|x) stays ~20 and the
    # chain mixes geometrically at rate <= 1 - 1/20 (Mengersen & Tweedie 1996).
    # Scaled in NumPy: the float32 bits of op-by-op jnp, which a program fusing it would not keep
    params = {MODEL: jax.tree_util.tree_map(lambda a: jnp.asarray(2.5 * np.asarray(a)), params[MODEL]),
              GUIDE: params[GUIDE]}
    x = jnp.asarray([[1, 0, 1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 1, 1]], jnp.float32)
    posterior = jax.jit(lambda theta: exact_posterior(lambda h: log_joint(spec.model, theta, x, h), x, SIZES))
    post = posterior(params[MODEL])  # [M, 2]
    return spec, params, x, np.asarray(post)


def _codes(h):
    return (jnp.concatenate(h, axis=-1) @ POW).astype(jnp.int32)


def _chains(x, num_chains):
    """Replicate each example num_chains times: x_rep [E*C, D], example id [E*C]."""
    e = x.shape[0]
    return jnp.repeat(x, num_chains, axis=0), jnp.repeat(jnp.arange(e), num_chains)


@pytest.mark.runtime_bound
def test_chain_matches_exact_posterior(setup):
    spec, params, x, post = setup
    theta, phi = params[MODEL], params[GUIDE]
    num_chains, burn_in, chunk, num_chunks = 10_000, 120, 20, 10
    xr, ex = _chains(x, num_chains)
    log_target = lambda h: log_joint(spec.model, theta, xr, h)

    def proposal(key):
        h, log_q = spec.guide.sample_and_log_prob(phi, key, xr, 1)
        return jax.tree_util.tree_map(lambda a: a[0], h), log_q[0]

    step = mis.build_kernel(log_target, proposal)

    @jax.jit
    def run(key):
        # start every chain in the all-zero state, far from typical posterior samples
        h0 = tuple(jnp.zeros((xr.shape[0], d)) for d in SIZES)
        state = mis.init(h0, log_target(h0) - spec.guide.log_prob(phi, xr, h0))
        k_burn, k_run = jax.random.split(key)
        state, _ = repeat_moves(step, burn_in)(k_burn, state)
        moves = repeat_moves(step, chunk)

        def body(carry, k):
            st, counts = carry
            st, (states, infos) = moves(k, st)
            idx = (_codes(states.position) + M * ex[None, :]).reshape(-1)
            counts = counts + jnp.bincount(idx, length=M * x.shape[0])
            return (st, counts), jnp.mean(infos.acceptance_rate)

        (state, counts), acc = jax.lax.scan(body, (state, jnp.zeros(M * x.shape[0], jnp.int32)),
                                            jax.random.split(k_run, num_chunks))
        return counts.reshape(x.shape[0], M), jnp.mean(acc)

    counts, acc = run(jax.random.PRNGKey(1))
    freq = np.asarray(counts, np.float64) / np.asarray(counts).sum(axis=1, keepdims=True)
    tv = 0.5 * np.abs(freq - post.T).sum(axis=1)
    print(f"MIS vs exact posterior: TV per example {tv}, mean acceptance {float(acc):.3f}")
    assert np.all(tv < 0.02), tv
    assert 0.0 < float(acc) < 1.0


def test_acceptance_one_for_exact_posterior_proposal(setup):
    spec, params, x, _ = setup
    theta = params[MODEL]
    log_target = lambda h: log_joint(spec.model, theta, x, h)

    def proposal(key, hall, log_post):
        m = jax.random.categorical(key, log_post.T)  # [B] configuration index
        h = tuple(leaf[m, jnp.arange(x.shape[0])] for leaf in hall)
        return h, log_post[m, jnp.arange(x.shape[0])]

    @jax.jit
    def start():
        """All latents, the exact log posterior and a chain state drawn from it (bit for bit op by op)."""
        hall = broadcast_latents(enumerate_latents(SIZES), x.shape[0])
        lj_all = log_joint(spec.model, theta, x, hall)  # [M, B]
        log_post = lj_all - jax.nn.logsumexp(lj_all, axis=0, keepdims=True)
        h0, lq0 = proposal(jax.random.PRNGKey(5), hall, log_post)
        return hall, log_post, mis.init(h0, log_target(h0) - lq0)

    hall, log_post, state = start()
    step = mis.build_kernel(log_target, lambda key: proposal(key, hall, log_post))
    _, (states, infos) = jax.jit(repeat_moves(step, 200))(jax.random.PRNGKey(6), state)
    assert states.log_weight.shape == (200, 2)
    assert bool(jnp.all(infos.is_accepted))
    # w(h) = p(x) for every h: the ratio is 1 up to float32 rounding of log p(x, h)
    np.testing.assert_allclose(infos.acceptance_rate, 1.0, atol=1e-5)


def test_rejects_nan_and_keeps_state():
    """A NaN proposal weight is rejected; the chain state is untouched."""
    state = mis.init((jnp.zeros((3, 2)),), jnp.zeros(3))
    prop = (jnp.ones((3, 2)),)
    new, info = mis.accept_reject(jax.random.PRNGKey(0), state, prop, jnp.array([jnp.nan, -jnp.inf, 50.0]))
    np.testing.assert_array_equal(info.is_accepted, [False, False, True])
    np.testing.assert_array_equal(new.position[0], [[0, 0], [0, 0], [1, 1]])
    np.testing.assert_array_equal(new.log_weight, [0.0, 0.0, 50.0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_moves"):
        repeat_moves(lambda k, s: (s, None), 0)
    with pytest.raises(TypeError, match="log_target"):
        mis.build_kernel(None, lambda k: None)
