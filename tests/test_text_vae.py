"""Text VAE with discrete observations (review Sec. 3.2.1 item 3) against exact answers.

* The generated corpus is deterministic by seed; ids round-trip; padding follows <eos>.
* Decoder: with 3 words + <eos> and T = 3 every one of the 85 possible id rows
  is enumerated: p_θ(x|h) sums to 1 (GRU and LSTM, Gaussian and Bernoulli h);
  ancestral samples match those probabilities (chi-square), a sampler at the
  wrong temperature fails the same test.
* Bernoulli latents (3 bits, enumerated): JSA's θ-gradient from exact-posterior
  chain states is unbiased for ∇θ log p(x) (z-test, tests/stats.py); the same
  estimator from chains started at q is caught; RWS (K = 2) is unbiased for ∇θ I_2
  (pairs enumerated) and is caught against ∇θ log p(x).
* Gaussian latents: reparam_elbo's gradient is jax.grad of the fixed-noise ELBO;
  the analytic KL is the mean of the Monte Carlo KL (value and gradient).
* Collapse metrics on constructed encoders with known answers.
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import distrax
import pytest
from scipy import stats as sps

from exact import broadcast_latents, enumerate_latents
from fast_jit import run_fast
from sajax._densities import diag_normal_log_prob, std_normal_log_prob
from sajax.core import GUIDE, MODEL, Batch, ConditionalSampler, LatentVariableModel, log_joint
from sajax.data.text import (EOS_ID, MAX_TOKENS, MIN_TOKENS, PAD_ID, UNK_ID, Vocab, decode, encode, grammar_words,
                             num_tokens, sample_sentences, split_corpus, text_corpus)
from sajax.estimators import iwae, jsa, jsa_state, reparam_elbo, rws
from sajax.evaluate.collapse import active_units, collapse_metrics, mean_kl, token_nll
from sajax.models._sequence import check_tokens, text_vae
from stats import assert_detects, assert_power, assert_same_mean, assert_unbiased, flat

V, T = 7, 3                   # <pad> <bos> <eos> <unk> + 3 words; rows of 3 ids
WORDS = (UNK_ID, 4, 5, 6)     # the ids a decoder may emit besides <eos>
ATOL = 1e-5
N_KEYS = 2000
MAX_DETECTABLE = 0.25         # detectable bias / ||exact gradient|| (tests/stats.py, "Its power")
X = jnp.array([[4, 5, EOS_ID], [6, EOS_ID, PAD_ID], [UNK_ID, UNK_ID, 4], [EOS_ID, PAD_ID, PAD_ID]], jnp.int32)


def _all_rows(max_len=T):
    """Every id row a decoder can produce: L words then <eos> (L < T), or T words. [85, 3]"""
    rows = []
    for length in range(max_len + 1):
        for w in itertools.product(WORDS, repeat=length):
            r = list(w) + ([EOS_ID] if length < max_len else [])
            rows.append(r + [PAD_ID] * (max_len - len(r)))
    return np.asarray(rows, np.int32)


def _neg(tree):
    return jax.tree_util.tree_map(jnp.negative, tree)


# --------------------------------------------------------------------------
# Corpus


def test_corpus_is_seeded_with_bounded_lengths():
    a, b = sample_sentences(300, seed=3), sample_sentences(300, seed=3)
    assert a.sentences == b.sentences and np.array_equal(a.topic, b.topic)
    assert text_corpus(300, seed=4) != a.sentences
    lengths = [len(s.split()) for s in a.sentences]
    assert MIN_TOKENS <= min(lengths) and max(lengths) <= MAX_TOKENS
    assert set(w for s in a.sentences for w in s.split()) <= set(grammar_words())
    # the tense is latent structure visible in the words: future sentences contain "will"
    future = np.array(["will" in s.split() for s in a.sentences])
    assert np.array_equal(future, a.tense == 2)


def test_vocab_round_trip_padding_and_split():
    sents = text_corpus(50, seed=0)
    vocab = Vocab.from_words(grammar_words())
    assert vocab.itos[:4] == ("<pad>", "<bos>", "<eos>", "<unk>") and vocab.size == 4 + len(grammar_words())
    assert Vocab(vocab.itos) == vocab and len(vocab) == vocab.size      # rebuilt from its id list
    with pytest.raises(ValueError, match="itos"):
        Vocab(("a", "b"))
    x = encode(sents, vocab, MAX_TOKENS + 1)
    assert x.dtype == np.int32 and x.shape == (50, MAX_TOKENS + 1)
    assert decode(x, vocab) == sents
    np.testing.assert_array_equal(num_tokens(x), [len(s.split()) + 1 for s in sents])
    for row, s in zip(x, sents):
        n = len(s.split())
        assert row[n] == EOS_ID and np.all(row[n + 1:] == PAD_ID) and np.all(row[:n] > UNK_ID)
    small = Vocab.from_sentences(["a b b", "b c"], min_count=2)
    assert small.itos[4:] == ("b",) and encode(["a b"], small, 3).tolist() == [[UNK_ID, 4, EOS_ID]]
    with pytest.raises(ValueError, match="max_len"):
        encode(["a b c"], small, 3)
    tr, va, te = split_corpus(x, (0.8, 0.1, 0.1), seed=1)
    assert (len(tr), len(va), len(te)) == (40, 5, 5)
    assert sorted(map(tuple, np.concatenate([tr, va, te]))) == sorted(map(tuple, x))


# --------------------------------------------------------------------------
# Decoder: normalization and ancestral sampling, by enumeration


@pytest.mark.parametrize("cell,latent", [("gru", "gaussian"), ("lstm", "bernoulli")])
def test_decoder_probabilities_sum_to_one(cell, latent):
    spec = text_vae(V, T, latent=latent, latent_dim=3, embed=4, hidden=8, cell=cell)
    theta = spec.init(jax.random.PRNGKey(0))[MODEL]
    rows = _all_rows()
    assert rows.shape == (85, T)
    h = jnp.asarray([[[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]], [[1.0, 1.0, 1.0]]])   # [3 latents, 1, d]
    total = run_fast(lambda t: jnp.exp(jax.nn.logsumexp(spec.model.log_likelihood(t, rows, h), axis=-1)), theta)
    np.testing.assert_allclose(np.asarray(total), 1.0, atol=1e-5)


def _chi_square(counts, probs, n):
    """Pearson's statistic over bins with n·p >= 5 (the rest pooled) and its degrees of freedom."""
    expected = n * probs
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    return float(np.sum((obs[keep] - exp[keep]) ** 2 / exp[keep])), int(keep.sum() - 1)


def test_ancestral_sampling_matches_enumeration():
    """20,000 samples per latent; threshold: chi-square quantile at 1 - 1e-6 (a correct sampler
    fails with probability 1e-6 per latent); the temperature-1.5 sampler must exceed it."""
    spec = text_vae(V, T, latent="gaussian", latent_dim=3, embed=4, hidden=8)
    theta = jax.tree_util.tree_map(lambda a: 2.0 * a, spec.init(jax.random.PRNGKey(1))[MODEL])
    rows = _all_rows()
    h = jnp.asarray([[0.5, -1.0, 0.2], [-1.5, 0.3, 0.8]])
    n = 20_000

    def run(t, key):
        probs = jnp.exp(spec.model.log_likelihood(t, rows, h[:, None, :]))              # [2, 85]
        hs = jnp.broadcast_to(h, (n,) + h.shape)
        good = spec.sample_tokens(t, key, hs)
        bad = spec.sample_tokens(t, key, hs, temperature=1.5)
        return probs, good, bad

    probs, good, bad = map(np.asarray, run_fast(run, theta, jax.random.PRNGKey(2)))
    lookup = np.full(V ** T, -1)
    lookup[rows @ V ** np.arange(T)] = np.arange(len(rows))
    for j in range(2):
        for draws, ok in ((good, True), (bad, False)):
            idx = lookup[draws[:, j] @ V ** np.arange(T)]
            assert np.all(idx >= 0)
            stat, df = _chi_square(np.bincount(idx, minlength=len(rows)), probs[j], n)
            limit = sps.chi2.ppf(1 - 1e-6, df)
            print(f"latent {j}, {'model' if ok else 'T=1.5'} sampler: chi2 = {stat:.1f}, df = {df}, limit {limit:.1f}")
            assert (stat <= limit) == ok


# --------------------------------------------------------------------------
# Bernoulli latents: exact log p(x), JSA and RWS gradients


@pytest.fixture(scope="module")
def bernoulli_problem():
    spec = text_vae(V, T, latent="bernoulli", latent_dim=3, embed=4, hidden=8)
    p0 = spec.init(jax.random.PRNGKey(0))
    theta = jax.tree_util.tree_map(lambda a: 2.0 * a, p0[MODEL])   # a posterior far from q
    theta["prior"]["logits"] = jnp.array([0.5, -0.5, 1.0])
    params = {MODEL: theta, GUIDE: p0[GUIDE]}
    hall = broadcast_latents(enumerate_latents((3,)), X.shape[0])[0]      # [8, B, 3]
    return spec, params, hall


def _log_joint_all(spec, theta, x, hall):
    return log_joint(spec.model, theta, x, hall)                                 # [8, B]


def test_bernoulli_marginal_is_normalized(bernoulli_problem):
    """Σ_x Σ_h p(x, h) = 1 over all 85 rows and 8 latent configurations."""
    spec, params, _ = bernoulli_problem
    rows = _all_rows()
    hall = broadcast_latents(enumerate_latents((3,)), rows.shape[0])[0]
    total = run_fast(lambda t: jnp.exp(jax.nn.logsumexp(_log_joint_all(spec, t, rows, hall))), params[MODEL])
    np.testing.assert_allclose(float(total), 1.0, atol=1e-5)


def test_jsa_and_rws_theta_gradients(bernoulli_problem):
    spec, params, hall = bernoulli_problem
    theta, phi = params[MODEL], params[GUIDE]
    b = X.shape[0]
    codes = enumerate_latents((3,))[0]
    est = jsa(spec.model, spec.guide, num_moves=1, cache="dense")
    state0 = jsa_state(spec.guide, params, X, jnp.zeros((b, 3)), cache="dense")
    rws2 = rws(spec.model, spec.guide, num_samples=2)

    def exact_i2(t):
        """I_2 = Σ_{h,h'} q(h) q(h') log((w + w')/2), batch mean."""
        lq = spec.guide.log_prob(phi, X, hall)
        lw = _log_joint_all(spec, t, X, hall) - lq
        pair = jnp.logaddexp(lw[:, None], lw[None]) - math.log(2.0)
        return jnp.mean(jnp.sum(jnp.exp(lq)[:, None] * jnp.exp(lq)[None] * pair, axis=(0, 1)))

    def run(keys):
        lj = _log_joint_all(spec, theta, X, hall)
        post, q = jax.nn.softmax(lj, axis=0).T, jnp.exp(spec.guide.log_prob(phi, X, hall)).T   # [B, 8]

        def jsa_grad(key, start):
            k1, k2 = jax.random.split(key)
            h0 = codes[jax.random.categorical(k1, jnp.log(start))]                # chain states [B, 3]
            state = state0._replace(cache={name: h0 for name in state0.cache})
            return est.estimate(params, state, k2, Batch(X, jnp.arange(b))).grads[MODEL]

        exact = jax.grad(lambda t: jnp.mean(jax.nn.logsumexp(_log_joint_all(spec, t, X, hall), axis=0)))(theta)
        # one traced JSA program for both starts (vmapped over them): half the compile time
        g_jsa = jax.vmap(jax.vmap(jsa_grad, (0, None)), (None, 0))(keys, jnp.stack([post, q]))
        return (exact, jax.grad(exact_i2)(theta), g_jsa,
                jax.vmap(lambda k: rws2.estimate(params, (), k, X).grads[MODEL])(keys))

    exact, exact_i2_grad, g_jsa, g_rws = run_fast(run, jax.random.split(jax.random.PRNGKey(3), N_KEYS))
    g_post, g_q = (jax.tree_util.tree_map(lambda a, i=i: a[i], g_jsa) for i in range(2))
    t = assert_unbiased(g_post, _neg(exact), "JSA (exact-posterior chains) vs -∇θ log p(x)", atol=ATOL)
    assert_power(t, MAX_DETECTABLE, "JSA")
    assert_detects(g_q, _neg(exact), "JSA with chains started at q (not stationary)", atol=ATOL)
    t = assert_unbiased(g_rws, _neg(exact_i2_grad), "RWS(K=2) wake-θ vs -∇θ I_2", atol=ATOL)
    assert_power(t, MAX_DETECTABLE, "RWS")
    assert_detects(g_rws, _neg(exact), "RWS(K=2) vs -∇θ log p(x)", atol=ATOL)


# --------------------------------------------------------------------------
# Gaussian latents: reparameterized ELBO and analytic KL


@pytest.fixture(scope="module")
def gaussian_problem():
    spec = text_vae(V, T, latent="gaussian", latent_dim=3, embed=4, hidden=8)
    params = spec.init(jax.random.PRNGKey(4))
    params[GUIDE]["head"] = jax.tree_util.tree_map(lambda a: a + 0.3, params[GUIDE]["head"])
    return spec, params


def test_reparam_elbo_is_grad_of_fixed_noise_elbo(gaussian_problem):
    """h = μ_φ(x) + σ_φ(x) ε with ε = normal(key, [1, B, d]): the ELBO written out by hand."""
    spec, params = gaussian_problem
    key = jax.random.PRNGKey(5)

    def by_hand(p):
        m, log_std = spec.encoder(p[GUIDE], X)
        h = m + jnp.exp(log_std) * jax.random.normal(key, (1,) + m.shape)
        return jnp.mean(spec.model.log_likelihood(p[MODEL], X, h) + std_normal_log_prob(h)
                        - diag_normal_log_prob(h, m, log_std))

    def run(p):
        return (jax.value_and_grad(by_hand)(p), reparam_elbo(spec.model, spec.guide, num_samples=1).estimate(p, (), key, X),
                iwae(spec.model, spec.guide, num_samples=1).estimate(p, (), key, X))

    (value, grad), out, out_iwae = run_fast(run, params)
    np.testing.assert_allclose(float(out.metrics["elbo"]), float(value), rtol=1e-5)
    np.testing.assert_allclose(flat(out.grads), -flat(grad), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(flat(out_iwae.grads), flat(out.grads), rtol=1e-4, atol=1e-6)


def test_analytic_kl_is_mean_of_mc_kl(gaussian_problem):
    """KL[q(h|x) || N(0, I)] in closed form vs log q - log p over 2000 x 20 draws (z-test); the
    paired analytic-KL and MC-KL reparam_elbo gradients agree in mean; a KL written with σ
    in place of σ² is caught."""
    spec, params = gaussian_problem
    mc = reparam_elbo(spec.model, spec.guide, num_samples=1)
    an = reparam_elbo(spec.model, spec.guide, num_samples=1, kl="analytic")

    def run(keys):
        kl = spec.guide.dist(params[GUIDE], X).kl_divergence(spec.model.prior(params[MODEL]))
        h, lq = jax.vmap(lambda k: spec.guide.sample_and_log_prob(params[GUIDE], k, X, 20))(keys)
        draws = jnp.mean(lq - spec.model.log_prior(params[MODEL], h), axis=1)          # [n, B], 20 each
        m, log_std = spec.encoder(params[GUIDE], X)
        wrong = 0.5 * jnp.sum(jnp.exp(log_std) + m ** 2 - 1.0 - log_std, axis=-1)
        g_mc = jax.vmap(lambda k: mc.estimate(params, (), k, X).grads)(keys)
        g_an = jax.vmap(lambda k: an.estimate(params, (), k, X).grads)(keys)
        return kl, draws, wrong, g_mc, g_an

    kl, draws, wrong, g_mc, g_an = run_fast(run, jax.random.split(jax.random.PRNGKey(6), N_KEYS))
    assert_power(assert_unbiased(draws, kl, "MC KL vs analytic KL", atol=ATOL), 0.1, "MC KL")
    assert_detects(draws, wrong, "MC KL vs a KL with σ for σ²", atol=ATOL)
    assert_same_mean(g_mc, g_an, "reparam_elbo gradient: MC KL vs analytic KL", atol=ATOL)
    assert not np.allclose(flat(jax.tree_util.tree_map(lambda a: a[0], g_mc)),
                           flat(jax.tree_util.tree_map(lambda a: a[0], g_an)))


# --------------------------------------------------------------------------
# Collapse metrics


def test_collapse_metrics_of_an_encoder_that_ignores_x():
    """q(h|x) = q(h): no active unit; KL = its closed form (Gaussian and Bernoulli)."""
    x = np.asarray(X)
    for latent in ("gaussian", "bernoulli"):
        spec = text_vae(V, T, latent=latent, latent_dim=3, embed=4, hidden=8)
        params = spec.init(jax.random.PRNGKey(7))
        params[GUIDE]["head"]["Dense_0"]["kernel"] = jnp.zeros_like(params[GUIDE]["head"]["Dense_0"]["kernel"])
        bias = np.asarray(params[GUIDE]["head"]["Dense_0"]["bias"], np.float64)
        if latent == "gaussian":
            m, s = bias[:3], np.exp(bias[3:])
            closed = 0.5 * np.sum(s ** 2 + m ** 2 - 1.0 - 2.0 * np.log(s))
        else:
            q, p = 1 / (1 + np.exp(-bias)), 0.5   # prior logits start at 0
            closed = np.sum(q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p)))
        au = active_units(spec.guide, params, x)
        assert au.count == 0 and np.all(au.variances < 1e-10)
        np.testing.assert_allclose(mean_kl(spec.model, spec.guide, params, x), closed, rtol=1e-5)


def _gaussian_guide(scales, with_dist):
    """q(h|x) = N(scales · x_0, I): E_q[h_i] = scales_i x_0, so Cov_x = scales_i² Var(x_0)."""
    scales = jnp.asarray(scales)

    def mean(x):
        return jnp.asarray(x, jnp.float32)[..., :1] * scales

    def sample_and_log_prob(phi, key, x, n):
        eps = jax.random.normal(key, (n,) + x.shape[:-1] + scales.shape)
        return mean(x) + eps, std_normal_log_prob(eps)

    def log_prob(phi, x, h):
        return std_normal_log_prob(h - mean(x))

    def dist(phi, x):
        m = mean(x)
        return distrax.MultivariateNormalDiag(m, jnp.ones_like(m))

    return ConditionalSampler(sample_and_log_prob, log_prob, dist if with_dist else None)


def test_active_units_known_variances():
    x = np.array([[4, EOS_ID, 0], [5, EOS_ID, 0], [6, 4, EOS_ID], [UNK_ID, EOS_ID, 0], [6, 6, 6]], np.int32)
    scales = [0.0, 0.05, 0.2, 1.0]
    want = np.asarray(scales) ** 2 * np.var(x[:, 0], ddof=1)          # Var(x_0) = 1.7: [0, .00425, .068, 1.7]
    params = {MODEL: {}, GUIDE: {}}
    au = active_units(_gaussian_guide(scales, True), params, x)
    assert au.count == 2
    np.testing.assert_allclose(au.variances, want, rtol=1e-5, atol=1e-12)
    # Monte Carlo posterior means (no dist): 8192 draws add noise of variance 1/8192 per mean,
    # and a cross term of std ~2·sqrt(Var/8192 / N) to each variance (< 15% here)
    au_mc = active_units(_gaussian_guide(scales, False), params, x, key=jax.random.PRNGKey(10), num_samples=8192)
    assert au_mc.count == 2
    np.testing.assert_allclose(au_mc.variances, want, rtol=0.15, atol=2e-3)


def test_metrics_of_a_uniform_model():
    """p(x|h) uniform over the E = V - 2 emittable ids, q(h|x) = p(h) = N(0, I): log p̂_K(x) =
    log p(x) exactly, so NLL/token = log E, perplexity = E, KL = 0, AU = 0, ELBO = log p(x)."""
    e = V - 2

    def log_likelihood(theta, x, h):
        n = jnp.sum(jnp.asarray(x) != PAD_ID, axis=-1)
        return jnp.broadcast_to(-n * math.log(e), h.shape[:-1])

    model = LatentVariableModel(lambda t, h: std_normal_log_prob(h), log_likelihood, observation="categorical",
                                prior=lambda t: distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2)))
    guide = _gaussian_guide([0.0, 0.0], True)
    params = {MODEL: {}, GUIDE: {}}
    x = np.asarray(X)
    res = token_nll(model, guide, params, jax.random.PRNGKey(11), x, num_samples=4)
    assert res.tokens == 3 + 2 + 3 + 1
    np.testing.assert_allclose(res.nll_per_token, math.log(e), rtol=1e-6)
    np.testing.assert_allclose(res.perplexity, e, rtol=1e-5)
    m = collapse_metrics(model, guide, params, jax.random.PRNGKey(12), x, num_samples=4, mc_samples=2)
    log_px = -res.tokens * math.log(e) / x.shape[0]
    want = {"kl": 0.0, "active_units": 0.0, "reconstruction": log_px, "elbo": log_px, "nll": -log_px,
            "nll_per_token": math.log(e), "perplexity": e}
    assert sorted(m) == sorted(want)
    for name, value in want.items():
        np.testing.assert_allclose(m[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


# --------------------------------------------------------------------------
# Errors


def test_bad_tokens_and_arguments_fail_clearly():
    with pytest.raises(ValueError, match="max_len=3"):
        check_tokens(np.zeros((2, 4), np.int32), V, T)
    with pytest.raises(ValueError, match="outside"):
        check_tokens(np.array([[7, EOS_ID, 0]]), V, T)
    with pytest.raises(ValueError, match="<bos>"):
        check_tokens(np.array([[1, EOS_ID, 0]]), V, T)
    with pytest.raises(ValueError, match="<pad>"):
        check_tokens(np.array([[4, 0, EOS_ID]]), V, T)
    with pytest.raises(ValueError, match="<pad>"):
        check_tokens(np.array([[4, EOS_ID, 5]]), V, T)
    with pytest.raises(TypeError, match="integer"):
        check_tokens(np.array([[4.5, EOS_ID, 0]]), V, T)
    assert check_tokens(np.array([[4.0, EOS_ID, 0]], np.float32), V, T).dtype == jnp.int32
    with pytest.raises(ValueError, match="vocab_size"):
        text_vae(4, T)
    with pytest.raises(ValueError, match="latent"):
        text_vae(V, T, latent="categorical")
    with pytest.raises(ValueError, match="cell"):
        text_vae(V, T, cell="rnn")
    with pytest.raises(TypeError, match="hidden"):
        text_vae(V, T, hidden=8.0)
