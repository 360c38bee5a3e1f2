"""cGAN and AC-GAN (review Sec. 3.2.4 item 7) against exact answers.

* Both players' gradients are unbiased for the exact gradients of the review's
  F_cGAN (non-saturating generator) and of AC-GAN's F_S + w·F_C / -F_S + w·F_C:
  real rows drawn by index from a fixed labelled set (their expectation is the
  exact mean over the N rows), fake labels c ~ p0(c) (the training labels'
  frequencies), ε by quadrature; z-test over keys.  AC-GAN with uniform fake
  labels must FAIL against the p0(c) answer (the label draw is what is tested).
* Shapes with the Flax concat / projection / AC-GAN critics (spectral norm,
  threaded state); the label lookup by batch.index; every error case.
"""
import jax
from fast_jit import run_fast
import jax.numpy as jnp
import numpy as np
import pytest
from stats import assert_detects, assert_power, assert_unbiased

from sajax.core import CRITIC, GENERATOR, Batch, Critic, ImplicitGenerator
from sajax.estimators._conditional_gan import acgan, cgan

K = 3
LABELS = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2], np.int32)       # p0(c) = (1/2, 1/3, 1/6)
DATA = np.asarray(np.array([-1.0, 0.0, 1.0])[LABELS] + np.linspace(-0.8, 0.8, 12), np.float32)[:, None]
P0C = np.bincount(LABELS, minlength=K) / LABELS.size
THETA = {"mu": jnp.array([-0.5, 0.3, 1.2]), "sigma": jnp.float32(0.8)}
_EPS = jnp.linspace(-9.0, 9.0, 4001)
_W = jnp.exp(-0.5 * _EPS ** 2) / jnp.sum(jnp.exp(-0.5 * _EPS ** 2))




def generator():
    """G_θ(c, ε) = μ_c + σ ε, shape [n, 1]."""
    return ImplicitGenerator(
        lambda th, key, n, c: (th["mu"][c] + th["sigma"] * jax.random.normal(key, (n,)))[:, None], num_classes=K)


def cgan_v(psi, x, c):
    """Per-class linear critic V(x, c) = a_c x + b_c: [B] (a projection-style head)."""
    return psi["a"][c] * x + psi["b"][c]


def acgan_v(psi, x):
    """[B, K+1]: column 0 the source logit s x + t, then class logits W_k x + u_k."""
    return jnp.concatenate([(psi["s"] * x + psi["t"])[:, None], x[:, None] * psi["w"] + psi["u"]], axis=1)


CGAN_CRITIC = Critic(lambda psi, st, x, c: (cgan_v(psi, x[:, 0], c), st), lambda key: (), num_classes=K)
ACGAN_CRITIC = Critic(lambda psi, st, x, condition=None: (acgan_v(psi, x[:, 0]), st), lambda key: ())
PSI_C = {"a": jnp.array([0.7, -0.4, 0.2]), "b": jnp.array([0.1, 0.3, -0.2])}
PSI_A = {"s": jnp.float32(0.6), "t": jnp.float32(-0.1), "w": jnp.array([-1.0, 0.2, 0.9]),
         "u": jnp.array([0.0, 0.4, -0.3])}
W_CLASS = 0.5


def fake_mean(theta, h):
    """Σ_c p0(c) E_ε h(G_θ(c, ε), c) by quadrature: h(x [M], c) -> [M]."""
    return sum(P0C[c] * jnp.sum(_W * h(theta["mu"][c] + theta["sigma"] * _EPS, c)) for c in range(K))


def real_mean(h):
    """The exact expectation over rows drawn uniformly by index: mean over the N rows."""
    return jnp.mean(h(jnp.asarray(DATA[:, 0]), jnp.asarray(LABELS)))


def log_softmax_at(logits, c):
    return jax.nn.log_softmax(logits, axis=-1)[jnp.arange(logits.shape[0]), c]


def expected_losses(kind, theta, psi):
    """(critic loss, generator loss) as the review writes them (independent of the module)."""
    if kind == "cgan":
        v = lambda x, c: cgan_v(psi, x, jnp.broadcast_to(c, x.shape))
        f_cgan = real_mean(lambda x, c: jax.nn.log_sigmoid(v(x, c))) + \
            fake_mean(theta, lambda x, c: jax.nn.log_sigmoid(-v(x, c)))
        return -f_cgan, -fake_mean(theta, lambda x, c: jax.nn.log_sigmoid(v(x, c)))
    cls = lambda x, c: log_softmax_at(acgan_v(psi, x)[:, 1:], jnp.broadcast_to(c, x.shape))
    fake_source = fake_mean(theta, lambda x, c: jax.nn.log_sigmoid(-acgan_v(psi, x)[:, 0]))
    f_s = real_mean(lambda x, c: jax.nn.log_sigmoid(acgan_v(psi, x)[:, 0])) + fake_source
    f_c = real_mean(cls) + fake_mean(theta, cls)
    return -(f_s + W_CLASS * f_c), fake_source - W_CLASS * f_c


def exact_grads(kind, psi):
    return {GENERATOR: jax.grad(lambda t: expected_losses(kind, t, psi)[1])(THETA),
            CRITIC: jax.grad(lambda p: expected_losses(kind, THETA, p)[0])(psi)}


def test_cgan_and_acgan_gradients_are_unbiased_and_the_label_draw_matters():
    ests = {"cgan": (cgan(generator(), CGAN_CRITIC, LABELS), PSI_C),
            "acgan": (acgan(generator(), ACGAN_CRITIC, LABELS, class_weight=W_CLASS, source_loss="minimax"), PSI_A),
            "acgan_uniform": (acgan(generator(), ACGAN_CRITIC, LABELS, class_weight=W_CLASS, source_loss="minimax",
                                    fake_labels="uniform"), PSI_A)}
    data = jnp.asarray(DATA)

    def one(est, psi, key):
        k_i, k_e = jax.random.split(key)
        idx = jax.random.randint(k_i, (64,), 0, LABELS.size)
        return est.estimate({GENERATOR: THETA, CRITIC: psi}, (), k_e, Batch(data[idx], idx)).grads

    keys = jax.random.split(jax.random.PRNGKey(3), 1000)
    got = run_fast(lambda: {k: jax.vmap(lambda key, e=e, p=p: one(e, p, key))(keys) for k, (e, p) in ests.items()})
    exact = run_fast(lambda: {"cgan": exact_grads("cgan", PSI_C), "acgan": exact_grads("acgan", PSI_A)})
    for kind in ("cgan", "acgan"):
        t = assert_unbiased(got[kind], exact[kind], kind, atol=1e-5)
        assert_power(t, 0.1, kind)
    assert_detects(got["acgan_uniform"], exact["acgan"], "acgan with uniform fake labels", atol=1e-5)


def test_labels_are_looked_up_by_index_and_errors_are_clear():
    seen = {}

    def apply(psi, st, x, c):
        seen["x"], seen["c"] = x, c
        return x[:, 0] * psi, st

    est = cgan(generator(), Critic(apply, lambda key: (), num_classes=K), LABELS, loss="hinge")
    idx = jnp.array([11, 0, 7])
    params = {GENERATOR: THETA, CRITIC: jnp.float32(1.0)}
    jax.eval_shape(est.estimate, params, (), jax.random.PRNGKey(0), Batch(jnp.asarray(DATA)[idx], idx))
    assert seen["x"].shape == (6, 1) and seen["c"].shape == (6,)   # real then fake, one critic call
    # V(x, c) = c (a float): d_real is the mean of the looked-up labels, d_fake of the drawn ones
    by_label = cgan(generator(), Critic(lambda psi, st, x, c: (psi * c, st), lambda key: (), num_classes=K), LABELS)
    metrics = run_fast(lambda: by_label.estimate(params, (), jax.random.PRNGKey(0),
                                                 Batch(jnp.asarray(DATA)[idx], idx)).metrics)
    assert float(metrics["d_real"]) == pytest.approx(LABELS[np.asarray(idx)].mean())
    assert 0.0 <= float(metrics["d_fake"]) <= K - 1
    assert {"objective", "critic_loss", "generator_loss", "d_real", "d_fake", "gan_value"} <= set(metrics)
    assert est.init(jax.random.PRNGKey(0), None, DATA) == ()
    with pytest.raises(ValueError, match=r"labels has shape \(12,\) but the training set has N=5"):
        est.init(jax.random.PRNGKey(0), None, DATA[:5])
    with pytest.raises(TypeError, match="batch.index"):
        jax.eval_shape(est.estimate, {GENERATOR: THETA, CRITIC: jnp.float32(1.0)}, (), jax.random.PRNGKey(0),
                       jnp.ones((3, 1)))
    with pytest.raises(ValueError, match=r"shape \[N\]"):
        cgan(generator(), CGAN_CRITIC, LABELS[:, None])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cgan(generator(), CGAN_CRITIC, np.array([0, 3]))
    with pytest.raises(TypeError, match="integers"):
        cgan(generator(), CGAN_CRITIC, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="critic.num_classes=4 does not match generator.num_classes=3"):
        cgan(generator(), CGAN_CRITIC._replace(num_classes=4), LABELS)
    with pytest.raises(ValueError, match="critic.num_classes=None"):
        cgan(generator(), CGAN_CRITIC._replace(num_classes=None), LABELS)
    with pytest.raises(ValueError, match="conditional generator"):
        acgan(generator()._replace(num_classes=None), ACGAN_CRITIC, LABELS)
    with pytest.raises(ValueError, match="loss must be one of"):
        cgan(generator(), CGAN_CRITIC, LABELS, loss="wasserstein")
    with pytest.raises(ValueError, match="fake_labels"):
        acgan(generator(), ACGAN_CRITIC, LABELS, fake_labels="balanced")
    with pytest.raises(ValueError, match="class_weight"):
        acgan(generator(), ACGAN_CRITIC, LABELS, class_weight=-1.0)
    narrow = Critic(lambda psi, st, x, condition=None: (jnp.zeros((x.shape[0], K)), st), lambda key: ())
    with pytest.raises(ValueError, match=r"must output \[B, K\+1\] = \[4, 4\]"):
        jax.eval_shape(acgan(generator(), narrow, LABELS).estimate, {GENERATOR: THETA, CRITIC: PSI_A}, (),
                       jax.random.PRNGKey(0), Batch(jnp.ones((4, 1)), jnp.arange(4)))


@pytest.mark.parametrize("conditioning", ["concat", "projection", "acgan"])
def test_flax_conditional_critics_shapes_and_spectral_state(conditioning):
    """With sajax.models.mlp_gan (spectral norm on): grads match params, the state
    keeps its structure; shapes only (jax.eval_shape: traced, not compiled)."""
    from sajax.models._gan import mlp_gan

    spec = mlp_gan(x_dim=2, latent_dim=2, generator_hidden=(8,), critic_hidden=(8,), maxout=None,
                   spectral_norm=True, num_classes=K, conditioning=conditioning)
    params = jax.eval_shape(spec.init, jax.random.PRNGKey(0))
    est = acgan(spec.generator, spec.critic, LABELS) if conditioning == "acgan" else \
        cgan(spec.generator, spec.critic, LABELS)
    state = jax.eval_shape(lambda key: est.init(key, None, np.zeros((12, 2), np.float32)), jax.random.PRNGKey(1))
    out = jax.eval_shape(est.estimate, params, state, jax.random.PRNGKey(2), Batch(jnp.zeros((4, 2)), jnp.arange(4)))
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    assert jax.tree_util.tree_structure(out.state) == jax.tree_util.tree_structure(state)
    assert all(m.shape == () for m in out.metrics.values())


def test_acgan_defaults_to_the_non_saturating_source_loss():
    """Like every adversarial estimator: source_loss="non-saturating" unless asked."""
    params, batch = {GENERATOR: THETA, CRITIC: PSI_A}, Batch(jnp.asarray(DATA[:8]), jnp.arange(8))
    key = jax.random.PRNGKey(0)
    run = lambda **kw: acgan(generator(), ACGAN_CRITIC, LABELS, **kw).estimate(params, (), key, batch).grads
    default, ns, mm = run(), run(source_loss="non-saturating"), run(source_loss="minimax")
    for a, b in zip(jax.tree_util.tree_leaves(default), jax.tree_util.tree_leaves(ns)):
        np.testing.assert_array_equal(a, b)
    assert any(np.max(np.abs(np.asarray(a) - np.asarray(b))) > 1e-4
               for a, b in zip(jax.tree_util.tree_leaves(default[GENERATOR]), jax.tree_util.tree_leaves(mm[GENERATOR])))
