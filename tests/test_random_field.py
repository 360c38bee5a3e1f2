"""SML/PCD and CD for random fields (review Sec. 4.2.1, Algorithm 7, Eq. 39) against
exact answers on a tiny enumerable RBM (sajax.estimators._random_field)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from exact import all_binary
from jax.flatten_util import ravel_pytree
from stats import assert_detects, assert_power, assert_unbiased

from sajax import sa
from sajax.core import POTENTIAL, Batch, EnergyModel
from sajax.estimators import _random_field as rf
from sajax.estimators._random_field import ChainKernel, PCDState, cd, pcd
from sajax.models._rbm import rbm, rbm_log_partition

V, H = 8, 2
CONFIGS = all_binary(V)  # the 256 states of the visibles


def _theta(seed, scale):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(scale * rng.normal(size=s), jnp.float32)
            for k, s in (("W", (V, H)), ("b", (V,)), ("c", (H,)))}


def _exact_draws(spec, theta, key, n):
    """n exact draws from p_θ(v) ∝ exp u(v), by enumeration of the 2^8 states."""
    return CONFIGS[jax.random.categorical(key, spec.model.potential(theta, CONFIGS), shape=(n,))]


def _exact_transition(spec):
    """A transition builder whose 'kernel' replaces the chains by exact draws from p_θ."""

    def build(theta):
        step = lambda key, x: (_exact_draws(spec, theta, key, x.shape[0]), {})  # noqa: E731
        return ChainKernel(lambda key, x: x, step, lambda x: x)

    return build


def _avg_log_lik(spec, data):
    def ll(theta):
        return jnp.mean(spec.model.potential(theta, data)) - rbm_log_partition(theta)

    return ll


def _exact_mle(ll, theta0):
    """The MLE of the enumerated log-likelihood: gradient ascent, then damped Newton steps."""
    flat0, unravel = ravel_pytree(theta0)
    f = lambda v: ll(unravel(v))  # noqa: E731

    @jax.jit
    def run(v):
        v = jax.lax.fori_loop(0, 1500, lambda i, v: v + 2.0 * jax.grad(f)(v), v)
        newton = lambda i, v: v + jnp.linalg.solve(1e-3 * jnp.eye(v.size) - jax.hessian(f)(v), jax.grad(f)(v))  # noqa: E731
        v = jax.lax.fori_loop(0, 20, newton, v)
        return v, f(v), jnp.linalg.norm(jax.grad(f)(v))

    v, value, grad_norm = run(flat0)
    return unravel(v), float(value), float(grad_norm)


def _train(est, opt, params, data, num_steps, batch_size, key=jax.random.PRNGKey(4)):
    """``num_steps`` SA iterations (sajax.sa.make_step, fit's minibatches) in one jitted scan."""
    step = sa.make_step(est, opt)
    n = data.shape[0]

    def body(carry, _):
        idx = sa.batch_indices(carry.key, n, batch_size, carry.step)
        return step(carry, Batch(data[idx], idx))[0], None

    carry = sa.init_train_state(est, opt, key, params, data)
    return jax.jit(lambda c: jax.lax.scan(body, c, None, num_steps)[0])(carry).params[POTENTIAL]


@pytest.mark.runtime_bound
def test_sml_converges_to_the_exact_mle_and_cd1_is_biased():
    """THE key test: PCD through sajax.sa.fit reaches the enumerated MLE within 0.01 nats/example."""
    spec = rbm(V, H, init_scale=0.5)
    data = jax.jit(lambda k: _exact_draws(spec, _theta(0, 1.0), k, 1024))(jax.random.PRNGKey(1))
    ll = jax.jit(_avg_log_lik(spec, data))
    params0 = spec.init(jax.random.PRNGKey(3))
    _, best, grad_norm = _exact_mle(ll, params0[POTENTIAL])
    assert grad_norm < 1e-3, f"the reference MLE did not converge: |grad| = {grad_norm}"
    opt = optax.sgd(sa.robbins_monro(2.0, decay_start=800, tau=300.0))
    res = sa.fit(pcd(spec, num_chains=500), opt, params0, data, key=jax.random.PRNGKey(4),
                 batch_size=128, num_steps=2048, progress=False)
    sml = float(ll(res.state.params[POTENTIAL]))
    # CD-1 by the same SA step in one scan (sa.fit's loop is proven in test_sa; this saves compiles)
    cd1 = float(ll(_train(cd(spec, num_moves=1), opt, params0, data, 2048, 128)))
    print(f"exact MLE {best:.5f} nats/example; SML/PCD {sml - best:+.5f}; CD-1 bias {cd1 - best:+.5f}")
    assert res.state.est_state.chains.shape == (500, V)
    assert abs(sml - best) <= 0.01 and sml <= best + 1e-4
    assert cd1 <= best + 1e-4  # the MLE is the maximum; CD-1's bias is reported, not bounded


def test_gradient_with_exact_samples_equals_the_exact_gradient(monkeypatch):
    """With exact draws from p_θ as the chains, Algorithm 7's direction is unbiased for
    -∇ mean log p_θ(x) (Eq. 39); flipping the negative phase's sign is caught."""
    spec = rbm(V, H)
    params = {POTENTIAL: _theta(5, 0.7)}
    x = CONFIGS[np.random.default_rng(6).integers(0, 256, size=32)]
    exact = jax.jit(jax.grad(lambda p: -_avg_log_lik(spec, x)(p[POTENTIAL])))(params)

    def draws():
        est = pcd(spec, kernel=_exact_transition(spec), num_chains=16)
        state = est.init(jax.random.PRNGKey(0), params, x)
        keys = jax.random.split(jax.random.PRNGKey(7), 3000)
        return jax.jit(jax.vmap(lambda k: est.estimate(params, state, k, Batch(x, jnp.arange(32))).grads))(keys)

    t = assert_unbiased(draws(), exact, "PCD gradient with exact chains")
    assert_power(t, 0.1, "PCD gradient with exact chains")
    monkeypatch.setattr(rf, "_sml_ascent", functools.partial(rf._sml_ascent, negative=-1.0))
    assert_detects(draws(), exact, "negative phase with the wrong sign")


def _shift_transition(theta):
    """A deterministic 'kernel' x -> x + 1, to watch the chains persist."""
    return ChainKernel(lambda key, x: x, lambda key, x: (x + 1.0, {"moved": jnp.ones(x.shape[:1])}),
                       lambda x: x)


GAUSS = EnergyModel(lambda th, x: -0.5 * jnp.sum((x - th["mu"]) ** 2, axis=-1))


def test_pcd_state_persists_and_resumes():
    data = jnp.asarray(np.random.default_rng(0).normal(size=(10, 2)), jnp.float32)
    params = {POTENTIAL: {"mu": jnp.zeros(2)}}
    est = pcd(GAUSS, kernel=_shift_transition, num_chains=5, num_moves=3)
    state = jax.jit(lambda key: est.init(key, params, data))(jax.random.PRNGKey(0))   # data concrete: checked
    assert isinstance(state, PCDState) and state.chains.shape == (5, 2)
    assert all(any(np.allclose(c, r) for r in np.asarray(data)) for c in np.asarray(state.chains))
    step = jax.jit(lambda s, k: est.estimate(params, s, k, data[:4]))
    one = step(state, jax.random.PRNGKey(1))
    np.testing.assert_allclose(one.state.chains, state.chains + 3.0)
    # resumable: the state is a pytree of arrays; a host round trip continues identically
    host = jax.tree_util.tree_map(np.asarray, one.state)
    assert all(isinstance(a, np.ndarray) for a in jax.tree_util.tree_leaves(host))
    two = step(host, jax.random.PRNGKey(2))
    np.testing.assert_allclose(two.state.chains, state.chains + 6.0)
    np.testing.assert_array_equal(two.state.chains, step(one.state, jax.random.PRNGKey(2)).state.chains)
    m = two.metrics
    assert float(m["moved"]) == 1.0 and float(m["chains_finite"]) == 1.0
    assert float(m["objective"]) == pytest.approx(float(m["data_potential"] - m["chain_potential"]))
    # replay: each chain continues with probability 0.5, else restarts from noise
    big = pcd(GAUSS, kernel=_shift_transition, num_chains=2000, replay=0.5)
    s0 = jax.jit(lambda key: big.init(key, params, data))(jax.random.PRNGKey(0))
    s1 = jax.jit(lambda s: big.estimate(params, s, jax.random.PRNGKey(3), data).state)(s0)
    kept = np.mean(np.all(np.isclose(s1.chains, s0.chains + 1.0), axis=1))
    assert 0.45 < kept < 0.55


def test_pcd_langevin_learns_a_gaussian_mean():
    """u_μ(x) = -|x - μ|²/2: the MLE is the data mean; ULA leaves the mean of N(μ, I) exact."""
    data = jnp.asarray(np.random.default_rng(1).normal(loc=(1.5, -0.5), size=(512, 2)), jnp.float32)
    est = pcd(GAUSS, kernel="langevin", num_chains=256, num_moves=5, step_size=0.2, init="noise")
    mu = _train(est, optax.sgd(sa.robbins_monro(0.5, decay_start=100, tau=50.0)),
                {POTENTIAL: {"mu": jnp.zeros(2)}}, data, 400, 64)["mu"]
    np.testing.assert_allclose(mu, data.mean(0), atol=0.05)


def test_argument_errors():
    spec = rbm(4, 2)
    params = spec.init(jax.random.PRNGKey(0))
    data = jnp.zeros((6, 4))
    with pytest.raises(ValueError, match="num_chains"):
        pcd(spec, num_chains=0)
    with pytest.raises(ValueError, match=r"init chains have shape \(3, 4\).*\(5, 4\)"):
        pcd(spec, num_chains=5, init=np.zeros((3, 4))).init(jax.random.PRNGKey(0), params, data)
    with pytest.raises(ValueError, match="step_size"):
        pcd(GAUSS, kernel="langevin", step_size=0.0)
    with pytest.raises(ValueError, match="step_size"):
        pcd(GAUSS, kernel="mala", step_size=-1.0)
    with pytest.raises(ValueError, match="needs a step_size"):
        pcd(GAUSS, kernel="langevin")
    with pytest.raises(TypeError, match="sample_hidden"):
        pcd(GAUSS, kernel="gibbs")
    with pytest.raises(ValueError, match="kernel must be"):
        cd(spec, kernel="hmc")
    with pytest.raises(ValueError, match="replay"):
        pcd(spec, replay=1.5)
    with pytest.raises(TypeError, match="EnergyModel"):
        pcd(object())
    bad = EnergyModel(lambda th, x: x * th["a"])
    with pytest.raises(ValueError, match=r"model.potential must return one scalar per example.*\(2, 4\)"):
        pcd(bad, kernel=_shift_transition).init(jax.random.PRNGKey(0), {POTENTIAL: {"a": 1.0}}, data)
    with pytest.raises(ValueError, match="no group"):
        cd(spec).estimate({"model": params[POTENTIAL]}, (), jax.random.PRNGKey(0), data)


def _bernoulli_law(logits, states):
    """p(states | logits) for factorial Bernoulli units: ``[N, U]`` logits, ``[S, U]`` states -> ``[N, S]``."""
    return jnp.exp(jax.nn.log_sigmoid(logits) @ states.T + jax.nn.log_sigmoid(-logits) @ (1 - states).T)


def _exact_cd_gradient(spec, theta, x, n):
    """The exact mean CD-n descent direction at θ: the n-step block-Gibbs law of the
    visibles from each data row, enumerated over the 2^8 visible and 2^2 hidden states."""
    hs = all_binary(H)
    p_h = _bernoulli_law(theta["c"] + CONFIGS @ theta["W"], hs)                       # [256, 4]
    p_v = _bernoulli_law(theta["b"] + hs @ theta["W"].T, CONFIGS)                     # [4, 256]
    index = (x @ (2 ** jnp.arange(V - 1, -1, -1))).astype(jnp.int32)                  # rows of CONFIGS
    law = jnp.linalg.matrix_power(p_h @ p_v, n)[index]                                 # [B, 256]
    grad_u = jax.vmap(lambda v: ravel_pytree(jax.grad(lambda t: spec.model.potential(t, v[None])[0])(theta))[0])(
        CONFIGS)
    return jnp.mean(law @ grad_u, 0) - jnp.mean(grad_u[index], 0)


def test_cd_moves_ramp_from_one_to_k():
    moves = [int(rf.cd_moves(t, 25, 100)) for t in (0, 3, 4, 50, 99, 100, 1000)]
    assert moves == [1, 1, 1, 13, 24, 25, 25]


def test_ramped_cd_matches_the_exact_cd_n_gradient(monkeypatch):
    """CD with moves raised 1 → k (Salakhutdinov & Murray 2008): at an iteration whose
    ramp gives n moves, its direction is unbiased for the exact CD-n direction
    (enumerated n-step Gibbs law); a ramp one move ahead is caught; past the ramp it is
    CD-k bit for bit (same key), and the state counts iterations."""
    spec = rbm(V, H)
    theta = _theta(5, 1.5)
    params = {POTENTIAL: theta}
    x = CONFIGS[np.random.default_rng(6).integers(0, 256, size=16)]
    exact = jax.jit(lambda t: {n: _exact_cd_gradient(spec, t, x, n) for n in (2, 3)})(theta)   # one program
    exact = {n: np.asarray(g) for n, g in exact.items()}
    assert not np.allclose(exact[2], exact[3], atol=1e-3)

    def draws(step):
        est = cd(spec, num_moves=4, ramp_steps=6)
        state = rf.CDState(jnp.int32(step))
        keys = jax.random.split(jax.random.PRNGKey(7), 4000)
        out = jax.jit(jax.vmap(lambda k: est.estimate(params, state, k, x)))(keys)
        return np.asarray(jax.vmap(lambda g: ravel_pytree(g)[0])(out.grads[POTENTIAL])), out

    d, out = draws(2)  # 1 + ⌊3 · 2/6⌋ = 2 moves
    assert np.all(np.asarray(out.metrics["moves"]) == 2.0) and np.all(np.asarray(out.state.step) == 3)
    t = assert_unbiased(d, exact[2], "ramped CD at 2 moves")
    assert_power(t, 0.1, "ramped CD at 2 moves")
    monkeypatch.setattr(rf, "cd_moves", lambda step, k, ramp: 1 + jnp.floor((k - 1) * jnp.minimum(step, ramp) / ramp
                                                                              ).astype(jnp.int32) + 1)
    assert_detects(draws(2)[0], exact[2], "ramp one move ahead")
    monkeypatch.undo()
    ramped = cd(spec, num_moves=4, ramp_steps=6).estimate(params, rf.CDState(jnp.int32(9)), jax.random.PRNGKey(3), x)
    fixed = cd(spec, num_moves=4).estimate(params, (), jax.random.PRNGKey(3), x)
    np.testing.assert_array_equal(ravel_pytree(ramped.grads)[0], ravel_pytree(fixed.grads)[0])
    assert float(ramped.metrics["moves"]) == 4.0
    assert float(ramped.metrics["visible_change_rate"]) == pytest.approx(float(fixed.metrics["visible_change_rate"]))



def test_pcd_chains_start_binary_from_probabilities_and_reject_other_values():
    """Data binarized afresh per visit reaches init as probabilities: chains start at one
    Bernoulli draw of data rows (binary data: the rows themselves); values outside [0, 1] fail."""
    spec = rbm(4, 2)
    params = spec.init(jax.random.PRNGKey(0))
    probs = jnp.full((50, 4), 0.5)

    def start(num_chains, data):
        """The chains of pcd's init, jitted; data closed over as a host array: concrete, so checked."""
        data = np.asarray(data)
        return jax.jit(lambda key: pcd(spec, num_chains=num_chains).init(key, params, data).chains)(
            jax.random.PRNGKey(1))

    chains = start(400, probs)
    assert set(np.unique(chains)) == {0.0, 1.0} and 0.4 < float(chains.mean()) < 0.6
    rows = CONFIGS[:50, :4]
    same = start(50, rows)
    assert all(any(np.array_equal(c, r) for r in np.asarray(rows)) for c in np.asarray(same))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        pcd(spec).init(jax.random.PRNGKey(0), params, probs + 1.0)


def test_pcd_chains_follow_float64_params_under_x64():
    """Under x64 with float64 RBM parameters the Gibbs moves draw float64 visibles; the
    persistent chains are kept in the parameters' dtype (they were float32 and the kernel's
    scan refused the float64 draws).  float32 parameters keep float32 chains."""
    import jax.experimental

    x64 = jax.enable_x64(True) if hasattr(jax, "enable_x64") else jax.experimental.enable_x64()
    data = (np.random.default_rng(0).random((20, V)) < 0.3).astype(np.float64)
    spec = rbm(V, H)
    with x64:
        theta = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), _theta(0, 0.5))
        for init in ("data", "noise"):
            est = pcd(spec, num_chains=4, init=init)

            @jax.jit
            def init_and_estimate(theta):           # one program (data closed over: concrete, checked)
                state = est.init(jax.random.PRNGKey(1), {POTENTIAL: theta}, data)
                batch = Batch(jnp.asarray(data[:4]), jnp.arange(4))
                return state, est.estimate({POTENTIAL: theta}, state, jax.random.PRNGKey(2), batch)

            state, out = init_and_estimate(theta)
            assert state.chains.dtype == out.state.chains.dtype == jnp.float64
            assert out.grads[POTENTIAL]["W"].dtype == jnp.float64
    est = pcd(spec, num_chains=4)
    state = jax.jit(lambda t: est.init(jax.random.PRNGKey(1), {POTENTIAL: t}, data))(_theta(0, 0.5))
    assert state.chains.dtype == jnp.float32
