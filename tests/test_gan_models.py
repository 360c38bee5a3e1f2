"""GAN models (review Sec. 3.2.4): spectral normalization against the SVD,
the protocols of every generator/critic factory, the projection critic by
hand, and the input checks (sajax.models._gan, sajax.models._spectral)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sajax.core import CRITIC, GENERATOR, Critic, ImplicitGenerator
from sajax.models._gan import dcgan, mlp_gan
from sajax.models._spectral import COLLECTION, SpectralConv, SpectralDense, spectral_norm_estimate

REL = 0.01  # "within 1%"
TINY_MLP = dict(generator_hidden=(6, 6), critic_hidden=(6, 6), maxout=2)  # few distinct kernel shapes
TINY_CONV = dict(latent_dim=4, generator_channels=(4, 3), critic_channels=(3, 4))


def _top_sv(w):
    return float(np.linalg.svd(np.asarray(w, np.float64).reshape(-1, w.shape[-1]), compute_uv=False)[0])


def _unit_norm(w) -> bool:
    return abs(_top_sv(w) - 1.0) <= REL


def _thread(apply, variables, x, calls=30):
    """``calls`` training calls of a module (one compile), its ``spectral`` collection threaded."""
    step = jax.jit(lambda spectral: apply({**variables, COLLECTION: spectral}, x, mutable=[COLLECTION])[1])
    spectral = variables[COLLECTION]
    for _ in range(calls):
        spectral = step(spectral)[COLLECTION]
    return spectral


def test_power_iteration_matches_svd_and_needs_its_state():
    """30 calls of one power iteration, u carried over: σ̂ within 1% of the top singular
    value (gap s2/s1 = 0.83) and u the top right-singular vector; one iteration from the
    random start (u not carried over) is off by > 1%; dσ̂/dW = v uᵀ."""
    rng = np.random.default_rng(0)
    left, right = np.linalg.qr(rng.normal(size=(8, 6)))[0], np.linalg.qr(rng.normal(size=(6, 6)))[0]
    w = jnp.asarray(left @ np.diag([3.0, 2.5, 2.0, 1.5, 1.0, 0.5]) @ right.T, jnp.float32)
    u0 = jnp.asarray(rng.normal(size=6), jnp.float32)
    estimate = jax.jit(spectral_norm_estimate)                      # n_steps=1: one iteration per call
    u = u0
    for _ in range(29):
        u = estimate(w, u)[1]
    sigma, u = estimate(w, u)                                        # the 30th call
    assert abs(float(sigma) / _top_sv(w) - 1.0) <= REL
    assert abs(abs(float(u @ right[:, 0])) - 1.0) < 1e-3            # u -> top right-singular vector
    stale, _ = estimate(w, u0)                                       # broken: u not carried over
    assert abs(float(stale) / _top_sv(w) - 1.0) > REL
    # σ̂ = vᵀ W u with u, v constants: dσ̂/dW = v uᵀ (Miyato et al. 2018)
    grad, u1 = jax.jit(lambda m: (jax.grad(lambda a: spectral_norm_estimate(a, u, 1)[0])(m),
                                  spectral_norm_estimate(m, u, 1)[1]))(w)
    v = np.asarray(w) @ np.asarray(u)
    np.testing.assert_allclose(grad, np.outer(v / np.linalg.norm(v), u1), atol=1e-5)


def test_spectral_dense_is_one_lipschitz_after_threaded_calls():
    """The SpectralDense map's Jacobian K/σ̂ has top singular value 1 (within 1%) and
    the stored σ̂ matches the SVD of K after 30 threaded calls; nn.Dense (no
    normalization) fails the same check."""
    layer = SpectralDense(6)
    x = jnp.ones((2, 5))
    variables = jax.jit(layer.init)(jax.random.PRNGKey(1), x)
    spectral = _thread(layer.apply, variables, x)
    assert not np.allclose(spectral["u"], variables[COLLECTION]["u"])
    kernel = variables["params"]["kernel"]
    assert abs(float(spectral["sigma"]) / _top_sv(kernel) - 1.0) <= REL
    f = lambda z: layer.apply({**variables, COLLECTION: spectral}, z)  # noqa: E731 (eval: state not stored)
    plain = nn.Dense(6)
    g = lambda z: plain.apply({"params": variables["params"]}, z)  # noqa: E731
    jac_spectral, jac_plain = jax.jit(lambda z: (jax.jacfwd(f)(z), jax.jacfwd(g)(z)))(x[0])   # one program
    assert _unit_norm(jac_spectral)
    assert not _unit_norm(jac_plain)


def test_spectral_conv_normalizes_the_reshaped_kernel():
    """SpectralConv = flax Conv with kernel K/σ̂, σ̂ the top singular value of K as
    [kh·kw·in, out] (within 1% after 30 threaded calls)."""
    conv = SpectralConv(3, (3, 3), (2, 2))
    x = jax.random.normal(jax.random.PRNGKey(2), (1, 6, 6, 2))
    variables = jax.jit(conv.init)(jax.random.PRNGKey(3), x)
    spectral = _thread(conv.apply, variables, x)
    kernel = variables["params"]["kernel"]
    sigma = float(spectral["sigma"])
    assert abs(sigma / _top_sv(kernel) - 1.0) <= REL and _unit_norm(kernel / sigma)

    @jax.jit
    def outputs(variables, spectral):               # SpectralConv's and Conv's (kernel K/σ̂) outputs, one program
        y, _ = conv.apply({**variables, COLLECTION: spectral}, x, mutable=[COLLECTION])
        kernel = variables["params"]["kernel"]
        return y, nn.Conv(3, (3, 3), (2, 2)).apply({"params": {**variables["params"], "kernel": kernel / sigma}}, x)

    np.testing.assert_allclose(*outputs(variables, spectral), rtol=2e-3, atol=1e-5)


MLP = {"concat_leaky": dict(num_classes=3, maxout=1), "projection": dict(num_classes=3, conditioning="projection"),
       "acgan": dict(num_classes=3, critic_outputs=4), "pack_sn": dict(pack=2, spectral_norm=True)}
# the conv critic's projection / AC-GAN heads are the MLP's (_CriticHead, checked above and by hand)
CONV = {"concat_sn": dict(num_classes=3, spectral_norm=True), "pack": dict(pack=2)}


@functools.lru_cache(maxsize=None)
def _built(family: str, variant: str):
    """(spec, params) of one tiny variant, built once per session (inits dominate the test time)."""
    factory, tiny, kwargs = (mlp_gan, TINY_MLP, MLP[variant]) if family == "mlp" else (dcgan, TINY_CONV,
                                                                                         CONV[variant])
    spec = factory(**{**tiny, **kwargs})
    return spec, jax.jit(spec.init)(jax.random.PRNGKey(0))


def test_spectral_critic_threads_its_state_through_the_protocol():
    """Critic.apply returns the updated power-iteration vectors (different from the
    input state); after 30 calls every layer's σ̂ is within 1% of its top singular
    value, so every normalized kernel has norm 1 (the raw kernels do not) and the
    critic's input gradients have norm <= 1 (not so without SN, kernels × 3); ψ-grads finite, nonzero."""
    spec, params = _built("mlp", "pack_sn")
    psi = params[CRITIC]
    state0 = jax.jit(spec.critic.init_state)(jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(2), (3, 4))
    apply = jax.jit(spec.critic.apply)
    v, state1 = apply(psi, state0, x)
    assert v.shape == (3,)
    assert jax.tree_util.tree_structure(state1) == jax.tree_util.tree_structure(state0)
    assert not np.allclose(state1["hidden_0"]["u"], state0["hidden_0"]["u"])
    state = state0
    for _ in range(30):
        state = apply(psi, state, x)[1]
    for name, kernel in [("hidden_0", psi["hidden_0"]["kernel"]), ("hidden_1", psi["hidden_1"]["kernel"]),
                         ("out", psi["head"]["out"]["kernel"])]:
        stats = state["head"]["out"] if name == "out" else state[name]
        assert abs(float(stats["sigma"]) / _top_sv(kernel) - 1.0) <= REL, name
        assert _unit_norm(kernel / stats["sigma"]), name
    assert not _unit_norm(psi["hidden_0"]["kernel"])                 # broken: no normalization
    # so the critic is 1-Lipschitz (maxout is): |∇_x V| <= 1 at random points, whatever the
    # kernels' scale (W/σ̂(W) is scale-free); the same critic without SN and kernels × 3 is not
    points = jax.random.normal(jax.random.PRNGKey(3), (64, 4))
    big = jax.tree_util.tree_map_with_path(lambda path, a: 3 * a if path[-1].key == "kernel" else a, psi)
    plain = mlp_gan(**TINY_MLP, pack=2).critic                       # same param tree, no normalization
    for critic, st, bound in [(spec.critic, state, True), (plain, (), False)]:
        slope = jax.jit(jax.vmap(jax.grad(lambda z: critic.apply(big, st, z[None])[0][0])))(points)
        assert (float(jnp.max(jnp.linalg.norm(slope, axis=-1))) <= 1 + REL) == bound
    grads = jax.jit(jax.grad(lambda p: jnp.sum(apply(p, state, x)[0])))(psi)
    assert all(bool(np.all(np.isfinite(g))) and float(np.max(np.abs(g))) > 0
               for g in map(np.asarray, jax.tree_util.tree_leaves(grads)))


VARIANTS = [("mlp", v) for v in MLP] + [("conv", v) for v in CONV]


@pytest.mark.parametrize("family,variant", VARIANTS, ids=[f"{f}-{v}" for f, v in VARIANTS])
def test_protocol_shapes(family, variant):
    """init groups; sample [n, D] (in [0, 1] for dcgan); critic v [B] / [B, K+1]
    (AC-GAN: unconditional input); state () without spectral norm, the same tree
    back with it; PacGAN critics take [n/m, m·D]."""
    spec, params = _built(family, variant)
    kwargs = (MLP if family == "mlp" else CONV)[variant]
    assert isinstance(spec.generator, ImplicitGenerator) and isinstance(spec.critic, Critic)
    assert sorted(params) == [CRITIC, GENERATOR]
    n, K = 2, kwargs.get("num_classes")                             # n = the init's batch (shapes reused)
    labels = None if K is None else jnp.array([0, 2])
    m = spec.pack

    @jax.jit
    def sample_and_critique(params, sample_key, state_key):
        """n draws x, the critic's initial state, and its v and new state at x, in one program."""
        x = spec.generator.sample(params[GENERATOR], sample_key, n, *([] if K is None else [labels]))
        state = spec.critic.init_state(state_key)
        v, new_state = spec.critic.apply(params[CRITIC], state, x.reshape(n // m, m * spec.x_dim),
                                         None if spec.critic.num_classes is None else labels)
        return x, state, v, new_state

    x, state, v, new_state = sample_and_critique(params, jax.random.PRNGKey(1), jax.random.PRNGKey(2))
    x, v = np.asarray(x), np.asarray(v)
    assert x.shape == (n, spec.x_dim) and spec.generator.num_classes == K
    if family == "conv":
        assert spec.x_dim == 784 and float(x.min()) >= 0 and float(x.max()) <= 1
    acgan = kwargs.get("critic_outputs", 1) > 1
    assert spec.critic.num_classes == (None if acgan else K)
    assert (state == ()) != bool(kwargs.get("spectral_norm"))
    assert v.shape == ((n // m, K + 1) if acgan else (n // m,)) and bool(np.all(np.isfinite(v)))
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


def test_generator_is_differentiable_stateless_and_batch_normalized():
    """Every generator parameter gets a nonzero gradient; the BN generator has only
    params (no state) and is a pure function of the key; its BN uses the batch's
    own statistics (a batch of one gives the same x for every key)."""
    spec, params = _built("mlp", "concat_leaky")
    theta = params[GENERATOR]
    labels = jnp.array([0, 1, 1, 0, 2])
    weights = jax.random.normal(jax.random.PRNGKey(1), (5, 2))
    loss = lambda t: jnp.sum(weights * spec.generator.sample(t, jax.random.PRNGKey(2), 5, labels))  # noqa: E731
    grads = jax.jit(jax.grad(loss))(theta)
    assert all(float(np.max(np.abs(g))) > 0 for g in map(np.asarray, jax.tree_util.tree_leaves(grads)))
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
    spec, params = _built("mlp", "projection")
    ac, ac_params = _built("mlp", "acgan")

    @jax.jit
    def by_hand(psi, ac_psi):
        """The critics' v and v by hand (projection: with and without its term; AC-GAN), one program."""
        phi = _maxout_features(psi, x, (6, 6), 2)
        head = psi["head"]
        want = (phi @ head["out"]["kernel"] + head["out"]["bias"])[:, 0] + jnp.sum(head["embed"]["kernel"][c] * phi, -1)
        without = (phi @ head["out"]["kernel"] + head["out"]["bias"])[:, 0]
        ac_phi = _maxout_features(ac_psi, x, (6, 6), 2)
        return (spec.critic.apply(psi, (), x, c)[0], want, without, ac.critic.apply(ac_psi, (), x)[0],
                ac_phi @ ac_psi["head"]["out"]["kernel"] + ac_psi["head"]["out"]["bias"])

    v, want, without, ac_v, ac_want = by_hand(params[CRITIC], ac_params[CRITIC])
    np.testing.assert_allclose(v, want, rtol=1e-5, atol=1e-6)
    assert float(np.max(np.abs(np.asarray(v) - np.asarray(without)))) > 1e-3   # the projection term matters
    np.testing.assert_allclose(ac_v, ac_want, rtol=1e-5, atol=1e-6)


def test_bad_inputs_fail_clearly():
    key = jax.random.PRNGKey(0)
    (uncond, p_u), (cond, p_c) = _built("mlp", "pack_sn"), _built("mlp", "concat_leaky")
    x, state = jnp.zeros((4, 2)), jax.jit(uncond.critic.init_state)(key)
    with pytest.raises(ValueError, match="unconditional"):
        uncond.generator.sample(p_u[GENERATOR], key, 4, jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match="unconditional"):
        uncond.critic.apply(p_u[CRITIC], state, jnp.zeros((2, 4)), jnp.zeros(2, jnp.int32))
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
        cond.critic.apply(p_c[CRITIC], (), jnp.zeros((4, 3)), jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match="pack 2"):
        uncond.critic.apply(p_u[CRITIC], state, x)
    with pytest.raises(ValueError, match="init_state"):
        uncond.critic.apply(p_u[CRITIC], (), jnp.zeros((2, 4)))
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
