"""Estimators for discrete latents (review Sec. 3.2.1, item 2) against exact
gradients by enumeration on a tiny SBN (Eq. 2) and a tiny categorical model.

Tiny SBN: 8 binary pixels, two stochastic layers of 4 and 3 Bernoulli units
(2^7 = 128 latent configurations), B = 3.  Exact:
  ELBO  L   = mean_B Σ_h q(h|x) [log p(x,h) - log q(h|x)]              (Eq. 7)
  IW-LB I_2 = mean_B Σ_{h,h'} q(h|x) q(h'|x) log ½(w(h) + w(h'))        (Eq. 19)
differentiated with jax.grad.  Unbiased estimators pass tests/stats.py's
z-test over n keys and must have the power to see a bias (assert_power);
deliberately broken variants must fail it.  Biased relaxations
(straight-through, Gumbel-softmax): the bias is measured and printed.
"""
from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exact import broadcast_latents, enumerate_latents
from sajax.core import BASELINE, GUIDE, MODEL, OBJECTIVE, Batch, log_joint
from sajax.estimators import (
    DiscreteLayers,
    NVILState,
    discrete_layers,
    disarm,
    gumbel_softmax,
    muprop,
    nvil,
    nvil_baseline,
    reinforce,
    rloo,
    straight_through,
    vimco,
)
from sajax.models import categorical_vae, sbn
from stats import assert_detects, assert_power, assert_unbiased, flat, flat_draws

ATOL = 2e-4  # float32 round-off of O(1)-O(10) gradients averaged over many keys
# Each unbiasedness check must see a bias of this size relative to the
# gradient's norm with probability >= 95% (tests/stats.py, "Its power").
MAX_DETECTABLE = 0.25
SIZES = (4, 3)
X_DIM, BATCH = 8, 3


@functools.partial(jax.jit, static_argnums=1)
def _noise(key, shapes):
    """N(0, 1) arrays of the given shapes, one per key of split(key, len(shapes))."""
    return [jax.random.normal(k, shape) for k, shape in zip(jax.random.split(key, len(shapes)), shapes)]


def _perturbed(params, key, scale):
    """params + scale · N(0, 1), leaf by leaf: the noise from one program, the sum in NumPy (float32,
    the bits of op-by-op jnp, which XLA would change by fusing a + scale · n into an FMA)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    noise = _noise(key, tuple(a.shape for a in leaves))
    return jax.tree_util.tree_unflatten(
        tree, [jnp.asarray(np.asarray(a) + scale * np.asarray(n)) for a, n in zip(leaves, noise)])


def _exact_objectives(spec, x, h_all):
    """ELBO, I_2 and per-example ELBO of ``spec`` on x, by enumerating h_all [M, B, ...]."""
    def log_w_all(p):
        log_p = log_joint(spec.model, p[MODEL], x, h_all)
        log_q = spec.guide.log_prob(p[GUIDE], x, h_all)
        return log_p, log_q                                             # [M, B]

    def elbo_per_example(p):
        log_p, log_q = log_w_all(p)
        return jnp.sum(jnp.exp(log_q) * (log_p - log_q), axis=0)        # [B]

    def iw2(p):
        log_p, log_q = log_w_all(p)
        lw, q = log_p - log_q, jnp.exp(log_q)
        pair = jnp.logaddexp(lw[:, None, :], lw[None, :, :]) - math.log(2.0)
        return jnp.mean(jnp.sum(q[:, None, :] * q[None, :, :] * pair, axis=(0, 1)))

    return (lambda p: jnp.mean(elbo_per_example(p))), iw2, elbo_per_example


@pytest.fixture(scope="module")
def tiny():
    spec = sbn(X_DIM, latent_sizes=SIZES, kind="linear")
    # random, far-from-default parameters: a posterior with structure, q != p(h|x)
    params = _perturbed(jax.jit(spec.init)(jax.random.PRNGKey(0)), jax.random.PRNGKey(1), 0.7)
    x = jax.jit(lambda k: jax.random.bernoulli(k, 0.5, (BATCH, X_DIM)).astype(jnp.float32))(jax.random.PRNGKey(2))
    h_all = jax.jit(lambda: broadcast_latents(enumerate_latents(SIZES), BATCH))()   # leaves [M, B, d]
    elbo, iw2, elbo_per_example = _exact_objectives(spec, x, h_all)

    @jax.jit
    def references(p):
        """The exact gradients and values of the ELBO and I_2."""
        return ({"elbo": jax.grad(elbo)(p), "iw_bound": jax.grad(iw2)(p)}, {"elbo": elbo(p), "iw_bound": iw2(p)})

    exact, value = references(params)
    return dict(spec=spec, layers=discrete_layers(spec), params=params, x=x,
                batch=Batch(x, jnp.arange(BATCH)), elbo=elbo, iw2=iw2,
                elbo_per_example=elbo_per_example, exact=exact,
                value={k: float(v) for k, v in value.items()})


def _draws(estimator, params, batch, n, seed=0, state=()):
    """Estimates over n keys (jit + vmap)."""
    run = jax.jit(jax.vmap(lambda k: estimator.estimate(params, state, k, batch)))
    return run(jax.random.split(jax.random.PRNGKey(seed), n))


def _descent(exact):
    return jax.tree_util.tree_map(jnp.negative, exact)


def _sub(tree, *names):
    return {k: tree[k] for k in names}


# --------------------------------------------------------------------------
# Unbiased estimators on the tiny two-layer SBN.

# name -> (factory(spec, layers), n keys, objective)
UNBIASED = {
    "reinforce": (lambda s, lay: reinforce(s.model, s.guide, num_samples=1), 100_000, "elbo"),
    "rloo K=2": (lambda s, lay: rloo(s.model, s.guide, num_samples=2), 50_000, "elbo"),
    "muprop": (lambda s, lay: muprop(s.model, lay, num_samples=1), 30_000, "elbo"),
    "disarm": (lambda s, lay: disarm(s.model, lay, num_pairs=1), 30_000, "elbo"),
    "vimco K=2": (lambda s, lay: vimco(s.model, s.guide, num_samples=2), 50_000, "iw_bound"),
}


@pytest.fixture(scope="module")
def unbiased_draws(tiny):
    """Draws per estimator of UNBIASED, computed once (shared by the checks below)."""
    cache = {}

    def get(name):
        if name not in cache:
            factory, n, _ = UNBIASED[name]
            cache[name] = _draws(factory(tiny["spec"], tiny["layers"]), tiny["params"],
                                 tiny["batch"], n)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(UNBIASED))
def test_unbiased_for_objective_gradient(tiny, unbiased_draws, name):
    """The gradient averages to -∇ of the objective (ELBO, or I_2 for VIMCO) and
    the reported objective to its exact value."""
    _, _, objective = UNBIASED[name]
    out = unbiased_draws(name)
    t = assert_unbiased(out.grads, _descent(tiny["exact"][objective]), name, atol=ATOL)
    assert_power(t, MAX_DETECTABLE, name)
    assert_unbiased(out.metrics[objective], [tiny["value"][objective]], f"{name} {objective}",
                    atol=1e-4)
    np.testing.assert_array_equal(out.metrics[OBJECTIVE], out.metrics[objective])


def test_broken_variants_are_caught(tiny, unbiased_draws):
    """The z-test has teeth: RLOO without its K/(K-1) factor (φ-part times
    (K-1)/K = ½), and VIMCO taken for an ELBO estimator, fail it."""
    out = unbiased_draws("rloo K=2")
    broken = dict(out.grads, **{GUIDE: jax.tree_util.tree_map(lambda g: 0.5 * g, out.grads[GUIDE])})
    assert_detects(broken, _descent(tiny["exact"]["elbo"]), "rloo without K/(K-1)", atol=ATOL)
    assert_detects(unbiased_draws("vimco K=2").grads, _descent(tiny["exact"]["elbo"]),
                   "vimco vs the ELBO gradient", atol=ATOL)


def test_nvil_unbiased_up_to_the_known_normalization(tiny):
    """θ: ∇L; φ: ∇L / max(1, sqrt(v)); ψ: the exact regression gradient
    mean_B (L_x - c - C_ψ(x)) ∇C_ψ(x) / max(1, sqrt(v)); state update in expectation."""
    spec, x = tiny["spec"], tiny["x"]
    b_init, b_apply = nvil_baseline(X_DIM, hidden=5)
    psi = _perturbed(b_init(jax.random.PRNGKey(3)), jax.random.PRNGKey(4), 0.5)
    params = dict(tiny["params"], **{BASELINE: psi})
    est = nvil(spec.model, spec.guide, (b_init, b_apply), num_samples=1, alpha=0.8)
    state = NVILState(jnp.asarray(-9.0), jnp.asarray(16.0))   # normalization factor 1/4
    n = 50_000
    out = _draws(est, params, tiny["batch"], n, state=state)
    scale = 4.0
    exact = tiny["exact"]["elbo"]

    @jax.jit
    def references(exact, psi):
        """The expected gradients (descent directions) and mean(gap + c) for the state update."""
        gap = tiny["elbo_per_example"](tiny["params"]) - state.mean - b_apply(psi, x)      # [B]
        _, vjp = jax.vjp(lambda p: b_apply(p, x), psi)
        (psi_ascent,) = vjp(gap / (scale * BATCH))
        expected = {MODEL: _descent(exact[MODEL]),
                    GUIDE: jax.tree_util.tree_map(lambda g: -g / scale, exact[GUIDE]),
                    BASELINE: _descent(psi_ascent)}
        return expected, _descent(exact), jnp.mean(gap + state.mean)

    expected, descent, mean_signal = references(exact, psi)
    t = assert_unbiased(out.grads, expected, "nvil", atol=ATOL)
    assert_power(t, MAX_DETECTABLE, "nvil")
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    # without the normalization factor the φ-part would be 4x: caught
    assert_detects(out.grads, dict(expected, **{GUIDE: descent[GUIDE]}),
                   "nvil vs the unnormalized φ-gradient", atol=ATOL)
    # c <- α c + (1-α) mean(l - C_ψ(x)) in expectation
    c_exact = 0.8 * -9.0 + 0.2 * float(mean_signal)
    assert_unbiased(out.state.mean, [c_exact], "nvil running mean", atol=1e-4)
    # without normalization the φ-part is ∇L itself
    plain = nvil(spec.model, spec.guide, (b_init, b_apply), num_samples=1, normalize=False)
    out = _draws(plain, params, tiny["batch"], n, seed=1, state=state)
    assert_unbiased(_sub(out.grads, MODEL, GUIDE), descent, "nvil, normalize=False",
                    atol=ATOL)


def test_nvil_init_and_training_state(tiny):
    spec = tiny["spec"]
    net = nvil_baseline(X_DIM)
    params = dict(tiny["params"], **{BASELINE: net[0](jax.random.PRNGKey(5))})
    est = nvil(spec.model, spec.guide, net, num_samples=1)
    state = est.init(jax.random.PRNGKey(6), params, tiny["x"])   # the training set
    assert isinstance(state, NVILState) and np.isfinite(state.mean) and state.var >= 0
    cold = nvil(spec.model, spec.guide, net, num_samples=1, warm_start=0).init(None, params, tiny["x"])
    assert float(cold.mean) == 0.0 and float(cold.var) == 1.0
    out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(7), tiny["batch"])
    assert set(out.metrics) == {"elbo", OBJECTIVE, "signal_mean", "signal_std"}
    assert all(np.ndim(v) == 0 and np.isfinite(v) for v in out.metrics.values())
    # params without the baseline group: a clear error naming it, in init and estimate
    with pytest.raises(ValueError, match="baseline"):
        est.estimate(tiny["params"], state, jax.random.PRNGKey(7), tiny["batch"])
    with pytest.raises(ValueError, match="baseline"):
        est.init(jax.random.PRNGKey(6), tiny["params"], tiny["x"])


# --------------------------------------------------------------------------
# Biased relaxations: bias measured and reported, not asserted away.


def _bias(estimator, tiny, n, seed=0):
    """Relative bias ||mean - exact|| / ||exact|| per group and its noise floor."""
    out = _draws(estimator, tiny["params"], tiny["batch"], n, seed=seed)
    exact = _descent(tiny["exact"]["elbo"])
    row = {}
    for g in (MODEL, GUIDE):
        d, e = flat_draws(out.grads[g]), flat(exact[g])
        row[g] = (np.linalg.norm(d.mean(0) - e) / np.linalg.norm(e),
                  np.linalg.norm(d.std(0, ddof=1) / math.sqrt(n)) / np.linalg.norm(e))
    return row


def test_relaxation_bias_is_measured_and_reported(tiny):
    spec, lay, n = tiny["spec"], tiny["layers"], 50_000
    rows = {"straight-through": _bias(straight_through(spec.model, lay, num_samples=1), tiny, n)}
    for tau in (1.0, 0.5, 0.1):
        rows[f"gumbel tau={tau}"] = _bias(gumbel_softmax(spec.model, lay, num_samples=1, temperature=tau), tiny, n)
        rows[f"gumbel-ST tau={tau}"] = _bias(
            gumbel_softmax(spec.model, lay, num_samples=1, temperature=tau, hard=True), tiny, n)
    print(f"\nbias of relaxed gradients on the tiny SBN (n={n} keys), ||mean - exact|| / ||exact||"
          " (noise floor ||se|| / ||exact||):")
    for name, row in rows.items():
        print(f"  {name:20s} theta {row[MODEL][0]:.4f} ({row[MODEL][1]:.4f})"
              f"   phi {row[GUIDE][0]:.4f} ({row[GUIDE][1]:.4f})")
    for row in rows.values():
        assert all(np.isfinite(v) for pair in row.values() for v in pair)
    # straight-through: the forward sample is exact, so its θ-part is Algorithm 3 (unbiased)
    st = rows["straight-through"]
    assert st[MODEL][0] <= 5 * st[MODEL][1] + 1e-3
    # the φ-bias of the relaxations is real: far above the noise floor
    assert st[GUIDE][0] > 5 * st[GUIDE][1]
    assert rows["gumbel tau=1.0"][GUIDE][0] > 5 * rows["gumbel tau=1.0"][GUIDE][1]
    # the binary Concrete objective tends to the ELBO as τ -> 0: the bias shrinks
    assert rows["gumbel tau=0.1"][GUIDE][0] < rows["gumbel tau=1.0"][GUIDE][0]
    assert rows["gumbel tau=0.1"][MODEL][0] < rows["gumbel tau=1.0"][MODEL][0]


# --------------------------------------------------------------------------
# Categorical latents.


def _one_hot_configs(n, c):
    """All c**n one-hot configurations, [c**n, n, c]."""
    idx = np.array(list(itertools.product(range(c), repeat=n)))
    return jax.nn.one_hot(idx, c, dtype=jnp.float32)


@pytest.fixture(scope="module")
def cat():
    spec = categorical_vae(6, num_latents=2, num_classes=3, hidden=8)
    params = _perturbed(jax.jit(spec.init)(jax.random.PRNGKey(10)), jax.random.PRNGKey(11), 0.5)
    x = jax.jit(lambda k: jax.random.bernoulli(k, 0.5, (BATCH, 6)).astype(jnp.float32))(jax.random.PRNGKey(12))
    h_all = jax.jit(lambda: jnp.broadcast_to(_one_hot_configs(2, 3)[:, None], (9, BATCH, 2, 3)))()
    elbo, _, _ = _exact_objectives(spec, x, h_all)
    return dict(spec=spec, layers=discrete_layers(spec), params=params,
                batch=Batch(x, jnp.arange(BATCH)), exact=jax.jit(lambda p: _descent(jax.grad(elbo)(p)))(params))


@pytest.mark.parametrize("name,factory,n", [
    ("reinforce", lambda s, lay: reinforce(s.model, s.guide, num_samples=1), 50_000),
    ("rloo K=3", lambda s, lay: rloo(s.model, s.guide, num_samples=3), 30_000),
    ("muprop", lambda s, lay: muprop(s.model, lay, num_samples=1), 30_000),
])
def test_categorical_latents_unbiased(cat, name, factory, n):
    assert cat["layers"].kind == "categorical" and cat["layers"].num_layers == 1
    out = _draws(factory(cat["spec"], cat["layers"]), cat["params"], cat["batch"], n)
    t = assert_unbiased(out.grads, cat["exact"], f"categorical {name}", atol=ATOL)
    assert_power(t, MAX_DETECTABLE, f"categorical {name}")


def test_categorical_gumbel_bias_reported_and_disarm_refused(cat):
    spec = cat["spec"]
    out = _draws(gumbel_softmax(spec.model, cat["layers"], num_samples=1, temperature=0.5), cat["params"],
                 cat["batch"], 20_000)
    d = flat_draws(out.grads[GUIDE])
    rel = np.linalg.norm(d.mean(0) - flat(cat["exact"][GUIDE])) / np.linalg.norm(flat(cat["exact"][GUIDE]))
    print(f"\ncategorical Gumbel-softmax tau=0.5: relative φ-bias {rel:.4f}")
    assert np.isfinite(rel)
    with pytest.raises(ValueError, match="Bernoulli"):
        disarm(spec.model, cat["layers"], num_pairs=1)


# --------------------------------------------------------------------------
# Build-time checks and the layer-wise protocol.


@pytest.mark.parametrize("factory", [vimco, rloo])
@pytest.mark.parametrize("k", [0, 1, np.int64(1), jnp.int32(1)])
def test_leave_one_out_needs_two_samples(tiny, factory, k):
    with pytest.raises(ValueError, match="K=1" if int(k) else "K=0"):
        factory(tiny["spec"].model, tiny["spec"].guide, num_samples=k)


LAYERWISE = {"muprop": lambda m, lay: muprop(m, lay, num_samples=1),
             "disarm": lambda m, lay: disarm(m, lay, num_pairs=1),
             "straight_through": lambda m, lay: straight_through(m, lay, num_samples=1),
             "gumbel_softmax": lambda m, lay: gumbel_softmax(m, lay, num_samples=1)}


@pytest.mark.parametrize("name", list(LAYERWISE))
def test_layerwise_estimators_need_layers(tiny, name):
    """A plain ConditionalSampler has no layer access: the error says what to pass."""
    with pytest.raises(TypeError, match=r"spec\.layers.*muprop\(spec\.model, spec\.layers, num_samples=1\)"):
        LAYERWISE[name](tiny["spec"].model, tiny["spec"].guide)
    with pytest.raises(ValueError, match="kind"):
        LAYERWISE[name](tiny["spec"].model, tiny["layers"]._replace(kind="gaussian"))


ALL = {
    "reinforce": lambda s, lay, k: reinforce(s.model, s.guide, num_samples=k),
    "rloo": lambda s, lay, k: rloo(s.model, s.guide, num_samples=k + 1),
    "vimco": lambda s, lay, k: vimco(s.model, s.guide, num_samples=k + 1),
    "muprop": lambda s, lay, k: muprop(s.model, lay, num_samples=k),
    "disarm": lambda s, lay, k: disarm(s.model, lay, num_pairs=k),
    "straight_through": lambda s, lay, k: straight_through(s.model, lay, num_samples=k),
    "gumbel_softmax": lambda s, lay, k: gumbel_softmax(s.model, lay, num_samples=k),
}


@pytest.mark.parametrize("name", list(ALL))
def test_interface(tiny, name):
    """JAX/NumPy integer sample counts; grads shaped like params; OBJECTIVE;
    params missing a group give a ValueError naming it."""
    est = ALL[name](tiny["spec"], tiny["layers"], jnp.int32(2))
    params = tiny["params"]
    out = jax.jit(est.estimate)(params, est.init(None, params, tiny["x"]), jax.random.PRNGKey(0),
                                tiny["batch"])
    assert jax.tree_util.tree_structure(out.grads) == jax.tree_util.tree_structure(params)
    assert np.isfinite(float(out.metrics[OBJECTIVE]))
    with pytest.raises(ValueError, match="guide"):
        est.estimate({MODEL: params[MODEL]}, (), jax.random.PRNGKey(0), tiny["batch"])
    ALL[name](tiny["spec"], tiny["layers"], np.int64(1))


def test_discrete_layers_conversions(tiny):
    spec, lay = tiny["spec"], tiny["layers"]
    assert isinstance(lay, DiscreteLayers) and lay.kind == "bernoulli" and lay.num_layers == 2
    assert discrete_layers(lay) is lay

    class Duck:
        layer_logits = staticmethod(lay.layer_logits)
        num_layers = 2

    assert discrete_layers(Duck()).num_layers == 2
    assert discrete_layers((lay.layer_logits, 2)).kind == "bernoulli"
    with pytest.raises(TypeError, match="DiscreteLayers"):
        discrete_layers(object())
    with pytest.raises(ValueError, match="num_layers"):
        discrete_layers(lay._replace(num_layers=0))
    # the layer-wise log q is the guide's own

    @jax.jit
    def layer_wise(phi, x):
        """log q of 2 guide samples, sampled and summed layer by layer from layer_logits."""
        h, log_q = spec.guide.sample_and_log_prob(phi, jax.random.PRNGKey(0), x, 2)
        parent, total = jnp.broadcast_to(x, (2,) + x.shape), 0.0
        for layer, h_l in enumerate(h):
            logits = lay.layer_logits(phi, layer, parent)
            total = total + jnp.sum(h_l * logits - jax.nn.softplus(logits), axis=-1)
            parent = h_l
        return total, log_q

    total, log_q = layer_wise(tiny["params"][GUIDE], tiny["x"])
    np.testing.assert_allclose(total, log_q, rtol=1e-5, atol=1e-5)


def test_other_bad_arguments(tiny):
    spec, lay = tiny["spec"], tiny["layers"]
    with pytest.raises(ValueError, match="temperature"):
        gumbel_softmax(spec.model, lay, num_samples=1, temperature=0.0)
    with pytest.raises(TypeError, match="baseline_net"):
        nvil(spec.model, spec.guide, None, num_samples=1)
    with pytest.raises(ValueError, match="alpha"):
        nvil(spec.model, spec.guide, nvil_baseline(X_DIM), num_samples=1, alpha=1.0)
    with pytest.raises(ValueError, match="num_samples"):
        reinforce(spec.model, spec.guide, num_samples=0)
    with pytest.raises(ValueError, match="num_pairs"):
        disarm(spec.model, lay, num_pairs=0)


def test_k_is_a_required_keyword(tiny):
    """K (num_samples; num_pairs for DisARM) has no default and is keyword-only
    in every estimator (the option policy of sajax.estimators)."""
    spec, lay = tiny["spec"], tiny["layers"]
    for factory, second in ((reinforce, spec.guide), (rloo, spec.guide), (vimco, spec.guide),
                            (muprop, lay), (straight_through, lay), (gumbel_softmax, lay)):
        with pytest.raises(TypeError, match="num_samples"):
            factory(spec.model, second)
        with pytest.raises(TypeError):
            factory(spec.model, second, 2)
    with pytest.raises(TypeError, match="num_pairs"):
        disarm(spec.model, lay)
    with pytest.raises(TypeError, match="num_samples"):
        nvil(spec.model, spec.guide, nvil_baseline(X_DIM))
