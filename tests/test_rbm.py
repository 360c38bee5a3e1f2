"""RBMs and potential networks (review Sec. 4.1, Eq. 38) against brute-force enumeration
and numerical integration (sajax.models._rbm, sajax.models._energy)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from exact import all_binary
from stats import assert_unbiased

from sajax.core import POTENTIAL
from sajax.models._energy import conv_potential, energy_from_module, mlp_potential
from sajax.models._rbm import rbm, rbm_log_partition


def _random_theta(spec, seed, scale=1.0):
    """RBM parameters of the fixed layout with N(0, scale²) entries (NumPy: no compiles)."""
    rng = np.random.default_rng(seed)
    V, H = spec.num_visible, spec.num_hidden
    return {k: jnp.asarray(scale * rng.normal(size=shape), jnp.float32)
            for k, shape in (("W", (V, H)), ("b", (V,)), ("c", (H,)))}


def _log_joint(theta, v, h, kind):
    """log of the unnormalized p(v, h) for every pair: v [M, V], h [K, H] -> [M, K]."""
    inter = v @ theta["W"] @ h.T + (h @ theta["c"])[None]
    if kind == "bernoulli":
        return inter + (v @ theta["b"])[:, None]
    return inter - 0.5 * jnp.sum((v - theta["b"]) ** 2, axis=-1)[:, None]


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian"])
def test_free_energy_is_log_sum_over_hiddens(kind):
    spec = rbm(5, 4, kind=kind)
    theta = _random_theta(spec, 0)
    v = all_binary(5) if kind == "bernoulli" else jnp.asarray(np.random.default_rng(1).normal(size=(7, 5)))

    @jax.jit
    def both(theta, v):
        return spec.model.potential(theta, v), jax.nn.logsumexp(_log_joint(theta, v, all_binary(4), kind), axis=1)

    np.testing.assert_allclose(*both(theta, v), rtol=1e-5, atol=1e-5)
    assert spec.model.observation == kind


def test_conditionals_match_enumeration():
    spec = rbm(4, 3)
    theta = _random_theta(spec, 2)
    v, h = all_binary(4), all_binary(3)

    @jax.jit
    def run(theta):
        joint = jax.nn.softmax(_log_joint(theta, v, h, "bernoulli").reshape(-1)).reshape(16, 8)
        exact_h = (joint / joint.sum(1, keepdims=True)) @ h        # E[h|v] by enumeration, [16, 3]
        exact_v = (joint / joint.sum(0, keepdims=True)).T @ v      # E[v|h], [8, 4]
        keys = jax.random.split(jax.random.PRNGKey(3), 3000)
        draws_h = jax.vmap(lambda k: spec.sample_hidden(theta, k, v))(keys)
        draws_v = jax.vmap(lambda k: spec.sample_visible(theta, k, h))(keys)
        return (spec.hidden_probs(theta, v), exact_h, spec.visible_mean(theta, h), exact_v,
                draws_h, draws_v)

    probs_h, exact_h, mean_v, exact_v, draws_h, draws_v = run(theta)
    np.testing.assert_allclose(probs_h, exact_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean_v, exact_v, rtol=1e-5, atol=1e-6)
    # the samplers draw from those conditionals (z-test of the sample means)
    assert_unbiased(draws_h, exact_h, "sample_hidden mean vs p(h|v)")
    assert_unbiased(draws_v, exact_v, "sample_visible mean vs p(v|h)")


@pytest.mark.parametrize("V,H", [(6, 3), (3, 6)])
def test_log_partition_equals_full_enumeration(V, H):
    spec = rbm(V, H)
    theta = _random_theta(spec, V)
    full = jax.jit(lambda t: jax.nn.logsumexp(_log_joint(t, all_binary(V), all_binary(H), "bernoulli")))
    np.testing.assert_allclose(jax.jit(rbm_log_partition)(theta), full(theta), rtol=1e-6)


def test_log_partition_chunked_enumeration():
    # V = 13 < H = 14: the visibles are enumerated in chunks of 2^12; the check
    # sums over the hiddens instead (the other analytic marginal)
    spec = rbm(13, 14)
    theta = _random_theta(spec, 5, scale=0.3)
    h = all_binary(14)
    by_h = jax.jit(lambda t: jax.nn.logsumexp(h @ t["c"] + jnp.sum(jax.nn.softplus(t["b"] + h @ t["W"].T), -1)))
    np.testing.assert_allclose(jax.jit(rbm_log_partition)(theta), by_h(theta), rtol=1e-6)
    with pytest.raises(ValueError, match="max_units"):
        rbm_log_partition(theta, max_units=12)


def test_gaussian_log_partition_by_numerical_integration():
    spec = rbm(1, 3, kind="gaussian")
    theta = _random_theta(spec, 7, scale=0.7)
    grid = np.linspace(-40.0, 40.0, 160001, dtype=np.float64)
    u, log_z = jax.jit(lambda t, x: (spec.model.potential(t, x), rbm_log_partition(t, kind="gaussian")))(
        theta, jnp.asarray(grid[:, None], jnp.float32))
    u = np.asarray(u, np.float64)
    numeric = np.log(np.trapezoid(np.exp(u - u.max()), grid)) + u.max()
    np.testing.assert_allclose(float(log_z), numeric, rtol=1e-5)


def test_gibbs_sampler_reaches_the_exact_distribution():
    spec = rbm(4, 2, sample_sweeps=100)
    theta = _random_theta(spec, 9)
    v = all_binary(4)
    exact, x = jax.jit(lambda t: (jax.nn.softmax(spec.model.potential(t, v)),
                                  spec.model.sample(t, jax.random.PRNGKey(0), 8000)))(theta)
    codes = np.asarray(x).astype(int) @ (2 ** np.arange(4)[::-1])   # row m of all_binary has code m
    counts = np.bincount(codes, minlength=16) / len(codes)
    tv = 0.5 * np.abs(counts - np.asarray(exact)).sum()
    print(f"Gibbs (100 sweeps) TV to the exact p(v): {tv:.4f}")
    assert tv < 0.035  # sampling noise alone: E[TV] ≈ 0.015 for 8000 draws over 16 states


def test_rbm_argument_errors():
    with pytest.raises(ValueError, match="kind"):
        rbm(3, 2, kind="poisson")
    with pytest.raises(ValueError, match="num_hidden"):
        rbm(3, 0)
    spec = rbm(3, 2)
    theta = _random_theta(spec, 0)
    with pytest.raises(ValueError, match="binary"):
        spec.model.potential(theta, jnp.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="event shape"):
        spec.model.potential(theta, jnp.zeros((2, 4)))


def test_mlp_potential_shapes_and_weight_norm():
    spec = mlp_potential()
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5, 2)), jnp.float32)

    @jax.jit
    def run(key):
        theta = spec.init(key)[POTENTIAL]
        # weight norm: the direction v is scale-free
        scaled = {**theta, "WNDense_1": {**theta["WNDense_1"], "v": 7.0 * theta["WNDense_1"]["v"]}}
        return theta, spec.model.potential(theta, x), spec.model.potential(scaled, x)

    theta, u, u_scaled = run(jax.random.PRNGKey(0))
    assert sorted(theta) == ["WNDense_0", "WNDense_1", "WNDense_2"]
    assert theta["WNDense_0"]["v"].shape == (2, 100) and theta["WNDense_2"]["g"].shape == (1,)
    assert u.shape == (3, 5)
    np.testing.assert_allclose(u_scaled, u, rtol=1e-5, atol=1e-6)
    plain = mlp_potential(weight_norm=False, hidden=(8,))
    assert sorted(jax.eval_shape(plain.init, jax.random.PRNGKey(0))[POTENTIAL]) == ["Dense_0", "Dense_1"]
    conv = conv_potential()
    conv_theta = jax.eval_shape(conv.init, jax.random.PRNGKey(0))[POTENTIAL]
    out = jax.eval_shape(conv.model.potential, conv_theta, jax.ShapeDtypeStruct((2, 784), jnp.float32))
    assert out.shape == (2,)


def test_non_scalar_potential_is_refused():
    class TwoOutputs(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x)

    spec = energy_from_module(TwoOutputs(), 3, name="two_outputs")
    theta = jax.eval_shape(spec.init, jax.random.PRNGKey(0))[POTENTIAL]
    x = jax.ShapeDtypeStruct((4, 3), jnp.float32)
    with pytest.raises(ValueError, match=r"two_outputs.*\(4,\).*\(4, 2\)"):
        jax.eval_shape(spec.model.potential, theta, x)
    mlp = mlp_potential()
    with pytest.raises(ValueError, match="x has event shape"):
        jax.eval_shape(mlp.model.potential, jax.eval_shape(mlp.init, jax.random.PRNGKey(0))[POTENTIAL], x)
