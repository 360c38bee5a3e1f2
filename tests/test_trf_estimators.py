"""Trans-dimensional random fields over sentences (review Sec. 4.2.3-4.2.4; Wang & Ou 2017,
2018a,b; Wang, Ou & Tan 2018): NCE / DNCE with per-length ζ_l (``learn_log_z=False``) and
SA learning with MIS proposals from an autoregressive generator (:func:`trf_sa`), proved
against exact answers by enumeration.

The state space: tokens {3, 4} (vocab_size 5 with <pad>=0, <bos>=1, <eos>=2), lengths
1..3 (max_len 4, L = 3): 2 + 4 + 8 = 14 sentences, every expectation an exact sum.  The
TRF stand-in follows helper A's TRFSpec contract: potential(θ̂, x) = log π_l + u_θ(x) - ζ_l
with u_θ a per-position unigram table w [3, 2] plus a bigram table b [2, 2].  The generator
/ noise is a tabular LM over the 14 sentences (logits φ [14]): exactly enumerable.

* gradients: NCE, DNCE (θ, ζ and DNCE's φ) and SA (θ, ζ, φ) over many keys z-tested
  against their exact expectations, each with a broken variant that must fail;
* MIS on sentences: 30,000 chains started at one sentence reach the enumerated
  p(l, x; θ, ζ) within total variation 0.02 (an exact sampler's expected TV is 0.008);
* training through ``sajax.sa.fit``: SA (and NCE) reach the enumerated maximum-likelihood
  fit of the same family within 0.02 nats per sentence.
"""
import itertools
import math
from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from stats import assert_detects, assert_power, assert_unbiased

from sajax.core import POTENTIAL, SAMPLER, Batch, EnergyModel
from sajax.estimators import NoiseModel, TRFSAState, dnce, nce, trf_sa, trf_sa_update

VOCAB, MAX_LEN, L = 5, 4, 3
SENTS = jnp.asarray([list(w) + [2] + [0] * (MAX_LEN - 1 - n)
                     for n in range(1, L + 1) for w in itertools.product([3, 4], repeat=n)], jnp.int32)
SENT_LENGTHS = np.asarray([n for n in range(1, L + 1) for _ in range(2 ** n)])
N_KEYS = 3000


# --------------------------------------------------------------------------- the stand-ins


class TinyTRF(NamedTuple):
    """A TRFSpec-shaped stand-in (helper A's contract)."""

    model: EnergyModel
    init: Callable
    energy: Callable
    lengths: Callable
    log_length_prior: jax.Array
    vocab_size: int
    max_len: int


def lengths(x):
    """Tokens before <eos>: the index of the first <eos>."""
    return jnp.argmax(x == 2, axis=1).astype(jnp.int32)


def energy(theta_hat, x):
    """u_θ(x) = Σ_i w[i, x_i] + Σ_i b[x_{i-1}, x_i] over the words (tokens >= 3)."""
    word = (x >= 3)[:, : MAX_LEN - 1]
    tok = jnp.clip(x - 3, 0, 1)[:, : MAX_LEN - 1]
    uni = jnp.sum(jnp.where(word, theta_hat["w"][jnp.arange(MAX_LEN - 1), tok], 0.0), axis=1)
    pair = word[:, 1:] & word[:, :-1]
    bi = jnp.sum(jnp.where(pair, theta_hat["b"][tok[:, :-1], tok[:, 1:]], 0.0), axis=1)
    return uni + bi


def tiny_trf(log_prior) -> TinyTRF:
    log_prior = jnp.asarray(log_prior, jnp.float32)

    def potential(theta_hat, x):
        l = lengths(x) - 1
        return log_prior[l] + energy(theta_hat, x) - theta_hat["zeta"][l]

    def init(key):
        return {POTENTIAL: {"w": 0.1 * jax.random.normal(key, (MAX_LEN - 1, 2)), "b": jnp.zeros((2, 2)),
                            "zeta": jnp.zeros(L)}}

    return TinyTRF(EnergyModel(potential, observation="categorical"), init, energy, lengths, log_prior,
                   VOCAB, MAX_LEN)


def _index(x):
    return jnp.argmax(jnp.all(x[:, None, :] == SENTS[None], axis=-1), axis=1)


class TabularDist(NamedTuple):
    """A distrax-like categorical over the 14 sentences (NCE's fixed noise)."""

    logits: jax.Array

    def sample(self, seed, sample_shape):
        return SENTS[jax.random.categorical(seed, self.logits, shape=sample_shape)]

    def log_prob(self, x):
        return jax.nn.log_softmax(self.logits)[_index(x)]


TABULAR = NoiseModel(sample=lambda phi, key, n: TabularDist(phi["logits"]).sample(key, (n,)),
                     log_prob=lambda phi, x: TabularDist(phi["logits"]).log_prob(x),
                     dist=lambda phi: TabularDist(phi["logits"]))

PRIOR = np.log([0.25, 0.25, 0.5])
SPEC = tiny_trf(PRIOR)
THETA = {"w": jnp.asarray([[0.4, -0.3], [0.2, 0.5], [-0.6, 0.1]]), "b": jnp.asarray([[0.3, -0.2], [-0.5, 0.4]]),
         "zeta": jnp.asarray([0.3, 1.1, 2.4])}
# 8 sentences whose length fractions are exactly π = (1/4, 1/4, 1/2)
DATA = SENTS[jnp.asarray([0, 1, 2, 5, 6, 8, 11, 13])]
PHI = {"logits": jnp.asarray(np.random.default_rng(3).normal(scale=0.5, size=14), jnp.float32)}


# --------------------------------------------------------------------------- exact answers


def joint_log_probs(spec, theta_hat):
    """log p(l, x; θ, ζ) ∝ log π_l + u_θ(x) - ζ_l, normalized over the 14 sentences."""
    return jax.nn.log_softmax(spec.model.potential(theta_hat, SENTS))


def exact_log_z(theta_hat):
    """log Z_l(θ) [L] = log Σ_{|x| = l} exp u_θ(x)."""
    u = energy(theta_hat, SENTS)
    return jnp.stack([jax.nn.logsumexp(jnp.where(SENT_LENGTHS == n, u, -jnp.inf)) for n in range(1, L + 1)])


def trf_log_likelihood(spec, theta_hat, x):
    """The TRF's exact mean log p(l, x) = log π_l + u_θ(x) - log Z_l(θ) (ζ renormalized away)."""
    l = lengths(x) - 1
    return jnp.mean(spec.log_length_prior[l] + energy(theta_hat, x) - exact_log_z(theta_hat)[l])


def _neg(tree):
    return jax.tree_util.tree_map(jnp.negative, tree)


# --------------------------------------------------------------------------- NCE / DNCE with ζ_l


def _draws(est, params, x, n=4000):
    one = lambda k: est.estimate(params, (), k, Batch(x, jnp.arange(x.shape[0]))).grads  # noqa: E731
    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(7), n))


@partial(jax.jit, static_argnums=(2,))
def _exact_nce_grad(theta_hat, phi, nu):
    """-∇J (Eq. 48) with log p_θ̂ = log π_l + u - ζ_l and the noise expectation summed exactly."""
    log_q = jax.nn.log_softmax(phi["logits"])

    def objective(g):
        g_x = SPEC.model.potential(g, DATA) - log_q[_index(DATA)] - math.log(nu)
        g_s = SPEC.model.potential(g, SENTS) - log_q - math.log(nu)
        return jnp.mean(jax.nn.log_sigmoid(g_x)) + nu * jnp.sum(jnp.exp(log_q) * jax.nn.log_sigmoid(-g_s))

    return {POTENTIAL: _neg(jax.grad(objective)(theta_hat))}


def test_nce_with_per_length_zeta_matches_the_exact_gradient():
    """NCE, learn_log_z=False (ζ_l inside the potential, no 'log_z'), ν = 2, integer token
    data and noise: the mean of 4,000 gradients (θ and ζ) matches the exact -∇J; detectable
    bias <= 10% of ||∇J||.  Dropping log ν from the logit (a wrong Eq. 46) is caught."""
    params = {POTENTIAL: THETA}
    noise = TabularDist(PHI["logits"])
    exact = _exact_nce_grad(THETA, PHI, 2.0)
    est = nce(SPEC, noise, nu=2.0, learn_log_z=False)
    out = jax.eval_shape(est.estimate, params, (), jax.random.PRNGKey(0), Batch(DATA, jnp.arange(8)))
    assert sorted(out.grads[POTENTIAL]) == ["b", "w", "zeta"] and "log_z" not in out.metrics
    t = assert_unbiased(_draws(est, params, DATA), exact, "nce grad (ζ_l)", atol=1e-5)
    assert_power(t, 0.1, "nce grad (ζ_l)")
    broken = nce(SPEC, noise, nu=2.0, learn_log_z=False, _logit=lambda lm, ln, nu: lm - ln)
    assert_detects(_draws(broken, params, DATA), exact, "nce grad without log nu", atol=1e-5)


@partial(jax.jit, static_argnums=(2, 3))
def _exact_dnce_grad(theta_hat, phi, nu, alpha):
    """-∇J_α for θ̂ (q_φ expectations summed over the 14 sentences) and -mean ∇_φ log q_φ(x̃)."""
    log_q = jax.nn.log_softmax(phi["logits"])
    q = jnp.exp(log_q)

    def logit(lp, lq):
        return jnp.logaddexp(math.log(alpha) + lp, math.log1p(-alpha) + lq) - lq - math.log(nu)

    def objective(g):
        lp_x, lp_s = SPEC.model.potential(g, DATA), SPEC.model.potential(g, SENTS)
        g_x, g_s = logit(lp_x, log_q[_index(DATA)]), logit(lp_s, log_q)
        return (alpha * jnp.mean(jax.nn.log_sigmoid(g_x)) + (1 - alpha) * jnp.sum(q * jax.nn.log_sigmoid(g_s))
                + nu * jnp.sum(q * jax.nn.log_sigmoid(-g_s)))

    g_phi = jax.grad(lambda p: jnp.mean(TABULAR.log_prob(p, DATA)))(phi)
    return _neg({POTENTIAL: jax.grad(objective)(theta_hat), SAMPLER: g_phi})


def test_dnce_with_per_length_zeta_matches_the_exact_gradient():
    """DNCE (α = 0.5, ν = 2), learn_log_z=False, the tabular LM as q_φ: θ, ζ and φ match the
    exact -∇J_α and the exact ML gradient of φ; detectable bias <= 10%.  The NCE gradient
    (α = 1) is not the gradient of J_0.5 and is caught."""
    params = {POTENTIAL: THETA, SAMPLER: PHI}
    exact = _exact_dnce_grad(THETA, PHI, 2.0, 0.5)
    est = dnce(SPEC, TABULAR, nu=2.0, alpha=0.5, learn_log_z=False)
    t = assert_unbiased(_draws(est, params, DATA), exact, "dnce grad (ζ_l)", atol=1e-5)
    assert_power(t, 0.1, "dnce grad (ζ_l)")
    broken = dnce(SPEC, TABULAR, nu=2.0, alpha=1.0, learn_log_z=False)
    assert_detects(_draws(broken, params, DATA), exact, "dnce grad with alpha = 1 vs J_0.5", atol=1e-5)


def test_nce_learn_log_z_errors():
    key, batch = jax.random.PRNGKey(0), Batch(DATA, jnp.arange(8))
    noise = TabularDist(PHI["logits"])
    with pytest.raises(ValueError, match=r"nce: learn_log_z=False .* has a 'log_z' leaf"):
        nce(SPEC, noise, learn_log_z=False).estimate({POTENTIAL: {**THETA, "log_z": 0.0}}, (), key, batch)
    with pytest.raises(ValueError, match=r"dnce: learn_log_z=False .* 'log_z'"):
        dnce(SPEC, TABULAR, learn_log_z=False).estimate(
            {POTENTIAL: {**THETA, "log_z": 0.0}, SAMPLER: PHI}, (), key, batch)
    with pytest.raises(TypeError, match="learn_log_z must be True"):
        nce(SPEC, noise, learn_log_z="no")
    with pytest.raises(ValueError, match="log_z"):                        # the default still needs c
        nce(SPEC, noise).estimate({POTENTIAL: THETA}, (), key, batch)
    float_noise = TabularDist(PHI["logits"])._replace()
    floaty = NoiseModel(lambda phi, k, n: TABULAR.sample(phi, k, n).astype(jnp.float32), TABULAR.log_prob)
    floaty_dnce = dnce(SPEC, floaty, learn_log_z=False)
    with pytest.raises(TypeError, match=r"dnce: the noise draws float32 but the data are integer tokens"):
        # a dtype check: it raises while tracing (eval_shape), no eager noise draws compiled op by op
        jax.eval_shape(floaty_dnce.estimate, {POTENTIAL: THETA, SAMPLER: PHI}, (), key, batch)
    assert jax.jit(lambda k: float_noise.sample(k, (3,)))(key).dtype == jnp.int32


# --------------------------------------------------------------------------- SA with MIS: gradients


def _sa_draws(est, params, n=N_KEYS):
    """Grads and metrics of n independent (init, estimate) pairs, one compile."""
    def one(key):
        k_init, k_est = jax.random.split(key)
        state = est.init(k_init, params, DATA)
        out = est.estimate(params, state, k_est, Batch(DATA, jnp.arange(8)))
        return out.grads, out.metrics

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(11), n))


@partial(jax.jit, static_argnames="precondition")
def _exact_sa_direction(theta_hat, precondition: bool = True):
    """The descent direction whose mean SA must hit: -∇ of the jointly normalized model's exact
    mean log-likelihood mean log p(l̃, x̃; θ, ζ) (enumerated), its ζ part times 1/π_l."""
    def log_lik(g):
        return jnp.mean(joint_log_probs(SPEC, g)[_index(DATA)])

    grad = jax.grad(log_lik)(theta_hat)
    if precondition:
        grad = {**grad, "zeta": grad["zeta"] / jnp.exp(SPEC.log_length_prior)}
    return _neg(grad)


def test_sa_gradients_with_exact_model_samples():
    """q_φ = p(l, x; θ, ζ) exactly (tabular logits = the enumerated joint): every MIS proposal
    is accepted (acceptance 1) and the C = 64 chains are exact draws of the model.  Over 3,000
    keys, the θ and ζ grads match -∇ mean log p(l̃, x̃; θ, ζ) with ζ preconditioned by 1/π_l
    (= -(p(l) - π_l)/π_l, the data's length fractions being π), and φ's grad matches 0
    (E_p ∇ log q_φ = 0 at q_φ = p, Eq. 44's root); detectable bias <= 10%.  Broken: the
    unpreconditioned ζ reference, and a generator that ignores ζ (one MIS move from its own
    draws is not p), must both fail."""
    exact_phi = {"logits": joint_log_probs(SPEC, THETA)}
    params = {POTENTIAL: THETA, SAMPLER: exact_phi}
    grads, metrics = _sa_draws(trf_sa(SPEC, TABULAR, num_chains=64, num_moves=1, init="generator"), params)
    assert float(jnp.min(metrics["acceptance_rate"])) > 0.9999
    exact = {POTENTIAL: _exact_sa_direction(THETA), SAMPLER: {"logits": jnp.zeros(14)}}
    frac = np.bincount(SENT_LENGTHS, weights=np.exp(np.asarray(exact_phi["logits"])))[1:]
    pi = np.exp(PRIOR)
    np.testing.assert_allclose(exact[POTENTIAL]["zeta"], -(frac - pi) / pi, rtol=1e-4, atol=1e-5)
    t = assert_unbiased(grads, exact, "trf_sa grads with exact samples", atol=1e-5)
    assert_power(assert_unbiased(grads[POTENTIAL], exact[POTENTIAL], "θ̂ part", atol=1e-5), 0.1, "θ̂ part")
    assert t.n == N_KEYS
    unconditioned = {**exact, POTENTIAL: _exact_sa_direction(THETA, precondition=False)}
    assert_detects(grads, unconditioned, "ζ without 1/π_l", atol=1e-5)
    no_zeta = {"logits": joint_log_probs(SPEC, {**THETA, "zeta": jnp.zeros(L)})}
    bad, _ = _sa_draws(trf_sa(SPEC, TABULAR, num_chains=64, num_moves=1, init="generator"),
                       {POTENTIAL: THETA, SAMPLER: no_zeta})
    assert_detects(bad[POTENTIAL], exact[POTENTIAL], "chains from q ≠ p after one move", atol=1e-5)


def test_sa_update_is_the_exact_gradient_at_its_chains():
    """At the chains it returns (deterministic given them): φ's grad is -∇_φ mean log q_φ(chains)
    (inclusive KL, Eq. 43-44), θ's -(mean ∇u(x̃) - mean ∇u(chains)), ζ's -(n_l/(C π_l) - 1);
    trf_sa_update at those chains gives the same grads."""
    params = {POTENTIAL: THETA, SAMPLER: PHI}
    est = trf_sa(SPEC, TABULAR, num_chains=32, num_moves=3)
    state = jax.jit(est.init)(jax.random.PRNGKey(0), params, DATA)
    out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(1), Batch(DATA, jnp.arange(8)))
    chains = out.state.chains
    assert chains.shape == (32, MAX_LEN) and chains.dtype == jnp.int32

    @jax.jit
    def references(chains):
        want_phi = jax.grad(lambda p: jnp.mean(TABULAR.log_prob(p, chains)))(PHI)
        contrast = jax.grad(lambda t: jnp.mean(energy(t, DATA)) - jnp.mean(energy(t, chains)))(THETA)
        return (want_phi, contrast, lengths(chains), trf_sa_update(SPEC, TABULAR)(params, DATA, chains),
                jnp.mean(SPEC.model.potential(THETA, DATA)))

    want_phi, contrast, chain_lengths, (grads, metrics), mean_potential = references(chains)
    np.testing.assert_allclose(-out.grads[SAMPLER]["logits"], want_phi["logits"], rtol=1e-5, atol=1e-7)
    for name in ("w", "b"):
        np.testing.assert_allclose(-out.grads[POTENTIAL][name], contrast[name], rtol=1e-5, atol=1e-6)
    n_l = np.bincount(np.asarray(chain_lengths), minlength=L + 1)[1:]
    np.testing.assert_allclose(-out.grads[POTENTIAL]["zeta"], n_l / (32 * np.exp(PRIOR)) - 1, rtol=1e-5)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), grads, out.grads)
    assert float(metrics["length_tv"]) == pytest.approx(0.5 * np.abs(n_l / 32 - np.exp(PRIOR)).sum(), abs=1e-6)
    assert float(out.metrics["objective"]) == pytest.approx(float(mean_potential), rel=1e-6)
    assert all(np.isfinite(np.asarray(v)) and np.ndim(v) == 0 for v in out.metrics.values())


# --------------------------------------------------------------------------- SA with MIS: the chains


def _run_chains(est, params, state, num_iters):
    """``num_iters`` estimates at fixed params, the chains threaded through the state."""
    def body(state, key):
        out = est.estimate(params, state, key, Batch(DATA, jnp.arange(8)))
        return out.state, out.metrics["acceptance_rate"]

    return jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(5), num_iters)))(state)


def _tv(chains, log_p):
    freq = np.bincount(np.asarray(_index(chains)), minlength=14) / chains.shape[0]
    return 0.5 * float(np.abs(freq - np.exp(np.asarray(log_p, np.float64))).sum())


@pytest.mark.runtime_bound
def test_mis_chains_reach_the_enumerated_trf():
    """C = 30,000 chains all started at one sentence (of length 1), 10 iterations of 4 MIS
    moves with q_φ ≠ p (tabular logits ~ N(0, 0.5²)): the chains' empirical distribution over the
    14 sentences is within TV 0.02 of the enumerated p(l, x; θ, ζ).  MIS's distance after k
    moves is at most (1 - min q/p)^k (computed: 4e-4 at k = 40), and an exact sampler's
    expected TV at n = 30,000, ½ Σ √(2 p(1-p)/(π n)), is computed too (≈ 0.008 < 0.02).
    Broken: a generator whose log_prob claims uniform q (MIS weights wrong) converges to
    ∝ p·q instead and must miss by TV > 0.04."""
    c = 30_000
    params = {POTENTIAL: THETA, SAMPLER: PHI}
    log_p = joint_log_probs(SPEC, THETA)
    p, q = np.exp(np.asarray(log_p, np.float64)), np.asarray(jax.nn.softmax(PHI["logits"]), np.float64)
    assert (1 - np.min(q / p)) ** 40 < 1e-3
    expected_tv = 0.5 * np.sum(np.sqrt(2 * p * (1 - p) / (np.pi * c)))
    assert expected_tv < 0.008
    start = TRFSAState(jnp.tile(SENTS[1][None], (c, 1)))
    est = trf_sa(SPEC, TABULAR, num_chains=c, num_moves=4)
    state, acceptance = _run_chains(est, params, start, 10)
    tv = _tv(state.chains, log_p)
    print(f"MIS TV to the enumerated TRF: {tv:.4f} (exact sampler expects {expected_tv:.4f}); "
          f"acceptance {float(acceptance[-1]):.3f}")
    assert tv < 0.02
    liar = NoiseModel(TABULAR.sample, lambda phi, x: jnp.full(x.shape[:1], -math.log(14.0)))
    wrong, _ = _run_chains(trf_sa(SPEC, liar, num_chains=c, num_moves=4), params, start, 10)
    pq = p * q / np.sum(p * q)
    assert 0.5 * np.abs(pq - p).sum() > 0.06
    assert _tv(wrong.chains, log_p) > 0.04


@pytest.mark.parametrize("log_zero", [-np.inf, -1000.0])
def test_lengths_with_zero_prior_never_appear_and_stay_finite(log_zero):
    """π = (0.5, 0, 0.5), log π_2 = -inf or sajax.models.trf's floor -1000: chains started from
    the generator (some of length 2) leave length 2 at the first allowed proposal and never
    return (w = 0); grads and metrics stay finite and ζ_2's grad is exactly 0.  Data of
    length 2 are refused at init."""
    spec = tiny_trf(np.array([math.log(0.5), log_zero, math.log(0.5)], np.float32))
    data = jnp.asarray(np.asarray(SENTS)[[0, 1, 6, 7, 8, 13]])        # indexed on the host: nothing compiled
    params = {POTENTIAL: THETA, SAMPLER: {"logits": jnp.zeros(14)}}
    est = trf_sa(spec, TABULAR, num_chains=64, num_moves=5, init="generator")
    state = jax.jit(lambda key: est.init(key, params, data))(jax.random.PRNGKey(0))   # data concrete: checked
    assert np.any(np.asarray(lengths(state.chains)) == 2)

    def body(state, key):
        out = est.estimate(params, state, key, Batch(data, jnp.arange(6)))
        return out.state, (out.grads, out.metrics)

    state, (grads, metrics) = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.PRNGKey(1), 4)))(state)
    assert not np.any(np.asarray(lengths(state.chains)) == 2)
    for leaf in jax.tree_util.tree_leaves((grads, metrics)):
        assert np.all(np.isfinite(np.asarray(leaf)))
    np.testing.assert_array_equal(np.asarray(grads[POTENTIAL]["zeta"])[:, 1], 0.0)
    with pytest.raises(ValueError, match=r"trf_sa: data has sentences of length\(s\) \[2\] .*π_l = 0"):
        est.init(jax.random.PRNGKey(0), params, DATA)


# --------------------------------------------------------------------------- bad input


def test_trf_sa_errors():
    params, key = {POTENTIAL: THETA, SAMPLER: PHI}, jax.random.PRNGKey(0)
    batch = Batch(DATA, jnp.arange(8))
    est = trf_sa(SPEC, TABULAR, num_chains=4)
    state = jax.jit(lambda k: est.init(k, params, DATA))(key)
    with pytest.raises(ValueError, match=r"trf_sa: params has no group\(s\) \['sampler'\]"):
        est.estimate({POTENTIAL: THETA}, state, key, batch)
    with pytest.raises(ValueError, match=r"trf_sa: params\['potential'\] must be a dict holding 'zeta' \[L = 3\]"):
        est.estimate({POTENTIAL: {"w": THETA["w"], "b": THETA["b"]}, SAMPLER: PHI}, state, key, batch)
    with pytest.raises(ValueError, match=r"'zeta'\] must have shape \[L\] = \[3\]"):
        est.init(key, {POTENTIAL: {**THETA, "zeta": jnp.zeros(4)}, SAMPLER: PHI}, DATA)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="num_chains must be an integer >= 1"):
            trf_sa(SPEC, TABULAR, num_chains=bad)
    with pytest.raises(TypeError, match="num_chains"):
        trf_sa(SPEC, TABULAR, num_chains=2.5)
    with pytest.raises(ValueError, match="num_moves must be an integer >= 1"):
        trf_sa(SPEC, TABULAR, num_moves=0)
    with pytest.raises(ValueError, match=r"trf_sa: init must be one of \('data', 'generator'\)"):
        trf_sa(SPEC, TABULAR, init="noise")
    with pytest.raises(ValueError, match=r"init chains must have shape \[n, T\] = \[4, 4\]"):
        trf_sa(SPEC, TABULAR, num_chains=4, init=SENTS[:3]).init(key, params, DATA)
    with pytest.raises(TypeError, match="generator must be a NoiseModel"):
        trf_sa(SPEC, object())
    with pytest.raises(TypeError, match="callable 'lengths'"):
        trf_sa(SPEC._replace(lengths=None), TABULAR)
    with pytest.raises(ValueError, match="log_length_prior must be log π_l"):
        trf_sa(SPEC._replace(log_length_prior=jnp.zeros(3)), TABULAR)
    with pytest.raises(TypeError, match="data must be integer token rows"):
        est.init(key, params, DATA.astype(jnp.float32))
    # the generator's dtype and shape checks raise while tracing: eval_shape compiles no eager MIS step
    floaty = NoiseModel(lambda phi, k, n: TABULAR.sample(phi, k, n).astype(jnp.float32), TABULAR.log_prob)
    with pytest.raises(TypeError, match=r"trf_sa: generator.sample\(φ, key, n\) must be integer token rows"):
        jax.eval_shape(trf_sa(SPEC, floaty, num_chains=4).estimate, params, state, key, batch)
    long_rows = NoiseModel(lambda phi, k, n: jnp.zeros((n, MAX_LEN + 1), jnp.int32), TABULAR.log_prob)
    with pytest.raises(ValueError, match=r"generator.sample\(φ, key, n\) must have shape \[n, T\] = \[4, 4\], got \(4, 5\)"):
        trf_sa(SPEC, long_rows, num_chains=4).estimate(params, state, key, batch)
    per_token = NoiseModel(TABULAR.sample, lambda phi, x: jnp.zeros(x.shape))
    with pytest.raises(ValueError, match="generator.log_prob must return one value per sentence"):
        jax.eval_shape(trf_sa(SPEC, per_token, num_chains=4).estimate, params, state, key, batch)


# --------------------------------------------------------------------------- training through fit


TRUTH = {"w": jnp.asarray([[0.8, -0.4], [-0.3, 0.6], [0.5, -0.7]]),
         "b": jnp.asarray([[0.6, -0.5], [-0.4, 0.9]]), "zeta": jnp.zeros(L)}
FIT_STEPS = 600


@pytest.fixture(scope="module")
def fit_case():
    """2,000 exact draws of a TRF (π = (0.2, 0.3, 0.5), θ = TRUTH); the model's π is the
    training set's length fractions (as the TRF sets it), and the ML fit of the same family
    on the same sentences by 3,000 full-batch gradient-ascent steps on the exact (enumerated)
    log-likelihood, which is concave in θ; its gradient ends below 1e-4."""
    true_spec = tiny_trf(np.log([0.2, 0.3, 0.5]))
    log_p = jax.jit(lambda t: joint_log_probs(true_spec, {**t, "zeta": exact_log_z(t)}))(TRUTH)
    p = np.exp(np.asarray(log_p, np.float64))
    data = jnp.asarray(np.asarray(SENTS)[np.random.default_rng(0).choice(14, size=2000, p=p / p.sum())])
    frac = np.bincount(np.asarray(jax.jit(lengths)(data)), minlength=L + 1)[1:] / data.shape[0]
    spec = tiny_trf(np.log(frac))

    def ascend(x):
        log_lik = lambda t: trf_log_likelihood(spec, t, x)  # noqa: E731
        step = lambda t, _: (jax.tree_util.tree_map(lambda a, g: a + g, t, jax.grad(log_lik)(t)), None)  # noqa: E731
        theta, _ = jax.lax.scan(step, jax.tree_util.tree_map(jnp.zeros_like, TRUTH), None, length=3000)
        return log_lik(theta), jax.grad(log_lik)(theta)

    ll_ml, grad = jax.jit(ascend)(data)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(grad)) < 1e-4
    return spec, data, float(ll_ml)


def _fit_potential(est, opt, params, data):
    from sajax.sa import fit

    res = fit(est, opt, params, data, key=jax.random.PRNGKey(0), batch_size=100, num_steps=FIT_STEPS,
              progress=False)
    return res.state.params[POTENTIAL], res


def _fit_quality(spec, theta, data):
    """The trained θ's exact mean log-likelihood of ``data`` and ζ_l - log Z_l(θ), one program."""
    return jax.jit(lambda t, x: (trf_log_likelihood(spec, t, x), t["zeta"] - exact_log_z(t)))(theta, data)


def _labels(params):
    """Optimizer labels: θ by Adam, ζ by plain SGD (the SA step as written), φ by Adam."""
    return {POTENTIAL: {k: "zeta" if k == "zeta" else "theta" for k in params[POTENTIAL]},
            SAMPLER: jax.tree_util.tree_map(lambda _: "phi", params[SAMPLER])}


def test_sa_training_reaches_the_maximum_likelihood_fit(fit_case):
    """trf_sa through sajax.sa.fit (C = 100 chains, 2 MIS moves, the tabular generator from
    uniform, 600 steps of batch 100): the exact per-sentence log-likelihood of the trained θ
    (ζ replaced by the exact log Z_l) is within 0.02 nats of the ML fit (reached: 1e-4), and
    ζ_l - log Z_l(θ) is one common offset (spread < 0.1; reached 0.04), the root of the ζ update."""
    spec, data, ll_ml = fit_case
    params = {POTENTIAL: jax.tree_util.tree_map(jnp.zeros_like, TRUTH), SAMPLER: {"logits": jnp.zeros(14)}}
    decay = lambda lr: optax.cosine_decay_schedule(lr, FIT_STEPS, 0.02)  # noqa: E731
    opt = optax.multi_transform({"theta": optax.adam(decay(0.05)), "zeta": optax.sgd(decay(0.1)),
                                 "phi": optax.adam(0.05)}, _labels)
    theta, res = _fit_potential(trf_sa(spec, TABULAR, num_chains=100, num_moves=2), opt, params, data)
    log_lik, offset = _fit_quality(spec, theta, data)
    gap, offset = ll_ml - float(log_lik), np.asarray(offset)
    last = res.history[-1]
    print(f"SA: ML {ll_ml:.4f}, gap {gap:.5f} nats, ζ - log Z {offset}, acceptance "
          f"{float(last['acceptance_rate']):.3f}, length TV {float(last['length_tv']):.3f}")
    assert -1e-4 < gap < 0.02
    assert np.ptp(offset) < 0.1
    assert isinstance(res.state.est_state, TRFSAState) and res.state.est_state.chains.shape == (100, MAX_LEN)


@pytest.mark.parametrize("method", ["nce", "dnce"])
def test_nce_and_dnce_training_reach_the_maximum_likelihood_fit(fit_case, method):
    """NCE (ν = 5, uniform noise over the 14 sentences) and DNCE (ν = 1, α = 0.5, the tabular
    LM trained with it) with learn_log_z=False, 600 Adam steps through fit: within 0.02 nats of
    the ML fit (reached: 3e-5 and 9e-4), and ζ_l self-normalizes to log Z_l (within 0.1)."""
    spec, data, ll_ml = fit_case
    theta0 = jax.tree_util.tree_map(jnp.zeros_like, TRUTH)
    opt = optax.adam(optax.cosine_decay_schedule(0.05, FIT_STEPS, 0.02))
    if method == "nce":
        est, params = nce(spec, TabularDist(jnp.zeros(14)), nu=5.0, learn_log_z=False), {POTENTIAL: theta0}
    else:
        est = dnce(spec, TABULAR, nu=1.0, alpha=0.5, learn_log_z=False)
        params = {POTENTIAL: theta0, SAMPLER: {"logits": jnp.zeros(14)}}
    theta, _ = _fit_potential(est, opt, params, data)
    log_lik, offset = _fit_quality(spec, theta, data)
    gap, offset = ll_ml - float(log_lik), np.asarray(offset)
    print(f"{method}: gap {gap:.5f} nats, ζ - log Z {offset}")
    assert -1e-4 < gap < 0.02
    assert np.max(np.abs(offset)) < 0.1


# --------------------------------------------------------------------------- the real TRF and LSTM LM


def test_real_trf_and_lstm_generator_through_fit():
    """sajax.models.trf (CNN potential) with an lstm_lm generator: trf_sa through fit for 8
    steps (2 chunks) gives finite metrics, and its chains persist in the carry as valid token
    rows and move (NCE / DNCE with these models: the trf-nce-text / trf-dnce-text recipes)."""
    from sajax.models import check_sentences, lstm_lm, trf, trf_length_prior
    from sajax.sa import fit, per_group

    vocab, max_len = 7, 5
    lm = lstm_lm(vocab, max_len, embed=8, hidden=8)
    k_trf, k_lm = jax.random.split(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    data = np.zeros((64, max_len), np.int32)
    for row, n in zip(data, rng.integers(1, max_len, size=64)):
        row[:n], row[n] = rng.integers(3, vocab, size=n), 2
    spec = trf(vocab, max_len, length_prior=trf_length_prior(data, max_len), embed=8, hidden=8)
    params = jax.jit(lambda k1, k2: {**spec.init(k1), SAMPLER: lm.init(k2)})(k_trf, k_lm)   # one program
    est = trf_sa(spec, lm.noise, num_chains=16, num_moves=2)
    opt = per_group({POTENTIAL: optax.adam(1e-2), SAMPLER: optax.adam(1e-2)})
    res = fit(est, opt, params, data, key=jax.random.PRNGKey(1), batch_size=16, num_steps=8, chunk_steps=4,
              progress=False)
    assert len(res.history) == 2
    for row in res.history:
        assert all(np.isfinite(v) for k, v in row.items() if np.ndim(v) == 0), row
    chains = res.state.est_state.chains
    assert isinstance(res.state.est_state, TRFSAState) and chains.shape == (16, max_len) and chains.dtype == jnp.int32
    check_sentences(np.asarray(chains), vocab, max_len)
    start = est.init(jax.random.fold_in(jax.random.PRNGKey(1), 0), params, data).chains
    assert not np.array_equal(np.asarray(start), np.asarray(chains))
    assert 0.0 < float(res.history[-1]["acceptance_rate"]) <= 1.0
