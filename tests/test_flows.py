"""Normalizing-flow inference models (sajax.models._flows; review Sec. 3.2.1 item 4), against exact answers.

* every flow step is a ``distrax.Bijector``: log |det| from ``forward_and_log_det`` equals slogdet of
  the autodiff Jacobian; couplings and IAF invert; planar/radial refuse to invert with a clear error;
  planar's û keeps wᵀû >= -1 (so det > 0) even for adversarial u, w;
* all five flows run through one ``distrax.Chain`` (``FlowGuideSpec.bijector``), whose log-det matches
  the Jacobian of the whole chain, while a sign-flipped or offset log-det is caught;
* a flow q on a linear-Gaussian model with a correlated posterior reaches ELBO = log p(x), while the
  best diagonal q stays below it by the closed-form KL gap;
* reparam_elbo / iwae / stl_elbo / dreg gradients with flow guides match the exact gradient of their
  objective, computed by Gauss-Hermite quadrature over ε (z-tests with stated power); dropping the
  log-det term is detected.
"""
from __future__ import annotations

import math

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import linear_gaussian as lg
from fast_jit import run_fast
from sajax.core import GUIDE, MODEL, ConditionalSampler, log_joint, log_mean_exp
from sajax.estimators._variational import dreg, iwae, reparam_elbo, stl_elbo
from sajax.models._flows import (
    FLOWS,
    CouplingFlow,
    IAFBijector,
    IAFStep,
    PlanarBijector,
    PlanarFlow,
    RadialBijector,
    RadialFlow,
    flow_guide,
    flow_vae,
    planar_u_hat,
)
from stats import assert_detects, assert_power, assert_unbiased

D_LAT, D_CTX = 3, 2
W_CORRELATED = np.array([[1.5, 0.9], [0.3, 0.7], [-0.4, 0.5]], np.float32)   # WᵀW not diagonal


def _perturbed(module, key, z, c, scale=0.7):
    """Flax params of ``module`` with N(0, scale²) added, so no step is near the identity."""
    k_init, k_noise = jax.random.split(key)
    params = module.init(k_init, z, c)["params"]
    return lg.perturb(params, k_noise, scale)


def _layers():
    return {"planar": PlanarFlow(), "radial": RadialFlow(),
            "nice": CouplingFlow(False, 0, (5,)), "realnvp": CouplingFlow(True, 1, (5,)),
            "iaf": IAFStep(D_LAT, D_CTX, (6,), (2, 3, 1))}


def _layer_checks(key):
    """Per layer, through its ``distrax.Bijector`` (``bijector(c, d)`` of the bound module): log|det|
    from ``forward_and_log_det`` and from slogdet(jacfwd), the sign, the inverse round-trip error
    (couplings, IAF) on 6 random (z, c), and the largest gap to the module's own ``__call__``."""
    zs = 1.5 * jax.random.normal(key, (6, D_LAT))
    cs = jax.random.normal(jax.random.fold_in(key, 1), (6, D_CTX))
    out = {}
    for i, (name, mod) in enumerate(_layers().items()):
        p = _perturbed(mod, jax.random.fold_in(key, 10 + i), zs[0], cs[0])
        bij = lambda c, mod=mod, p=p: mod.bind({"params": p}).bijector(c, D_LAT)
        y, log_det = jax.vmap(lambda z, c, bij=bij: bij(c).forward_and_log_det(z))(zs, cs)
        sign, ref = jax.vmap(lambda z, c, bij=bij: jnp.linalg.slogdet(jax.jacfwd(bij(c).forward)(z)))(zs, cs)
        call_y, call_ld = jax.vmap(lambda z, c, mod=mod, p=p: mod.apply({"params": p}, z, c))(zs, cs)
        call_err = jnp.maximum(jnp.max(jnp.abs(call_y - y)), jnp.max(jnp.abs(call_ld - log_det)))
        back, inv_ld = zs, -log_det
        if name not in ("planar", "radial"):
            back, inv_ld = jax.vmap(lambda u, c, bij=bij: bij(c).inverse_and_log_det(u))(y, cs)
        out[name] = (log_det, ref, sign, jnp.max(jnp.abs(back - zs)), jnp.max(jnp.abs(inv_ld + log_det)), call_err)
    return out


def test_flow_steps_log_det_and_inverse():
    checks = run_fast(_layer_checks, jax.random.PRNGKey(0))
    for name, (log_det, ref, sign, inv_err, inv_ld_err, call_err) in checks.items():
        assert float(call_err) == 0.0, name                       # __call__ is the bijector's forward
        np.testing.assert_allclose(log_det, ref, atol=2e-4, rtol=1e-4, err_msg=name)
        assert np.all(np.asarray(sign) > 0), name               # orientation kept: invertible steps
        assert float(inv_err) < 1e-4 and float(inv_ld_err) < 1e-4, (name, inv_err, inv_ld_err)
        assert np.ptp(np.asarray(log_det)) > 1e-2 or name == "nice", name   # non-trivial Jacobians
    np.testing.assert_allclose(checks["nice"][0], 0.0, atol=1e-6)        # additive: volume preserving


@jax.jit
def _u_hat_cases(key):
    """wᵀû for random (u, w) with wᵀu very negative and for wᵀu = -2, û at w = 0, and wᵀu."""
    k1, k2 = jax.random.split(key)
    w = 3.0 * jax.random.normal(k1, (1000, 4))
    u = -5.0 * w + jax.random.normal(k2, (1000, 4))         # wᵀu very negative: raw planar not invertible
    u_mild = -2.0 * w / jnp.sum(w * w, -1, keepdims=True)                 # wᵀu = -2: m(-2) = -0.873
    return dict(wu_hat=jnp.sum(w * planar_u_hat(u, w), -1), wu_hat_mild=jnp.sum(w * planar_u_hat(u_mild, w), -1),
                u=u, u_hat_w0=planar_u_hat(u, jnp.zeros_like(w)), wu=jnp.sum(w * u, -1))


def test_planar_u_hat_keeps_invertible():
    out = _u_hat_cases(jax.random.PRNGKey(1))
    wu_hat = np.asarray(out["wu_hat"])
    assert np.all(wu_hat >= -1.0 - 1e-4) and np.min(wu_hat) < -0.99     # -1 up to float32 round-off
    np.testing.assert_allclose(out["wu_hat_mild"], math.log1p(math.exp(-2.0)) - 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["u_hat_w0"], out["u"])  # w = 0: û = u, finite
    wu = np.asarray(out["wu"])
    np.testing.assert_allclose(wu_hat, np.logaddexp(0.0, wu) - 1.0, rtol=1e-4, atol=1e-4)


def test_planar_and_radial_bijectors_refuse_to_invert():
    """Both are distrax bijectors on vectors whose inverse has no closed form: NotImplementedError
    naming the flow and the estimators that work; planar's bijector applies the û constraint."""
    w = jnp.array([[2.0, -1.0, 0.5]])

    @jax.jit
    def steps_and_u_hat():
        """The two bijectors (distrax bijectors are pytrees: they come out of jit whole), û and wᵀû."""
        u = -3.0 * w                                              # wᵀu = -15.75: raw planar not invertible
        steps = {"planar": PlanarBijector(u, w, jnp.zeros(1)),
                 "radial": RadialBijector(jnp.zeros((1, 3)), jnp.ones(1), -0.5 * jnp.ones(1))}
        return steps, planar_u_hat(u, w), jnp.sum(w * steps["planar"].u_hat)

    steps, u_hat, wu_hat = steps_and_u_hat()
    for name, bij in steps.items():
        assert isinstance(bij, distrax.Bijector) and bij.event_ndims_in == 1, name
        with pytest.raises(NotImplementedError, match=f"'{name}' flow .*no closed form.*stl_elbo / dreg"):
            bij.inverse_and_log_det(jnp.ones((1, 3)))
    np.testing.assert_allclose(steps["planar"].u_hat, u_hat)
    assert float(wu_hat) >= -1.0


# --------------------------------------------------------------------------
# One code path: every flow kind is a distrax.Chain of distrax.Bijector steps

STEP_TYPES = {"planar": PlanarBijector, "radial": RadialBijector, "nice": distrax.MaskedCoupling,
              "realnvp": distrax.MaskedCoupling, "iaf": IAFBijector}
BROKEN = {"sign flipped": jnp.negative, "off by log 2": lambda ld: ld + math.log(2.0)}


class _WrongLogDet(distrax.Bijector):
    """A deliberately broken bijector: ``inner``'s forward map with its log-det passed through ``wrong``."""

    def __init__(self, inner, wrong):
        super().__init__(event_ndims_in=1)
        self.inner, self.wrong = inner, wrong

    def forward_and_log_det(self, z):
        y, log_det = self.inner.forward_and_log_det(z)
        return y, self.wrong(log_det)


def _chain_guides():
    """A 3-step guide of every kind (d = 3) and its perturbed φ (no step near the identity)."""
    guides = {f: flow_guide(4, 3, hidden=(5,), flow=f, num_flows=3, flow_hidden=(6,)) for f in FLOWS}
    phis = {f: lg.perturb(fg.init(jax.random.PRNGKey(20)), jax.random.PRNGKey(21), 0.5) for f, fg in guides.items()}
    return guides, phis


def _chain_checks(guides, phis, x, z, eps):
    """Per kind: the chain's log-det ``[B]`` from ``forward_and_log_det``, the broken variants' log-dets,
    slogdet(jacfwd) of the chain's forward per example, and the largest gap between ``transform``'s
    (h, log-det) and the chain applied to z_0 (from the same encoder with ``num_flows = 0``)."""
    out = {}
    for f, fg in guides.items():
        phi, chain = phis[f], (lambda xb, f=f: guides[f].bijector(phis[f], xb))
        log_det = chain(x).forward_and_log_det(z)[1]
        broken = {b: _WrongLogDet(chain(x), wrong).forward_and_log_det(z)[1] for b, wrong in BROKEN.items()}
        jac = lambda xb, zb, chain=chain: jax.jacfwd(lambda u: chain(xb[None]).forward(u[None])[0])(zb)
        sign, ref = jax.vmap(lambda xb, zb, jac=jac: jnp.linalg.slogdet(jac(xb, zb)))(x, z)
        z0 = flow_guide(4, 3, hidden=(5,), flow=f, num_flows=0).transform({"encoder": phi["encoder"]}, x, eps)[0]
        h, _, ld = fg.transform(phi, x, eps)
        h_chain, ld_chain = chain(x).forward_and_log_det(z0)
        gap = jnp.maximum(jnp.max(jnp.abs(h - h_chain)), jnp.max(jnp.abs(ld - ld_chain)))
        out[f] = (log_det, broken, sign, ref, gap)
    return out


def _log_det_matches(log_det, ref):
    """The check every kind must pass: log-det within float32 round-off of log |det J| by jacfwd."""
    return bool(np.allclose(log_det, ref, atol=2e-4, rtol=1e-4))


def test_every_flow_is_a_bijector_on_one_code_path():
    """All five kinds: ``FlowGuideSpec.bijector`` is a ``distrax.Chain`` of K ``distrax.Bijector`` steps
    (event_ndims_in = 1) of the kind's class; ``transform`` (hence sample_and_log_prob) is that chain;
    its log-det equals log |det J| of the whole chain by jax.jacfwd, and the same check fails on a
    sign-flipped log-det (except NICE, volume preserving: log-det ≡ 0 = -0) and on one off by log 2."""
    guides, phis = _chain_guides()
    x, z, eps = jax.jit(lambda: (jax.random.normal(jax.random.PRNGKey(22), (4, 4)),
                                 jax.random.normal(jax.random.PRNGKey(23), (4, 3)),
                                 jax.random.normal(jax.random.PRNGKey(24), (2, 4, 3))))()
    for f, fg in guides.items():
        chain = jax.eval_shape(fg.bijector, phis[f], x)   # the chain's structure: no program to run
        assert isinstance(chain, distrax.Chain) and len(chain.bijectors) == 3, f
        assert all(type(b) is STEP_TYPES[f] and b.event_ndims_in == 1 for b in chain.bijectors), f
    checks = run_fast(lambda *a: _chain_checks(guides, phis, *a), x, z, eps)
    for f, (log_det, broken, sign, ref, gap) in checks.items():
        assert float(gap) == 0.0 and np.all(np.asarray(sign) > 0), (f, gap)
        assert _log_det_matches(log_det, ref), (f, log_det, ref)
        assert np.ptp(np.asarray(log_det)) > 1e-2 or f == "nice", f        # non-trivial Jacobians
        assert not _log_det_matches(broken["off by log 2"], ref), f
        assert _log_det_matches(broken["sign flipped"], ref) == (f == "nice"), f


# --------------------------------------------------------------------------
# Guides on the linear-Gaussian model


def _theta(key=jax.random.PRNGKey(3)):
    return {"W": jnp.asarray(W_CORRELATED), "b": 0.5 * jax.random.normal(key, (3,)),
            "log_sigma": jnp.asarray(math.log(0.8), jnp.float32)}


def _quad_elbo(fg, model, params, x, nodes, weights):
    """E_ε[log p(x, h(ε)) - log q(h(ε)|x)] by quadrature (nodes [M, d]), batch mean."""
    h, lq0, ld = fg.transform(params[GUIDE], x, nodes[:, None, :])          # [M, B, d]
    integrand = log_joint(model, params[MODEL], x, h) - (lq0 - ld)          # [M, B]
    return jnp.mean(weights @ integrand)


def _quad_iw(fg, model, params, x, k, nodes, weights):
    """I_K = E_{ε_1..K} log (1/K) Σ_k w_k by quadrature over the K·d noise, batch mean."""
    eps = nodes.reshape(-1, k, 1, fg.latent_dim)                           # [M, K, 1, d]
    h, lq0, ld = fg.transform(params[GUIDE], x, eps)                        # [M, K, B, d]
    log_w = log_joint(model, params[MODEL], x, h) - (lq0 - ld)
    return jnp.mean(weights @ log_mean_exp(log_w, axis=1))


def _fit_quad_elbo(fg, model, theta, x, steps=1000, lr=0.03):
    """max_φ of the ELBO by Adam on a 16² Gauss-Hermite grid over ε; returns the ELBO [B] of the
    final φ on that grid and on a 48² grid (they must agree: the fit did not exploit the grid;
    both are exact for the linear flows, whose integrand is quadratic in ε)."""
    nodes, weights = lg._gauss_hermite_grid(2, 16)
    fine_nodes, fine_weights = lg._gauss_hermite_grid(2, 48)
    opt = optax.adam(lr)
    phi0 = fg.init(jax.random.PRNGKey(4))

    def loss(phi):
        return -_quad_elbo(fg, model, {MODEL: theta, GUIDE: phi}, x, nodes, weights)

    def step(carry, _):
        phi, s = carry
        g = jax.grad(loss)(phi)
        upd, s = opt.update(g, s, phi)
        return (optax.apply_updates(phi, upd), s), None

    (phi, _), _ = jax.lax.scan(step, (phi0, opt.init(phi0)), None, length=steps)
    return -loss(phi), _quad_elbo(fg, model, {MODEL: theta, GUIDE: phi}, x, fine_nodes, fine_weights)


def test_flow_q_closes_the_gap_diagonal_q_does_not():
    """log p(x) is reached by an exactly-expressive flow (one linear NICE coupling: h = L·diag(σ)·ε + μ
    with L unit lower-triangular spans all Gaussians) and nearly by 4 planar steps, while the best diagonal q stays below it by
    KL = ½(Σ_i log Λ_ii - log det Λ), Λ the posterior precision (closed form)."""
    model = lg.model()

    @jax.jit
    def problem():
        """θ, one example x, log p(x) and the posterior covariance, from one program."""
        theta = _theta()
        x = lg.make_data(theta, jax.random.PRNGKey(5), 1)
        return theta, x, lg.log_marginal(theta, x)[0], lg.posterior(theta, x)[1]

    theta, x, log_px, cov = problem()
    log_px = float(log_px)
    prec = np.linalg.inv(np.asarray(cov, np.float64))
    gap = 0.5 * (np.sum(np.log(np.diag(prec))) - np.linalg.slogdet(prec)[1])
    assert gap > 0.05                                                        # a correlated posterior
    guides = {name: flow_guide(3, 2, hidden=(), flow=flow, num_flows=k)
              for name, flow, k in (("diag", "planar", 0), ("nice", "nice", 1), ("planar", "planar", 4))}
    fits = run_fast(lambda t, xx: {n: _fit_quad_elbo(fg, model, t, xx) for n, fg in guides.items()}, theta, x)
    for name, (coarse, fine) in fits.items():
        assert abs(float(coarse) - float(fine)) < 1e-4, name
    reached = {n: float(fine) for n, (_, fine) in fits.items()}
    assert max(reached.values()) <= log_px + 1e-4                          # a bound: never above log p(x)
    print(f"log p(x) = {log_px:.4f}; closed-form diagonal gap {gap:.4f}; log p(x) - best ELBO: "
          + ", ".join(f"{n} {log_px - v:.4f}" for n, v in reached.items()))
    assert abs(log_px - reached["diag"] - gap) < 2e-3
    assert abs(log_px - reached["nice"]) < 2e-3
    assert log_px - reached["planar"] < 5e-3                # 4 planar steps approximate the linear shear


# --------------------------------------------------------------------------
# Gradients: z-tests against Gauss-Hermite quadrature over ε

N_DRAWS = 4000
LOG_STD0 = {"planar": -1.0, "iaf": -0.5}   # base log σ: quadrature converges (orders agree < 3e-4)
QUAD_ATOL = 1e-3   # quadrature error bound: orders 16/24 (ELBO) and 10/12 (I_2) agree to < 2e-4


def _setup(flow):
    """A 2-step ``flow`` guide (d = 2, linear encoder) and ``start() -> (φ, x)``: B = 2 examples of
    the correlated linear-Gaussian model and φ near the posterior's scale; planar steps halved so
    that wᵀû stays well above -1 (a smooth integrand: the planar det 1 + (1 - t²) wᵀû vanishes
    as wᵀû -> -1)."""
    fg = flow_guide(3, 2, hidden=(), flow=flow, num_flows=2, flow_hidden=(4,) if flow == "iaf" else ())

    def start():
        phi = fg.init(jax.random.PRNGKey(6))
        head = phi["encoder"]["DiagGaussianHead_0"]["Dense_0"]
        phi["encoder"]["DiagGaussianHead_0"]["Dense_0"] = {"kernel": 0.1 * head["kernel"],
                                                          "bias": jnp.array([0.0, 0.0, LOG_STD0[flow], LOG_STD0[flow]])}
        if flow == "planar":
            for k in ("flow_0", "flow_1"):
                phi[k] = jax.tree_util.tree_map(lambda a: 0.5 * a, phi[k])
        return lg.perturb(phi, jax.random.PRNGKey(7), 0.1), lg.make_data(_theta(), jax.random.PRNGKey(5), 2)

    return fg, start


def _no_log_det(fg):
    """A broken guide: log q = log N(z_0; μ, σ), the flow's log-det term dropped."""
    def sample_and_log_prob(phi, key, x, n):
        h, log_q0, _ = fg.transform(phi, x, jax.random.normal(key, (n, x.shape[0], fg.latent_dim)))
        return h, log_q0
    return ConditionalSampler(sample_and_log_prob, fg.guide.log_prob)


def _gradient_program(fg, start, estimators):
    """One compiled program: -∇ of the quadrature ELBO and I_2 (the descent directions the draws
    must average to) and ``N_DRAWS`` draws of each estimator over independent keys."""
    model = lg.model()
    n2, w2 = lg._gauss_hermite_grid(2, 20)
    n4, w4 = lg._gauss_hermite_grid(4, 10)

    def program():
        phi, x = start()
        params = {MODEL: _theta(), GUIDE: phi}
        neg_grad = lambda f: jax.tree_util.tree_map(jnp.negative, jax.grad(f)(params))
        exact = {"elbo": neg_grad(lambda p: _quad_elbo(fg, model, p, x, n2, w2)),
                 "iw": neg_grad(lambda p: _quad_iw(fg, model, p, x, 2, n4, w4))}
        keys = jax.random.split(jax.random.PRNGKey(11), N_DRAWS)
        draws = [jax.vmap(lambda k, i=i, e=e: e.estimate(params, (), jax.random.fold_in(k, i), x).grads)(keys)
                 for i, e in enumerate(estimators)]
        return exact, draws, params, x

    return run_fast(program)


def _check_gradients(flow, names, broken: bool):
    """z-tests, with a ``flow`` q, of the estimators ``names`` against quadrature and, if
    ``broken``, of reparam_elbo with the log-det term dropped (must fail)."""
    fg, start = _setup(flow)
    model = lg.model()
    # (estimator, objective it is unbiased for, required power: largest detectable bias / ||exact||);
    # away from the posterior, dropping the score term (stl, dreg) costs variance: 25%
    table = {"reparam_elbo": (reparam_elbo(model, fg.guide, num_samples=1), "elbo", 0.1),
             "iwae K=2": (iwae(model, fg.guide, num_samples=2), "iw", 0.1),
             "stl_elbo": (stl_elbo(model, fg.guide, num_samples=1), "elbo", 0.25),
             "dreg K=2": (dreg(model, fg.guide, num_samples=2), "iw", 0.25)}
    ests = [table[n][0] for n in names] + ([reparam_elbo(model, _no_log_det(fg), num_samples=1)] if broken else [])
    exact, draws, params, x = _gradient_program(fg, start, ests)
    for name, d in zip(names, draws):
        _, objective, power = table[name]
        t = assert_unbiased(d, exact[objective], f"{name}, {flow} q", atol=QUAD_ATOL)
        assert_power(t, power, f"{name}, {flow} q")
    if broken:
        assert_detects(draws[-1], exact["elbo"], f"reparam_elbo, {flow} q without log-det", atol=QUAD_ATOL)
    return fg, params, x


def test_gradients_with_planar_q():
    """Planar: reparam_elbo and iwae (K = 2) unbiased, the log-det-free variant detected;
    stl_elbo / dreg need log q of a given h, which planar flows do not have: a clear
    NotImplementedError when traced."""
    fg, params, x = _check_gradients("planar", ("reparam_elbo", "iwae K=2"), broken=True)
    for est in (stl_elbo(lg.model(), fg.guide, num_samples=1), dreg(lg.model(), fg.guide, num_samples=2)):
        with pytest.raises(NotImplementedError, match="no closed form"):
            jax.eval_shape(lambda p: est.estimate(p, (), jax.random.PRNGKey(0), x), params)


def test_gradients_with_iaf_q():
    """IAF: reparam_elbo, stl_elbo and dreg (K = 2) unbiased; the last two evaluate log q at
    stopped φ through the exact d-pass inverse."""
    _check_gradients("iaf", ("reparam_elbo", "stl_elbo", "dreg K=2"), broken=False)


# --------------------------------------------------------------------------
# Protocol, spec and argument checks


def test_guides_log_prob_and_spec():
    """log_prob(φ, x, h) of a sample equals its sampled log q for the invertible flows and for
    num_flows = 0; planar/radial raise NotImplementedError; flow_vae pairs the VAE's
    p(x|h) with the flow q and gives a finite IW-NLL (sajax.evaluate.iw_nll runs the flow guide)."""
    from sajax.evaluate import iw_nll

    x = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    guides = {f: flow_guide(4, 3, hidden=(5,), flow=f, num_flows=2, flow_hidden=(6,)) for f in FLOWS}
    guides["diag"] = flow_guide(4, 3, hidden=(5,), flow="radial", num_flows=0)

    def draw(fg):
        phi = lg.perturb(fg.init(jax.random.PRNGKey(1)), jax.random.PRNGKey(2), 0.3)
        h, log_q = fg.guide.sample_and_log_prob(phi, jax.random.PRNGKey(3), x, 4)
        return h, log_q, fg.guide.log_prob(phi, x, h)

    assert [n for n, fg in guides.items() if fg.invertible] == ["nice", "realnvp", "iaf", "diag"]
    checked = ("realnvp", "diag")   # nice is realnvp's code path with s = 0; IAF's log_prob: stl/dreg z-tests
    for name, (h, log_q, log_prob) in run_fast(lambda: {n: draw(guides[n]) for n in checked}).items():
        assert h.shape == (4, 3, 3) and log_q.shape == (4, 3) and np.all(np.isfinite(log_q)), name
        np.testing.assert_allclose(log_prob, log_q, atol=1e-4, err_msg=name)
    for name in ("planar", "radial"):
        with pytest.raises(NotImplementedError, match="stl_elbo / dreg"):
            jax.eval_shape(lambda: draw(guides[name]))
    spec = flow_vae(6, latent_dim=2, hidden=(8,), flow="planar", num_flows=2)
    params = run_fast(spec.init, jax.random.PRNGKey(4))
    xb = (jax.random.uniform(jax.random.PRNGKey(5), (5, 6)) < 0.5).astype(jnp.float32)
    nll = iw_nll(spec.model, spec.guide, params, jax.random.PRNGKey(6), xb, num_samples=8, batch_size=5)
    assert np.isfinite(nll) and nll > 0 and spec.model.observation == "bernoulli"
    assert spec.latent_dims == (2,) and set(params) == {MODEL, GUIDE}


@pytest.mark.parametrize("kwargs, match", [
    ({"flow": "sylvester"}, "flow must be one of"),
    ({"num_flows": -1}, "num_flows"),
    ({"latent_dim": 1, "flow": "nice"}, "latent_dim must be >= 2"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"x_dim": 0}, "x_dim"),
    ({"hidden": (0,)}, "hidden width"),
    ({"flow_hidden": (-3,)}, "flow_hidden width"),
    ({"activation": "cube"}, "activation"),
])
def test_flow_guide_argument_errors(kwargs, match):
    args = {"x_dim": 4, "latent_dim": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        flow_guide(**args)


def test_data_with_the_wrong_width_is_refused():
    """Checked at trace time (shapes) and on concrete data (binary for a Bernoulli flow VAE)."""
    fg = flow_guide(4, 2, hidden=(), flow="realnvp", num_flows=1)
    with pytest.raises(ValueError, match="event shape"):
        jax.eval_shape(lambda: fg.guide.sample_and_log_prob(fg.init(jax.random.PRNGKey(0)), jax.random.PRNGKey(1),
                                                            jnp.ones((2, 5)), 1))
    spec = flow_vae(4, latent_dim=2, hidden=(3,), num_flows=1)
    half = np.full((2, 4), 0.5, np.float32)   # concrete inside the trace: its values are checked
    with pytest.raises(ValueError, match="binary"):
        jax.eval_shape(lambda: spec.guide.sample_and_log_prob(spec.init(jax.random.PRNGKey(0))[GUIDE],
                                                              jax.random.PRNGKey(1), half, 1))
