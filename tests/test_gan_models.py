"""GAN models (review Sec. 3.2.4): spectral normalization against the SVD,
the protocols of every generator/critic factory, the projection critic by
hand, and the input checks (sajax.models._gan, sajax.models._spectral)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sajax.core import CRITIC, GENERATOR, Critic, ImplicitGenerator
from sajax.models._gan import dcgan, mlp_gan
from sajax.models._spectral import COLLECTION, SpectralConv, SpectralDense, spectral_norm_estimate

REL = 0.01  # "within 1%"
TINY_MLP = dict(generator_hidden=(8, 8), critic_hidden=(6, 5), maxout=2)
TINY_CONV = dict(latent_dim=4, generator_channels=(4, 3), critic_channels=(3, 4))


def _top_sv(w):
    return float(np.linalg.svd(np.asarray(w, np.float64).reshape(-1, w.shape[-1]), compute_uv=False)[0])


def _unit_norm(w) -> bool:
    return abs(_top_sv(w) - 1.0) <= REL


def _thread(apply, variables, x, calls=30):
    """``calls`` training calls of a module, its ``spectral`` collection threaded (one jit)."""
    def body(spectral, _):
        _, upd = apply({**variables, COLLECTION: spectral}, x, mutable=[COLLECTION])
        return upd[COLLECTION], None
    return jax.jit(lambda s: jax.lax.scan(body, s, None, length=calls)[0])(variables[COLLECTION])


def test_power_iteration_matches_svd_and_needs_its_state():
    """30 power iterations: σ̂ within 1% of the top singular value (gap s2/s1 = 0.83);
    a single iteration from the random start (u not carried over) is off by > 1%."""
    ku, kv, k0 = jax.random.split(jax.random.PRNGKey(0), 3)
    s = jnp.array([3.0, 2.5, 2.0, 1.5, 1.0, 0.5])
    left = jnp.linalg.qr(jax.random.normal(ku, (8, 6)))[0]
    right = jnp.linalg.qr(jax.random.normal(kv, (6, 6)))[0]
    w = left @ jnp.diag(s) @ right.T
    u0 = jax.random.normal(k0, (6,))
    sigma, u = spectral_norm_estimate(w, u0, n_steps=30)
    assert abs(float(sigma) / _top_sv(w) - 1.0) <= REL
    assert abs(abs(float(u @ right[:, 0])) - 1.0) < 1e-3            # u -> top right-singular vector
    stale, _ = spectral_norm_estimate(w, u0, n_steps=1)              # broken: no threaded u
    assert abs(float(stale) / _top_sv(w) - 1.0) > REL
    # σ̂ = vᵀ W u with u, v constants: dσ̂/dW = v uᵀ (Miyato et al. 2018)
    grad = jax.grad(lambda m: spectral_norm_estimate(m, u, 1)[0])(w)
    v = w @ u / jnp.linalg.norm(w @ u)
    np.testing.assert_allclose(grad, jnp.outer(v, spectral_norm_estimate(w, u, 1)[1]), atol=1e-5)


def test_spectral_dense_is_one_lipschitz_after_threaded_calls():
    """The SpectralDense map's Jacobian K/σ̂ has top singular value 1 (within 1%) and
    the stored σ̂ matches the SVD of K after 30 threaded calls; nn.Dense (no
    normalization) fails the same check."""
    layer = SpectralDense(7)
    x = jnp.ones((2, 5))
    variables = layer.init(jax.random.PRNGKey(1), x)
    spectral = _thread(layer.apply, variables, x)
    assert not np.allclose(spectral["u"], variables[COLLECTION]["u"])
    kernel = variables["params"]["kernel"]
    assert abs(float(spectral["sigma"]) / _top_sv(kernel) - 1.0) <= REL
    f = lambda z: layer.apply({**variables, COLLECTION: spectral}, z)  # noqa: E731 (eval: state not stored)
    assert _unit_norm(jax.jacfwd(f)(x[0]))
    plain = nn.Dense(7)
    assert not _unit_norm(jax.jacfwd(lambda z: plain.apply({"params": variables["params"]}, z))(x[0]))


def test_spectral_conv_normalizes_the_reshaped_kernel():
    """SpectralConv = flax Conv with kernel K/σ̂, σ̂ the top singular value of K as
    [kh·kw·in, out] (within 1% after 30 threaded calls)."""
    conv = SpectralConv(3, (3, 3), (2, 2))
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 6, 6, 2))
    variables = conv.init(jax.random.PRNGKey(3), x)
    spectral = _thread(conv.apply, variables, x)
    kernel = variables["params"]["kernel"]
    sigma = float(spectral["sigma"])
    assert abs(sigma / _top_sv(kernel) - 1.0) <= REL and _unit_norm(kernel / sigma)
    y, _ = conv.apply({**variables, COLLECTION: spectral}, x, mutable=[COLLECTION])
    ref = nn.Conv(3, (3, 3), (2, 2)).apply({"params": {**variables["params"], "kernel": kernel / sigma}}, x)
    np.testing.assert_allclose(y, ref, rtol=2e-3, atol=1e-5)


def test_spectral_critic_threads_its_state_through_the_protocol():
    """Critic.apply returns the updated power-iteration vectors (different from the
    input state); after 30 calls every layer's σ̂ is within 1% of its top singular
    value, so every normalized kernel has norm 1 (the raw kernels do not)."""
    spec = mlp_gan(spectral_norm=True, **TINY_MLP)
    params = spec.init(jax.random.PRNGKey(0))
    psi = params[CRITIC]
    state0 = spec.critic.init_state(jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 2))
    v, state1 = spec.critic.apply(psi, state0, x)
    assert v.shape == (4,)
    assert jax.tree_util.tree_structure(state1) == jax.tree_util.tree_structure(state0)
    assert not np.allclose(state1["hidden_0"]["u"], state0["hidden_0"]["u"])
    step = jax.jit(lambda s, _: (spec.critic.apply(psi, s, x)[1], None))
    state = jax.lax.scan(step, state0, None, length=30)[0]
    for name, kernel in [("hidden_0", psi["hidden_0"]["kernel"]), ("hidden_1", psi["hidden_1"]["kernel"]),
                         ("out", psi["head"]["out"]["kernel"])]:
        stats = state["head"]["out"] if name == "out" else state[name]
        assert abs(float(stats["sigma"]) / _top_sv(kernel) - 1.0) <= REL, name
        assert _unit_norm(kernel / stats["sigma"]), name
    assert not _unit_norm(psi["hidden_0"]["kernel"])                 # broken: no normalization


def _variants():
    for factory, tiny in [(mlp_gan, TINY_MLP), (dcgan, TINY_CONV)]:
        yield factory, dict(tiny)
        yield factory, dict(tiny, num_classes=3)
        yield factory, dict(tiny, num_classes=3, conditioning="projection", spectral_norm=True)
        yield factory, dict(tiny, num_classes=3, critic_outputs=4)
        yield factory, dict(tiny, pack=2, spectral_norm=True)


@pytest.mark.parametrize("factory,kwargs", list(_variants()),
                         ids=[f"{f.__name__}-{'-'.join(map(str, k.items()))}"[:60] for f, k in _variants()])
def test_protocol_shapes(factory, kwargs):
    """init groups; sample [n, D] (in [0, 1] for dcgan); critic v [B] / [B, K+1]
    (AC-GAN: unconditional input); state () without spectral norm."""
    spec = factory(**kwargs)
    assert isinstance(spec.generator, ImplicitGenerator) and isinstance(spec.critic, Critic)
    params = spec.init(jax.random.PRNGKey(0))
    assert sorted(params) == [CRITIC, GENERATOR]
    n, K = 4, kwargs.get("num_classes")
    labels = None if K is None else jnp.array([0, 1, 2, 1])
    x = spec.generator.sample(params[GENERATOR], jax.random.PRNGKey(1), n, *([] if K is None else [labels]))
    assert x.shape == (n, spec.x_dim) and spec.generator.num_classes == K
    if factory is dcgan:
        assert spec.x_dim == 784 and float(x.min()) >= 0 and float(x.max()) <= 1
    acgan = kwargs.get("critic_outputs", 1) > 1
    assert spec.critic.num_classes == (None if acgan else K)
    state = spec.critic.init_state(jax.random.PRNGKey(2))
    assert (state == ()) != bool(kwargs.get("spectral_norm"))
    m = spec.pack
    v, new_state = spec.critic.apply(params[CRITIC], state, x.reshape(n // m, m * spec.x_dim),
                                     None if spec.critic.num_classes is None else labels)
    assert v.shape == ((n // m, K + 1) if acgan else (n // m,)) and bool(jnp.all(jnp.isfinite(v)))
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


def test_generator_is_differentiable_stateless_and_batch_normalized():
    """Every generator parameter gets a nonzero gradient; the BN generator has only
    params (no state) and is a pure function of the key; its BN uses the batch's
    own statistics (a batch of one gives the same x for every key)."""
    spec = mlp_gan(num_classes=2, **TINY_MLP)
    theta = spec.init(jax.random.PRNGKey(0))[GENERATOR]
    labels = jnp.array([0, 1, 1, 0, 1])
    weights = jax.random.normal(jax.random.PRNGKey(1), (5, 2))
    grads = jax.grad(lambda t: jnp.sum(weights * spec.generator.sample(t, jax.random.PRNGKey(2), 5, labels)))(theta)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree_util.tree_leaves(grads))
    assert "bias" not in theta["hidden_0"] and set(theta["bn_0"]) == {"scale", "bias"}
    sample = jax.jit(spec.generator.sample, static_argnums=2)
    a, b = sample(theta, jax.random.PRNGKey(3), 5, labels), sample(theta, jax.random.PRNGKey(3), 5, labels)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, sample(theta, jax.random.PRNGKey(4), 5, labels))
    one = [sample(theta, jax.random.PRNGKey(s), 1, labels[:1]) for s in (5, 6)]
    np.testing.assert_allclose(one[0], one[1], atol=1e-5)


def _maxout_features(psi, x, widths, k):
    h = x
    for i, width in enumerate(widths):
        layer = psi[f"hidden_{i}"]
        h = jnp.max((h @ layer["kernel"] + layer["bias"]).reshape(h.shape[0], width, k), axis=-1)
    return h


def test_projection_critic_by_hand():
    """v = ψ_out(φ(x)) + embed(c)·φ(x) (Miyato & Koyama 2018), φ the maxout features,
    computed from the params by hand; the AC-GAN head is ψ_out(φ(x)) [B, K+1]."""
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 2))
    c = jnp.array([0, 2, 1, 2, 0])
    spec = mlp_gan(num_classes=3, conditioning="projection", **TINY_MLP)
    psi = spec.init(jax.random.PRNGKey(0))[CRITIC]
    phi = _maxout_features(psi, x, (6, 5), 2)
    head = psi["head"]
    want = (phi @ head["out"]["kernel"] + head["out"]["bias"])[:, 0] + jnp.sum(head["embed"]["kernel"][c] * phi, -1)
    v, _ = spec.critic.apply(psi, (), x, c)
    np.testing.assert_allclose(v, want, rtol=1e-5, atol=1e-6)
    without = (phi @ head["out"]["kernel"] + head["out"]["bias"])[:, 0]
    assert float(jnp.max(jnp.abs(v - without))) > 1e-3              # the projection term matters
    ac = mlp_gan(num_classes=3, critic_outputs=4, **TINY_MLP)
    psi = ac.init(jax.random.PRNGKey(0))[CRITIC]
    v, _ = ac.critic.apply(psi, (), x)
    phi = _maxout_features(psi, x, (6, 5), 2)
    np.testing.assert_allclose(v, phi @ psi["head"]["out"]["kernel"] + psi["head"]["out"]["bias"], rtol=1e-5,
                               atol=1e-6)


def test_bad_inputs_fail_clearly():
    key = jax.random.PRNGKey(0)
    uncond, cond = mlp_gan(**TINY_MLP), mlp_gan(num_classes=3, **TINY_MLP)
    p_u, p_c = uncond.init(key), cond.init(key)
    x = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="unconditional"):
        uncond.generator.sample(p_u[GENERATOR], key, 4, jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match="unconditional"):
        uncond.critic.apply(p_u[CRITIC], (), x, jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match="needs condition"):
        cond.generator.sample(p_c[GENERATOR], key, 4)
    with pytest.raises(ValueError, match="needs condition"):
        cond.critic.apply(p_c[CRITIC], (), x)
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        cond.critic.apply(p_c[CRITIC], (), x, jnp.zeros((4, 1), jnp.int32))
    with pytest.raises(TypeError, match="integer"):
        cond.generator.sample(p_c[GENERATOR], key, 4, jnp.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cond.critic.apply(p_c[CRITIC], (), x, jnp.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"x must have shape \[B, 2\]"):
        uncond.critic.apply(p_u[CRITIC], (), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="pack 2"):
        mlp_gan(pack=2, **TINY_MLP).critic.apply(p_u[CRITIC], (), x)
    sn = mlp_gan(spectral_norm=True, **TINY_MLP)
    with pytest.raises(ValueError, match="init_state"):
        sn.critic.apply(sn.init(key)[CRITIC], (), x)
    for kwargs, match in [(dict(maxout=0), "maxout"), (dict(maxout=2.5), "maxout"),
                          (dict(num_classes=3, conditioning="film"), "conditioning"),
                          (dict(conditioning="projection"), "num_classes"),
                          (dict(num_classes=3, conditioning="projection", critic_outputs=2), "one output"),
                          (dict(num_classes=3, conditioning="acgan", critic_outputs=2), "AC-GAN"),
                          (dict(num_classes=3, pack=2), "pack"), (dict(critic_hidden=()), "critic_hidden")]:
        with pytest.raises(ValueError, match=match):
            mlp_gan(**{**TINY_MLP, **kwargs})
    with pytest.raises(ValueError, match="generator_channels"):
        dcgan(generator_channels=(4, 4, 4))
