"""Adversarial estimators (review Sec. 3.2.4) against exact answers.

* The f-divergence tables: f(1) = 0, the Fenchel identity f†(f'(u)) = u f'(u) - f(u)
  (Eq. 36's basis), the principled g_f(v) = f'(e^v), the fused f†(g_f(v)).
* Critic alone (generator frozen) on p0 = N(0, 1), pθ = N(0.5, 1.1²) with a
  quadratic V (which contains log p0/pθ exactly): with the principled activation
  V → log p0/pθ for EVERY f (max error < 0.1 over the central 95% of both), and
  the VDM bound at the trained critic is within 3% of the closed-form D_f.
* WGAN-GP on N(0, 1) vs N(1, 1.5²) with a tanh-basis critic estimates W1 within 5%.
* Both players' gradients are unbiased for the exact gradients of their losses'
  expectations (quadrature), z-test over keys; a broken generator fails it.
* PacGAN shapes and errors; weight clipping as an optax projection; state threading.
"""
import math

import jax
from fast_jit import FAST, run_fast
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from stats import assert_detects, assert_power, assert_unbiased, flat

from sajax import sa
from sajax._densities import diag_normal_log_prob
from sajax.core import CRITIC, GENERATOR, Batch, Critic, ImplicitGenerator
from sajax.estimators._divergences import DIVERGENCES, Activation, check_activation
from sajax.estimators._adversarial import (
    clip_critic,
    fgan,
    gan,
    hinge_gan,
    pack_samples,
    wgan,
    wgan_gp,
)

MU0, S0, MU1, S1 = 0.0, 1.0, 0.5, 1.1   # p0 (data) and pθ (generator); χ² and its variance finite




def gaussian_generator(detach_sigma=False):
    """x = μ + σ ε, ε ~ N(0, 1), shape [n, 1]."""
    def sample(theta, key, n):
        sigma = jax.lax.stop_gradient(theta["sigma"]) if detach_sigma else theta["sigma"]
        return theta["mu"] + sigma * jax.random.normal(key, (n, 1))
    return ImplicitGenerator(sample)


def quadratic(psi, x):
    return psi[0] * x ** 2 + psi[1] * x + psi[2]


# V(x) = mean over features of a x² + b x + c: [B, D] -> [B] (D = m with PacGAN's m).
QUAD_CRITIC = Critic(lambda psi, st, x, condition=None: (jnp.mean(quadratic(psi, x), -1), st), lambda key: ())


def log_ratio(x):
    x = np.asarray(x, np.float64)[:, None]
    return np.asarray(diag_normal_log_prob(x, MU0, np.log(S0)) - diag_normal_log_prob(x, MU1, np.log(S1)))


def closed_form_divergences():
    """D_f[p0 || pθ] in closed form (quadrature for JS, which has none)."""
    kl = math.log(S1 / S0) + (S0 ** 2 + (MU0 - MU1) ** 2) / (2 * S1 ** 2) - 0.5
    rkl = math.log(S0 / S1) + (S1 ** 2 + (MU0 - MU1) ** 2) / (2 * S0 ** 2) - 0.5
    bc = math.sqrt(2 * S0 * S1 / (S0 ** 2 + S1 ** 2)) * math.exp(-(MU0 - MU1) ** 2 / (4 * (S0 ** 2 + S1 ** 2)))
    a = 1 / S0 ** 2 - 1 / (2 * S1 ** 2)          # ∫ p0²/pθ = S1/(√(2π) S0²) ∫ exp(-a x² + b x - c)
    b = 2 * MU0 / S0 ** 2 - MU1 / S1 ** 2
    c = MU0 ** 2 / S0 ** 2 - MU1 ** 2 / (2 * S1 ** 2)
    chi2 = S1 / (math.sqrt(2 * math.pi) * S0 ** 2) * math.sqrt(math.pi / a) * math.exp(b * b / (4 * a) - c) - 1
    x = np.linspace(-15, 15, 300001)
    p0 = np.exp(-0.5 * ((x - MU0) / S0) ** 2) / (S0 * math.sqrt(2 * math.pi))
    p1 = np.exp(-0.5 * ((x - MU1) / S1) ** 2) / (S1 * math.sqrt(2 * math.pi))
    m = 0.5 * (p0 + p1)
    js = 0.5 * np.sum(p0 * np.log(p0 / m) + p1 * np.log(p1 / m)) * (x[1] - x[0])
    return {"kl": kl, "reverse_kl": rkl, "squared_hellinger": 2 * (1 - bc), "pearson": chi2,
            "js": 2 * js, "gan": 2 * js - math.log(4)}


# ---------------------------------------------------------------- tables


def table_values(d):
    """The identities each table entry must satisfy, as (got, want) pairs."""
    u, v = jnp.linspace(0.05, 6.0, 101), jnp.linspace(-2.5, 2.5, 101)
    return {"f(1)": d.f(jnp.ones(())),
            # Fenchel identity f†(f'(u)) = u f'(u) - f(u) (Boyd & Vandenberghe 3.3.2), the basis of Eq. 36
            "fenchel": (d.conjugate(d.f_prime(u)), u * d.f_prime(u) - d.f(u)),
            "principled = f'(e^v)": (d.principled(v), d.f_prime(jnp.exp(v))),
            "fused f†(g(v))": (d.conjugate_principled(v), d.conjugate(d.principled(v))),
            "g ranges": [(g(v), r) for g, r in ((d.principled, d.principled_range), (d.nowozin, d.nowozin_range))]}


def test_divergence_tables_are_consistent():
    values = run_fast(lambda: {name: table_values(d) for name, d in DIVERGENCES.items()})
    for name, got in values.items():
        d = DIVERGENCES[name]
        # f(1) = 0 except for "gan", whose f (Eq. 28's; Nowozin et al.) gives D_f = 2·JS - log 4
        np.testing.assert_allclose(got["f(1)"], -math.log(4) if name == "gan" else 0.0, atol=1e-6)
        for key in ("fenchel", "principled = f'(e^v)", "fused f†(g(v))"):
            np.testing.assert_allclose(*got[key], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {key}")
        for g, (lo, hi) in got["g ranges"]:
            assert np.all((np.asarray(g) > lo) & (np.asarray(g) < hi)), name
            assert d.domain[0] <= lo and hi <= d.domain[1], name


def test_unknown_divergence_and_activations_outside_dom_conjugate_are_refused():
    gen = gaussian_generator()
    with pytest.raises(ValueError, match="known: .*'kl'.*'squared_hellinger'"):
        fgan(gen, QUAD_CRITIC, divergence="tv")
    with pytest.raises(ValueError, match="'identity'.*'reverse_kl'"):
        fgan(gen, QUAD_CRITIC, divergence="reverse_kl", activation="identity")
    with pytest.raises(ValueError, match="'softplus'.*'js'"):
        check_activation("js", Activation("softplus", jax.nn.softplus, (0.0, math.inf)))
    with pytest.raises(ValueError, match="activation must be one of"):
        fgan(gen, QUAD_CRITIC, divergence="kl", activation="tanh")
    assert check_activation("kl", "identity").name == "identity"   # dom f† = R: allowed
    with pytest.raises(ValueError, match="penalty"):
        wgan_gp(gen, QUAD_CRITIC, penalty=-1.0)
    with pytest.raises(ValueError, match="monitor_clip"):
        wgan(gen, QUAD_CRITIC, monitor_clip=0.0)
    with pytest.raises(TypeError):                       # options are keyword-only
        fgan(gen, QUAD_CRITIC, "kl")
    with pytest.raises(ValueError, match="generator_loss"):
        gan(gen, QUAD_CRITIC, generator_loss="wasserstein")
    with pytest.raises(TypeError, match="Critic"):
        gan(gen, object())


# ---------------------------------------------------------------- critic alone


def quantile_generator():
    """x_i = μ + σ Φ⁻¹((i + ½)/n), i < n (the key is ignored): a fixed, evenly
    spread sample of N(μ, σ²) whose means are quadratures of expectations."""
    return ImplicitGenerator(lambda theta, key, n: theta["mu"] + theta["sigma"] * quantiles(n))


def quantiles(n):
    return jax.scipy.special.ndtri((jnp.arange(n) + 0.5) / n)[:, None]


def train_critic(est, psi, x_real, theta, iters=20, key=jax.random.PRNGKey(1)):
    """The critic trained ALONE (generator frozen) by safeguarded Newton steps on
    the estimator's own critic gradient (Hessian = its forward-mode Jacobian,
    eigenvalues floored at 1e-3, steps capped at norm 1), on one fixed real
    sample and one fixed generator key: it converges (gradient ~1e-8) to the
    optimum of the empirical objective in ~10 steps instead of thousands of
    Adam steps.  Returns (ψ, metrics at the last step)."""
    batch = Batch(x_real, jnp.arange(x_real.shape[0]))

    def grad_psi(p):
        out = est.estimate({GENERATOR: theta, CRITIC: p}, est.init(key, None, None), key, batch)
        return out.grads[CRITIC], (out.grads[CRITIC], out.metrics)

    def step(p, _):
        h, (g, metrics) = jax.jacfwd(grad_psi, has_aux=True)(p)     # one trace: Hessian, gradient, metrics
        w, u = jnp.linalg.eigh(0.5 * (h + h.T))
        delta = -u @ ((u.T @ g) / jnp.maximum(w, 1e-3))
        return p + delta * jnp.minimum(1.0, 1.0 / jnp.linalg.norm(delta)), metrics

    psi, metrics = jax.lax.scan(step, psi, None, iters)
    return psi, jax.tree_util.tree_map(lambda m: m[-1], metrics)


CASES = [(d, "principled") for d in sorted(DIVERGENCES)]


def test_principled_critic_is_the_log_ratio_and_the_vdm_bound_is_the_divergence():
    """Eq. 36: with g_f(v) = f'(e^v) the optimal V is log p0/pθ for EVERY f, and
    the bound (Eq. 31/34) at it equals D_f.
    Real and fake samples are 4000 evenly spread quantiles of each Gaussian,
    so the estimator's own ``objective`` at the trained critic is a quadrature
    of F_f (the Monte Carlo side is the z-test's job)."""
    x_real = MU0 + S0 * quantiles(4000)
    theta = {"mu": jnp.float32(MU1), "sigma": jnp.float32(S1)}
    ests = [fgan(quantile_generator(), QUAD_CRITIC, divergence=d, activation=a) for d, a in CASES]
    psis, metrics = zip(*run_fast(lambda: [train_critic(e, jnp.zeros(3), x_real, theta, 12) for e in ests]))
    exact = closed_form_divergences()
    lo, hi = min(MU0 - 1.96 * S0, MU1 - 1.96 * S1), max(MU0 + 1.96 * S0, MU1 + 1.96 * S1)
    grid = np.linspace(lo, hi, 201)
    for (d, a), psi, m in zip(CASES, psis, metrics):
        want = log_ratio(grid)
        err = np.max(np.abs(np.asarray(quadratic(psi, grid)) - want))
        bound = float(m["objective"])
        rel = abs(bound - exact[d]) / abs(exact[d])
        print(f"{d:18s} {a:10s} max|V - V*| = {err:.4f}  bound {bound:.5f} vs D_f {exact[d]:.5f} "
              f"({100 * rel:.2f}%)")
        assert err < 0.1, (d, a, err)
        assert rel < 0.03, (d, a, bound, exact[d])
        assert float(m["vdm_bound"]) == bound and float(m["critic_loss"]) == -bound


def tanh_critic(centers, scale=0.75):
    """V(x) = w0 x + Σ_k w_k tanh((x - c_k)/s): linear in ψ, rich enough for the W1 critic."""
    def apply(psi, st, x, condition=None):
        feats = jnp.tanh((x - centers) / scale)              # [B, K]
        return psi[0] * x[:, 0] + feats @ psi[1:], st
    return Critic(apply, lambda key: ())


def test_wgan_gp_critic_estimates_w1():
    """Gulrajani et al. (2017) on p0 = N(0, 1), pθ = N(1, 1.5²): E_p0 V - E_pθ V at
    the trained critic is W1 = E|Δμ + Δσ Z| within 5%.  λ = 50: the penalty's own
    bias is ∫(F_θ - F_0)²/(2λρ) ≈ 1.4% here (≈ 7% at λ = 10, see wgan_gp)."""
    m0, s0, m1, s1 = 0.0, 1.0, 1.0, 1.5
    dm, ds = m1 - m0, s1 - s0
    w1 = ds * math.sqrt(2 / math.pi) * math.exp(-dm ** 2 / (2 * ds ** 2)) + dm * math.erf(dm / (ds * math.sqrt(2)))
    centers = jnp.linspace(-4.0, 6.0, 12)
    est = wgan_gp(gaussian_generator(), tanh_critic(centers), penalty=50.0)
    x_real = m0 + s0 * jax.random.normal(jax.random.PRNGKey(3), (4096, 1))
    theta = {"mu": jnp.float32(m1), "sigma": jnp.float32(s1)}

    def run():
        psi, _ = train_critic(est, jnp.zeros(13), x_real, theta, iters=15)
        xs = m0 + s0 * jax.random.normal(jax.random.PRNGKey(5), (50_000, 1))
        out = est.estimate({GENERATOR: theta, CRITIC: psi}, (), jax.random.PRNGKey(6), Batch(xs, jnp.arange(50_000)))
        return out.metrics

    metrics = run_fast(run)
    print(f"W1 estimate {float(metrics['objective']):.4f} vs exact {w1:.4f}; "
          f"penalty {float(metrics['gradient_penalty']):.4f}")
    assert abs(float(metrics["objective"]) - w1) / w1 < 0.05


# ---------------------------------------------------------------- gradients


PSI = jnp.array([-0.2, 0.5, 0.1])
THETA = {"mu": jnp.float32(0.5), "sigma": jnp.float32(1.2)}
_EPS = jnp.linspace(-9.0, 9.0, 6001)
_W = jnp.exp(-0.5 * _EPS ** 2) / jnp.sum(jnp.exp(-0.5 * _EPS ** 2))


def expect(h, mu, sigma):
    """E_{ε~N(0,1)}[h(μ + σ ε)] by quadrature (exact to float32 round-off)."""
    return jnp.sum(_W * h(mu + sigma * _EPS))


# Expected (critic loss, generator loss) written from the papers, independently of the module.
EXPECTED_LOSSES = {
    "gan_ns": lambda r, f: (-(r(jax.nn.log_sigmoid) + f(lambda v: jax.nn.log_sigmoid(-v))),
                            -f(jax.nn.log_sigmoid)),
    "gan_minimax": lambda r, f: (-(r(jax.nn.log_sigmoid) + f(lambda v: jax.nn.log_sigmoid(-v))),
                                 f(lambda v: jax.nn.log_sigmoid(-v))),
    "pearson_nowozin": lambda r, f: (-(r(lambda v: v) - f(lambda v: v * v / 4 + v)), -f(lambda v: v * v / 4 + v)),
    "kl_principled": lambda r, f: (-(r(lambda v: 1 + v) - f(jnp.exp)), -f(jnp.exp)),
    "wgan_pack2": lambda r, f: (-(r(lambda v: v) - f(lambda v: v)), -f(lambda v: v)),
    "hinge": lambda r, f: (r(lambda v: jax.nn.relu(1 - v)) + f(lambda v: jax.nn.relu(1 + v)), -f(lambda v: v)),
}


def estimators(gen):
    return {"gan_ns": gan(gen, QUAD_CRITIC),
            "pearson_nowozin": fgan(gen, QUAD_CRITIC, divergence="pearson", activation="nowozin",
                                    generator_loss="minimax"),
            "kl_principled": fgan(gen, QUAD_CRITIC, divergence="kl", generator_loss="minimax"),
            "wgan_pack2": wgan(gen, QUAD_CRITIC, pack=2),
            "hinge": hinge_gan(gen, QUAD_CRITIC)}


def exact_grads(name):
    """Exact descent directions: ∇_ψ E[critic loss], ∇_θ E[generator loss]."""
    def losses(theta, psi):
        r = lambda h: expect(lambda x: h(quadratic(psi, x)), 0.0, 1.0)           # E_p0 (data N(0, 1))
        f = lambda h: expect(lambda x: h(quadratic(psi, x)), theta["mu"], theta["sigma"])   # E_pθ
        return EXPECTED_LOSSES[name](r, f)
    g_psi = jax.grad(lambda p: losses(THETA, p)[0])(PSI)
    g_theta = jax.grad(lambda t: losses(t, PSI)[1])(THETA)
    return {GENERATOR: g_theta, CRITIC: g_psi}


def draws(ests, n=1000, batch=128):
    def one(est, key):
        kx, ke = jax.random.split(key)
        x = jax.random.normal(kx, (batch, 1))
        return est.estimate({GENERATOR: THETA, CRITIC: PSI}, (), ke, Batch(x, jnp.arange(batch))).grads
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    return run_fast(lambda: {k: jax.vmap(lambda key, e=e: one(e, key))(keys) for k, e in ests.items()})


def test_both_players_gradients_are_unbiased_and_a_detached_generator_is_caught():
    """Draws over 1000 keys (batches of 128 real, 128 fake; one compile for all):
    GAN (non-saturating), f-GAN (Pearson χ² with Nowozin's g, KL principled),
    WGAN with PacGAN m = 2 (the critic averages its blocks, so the packed
    expectation equals the unpacked one) and hinge.  Power: the detectable bias
    is <= 10% of ||exact|| (printed)."""
    ests = {**estimators(gaussian_generator()), "broken": gan(gaussian_generator(detach_sigma=True), QUAD_CRITIC)}
    got = draws(ests)
    exact = run_fast(lambda: {name: exact_grads(name) for name in EXPECTED_LOSSES})
    for name in estimators(gaussian_generator()):
        t = assert_unbiased(got[name], exact[name], name, atol=1e-5)
        assert_power(t, 0.1, name)
    assert_detects(got["broken"], exact["gan_ns"], "gan_ns, σ detached", atol=1e-5)
    # the test also tells the generator losses apart (the logD trick vs Eq. 28's minimax)
    assert_detects(got["gan_ns"], exact["gan_minimax"], "gan_ns vs minimax", atol=1e-5)


# ---------------------------------------------------------------- PacGAN, clipping, state


def test_pack_concatenates_m_samples_along_features_and_checks_sizes():
    x = jnp.arange(12.0).reshape(6, 2)
    np.testing.assert_array_equal(pack_samples(x, 3), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    img = jnp.arange(4 * 2 * 2 * 3.0).reshape(4, 2, 2, 3)
    packed = pack_samples(img, 2)
    assert packed.shape == (2, 2, 2, 6)
    np.testing.assert_array_equal(packed[1, ..., 3:], img[3])
    seen = []

    def apply(psi, st, x, condition=None):
        seen.append(x.shape)
        return jnp.sum(x, -1) * psi, st

    est = gan(gaussian_generator(), Critic(apply, lambda key: ()), pack=4)
    params = {GENERATOR: THETA, CRITIC: jnp.float32(0.1)}
    jax.eval_shape(est.estimate, params, (), jax.random.PRNGKey(0), jnp.ones((8, 1)))   # traces, no compile
    assert seen[-1] == (4, 4)          # real 8/4 and fake 8/4 rows, 4 features, one critic call
    with pytest.raises(ValueError, match="pack=4 must divide the batch size, got a batch of 6"):
        jax.eval_shape(est.estimate, params, (), jax.random.PRNGKey(0), jnp.ones((6, 1)))
    for bad in (0, -2):
        with pytest.raises(ValueError, match="pack"):
            gan(gaussian_generator(), QUAD_CRITIC, pack=bad)


def test_critic_state_is_threaded_and_shapes_checked():
    """init gives critic.init_state(key); each estimate advances it once (one call on real+fake)."""
    def apply(psi, count, x, condition=None):
        return quadratic(psi, x[:, 0]), count + 1

    est = wgan_gp(gaussian_generator(), Critic(apply, lambda key: jnp.zeros((), jnp.int32)))
    params = {GENERATOR: THETA, CRITIC: PSI, "encoder": jnp.ones(2)}
    state = est.init(jax.random.PRNGKey(0), params, jnp.zeros((10, 1)))
    step = jax.jit(est.estimate).lower(params, state, jax.random.PRNGKey(1), jnp.ones((4, 1))).compile(
        compiler_options=FAST)
    for _ in range(3):
        out = step(params, state, jax.random.PRNGKey(1), jnp.ones((4, 1)))
        state = out.state
    assert int(state) == 3
    np.testing.assert_array_equal(out.grads["encoder"], 0.0)
    assert set(out.metrics) >= {"objective", "critic_loss", "generator_loss", "d_real", "d_fake",
                                "gradient_penalty"}
    wide = Critic(lambda psi, st, x, condition=None: (jnp.ones((x.shape[0], 3)), st), lambda key: ())
    with pytest.raises(ValueError, match=r"one score per example"):
        jax.eval_shape(gan(gaussian_generator(), wide).estimate, params, (), jax.random.PRNGKey(0), jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="no group"):
        jax.eval_shape(gan(gaussian_generator(), QUAD_CRITIC).estimate, {CRITIC: PSI}, (), jax.random.PRNGKey(0),
                       jnp.ones((4, 1)))


def test_weight_clipping_is_a_projection_inside_the_alternating_optimizer():
    """WGAN: critic steps (5 of 6) land in [-c, c]; generator steps leave ψ bit-identical."""
    c = 0.05
    est = wgan(gaussian_generator(), QUAD_CRITIC, monitor_clip=c)
    opt = sa.per_group({CRITIC: optax.chain(optax.sgd(0.5), clip_critic(c)), GENERATOR: optax.sgd(0.1)},
                       schedule=sa.alternate(critic=5, generator=1))
    params = {GENERATOR: THETA, CRITIC: jnp.array([0.3, -0.2, 0.01])}

    def run(params):
        def step(carry, t):
            params, state = carry
            key = jax.random.PRNGKey(t)
            out = est.estimate(params, (), key, jax.random.normal(key, (16, 1)))
            updates, state = opt.update(out.grads, state, params)
            return (optax.apply_updates(params, updates), state), (params[CRITIC], out.metrics["weight_excess"])
        (last, _), (critics, excess) = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(13))
        return critics, excess

    critics, excess = map(np.asarray, run_fast(run, params))
    np.testing.assert_allclose(critics[1][:2], [c, -c], rtol=1e-6)   # the first critic step projects ψ
    np.testing.assert_allclose(excess[0], 0.3 - c, rtol=1e-6)   # max|ψ| - c before the first projection
    assert np.all(excess[1:] <= 1e-6 * c)                        # 0 (up to rounding) once it is in place
    for t in range(12):
        if t % 6 == 5:                                         # the generator's phase: ψ bit-identical
            np.testing.assert_array_equal(critics[t + 1], critics[t])
        else:
            assert np.max(np.abs(critics[t + 1])) <= c * (1 + 1e-6)
    with pytest.raises(ValueError, match="params"):
        clip_critic(c).update({"w": jnp.ones(2)}, optax.EmptyState())


def test_generator_loss_defaults_are_non_saturating_everywhere():
    """gan() and fgan() share the default generator loss (non-saturating): fgan with
    the "gan" f-function is gan() key by key, and "minimax" must be asked for."""
    gen, params = gaussian_generator(), {GENERATOR: THETA, CRITIC: PSI}
    key, x = jax.random.PRNGKey(2), jax.random.normal(jax.random.PRNGKey(3), (16, 1))
    ests = (gan(gen, QUAD_CRITIC), fgan(gen, QUAD_CRITIC, divergence="gan"),
            fgan(gen, QUAD_CRITIC, divergence="gan", generator_loss="minimax"))
    a, b, c = jax.jit(lambda p, k, x: [e.estimate(p, (), k, x) for e in ests])(params, key, x)
    for group in (GENERATOR, CRITIC):
        np.testing.assert_allclose(flat(a.grads[group]), flat(b.grads[group]), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(flat(b.grads[CRITIC]), flat(c.grads[CRITIC]))   # the critic's loss is one
    assert np.max(np.abs(flat(b.grads[GENERATOR]) - flat(c.grads[GENERATOR]))) > 1e-3


def test_wgan_reports_the_weight_excess_only_when_asked():
    """wgan does not clip (the optimizer's clip_critic does); monitor_clip=c only
    reports max(0, max|ψ| - c)."""
    gen, x, key = gaussian_generator(), jnp.ones((4, 1)), jax.random.PRNGKey(0)
    params = {GENERATOR: THETA, CRITIC: jnp.array([0.3, -0.7, 0.01])}
    inside = {GENERATOR: THETA, CRITIC: jnp.array([0.3, -0.4, 0.01])}
    plain, clip = wgan(gen, QUAD_CRITIC), wgan(gen, QUAD_CRITIC, monitor_clip=0.5)
    ref, out, out_inside = jax.jit(lambda p, q: (plain.estimate(p, (), key, x), clip.estimate(p, (), key, x),
                                                 clip.estimate(q, (), key, x)))(params, inside)
    assert "weight_excess" not in ref.metrics
    np.testing.assert_allclose(out.metrics["weight_excess"], 0.2, rtol=1e-6)
    assert float(out_inside.metrics["weight_excess"]) == 0.0
    np.testing.assert_array_equal(out.grads[CRITIC], ref.grads[CRITIC])


def test_unconditional_critics_need_no_condition_argument():
    """A user's unconditional critic (ψ, state, x) -> (v, state) without a condition
    parameter, and a plain function (ψ, x) -> v (stateless), give QUAD_CRITIC's
    numbers in gan and in wgan_gp (whose penalty calls the critic again)."""
    plain = lambda psi, x: jnp.mean(quadratic(psi, x), -1)
    no_condition = Critic(lambda psi, st, x: (plain(psi, x), st), lambda key: ())
    params, key, x = {GENERATOR: THETA, CRITIC: PSI}, jax.random.PRNGKey(4), jax.random.normal(jax.random.PRNGKey(5), (8, 1))
    for factory in (gan, wgan_gp, hinge_gan):
        ref = jax.jit(factory(gaussian_generator(), QUAD_CRITIC).estimate)(params, (), key, x)
        for critic in (no_condition, plain):
            est = factory(gaussian_generator(), critic)
            out = jax.jit(est.estimate)(params, est.init(key, params, x), key, x)
            for group in (GENERATOR, CRITIC):
                np.testing.assert_array_equal(flat(out.grads[group]), flat(ref.grads[group]))
    with pytest.raises(TypeError, match="critic"):
        gan(gaussian_generator(), object())
