"""Sigmoid belief nets (review Sec. 3.1.1, Eq. 2) and the categorical-latent
model: shapes, normalization by enumeration, data-boundary validation, the
documented parameter tree, layer-wise access and the observation kind."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exact import all_binary, broadcast_latents, enumerate_latents
from sajax.core import DiscreteLayers, log_joint
from sajax.models import PAPER_ARCHITECTURES, categorical_vae, paper_sbn, sbn, sbn_weights

X_DIM, SIZES = 8, (4, 3)


@pytest.fixture(scope="module", params=["linear", "mlp"])
def spec_params(request):
    spec = sbn(X_DIM, SIZES, kind=request.param, hidden=6)
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    # push the weights away from the near-uniform init so the check is not trivial (in NumPy: the
    # float32 bits of op-by-op jnp, which one XLA program would not keep, fusing 3a + 0.3 into an FMA)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(3.0 * np.asarray(a) + 0.3), params)
    return spec, params


def _all_x_and_h():
    """Every (x, h) pair as x [Mx, D] and h leaves [Mh, Mx, d] (Mx = 256, Mh = 128)."""
    xs = all_binary(X_DIM)
    h = broadcast_latents(enumerate_latents(SIZES), xs.shape[0])
    return xs, h


def test_shapes(spec_params):
    spec, params = spec_params

    @jax.jit
    def outputs(theta, phi):
        """Every array the checks below look at, from one program."""
        x = all_binary(X_DIM)[:5]
        h, log_q = spec.guide.sample_and_log_prob(phi, jax.random.PRNGKey(1), x, 3)
        xs, hs = spec.model.sample(theta, jax.random.PRNGKey(2), 7)
        return dict(h=h, log_q=log_q, lj=log_joint(spec.model, theta, x, h), lq=spec.guide.log_prob(phi, x, h),
                    xs=xs, hs=hs, lj_sample=log_joint(spec.model, theta, xs, hs), mean=spec.model.mean(theta, hs),
                    top=spec.model_layer_logits(theta, 2), model_l2=spec.model_layer_logits(theta, 2, h[1]),
                    guide_l1=spec.guide_layer_logits(phi, 1, h[0]))

    out = outputs(params["model"], params["guide"])
    h, log_q = out["h"], out["log_q"]
    assert [a.shape for a in h] == [(3, 5, 4), (3, 5, 3)]
    assert log_q.shape == (3, 5)
    assert all(set(np.unique(np.asarray(a))) <= {0.0, 1.0} for a in h)
    assert out["lj"].shape == (3, 5)
    np.testing.assert_allclose(out["lq"], log_q, rtol=1e-6, atol=1e-6)
    xs, hs = out["xs"], out["hs"]
    assert xs.shape == (7, X_DIM) and [a.shape for a in hs] == [(7, 4), (7, 3)]
    assert out["lj_sample"].shape == (7,)
    assert out["mean"].shape == (7, X_DIM)
    assert out["top"].shape == (3,)
    assert out["model_l2"].shape == (3, 5, 3)
    assert out["guide_l1"].shape == (3, 5, 3)


def test_joint_sums_to_one(spec_params):
    spec, params = spec_params

    @jax.jit
    def total_joint(theta):
        """Σ_{x, h} p(x, h) by enumeration."""
        xs, h = _all_x_and_h()
        lj = log_joint(spec.model, theta, xs, h)  # [128, 256]
        return jnp.exp(jax.nn.logsumexp(lj))

    np.testing.assert_allclose(total_joint(params["model"]), 1.0, atol=1e-5)


def test_guide_normalizes(spec_params):
    spec, params = spec_params

    @jax.jit
    def totals(phi):
        """Σ_h q(h|x) for every x, by enumeration."""
        xs, h = _all_x_and_h()
        lq = spec.guide.log_prob(phi, xs, h)  # [128, 256]
        return jnp.exp(jax.nn.logsumexp(lq, axis=0)), xs

    total, xs = totals(params["guide"])
    np.testing.assert_allclose(total, np.ones(xs.shape[0]), atol=1e-5)


def test_ancestral_sampling_matches_joint(spec_params):
    """Empirical frequencies of model.sample's x match p(x) = Σ_h p(x, h)."""
    spec, params = spec_params
    n = 200_000
    xs, _ = spec.model.sample(params["model"], jax.random.PRNGKey(3), n)
    codes = np.asarray(xs @ (2.0 ** jnp.arange(X_DIM - 1, -1, -1)), dtype=np.int64)
    freq = np.bincount(codes, minlength=2 ** X_DIM) / n

    @jax.jit
    def marginal(theta):
        """p(x) = Σ_h p(x, h) for every x, by enumeration."""
        allx, h = _all_x_and_h()
        return jnp.exp(jax.nn.logsumexp(log_joint(spec.model, theta, allx, h), axis=0))

    px = np.asarray(marginal(params["model"]))
    tv = 0.5 * np.abs(freq - px).sum()
    # E[TV] <= 0.5 Σ sqrt(p(1-p)/n) for multinomial noise; 3x that as the bound
    bound = 1.5 * np.sum(np.sqrt(px * (1 - px) / n))
    assert tv < bound, (tv, bound)


def test_guide_sampling_matches_log_prob(spec_params):
    """Frequencies of guide samples match exp(log_prob) for one x."""
    spec, params = spec_params
    n = 100_000
    x = all_binary(X_DIM)[37:38]
    h, _ = spec.guide.sample_and_log_prob(params["guide"], jax.random.PRNGKey(4), x, n)
    bits = jnp.concatenate(h, axis=-1)[:, 0, :]
    codes = np.asarray(bits @ (2.0 ** jnp.arange(6, -1, -1)), dtype=np.int64)
    freq = np.bincount(codes, minlength=128) / n
    q_all = jax.jit(lambda phi: jnp.exp(spec.guide.log_prob(phi, x, broadcast_latents(enumerate_latents(SIZES), 1))))
    q = np.asarray(q_all(params["guide"])[:, 0])
    tv = 0.5 * np.abs(freq - q).sum()
    assert tv < 1.5 * np.sum(np.sqrt(q * (1 - q) / n)), tv


def test_bad_data_raises(spec_params):
    spec, params = spec_params
    sample = jax.jit(spec.guide.sample_and_log_prob, static_argnums=3)
    h, _ = sample(params["guide"], jax.random.PRNGKey(1), all_binary(X_DIM)[:2], 1)
    gray = jnp.full((2, X_DIM), 0.5)
    with pytest.raises(ValueError, match="binary"):
        spec.model.log_likelihood(params["model"], gray, h)
    with pytest.raises(ValueError, match="binary"):
        spec.guide.sample_and_log_prob(params["guide"], jax.random.PRNGKey(0), gray, 1)
    with pytest.raises(ValueError, match="event shape"):
        spec.model.log_likelihood(params["model"], jnp.zeros((2, X_DIM + 1)), h)
    with pytest.raises(ValueError, match="NaN"):
        spec.model.log_likelihood(params["model"], jnp.full((2, X_DIM), jnp.nan), h)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="kind"):
        sbn(8, (4,), kind="conv")
    with pytest.raises(ValueError, match="latent_sizes"):
        sbn(8, (4, 0))
    with pytest.raises(TypeError, match="x_dim"):
        sbn(8.5, (4,))
    with pytest.raises(ValueError, match="name"):
        paper_sbn("deep")
    with pytest.raises(ValueError, match="num_classes"):
        categorical_vae(8, 2, 1)


def test_paper_architectures():
    """Parameter shapes of the three JSA-paper SBNs (no forward pass needed)."""
    counts = {}
    for name in PAPER_ARCHITECTURES:
        spec = paper_sbn(name)
        shapes = jax.eval_shape(spec.init, jax.random.PRNGKey(0))
        counts[name] = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes))
    # linear 784-200: W (200x784) + b_x + top logits, and the guide's W + b
    assert counts["linear"] == (200 * 784 + 784 + 200) + (784 * 200 + 200)
    assert counts["linear-2"] == counts["linear"] + (200 * 200 + 200) + (200 * 200 + 200)
    # 784-200-200-(200): two tanh layers of 200 on each side of the stochastic layer
    hidden = 200 * 200 + 200
    assert counts["nonlinear"] == 200 + (2 * hidden + 200 * 784 + 784) + (784 * 200 + 200 + 2 * hidden)


def test_categorical_normalizes():
    spec = categorical_vae(4, num_latents=2, num_classes=3, hidden=5)
    hs = jnp.asarray([np.concatenate([np.eye(3)[i], np.eye(3)[j]]).reshape(2, 3)
                      for i, j in itertools.product(range(3), repeat=2)], jnp.float32)  # [9, 2, 3]

    @jax.jit
    def outputs(key):
        """Sums by enumeration, samples and their log q, from one program."""
        params = jax.tree_util.tree_map(lambda a: 2.0 * a + 0.2, spec.init(key))
        xs = all_binary(4)  # [16, 4]
        h = jnp.broadcast_to(hs[:, None], (9, 16, 2, 3))
        lj = log_joint(spec.model, params["model"], xs, h)
        lq = spec.guide.log_prob(params["guide"], xs, h)
        hq, log_q = spec.guide.sample_and_log_prob(params["guide"], jax.random.PRNGKey(1), xs, 4)
        return dict(total=jnp.exp(jax.nn.logsumexp(lj)), q_totals=jnp.exp(jax.nn.logsumexp(lq, axis=0)),
                    hq=hq, log_q=log_q, hq_sums=hq.sum(-1), lq_of_hq=spec.guide.log_prob(params["guide"], xs, hq),
                    samples=spec.model.sample(params["model"], jax.random.PRNGKey(2), 5))

    out = outputs(jax.random.PRNGKey(0))
    np.testing.assert_allclose(out["total"], 1.0, atol=1e-5)
    np.testing.assert_allclose(out["q_totals"], np.ones(16), atol=1e-5)
    hq, log_q = out["hq"], out["log_q"]
    assert hq.shape == (4, 16, 2, 3) and log_q.shape == (4, 16)
    np.testing.assert_allclose(out["hq_sums"], 1.0)
    np.testing.assert_allclose(out["lq_of_hq"], log_q, rtol=1e-6, atol=1e-6)
    xsamp, hsamp = out["samples"]
    assert xsamp.shape == (5, 4) and hsamp.shape == (5, 2, 3)


def test_categorical_layers_and_observation():
    spec = categorical_vae(4, num_latents=2, num_classes=3, hidden=5)
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    assert spec.model.observation == "bernoulli"
    assert not hasattr(spec.model.log_likelihood, "likelihood")   # the kind travels in the protocol
    lay = spec.layers
    assert isinstance(lay, DiscreteLayers) and (lay.num_layers, lay.kind) == (1, "categorical")
    xs = all_binary(4)
    np.testing.assert_array_equal(lay.layer_logits(params["guide"], 0, xs), spec.guide_logits(params["guide"], xs))
    h, _ = jax.jit(spec.guide.sample_and_log_prob, static_argnums=3)(params["guide"], jax.random.PRNGKey(1), xs, 2)
    assert lay.pack([h]) is h


def test_layers_and_observation(spec_params):
    spec, params = spec_params
    assert spec.model.observation == "bernoulli"
    assert not hasattr(spec.model.log_likelihood, "likelihood")
    lay = spec.layers
    assert isinstance(lay, DiscreteLayers)
    assert (lay.num_layers, lay.kind, lay.pack) == (len(SIZES), "bernoulli", None)
    x = all_binary(X_DIM)[:5]
    h, _ = jax.jit(spec.guide.sample_and_log_prob, static_argnums=3)(params["guide"], jax.random.PRNGKey(1), x, 3)
    for l, parent in enumerate((x,) + tuple(h[:-1])):
        np.testing.assert_array_equal(lay.layer_logits(params["guide"], l, parent),
                                      spec.guide_layer_logits(params["guide"], l, parent))


def test_documented_parameter_tree():
    """The tree shown in the module docstring of sajax.models._sbn, for sbn(784, (200, 100))."""
    shapes = jax.tree_util.tree_map(lambda a: a.shape, jax.eval_shape(sbn(784, (200, 100)).init,
                                                                      jax.random.PRNGKey(0)))
    dense = lambda i, o: {"Dense_0": {"kernel": (i, o), "bias": (o,)}}   # noqa: E731
    assert shapes == {
        "model": {"top": {"logits": (100,)}, "layer0": dense(200, 784), "layer1": dense(100, 200)},
        "guide": {"layer0": dense(784, 200), "layer1": dense(200, 100)},
    }


def test_sbn_weights_give_the_logits():
    """T_l(h) = W_l h + b_l from sbn_weights equals the model's and the guide's logits."""
    spec = sbn(X_DIM, SIZES)
    x = all_binary(X_DIM)[:5]

    @jax.jit
    def setup(key):
        params = jax.tree_util.tree_map(lambda a: 3.0 * a + 0.3, spec.init(key))
        return params, spec.guide.sample_and_log_prob(params["guide"], jax.random.PRNGKey(1), x, 3)[0]

    params, h = setup(jax.random.PRNGKey(0))
    theta, phi = params["model"], params["guide"]
    w_model, w_guide = sbn_weights(spec, theta), sbn_weights(spec, phi)
    assert [w.shape for w, _ in w_model] == [(X_DIM, 4), (4, 3)]
    assert [w.shape for w, _ in w_guide] == [(4, X_DIM), (3, 4)]

    def affine(wb, v):
        w, b = (np.asarray(a, np.float64) for a in wb)
        return np.einsum("oi,...i->...o", w, np.asarray(v, np.float64)) + b

    @jax.jit
    def logits_and_likelihood(theta, phi, h):
        """The model's and the guide's layer logits and log p(x|h), from one program."""
        return ([spec.model_layer_logits(theta, l, h[l]) for l in range(len(SIZES))],
                [spec.guide_layer_logits(phi, l, parent) for l, parent in enumerate((x,) + tuple(h[:-1]))],
                spec.model.log_likelihood(theta, x, h))

    model_logits, guide_logits, log_lik = logits_and_likelihood(theta, phi, h)
    for l in range(len(SIZES)):   # model: T_l(h_{l+1}) gives the logits of x (l = 0) or h_l
        np.testing.assert_allclose(model_logits[l], affine(w_model[l], h[l]),
                                   rtol=1e-5, atol=1e-5)
    for l, parent in enumerate((x,) + tuple(h[:-1])):   # guide: logits of h_{l+1}
        np.testing.assert_allclose(guide_logits[l], affine(w_guide[l], parent),
                                   rtol=1e-5, atol=1e-5)
    # p(x|h_1) by hand from W_0, b_0
    logits = affine(w_model[0], h[0])
    ref = np.sum(np.asarray(x) * logits - np.logaddexp(0.0, logits), axis=-1)
    np.testing.assert_allclose(log_lik, ref, rtol=1e-5, atol=1e-5)


def test_sbn_weights_bad_input():
    spec = sbn(X_DIM, SIZES)
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="params\\['model'\\]"):
        sbn_weights(spec, params)
    with pytest.raises(ValueError, match="layer1"):
        sbn_weights(spec, {"layer0": params["model"]["layer0"]})
    with pytest.raises(TypeError, match="params"):
        sbn_weights(spec, [1, 2])
    mlp = sbn(X_DIM, SIZES, kind="mlp", hidden=6)
    with pytest.raises(ValueError, match="linear"):
        sbn_weights(mlp, jax.jit(mlp.init)(jax.random.PRNGKey(0))["model"])


def test_modules_are_not_shadowed():
    """sajax.models.sbn is the function; its implementation module stays reachable."""
    import importlib

    import sajax

    assert callable(sajax.models.sbn) and callable(sajax.models.categorical_vae)
    assert importlib.import_module("sajax.models._sbn").sbn is sajax.models.sbn
    assert importlib.import_module("sajax.models._categorical").categorical_vae is sajax.models.categorical_vae
