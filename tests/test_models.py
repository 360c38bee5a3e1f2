"""VAE / DLGM adapters (sajax.models.vae, review Eq. 3-4): shapes, densities
against distrax and hand computations, reparameterized samples against their
exact moments (tolerances from the sample size), gradient flow to φ."""
from __future__ import annotations

import functools
import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sajax.core import log_joint
from sajax.models import MLP, BernoulliHead, DiagGaussianHead, iwae_one_layer, iwae_two_layer, vae

B, D = 3, 6


@functools.partial(jax.jit, static_argnums=1)
def _binary(key, shape):
    return (jax.random.uniform(key, shape) < 0.4).astype(jnp.float32)


@pytest.fixture(scope="module")
def one():
    spec = vae(D, (3,), ((5,),))
    return spec, jax.jit(spec.init)(jax.random.PRNGKey(0)), _binary(jax.random.PRNGKey(1), (B, D))


@pytest.fixture(scope="module")
def two():
    spec = vae(D, (4, 2), ((5,), (3, 3)))
    return spec, jax.jit(spec.init)(jax.random.PRNGKey(0)), _binary(jax.random.PRNGKey(1), (B, D))


def _kernels(tree):
    return sorted(tuple(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
                  if path[-1].key == "kernel")


def test_one_layer_shapes(one):
    spec, params, x = one

    @jax.jit
    def outputs(theta, phi, x):
        """Every array the checks below look at, from one program (the distrax
        distributions are pytrees: they come out of jit whole)."""
        h, log_q = spec.guide.sample_and_log_prob(phi, jax.random.PRNGKey(2), x, 4)
        xs, hs = spec.model.sample(theta, jax.random.PRNGKey(3), 7)
        return dict(h=h, log_q=log_q, log_prior=spec.model.log_prior(theta, h),
                    log_lik=spec.model.log_likelihood(theta, x, h), log_prob=spec.guide.log_prob(phi, x, h),
                    log_lik0=spec.model.log_likelihood(theta, x, h[0]), log_prior0=spec.model.log_prior(theta, h[0]),
                    dist=spec.guide.dist(phi, x), prior=spec.model.prior(theta),
                    xs=xs, hs=hs, probs=spec.model.mean(theta, hs))

    out = outputs(params["model"], params["guide"], x)
    assert out["h"].shape == (4, B, 3) and out["log_q"].shape == (4, B)
    assert out["log_prior"].shape == (4, B)
    assert out["log_lik"].shape == (4, B)
    assert out["log_prob"].shape == (4, B)
    assert out["log_lik0"].shape == (B,)
    assert out["log_prior0"].shape == (B,)
    assert out["dist"].batch_shape == (B,) and out["dist"].event_shape == (3,)
    assert out["prior"].event_shape == (3,)
    xs, hs = out["xs"], out["hs"]
    assert xs.shape == (7, D) and hs.shape == (7, 3)
    assert set(np.unique(np.asarray(xs))) <= {0.0, 1.0}
    probs = out["probs"]
    assert probs.shape == (7, D) and np.all((probs > 0) & (probs < 1))


def test_two_layer_shapes(two):
    spec, params, x = two
    theta, phi = params["model"], params["guide"]

    @jax.jit
    def outputs(theta, phi, x):
        h, log_q = spec.guide.sample_and_log_prob(phi, jax.random.PRNGKey(2), x, 4)
        return (h, log_q, log_joint(spec.model, theta, x, h), spec.guide.log_prob(phi, x, h),
                spec.model.log_prior(theta, (h[0][0], h[1][0])), spec.model.sample(theta, jax.random.PRNGKey(3), 7))

    h, log_q, lj, lq, log_prior0, (xs, hs) = outputs(theta, phi, x)
    assert isinstance(h, tuple) and [a.shape for a in h] == [(4, B, 4), (4, B, 2)]
    assert log_q.shape == (4, B)
    assert lj.shape == (4, B)
    assert lq.shape == (4, B)
    assert log_prior0.shape == (B,)
    assert xs.shape == (7, D) and [a.shape for a in hs] == [(7, 4), (7, 2)]
    assert spec.model.prior is None and spec.guide.dist is None
    # p mirrors q: p(h1|h2) goes 2 -> 3 -> 3 -> (4 means + 4 log-stds)
    assert _kernels(theta["layer1"]) == sorted([(2, 3), (3, 3), (3, 8)])
    assert _kernels(phi["layer1"]) == sorted([(4, 3), (3, 3), (3, 4)])


def test_iwae_architectures():
    p1 = jax.eval_shape(iwae_one_layer().init, jax.random.PRNGKey(0))
    assert _kernels(p1["guide"]) == sorted([(784, 200), (200, 200), (200, 100)])
    assert _kernels(p1["model"]) == sorted([(50, 200), (200, 200), (200, 784)])
    spec2 = iwae_two_layer()
    assert spec2.latent_dims == (100, 50) and spec2.likelihood == "bernoulli"
    p2 = jax.eval_shape(spec2.init, jax.random.PRNGKey(0))
    assert _kernels(p2["guide"]) == sorted([(784, 200), (200, 200), (200, 200),
                                            (100, 100), (100, 100), (100, 100)])
    assert _kernels(p2["model"]) == sorted([(100, 200), (200, 200), (200, 784),
                                            (50, 100), (100, 100), (100, 200)])


def test_guide_log_prob_matches_distrax(one, two):
    (spec1, params1, x1), (spec2, params2, x2) = one, two

    @jax.jit
    def one_layer(phi, x):
        h, log_q = spec1.guide.sample_and_log_prob(phi, jax.random.PRNGKey(4), x, 5)
        mean, log_std = spec1.guide_layer(phi, 0, x)
        ref = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std)).log_prob(h)
        return ref, (spec1.guide.log_prob(phi, x, h), log_q, spec1.guide.dist(phi, x).log_prob(h))

    ref, got = one_layer(params1["guide"], x1)
    for value in got:
        np.testing.assert_allclose(value, ref, rtol=1e-5, atol=1e-5)

    @jax.jit
    def two_layers(theta, phi, x):
        (h1, h2), log_q = spec2.guide.sample_and_log_prob(phi, jax.random.PRNGKey(4), x, 5)
        m1, s1 = spec2.guide_layer(phi, 0, x)
        m2, s2 = spec2.guide_layer(phi, 1, h1)
        ref = (distrax.MultivariateNormalDiag(m1, jnp.exp(s1)).log_prob(h1)
               + distrax.MultivariateNormalDiag(m2, jnp.exp(s2)).log_prob(h2))
        # p(h1, h2) = N(h2; 0, I) N(h1; μθ(h2), σθ(h2))
        pm, ps = spec2.model_layer(theta, 1, h2)
        ref_prior = (distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2)).log_prob(h2)
                     + distrax.MultivariateNormalDiag(pm, jnp.exp(ps)).log_prob(h1))
        return ref, (spec2.guide.log_prob(phi, x, (h1, h2)), log_q), ref_prior, spec2.model.log_prior(theta, (h1, h2))

    ref, got, ref_prior, log_prior = two_layers(params2["model"], params2["guide"], x2)
    for value in got:
        np.testing.assert_allclose(value, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(log_prior, ref_prior, rtol=1e-5, atol=1e-4)


def test_reparameterized_sample_moments(one):
    spec, params, x = one
    phi = params["guide"]
    n = 20000
    h, _ = spec.guide.sample_and_log_prob(phi, jax.random.PRNGKey(5), x, n)
    mean, log_std = spec.guide_layer(phi, 0, x)
    std = np.exp(np.asarray(log_std, np.float64))
    h = np.asarray(h, np.float64)
    # sample mean ~ N(μ, σ²/n); sample variance has sd σ² sqrt(2/(n-1)) for a Gaussian
    assert np.all(np.abs(h.mean(0) - np.asarray(mean)) < 5 * std / math.sqrt(n))
    assert np.all(np.abs(h.var(0, ddof=1) - std ** 2) < 5 * std ** 2 * math.sqrt(2 / (n - 1)))


def test_prior_samples_are_standard_normal(two):
    spec, params, _ = two
    n = 20000
    _, (h1, h2) = spec.model.sample(params["model"], jax.random.PRNGKey(6), n)
    h2 = np.asarray(h2, np.float64)
    assert np.all(np.abs(h2.mean(0)) < 5 / math.sqrt(n))
    assert np.all(np.abs(h2.var(0, ddof=1) - 1) < 5 * math.sqrt(2 / (n - 1)))


def test_gradient_flows_to_phi_through_samples(two):
    """E_ε ∇φ Σ_j h_j² = ∇φ Σ_j (μ_j² + σ_j²) for the bottom layer, checked over many keys."""
    spec, params, x = two
    phi = params["guide"]

    def mc(p, key):
        (h1, _), _ = spec.guide.sample_and_log_prob(p, key, x, 1)
        return jnp.sum(jnp.square(h1))

    def exact(p):
        m, s = spec.guide_layer(p, 0, x)
        return jnp.sum(jnp.square(m) + jnp.exp(2 * s))

    n = 4000
    grads = jax.jit(jax.vmap(jax.grad(mc), in_axes=(None, 0)))(phi, jax.random.split(jax.random.PRNGKey(7), n))
    ref = jax.jit(jax.grad(exact))(phi)
    leaves_mc = jax.tree_util.tree_leaves(grads)
    leaves_ref = jax.tree_util.tree_leaves(ref)
    nonzero = 0
    for g, r in zip(leaves_mc, leaves_ref):
        g = np.asarray(g, np.float64)
        mean, se = g.mean(0), g.std(0) / math.sqrt(n)
        assert np.all(np.abs(mean - np.asarray(r)) <= 5 * se + 1e-5)
        nonzero += int(np.any(np.abs(r) > 1e-3))
    assert nonzero >= 4   # both MLP layers and the fused head of q(h1|x) receive gradient
    # the top layer's parameters are reached through h1 (a sample) only
    top = lambda p: jnp.sum(spec.guide.sample_and_log_prob(p, jax.random.PRNGKey(8), x, 2)[0][1])
    g_top = jax.jit(jax.grad(top))(phi)
    assert np.any(np.asarray(g_top["layer0"]["MLP_0"]["Dense_0"]["kernel"]) != 0)


def test_bernoulli_log_likelihood_by_hand():
    spec = vae(3, (2,), ((),))                  # decoder: logits = h W + b
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    dense = params["model"]["layer0"]["head"]["Dense_0"]
    w, b = np.asarray(dense["kernel"], np.float64), np.asarray(dense["bias"], np.float64)
    w = w + 0.3                                  # make it non-trivial, then put it back
    params["model"]["layer0"]["head"]["Dense_0"] = {"kernel": jnp.asarray(w, jnp.float32),
                                                    "bias": jnp.asarray(b + 0.1, jnp.float32)}
    x = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], np.float32)
    h = np.array([[0.5, -1.0], [2.0, 0.3]], np.float32)
    prob = 1 / (1 + np.exp(-(h.astype(np.float64) @ w + b + 0.1)))
    ref = np.sum(x * np.log(prob) + (1 - x) * np.log(1 - prob), axis=-1)
    densities = jax.jit(lambda theta, x, h: (spec.model.log_likelihood(theta, x, h), spec.model.mean(theta, h),
                                             spec.model.log_prior(theta, h)))
    got, mean, log_prior = densities(params["model"], x, h)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_allclose(mean, prob, rtol=1e-5)
    np.testing.assert_allclose(log_prior,
                               -0.5 * np.sum(h.astype(np.float64) ** 2, -1) - math.log(2 * math.pi), rtol=1e-6)


@pytest.mark.parametrize("obs_std", [None, 0.5])
def test_gaussian_log_likelihood_by_hand(obs_std):
    spec = vae(3, (2,), ((),), likelihood="gaussian", obs_std=obs_std)
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    theta = params["model"]
    head = theta["layer0"]["head"]
    if obs_std is None:   # learned σ: move it away from 1 to test it is used
        head["log_std"] = jnp.array([0.2, -0.4, 0.1], jnp.float32)
    x = np.array([[0.3, -1.2, 2.0]], np.float32)
    h = np.array([[0.5, -1.0]], np.float32)
    mu = h.astype(np.float64) @ np.asarray(head["Dense_0"]["kernel"]) + np.asarray(head["Dense_0"]["bias"])
    sd = np.exp(np.asarray(head["log_std"], np.float64)) if obs_std is None else np.full(3, obs_std)
    ref = np.sum(-0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi), -1)
    np.testing.assert_allclose(jax.jit(spec.model.log_likelihood)(theta, x, h), ref, rtol=1e-5)
    if obs_std is not None:
        assert "log_std" not in head


def test_softplus_std_head():
    head = DiagGaussianHead(3, std_param="softplus", min_std=0.01)

    @jax.jit
    def outputs(inp):
        p = head.init(jax.random.PRNGKey(0), inp)
        mean, log_std = head.apply(p, inp)
        out = inp @ p["params"]["Dense_0"]["kernel"] + p["params"]["Dense_0"]["bias"]
        return mean, jnp.exp(log_std), out[:, :3], jax.nn.softplus(out[:, 3:]) + 0.01

    mean, std, want_mean, want_std = outputs(jnp.ones((2, 4)))
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6)
    np.testing.assert_allclose(std, want_std, rtol=1e-5)


def test_modules_shapes():
    mlp, bh = MLP((7, 5), activation="relu"), BernoulliHead(6)
    run = jax.jit(lambda module, inp: module.apply(module.init(jax.random.PRNGKey(0), inp), inp), static_argnums=0)
    inp = jnp.ones((2, 3, 4))
    out = run(mlp, inp)
    assert out.shape == (2, 3, 5) and np.all(np.asarray(out) >= 0)
    assert run(bh, inp).shape == (2, 3, 6)


def test_bad_arguments_raise(one):
    with pytest.raises(ValueError, match="x_dim"):
        vae(0)
    with pytest.raises(TypeError, match="x_dim"):
        vae(7.5)
    with pytest.raises(ValueError, match="latent_dims"):
        vae(4, ())
    with pytest.raises(ValueError, match="latent_dims"):
        vae(4, (0,))
    with pytest.raises(ValueError, match="bernoulli.*gaussian"):
        vae(4, likelihood="poisson")
    with pytest.raises(ValueError, match="activation"):
        vae(4, activation="cosine")
    with pytest.raises(ValueError, match="hidden"):
        vae(4, (3, 2), ((5,), (5,), (5,)))
    with pytest.raises(ValueError, match="hidden"):
        vae(4, (3,), ((0,),))
    with pytest.raises(ValueError, match="std_param"):
        vae(4, std_param="abs")
    with pytest.raises(ValueError, match="obs_std"):
        vae(4, likelihood="gaussian", obs_std=-1.0)
    with pytest.raises(ValueError, match="obs_std"):
        vae(4, obs_std=1.0)
    spec, params, x = one
    h, _ = jax.jit(spec.guide.sample_and_log_prob, static_argnums=3)(params["guide"], jax.random.PRNGKey(0), x, 1)
    with pytest.raises(ValueError, match="binary"):
        spec.model.log_likelihood(params["model"], x * 0.5, h)
    with pytest.raises(ValueError, match="event shape"):
        spec.guide.sample_and_log_prob(params["guide"], jax.random.PRNGKey(0), x[:, :4], 1)
    with pytest.raises(ValueError, match="stochastic layer"):
        spec.model.log_prior(params["model"], (h, h))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_observation_kind_is_in_the_protocol(likelihood):
    spec = vae(4, (2,), ((3,),), likelihood=likelihood)
    assert spec.model.observation == likelihood == spec.likelihood
    assert not hasattr(spec.model.log_likelihood, "likelihood")   # no attribute set on the function
    assert iwae_two_layer(10).model.observation == "bernoulli"


def test_shared_densities_are_used(one):
    """The model's log-densities are sajax._densities' (one formula, one implementation)."""
    from sajax._densities import bernoulli_log_prob, diag_normal_log_prob, std_normal_log_prob

    spec, params, x = one
    theta, phi = params["model"], params["guide"]
    h, _ = spec.guide.sample_and_log_prob(phi, jax.random.PRNGKey(2), x, 4)
    np.testing.assert_array_equal(spec.model.log_likelihood(theta, x, h),
                                  bernoulli_log_prob(spec.model_layer(theta, 0, h), x))
    np.testing.assert_array_equal(spec.model.log_prior(theta, h), std_normal_log_prob(h))
    np.testing.assert_array_equal(spec.guide.log_prob(phi, x, h),
                                  diag_normal_log_prob(h, *spec.guide_layer(phi, 0, x)))


def test_vae_module_is_not_shadowed():
    """sajax.models.vae is the function; its implementation module stays reachable."""
    import importlib

    import sajax

    assert callable(sajax.models.vae)
    module = importlib.import_module("sajax.models._vae")
    assert module.vae is sajax.models.vae and module.iwae_one_layer is iwae_one_layer
    assert not hasattr(module, "bernoulli_logits_log_prob")   # the old private copies are gone


# --------------------------------------------------------------------------
# Adapters: a user's own Flax encoder / decoder (guide_from_module, model_from_modules)

import flax.linen as nn  # noqa: E402
import optax  # noqa: E402

from sajax.core import GUIDE, MODEL  # noqa: E402
from sajax.models import guide_from_module, model_from_modules  # noqa: E402

HIDDEN, LATENT = (7, 5), 3


class _UserEncoder(nn.Module):
    """What a user writes: tanh MLP, then one Dense giving (mean, log_std)."""

    @nn.compact
    def __call__(self, x):
        for width in HIDDEN:
            x = jnp.tanh(nn.Dense(width)(x))
        out = nn.Dense(2 * LATENT)(x)
        return out[..., :LATENT], out[..., LATENT:]


class _UserDecoder(nn.Module):
    gaussian: bool = False

    @nn.compact
    def __call__(self, h):
        for width in reversed(HIDDEN):
            h = jnp.tanh(nn.Dense(width)(h))
        if not self.gaussian:
            return nn.Dense(D)(h)
        return nn.Dense(D)(h), self.param("log_std", nn.initializers.zeros, (D,), jnp.float32)


def _user_params(builtin_layer):
    """The built-in layer {MLP_0: {Dense_i}, head: {Dense_0, log_std?}} as the user module's params."""
    mlp, head = builtin_layer["MLP_0"], builtin_layer["head"]
    out = {f"Dense_{i}": mlp[f"Dense_{i}"] for i in range(len(mlp))}
    out[f"Dense_{len(mlp)}"] = head["Dense_0"]
    return {**out, **({"log_std": head["log_std"]} if "log_std" in head else {})}


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_user_modules_match_the_builtin_vae(likelihood):
    """A user's encoder/decoder through the adapters, with the built-in spec's
    weights, gives the built-in log p(x, h), log q, samples, means and KL."""
    builtin = vae(D, (LATENT,), (HIDDEN,), likelihood)
    params = jax.jit(builtin.init)(jax.random.PRNGKey(0))
    spec = model_from_modules(_UserDecoder(likelihood == "gaussian"), D, LATENT, encoder=_UserEncoder(),
                              likelihood=likelihood)
    mine = {MODEL: _user_params(params[MODEL]["layer0"]), GUIDE: _user_params(params[GUIDE]["layer0"])}
    assert jax.tree_util.tree_structure(mine) == jax.tree_util.tree_structure(
        jax.eval_shape(spec.init, jax.random.PRNGKey(1)))

    @jax.jit
    def pairs(params, mine, x):
        """(built-in, user module) pairs of the same quantities, from one program."""
        key = jax.random.PRNGKey(3)
        h_b, lq_b = builtin.guide.sample_and_log_prob(params[GUIDE], key, x, 4)
        h_u, lq_u = spec.guide.sample_and_log_prob(mine[GUIDE], key, x, 4)
        return [(h_b, h_u), (lq_b, lq_u),
                (log_joint(builtin.model, params[MODEL], x, h_b), log_joint(spec.model, mine[MODEL], x, h_u)),
                (builtin.guide.log_prob(params[GUIDE], x, h_b), spec.guide.log_prob(mine[GUIDE], x, h_u)),
                (builtin.model.mean(params[MODEL], h_b), spec.model.mean(mine[MODEL], h_u)),
                (builtin.model.sample(params[MODEL], key, 5), spec.model.sample(mine[MODEL], key, 5)),
                (builtin.guide.dist(params[GUIDE], x).kl_divergence(builtin.model.prior(params[MODEL])),
                 spec.guide.dist(mine[GUIDE], x).kl_divergence(spec.model.prior(mine[MODEL])))]

    for a, b in pairs(params, mine, _binary(jax.random.PRNGKey(2), (B, D))):
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-6)
    assert spec.model.observation == likelihood


def test_iwae_and_dreg_train_user_modules():
    """IWAE and DReG (K = 5) raise the IW bound of a user-module VAE within 150
    Adam steps, on data made of two binary patterns (log p(x) = log ½ is reachable,
    far above the initial bound)."""
    from sajax.estimators import dreg, iwae

    spec = model_from_modules(_UserDecoder(), D, LATENT, encoder=_UserEncoder())
    patterns = jnp.array([[1, 1, 1, 0, 0, 0], [0, 1, 0, 1, 0, 1]], jnp.float32)
    x = jax.jit(lambda k: patterns[jax.random.bernoulli(k, 0.5, (32,)).astype(jnp.int32)])(jax.random.PRNGKey(4))
    tx = optax.adam(1e-2)

    @functools.partial(jax.jit, static_argnums=0)
    def train(est):
        """The 150 steps' IW bounds and the means of the first and last 20, in one program."""
        def step(carry, key):
            p, s = carry
            out = est.estimate(p, (), key, x)
            u, s = tx.update(out.grads, s, p)
            return (optax.apply_updates(p, u), s), out.metrics["iw_bound"]

        params = spec.init(jax.random.PRNGKey(5))
        _, bounds = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(jax.random.PRNGKey(6), 150))
        return bounds, jnp.mean(bounds[:20]), jnp.mean(bounds[-20:])

    for est in (iwae(spec.model, spec.guide, num_samples=5), dreg(spec.model, spec.guide, num_samples=5)):
        bounds, first, last = train(est)
        assert np.all(np.isfinite(bounds))
        assert float(last) > float(first) + 1.0, (bounds[:20], bounds[-20:])


def test_adapters_check_their_modules():
    with pytest.raises(ValueError, match=r"encoder .*\(mean \[M, 3\]"):
        guide_from_module(_UserDecoder(), D, LATENT)       # returns logits, not (mean, log_std)
    with pytest.raises(ValueError, match=r"decoder .*logits \[M, 7\].*returned \(2, 6\)"):
        model_from_modules(_UserDecoder(), D + 1, LATENT)
    with pytest.raises(ValueError, match="likelihood"):
        model_from_modules(_UserDecoder(), D, LATENT, likelihood="poisson")
    with pytest.raises(TypeError, match="flax"):
        guide_from_module(lambda x: x, D, LATENT)
    g = guide_from_module(_UserEncoder(), D, LATENT)
    with pytest.raises(ValueError, match="event shape"):
        g.guide.sample_and_log_prob(jax.jit(g.init)(jax.random.PRNGKey(0))[GUIDE], jax.random.PRNGKey(1),
                                    jnp.ones((2, D + 1)), 1)


def test_log_joint_names_a_term_of_the_wrong_shape():
    """A log-likelihood that forgot to sum over its event axis fails in log_joint
    with the expected and received shapes (not a bare broadcasting error)."""
    from sajax.core import LatentVariableModel

    prior = lambda th, h: -0.5 * jnp.sum(h ** 2, -1)
    good_lik = lambda th, x, h: -0.5 * jnp.sum((x - h @ th) ** 2, -1)
    bad_lik = lambda th, x, h: -0.5 * (x - h @ th) ** 2                     # [K, B, D]: no event sum
    theta, x, h = jnp.ones((2, D)), jnp.ones((B, D)), jnp.ones((4, B, 2))
    assert log_joint(LatentVariableModel(prior, good_lik), theta, x, h).shape == (4, B)
    with pytest.raises(ValueError, match=r"log_likelihood.*\[\.\.\., B\] with B = 3.*got shape \(4, 3, 6\)"):
        log_joint(LatentVariableModel(prior, bad_lik), theta, x, h)
    with pytest.raises(ValueError, match=r"log_prior.*got shape \(4, 3, 2\)"):
        log_joint(LatentVariableModel(lambda th, h: -0.5 * h ** 2, good_lik), theta, x, h)
    wrong_x = jnp.ones((B + 2, D))                                             # 5 rows, h has 3
    with pytest.raises(ValueError, match="B = 5"):
        log_joint(LatentVariableModel(prior, lambda th, x, h: jnp.zeros(h.shape[:-1])), theta, wrong_x, h)
