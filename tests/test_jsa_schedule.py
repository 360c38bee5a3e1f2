"""JSA's options as its authors run it (issue 10): the cache schedule, multiple
moves, thinning and the batched-proposal gradient, against exact answers.

* The batched gradient (one pass over the start state and all proposals,
  pulled back with selection weights) equals the gathered one (a separate
  pass over the chain samples) for the same key, for every schedule.
* Started at exact posterior draws (a stationary chain), JSA's θ- and
  φ-directions average to the exact ∇θ log p(x) and E_post ∇φ log q(h|x)
  (enumeration on a tiny two-layer SBN) under every option: z-test over keys
  with its power asserted.  The cache switched off (chains started at q for
  a finite number of moves) is detectably biased by the same test.
* The schedule switches at ``cache_from`` by the state's own step count, and
  a run checkpointed before the switch and resumed past it is bit-exact.
* Metrics: changed share, cache age, cache in use.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from exact import broadcast_latents, enumerate_latents, exact_log_marginal
from sajax.core import GUIDE, MODEL, Batch, log_joint
from sajax.estimators import JSAState, jsa
from sajax.models import sbn
from sajax.sa import fit
from stats import assert_detects, assert_power, assert_unbiased

X_DIM, SIZES, B = 8, (3, 2), 6
NUM_KEYS = 3000
MAX_DETECTABLE = 0.15       # the smallest bias the z-test would catch, relative to the gradient's norm


@pytest.fixture(scope="module")
def tiny():
    spec = sbn(X_DIM, SIZES)

    @jax.jit
    def params_and_data():
        """θ (twice the init scale), φ and x, from one program (bit for bit the op-by-op values)."""
        p0 = spec.init(jax.random.PRNGKey(3))
        params = {MODEL: jax.tree_util.tree_map(lambda a: 2.0 * a, p0[MODEL]), GUIDE: p0[GUIDE]}
        return params, (jax.random.uniform(jax.random.PRNGKey(1), (B, X_DIM)) < 0.5).astype(jnp.float32)

    params, x = params_and_data()
    hs = enumerate_latents(SIZES)                                              # leaves [M, d]
    lj_fn = lambda th, p: log_joint(spec.model, th, x, broadcast_latents(hs, B))   # [M, B]
    post = jax.jit(lambda th: jax.nn.softmax(lj_fn(th, None), axis=0))(params[MODEL])     # [M, B]
    # exact mean fields (ascent): ∇θ mean_b log p(x_b) and Σ_h post(h|x) ∇φ log q(h|x)
    g_theta = jax.jit(jax.grad(lambda th: jnp.mean(exact_log_marginal(
        lambda h: log_joint(spec.model, th, x, h), x, SIZES))))(params[MODEL])
    g_phi = jax.jit(jax.grad(lambda ph: jnp.mean(jnp.sum(
        post * spec.guide.log_prob(ph, x, broadcast_latents(hs, B)), axis=0))))(params[GUIDE])
    exact_descent = {MODEL: jax.tree_util.tree_map(jnp.negative, g_theta),
                     GUIDE: jax.tree_util.tree_map(jnp.negative, g_phi)}
    return spec, params, x, hs, post, exact_descent


def _posterior_state(key, hs, post, step=0):
    """A dense-cache JSAState holding one exact posterior draw per example."""
    which = jax.random.categorical(key, jnp.log(post).T)                      # [B]
    cache = {f"leaf{i}": h[which] for i, h in enumerate(hs)}
    return JSAState(cache, jnp.int32(step), jnp.zeros((B,), jnp.int32))


def _draws(tiny, **options):
    """Descent directions of one estimate per key, each from its own exact posterior start."""
    spec, params, x, hs, post, _ = tiny
    est = jsa(spec.model, spec.guide, cache="dense", **options)
    batch = Batch(x, jnp.arange(B))

    def one(key):
        k_state, k_est = jax.random.split(key)
        return est.estimate(params, _posterior_state(k_state, hs, post), k_est, batch).grads

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(7), NUM_KEYS))


@pytest.mark.parametrize("options", [
    dict(num_moves=3, batched=True),
    dict(num_moves=3, batched=False),
    dict(num_moves=1, num_proposals=3),
    dict(num_moves=2, num_proposals=2, cache_from=5),   # step 0 < 5: chains start afresh...
])
def test_stationary_start_gives_exact_gradient(tiny, options):
    """From exact posterior draws every chain sample is an exact posterior draw
    (MIS leaves p(h|x) invariant), so the directions average to the exact ones.
    The last case starts with the cache off (step 0 < cache_from), so it must
    FAIL: a chain started at q and moved 4 times is not stationary."""
    draws = _draws(tiny, **options)
    exact = tiny[-1]
    if options.get("cache_from", 0) > 0:
        assert_detects(draws, exact, f"jsa {options}: cache off, chains started at q")
        return
    t = assert_unbiased(draws, exact, f"jsa {options} from exact posterior draws")
    assert_power(t, MAX_DETECTABLE, f"jsa {options}")


def test_batched_and_gathered_agree(tiny):
    """Same key: the batched pullback and the gathered pass give the same
    gradient, chain, cache and metrics, with the cache on, off and scheduled."""
    spec, params, x, hs, post, _ = tiny
    batch = Batch(x, jnp.arange(B))
    for cache_from, step in ((0, 0), (None, 0), (3, 2), (3, 3)):
        outs = []
        for batched in (True, False):
            est = jsa(spec.model, spec.guide, cache="dense", num_moves=2,
                      num_proposals=2, cache_from=cache_from, batched=batched)
            state = _posterior_state(jax.random.PRNGKey(2), hs, post, step=step)
            outs.append(jax.jit(est.estimate)(params, state, jax.random.PRNGKey(5), batch))
        a, b = outs
        for u, v in zip(jax.tree_util.tree_leaves(a.grads), jax.tree_util.tree_leaves(b.grads)):
            np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-6)
        for u, v in zip(jax.tree_util.tree_leaves(a.state), jax.tree_util.tree_leaves(b.state)):
            np.testing.assert_array_equal(u, v)
        for k in a.metrics:
            np.testing.assert_allclose(a.metrics[k], b.metrics[k], rtol=1e-5, err_msg=k)
        expect_on = cache_from is not None and step >= cache_from
        assert float(a.metrics["cache_in_use"]) == float(expect_on)


def test_schedule_metrics_and_step_count(tiny):
    """The step counter advances, rows written this iteration have age 1 the
    next time, init rows count init as the iteration before the first, and
    'changed' is the share of rows whose stored latent differs."""
    spec, params, x, hs, post, _ = tiny
    est = jsa(spec.model, spec.guide, num_moves=2)
    state, estimate = est.init(jax.random.PRNGKey(0), params, x), jax.jit(est.estimate)
    first = jnp.arange(3)
    out = estimate(params, state, jax.random.PRNGKey(1), Batch(x[first], first))
    assert int(out.state.step) == 1 and float(out.metrics["cache_age"]) == 1.0
    np.testing.assert_array_equal(out.state.written, [1, 1, 1, 0, 0, 0])
    changed = np.any(np.asarray(out.state.cache["bits"][:3] != state.cache["bits"][:3]), axis=1)
    np.testing.assert_allclose(out.metrics["changed"], changed.mean())
    rows = jnp.arange(1, 5)
    out2 = estimate(params, out.state, jax.random.PRNGKey(2), Batch(x[rows], rows))
    np.testing.assert_allclose(out2.metrics["cache_age"], np.mean([1, 1, 2, 2]))   # rows 1,2 from step 1
    with pytest.raises(ValueError, match="cache_from"):
        jsa(spec.model, spec.guide, cache_from=-1)
    with pytest.raises(TypeError, match="batched"):
        jsa(spec.model, spec.guide, batched="yes")


def test_resume_across_the_cache_switch_is_bit_exact(tiny, tmp_path):
    """cache_from = 6 with chunks of 4 steps: a run stopped at step 4 (cache
    off) and resumed to step 12 (the switch at 6 inside the resumed part)
    equals the uninterrupted run bit for bit, parameters and chain state."""
    spec, params, _, _, _, _ = tiny
    data = (jax.random.uniform(jax.random.PRNGKey(9), (24, X_DIM)) < 0.5).astype(jnp.float32)
    est = jsa(spec.model, spec.guide, num_moves=2, cache_from=6)
    opt, key = optax.adam(1e-2), jax.random.PRNGKey(4)
    kw = dict(key=key, batch_size=6, chunk_steps=4, progress=False)
    full = fit(est, opt, params, data, num_steps=12, **kw)
    ck = tmp_path / "ck"
    fit(est, opt, params, data, num_steps=4, checkpoint_dir=ck, **kw)
    resumed = fit(est, opt, params, data, num_steps=12, checkpoint_dir=ck, **kw)
    assert resumed.resumed_from is not None
    for a, b in zip(jax.tree_util.tree_leaves((full.state.params, full.state.est_state)),
                    jax.tree_util.tree_leaves((resumed.state.params, resumed.state.est_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(full.state.est_state.step) == 12
    in_use = [r["cache_in_use"] for r in full.history]
    assert in_use[0] == 0.0 and in_use[-1] == 1.0, in_use
