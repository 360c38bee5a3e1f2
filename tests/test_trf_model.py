"""TRF language models and the LSTM LM over sentences (review Sec. 4.1, Eq. 38; Wang & Ou
2017, 2018a,b) against exact answers by enumeration.

A vocabulary of 3 token values (<unk> and 2 words, V = 6) and rows of T = 4 ids
(sentences of L = 3 words at most) give S = 3 + 9 + 27 = 39 sentences, all enumerated.

* TRF: with ζ_l set to the exact log Z_l, exp(potential) sums to 1 over all sentences of all
  lengths and to π_l within each length (CNN, BiLSTM, bigram, a user's module); ζ off by 0.05
  in one length breaks it.  A length with π_l = 0 has probability exactly 0, and the values
  and gradients of the potential, of NCE terms and of MIS differences at such a length are
  finite.  u depends on the words only (padding to a longer max_len changes nothing).
* LM: Σ exp(log_prob) = 1 over the 39 sentences (LSTM and GRU); the text VAE's support
  (truncated rows allowed) loses mass on them.  20,000 ancestral draws match exp(log_prob)
  (z-test on the 39 frequencies, tests/stats.py; its power is asserted), a sampler at
  temperature 1.5 is caught.  The noise's distrax distribution is the same q_φ.
* Exact TRF draws match the exact probabilities; bad inputs fail with named errors.
"""
from __future__ import annotations

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fast_jit import run_fast
from sajax.core import MODEL, POTENTIAL, Batch
from sajax.data.text import EOS_ID, PAD_ID, UNK_ID, Vocab, encode
from sajax.estimators import maximum_likelihood
from sajax.models import (LOG_PRIOR_FLOOR, ZETA, check_sentences, enumerate_sentences, lstm_lm, trf,
                          trf_exact_log_prob, trf_exact_sample, trf_length_prior, trf_log_partition)
from sajax.models._sequence import _SeqNets, _token_log_probs
from stats import assert_detects, assert_power, assert_unbiased

V, T = 6, 4                    # values {<unk>=3, 4, 5}; sentences of 1..3 words
L = T - 1
PI = np.array([0.3, 0.0, 0.7])  # length 2 never seen: π_2 = 0
X = enumerate_sentences(V, T)  # [39, 4]
N_DRAWS = 20_000
MAX_DETECTABLE = 0.3           # ||detectable frequency bias|| / ||p|| (tests/stats.py, "Its power")


class SumOfIds(nn.Module):
    """A user's potential: u(x) = Σ_i w[x_i] + c · l, returned as [B, 1] (squeezed by trf)."""

    @nn.compact
    def __call__(self, tokens, mask):
        w = self.param("w", nn.initializers.normal(1.0), (V,))
        c = self.param("c", nn.initializers.constant(0.3), ())
        return (jnp.sum(jnp.where(mask, w[tokens], 0.0), -1) + c * jnp.sum(mask, -1))[:, None]


def _spec(potential, max_len=T, prior=PI):
    return trf(V, max_len, length_prior=prior, potential=potential, embed=8, hidden=8)


@pytest.fixture(scope="module", params=["cnn", "bilstm", "bigram", "module"])
def trf_problem(request):
    spec = _spec(SumOfIds() if request.param == "module" else request.param)

    @jax.jit
    def init(key):                                      # one program, not one per op
        theta = spec.init(key)[POTENTIAL]
        return {k: (v if k == ZETA else jax.tree_util.tree_map(lambda a: 1.5 * a, v)) for k, v in theta.items()}

    return request.param, spec, init(jax.random.PRNGKey(0))


def _index(draws):
    """Row index of each draw in X (-1: not a sentence of the support)."""
    lookup = np.full(V ** T, -1)
    lookup[X @ V ** np.arange(T)] = np.arange(len(X))
    return lookup[np.asarray(draws) @ V ** np.arange(T)]


# --------------------------------------------------------------------------
# TRF


def test_trf_is_normalized_with_the_exact_zeta(trf_problem):
    name, spec, theta = trf_problem

    @jax.jit
    def normalization(theta):
        """exp(potential) with the exact ζ, the lengths, exp(trf_exact_log_prob) and the total
        mass with ζ_3 off by 0.05, in one program."""
        log_z = trf_log_partition(spec, theta)
        exact = {**theta, ZETA: log_z}
        broken = {**theta, ZETA: log_z.at[2].add(0.05)}             # ζ_3 off by 0.05
        return (jnp.exp(spec.model.potential(exact, X)), spec.lengths(X),
                jnp.exp(trf_exact_log_prob(spec, theta, X)), jnp.sum(jnp.exp(spec.model.potential(broken, X))))

    p, lengths, exact_p, broken_total = normalization(theta)
    p, lengths = np.asarray(p, np.float64), np.asarray(lengths)
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-5, err_msg=name)
    np.testing.assert_allclose([p[lengths == l].sum() for l in (1, 2, 3)], PI, atol=1e-5, err_msg=name)
    assert np.all(p[lengths == 2] == 0.0)                           # π_2 = 0: exactly zero mass
    np.testing.assert_allclose(exact_p, p, atol=1e-6)
    total = float(broken_total)
    assert abs(total - 1.0) > 0.02, f"{name}: a wrong ζ_3 still sums to {total}"


def test_trf_shapes_lengths_and_initial_zeta():
    spec = _spec("bigram")

    @jax.jit
    def arrays(key):
        """θ̂, the lengths, u and the potential of X (and of X stacked with its reverse), and the
        potential by hand (log π_l + u - ζ_l), in one program."""
        theta = spec.init(key)[POTENTIAL]
        lengths = spec.lengths(X)
        xx = jnp.stack([X, X[::-1]])                                                   # [2, 39, T]
        u = spec.energy(theta, xx)
        want = jnp.asarray(np.where(PI > 0, np.log(np.where(PI > 0, PI, 1)), LOG_PRIOR_FLOOR))[lengths - 1] \
            + u[0] - theta[ZETA][lengths - 1]
        return dict(theta=theta, lengths=lengths, u=u, potential_xx=spec.model.potential(theta, xx),
                    u_without_zeta=spec.energy({k: v for k, v in theta.items() if k != ZETA}, X),
                    potential=spec.model.potential(theta, X), want=want)

    a = arrays(jax.random.PRNGKey(3))
    theta, lengths, u = a["theta"], a["lengths"], a["u"]
    np.testing.assert_allclose(theta[ZETA], np.arange(1, T) * np.log(3.0), rtol=1e-6)   # log Z_l of u ≡ 0
    assert spec.num_values == 3 and spec.vocab_size == V and spec.max_len == T
    assert lengths.dtype == jnp.int32 and lengths.tolist() == [1] * 3 + [2] * 9 + [3] * 27
    assert u.shape == (2, len(X)) and a["potential_xx"].shape == (2, len(X))
    np.testing.assert_allclose(a["u_without_zeta"], u[0])
    np.testing.assert_allclose(a["potential"], a["want"], rtol=1e-6)
    assert spec.model.observation == "categorical" and spec.model.sample is None


@pytest.mark.parametrize("potential", ["cnn", "bilstm", "bigram"])
def test_energy_depends_on_the_words_only(potential):
    """The same sentences padded to max_len 6 score the same: padding and <eos> leak nothing."""
    short, long = _spec(potential), _spec(potential, max_len=6, prior=np.full(5, 0.2))
    padded = np.concatenate([X, np.full((len(X), 2), PAD_ID, np.int32)], axis=1)

    @jax.jit
    def energies(key):                                  # θ's init and both energies, one program
        theta = short.init(key)[POTENTIAL]
        return long.energy(theta, padded), short.energy(theta, X)

    np.testing.assert_allclose(*energies(jax.random.PRNGKey(4)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("potential", ["cnn", "bilstm"])
def test_zero_prior_lengths_keep_values_and_gradients_finite(potential):
    """Length 2 has π_2 = 0: its sentences' potential is LOG_PRIOR_FLOOR + u - ζ (finite), and the
    gradients of the potential, of NCE's data and noise terms and of an MIS log-ratio are finite."""
    spec = _spec(potential)
    theta = jax.jit(spec.init)(jax.random.PRNGKey(5))[POTENTIAL]
    two = X[3:12]                                                     # the 9 sentences of length 2
    log_q = jnp.full((len(two),), -2.0)

    def terms(t):                                                   # [4]
        lp = spec.model.potential(t, two)
        return jnp.stack([jnp.sum(lp), jnp.sum(jax.nn.log_sigmoid(-(lp - log_q))),      # potential, NCE noise,
                          jnp.sum(jax.nn.log_sigmoid(lp - log_q)), lp[1] - lp[0]])        # NCE data, MIS log-ratio

    values, jac = run_fast(lambda t: (terms(t), jax.jacrev(terms)(t)), theta)
    assert np.all(np.isfinite(values)) and float(values[0]) < 9 * (LOG_PRIOR_FLOOR + 100)
    for leaf in jax.tree_util.tree_leaves(jac):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(jac[ZETA][0, 1]) == -9.0                             # ∂/∂ζ_2 of Σ(... - ζ_2)


def test_exact_draws_match_the_exact_probabilities():
    """20,000 draws of trf_exact_sample: frequencies vs exp(trf_exact_log_prob) (z-test); against
    the probabilities of another θ the test fails."""
    spec = _spec("bigram")
    theta = spec.init(jax.random.PRNGKey(6))[POTENTIAL]
    other = spec.init(jax.random.PRNGKey(7))[POTENTIAL]
    p = np.exp(np.asarray(trf_exact_log_prob(spec, theta, X), np.float64))
    draws = np.asarray(trf_exact_sample(spec, theta, jax.random.PRNGKey(8), N_DRAWS))
    check_sentences(draws, V, T)
    onehot = np.eye(len(X))[_index(draws)]
    t = assert_unbiased(onehot, p, "exact TRF draws")
    assert_power(t, MAX_DETECTABLE, "exact TRF draws")
    assert_detects(onehot, np.exp(np.asarray(trf_exact_log_prob(spec, other, X), np.float64)), "other θ")


def test_length_prior_from_encoded_rows():
    vocab = Vocab.from_words(["a", "b"])
    x = encode(["a", "a b", "b", "a b a", "b b"], vocab, max_len=4)
    np.testing.assert_allclose(trf_length_prior(x, 4), [0.4, 0.4, 0.2])
    np.testing.assert_allclose(trf_length_prior(x, 4).sum(), 1.0)
    with pytest.raises(ValueError, match="empty sentence"):
        trf_length_prior(np.array([[EOS_ID, 0, 0, 0]]), 4)
    with pytest.raises(ValueError, match="max_len=5"):
        trf_length_prior(x, 5)


# --------------------------------------------------------------------------
# The LSTM LM


@pytest.fixture(scope="module")
def lm_problem():
    lm = lstm_lm(V, T, embed=8, hidden=8)
    phi = jax.tree_util.tree_map(lambda a: 4.0 * a, lm.init(jax.random.PRNGKey(9)))   # far from uniform
    return lm, phi


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lm_is_normalized_over_the_sentences(cell):
    lm = lstm_lm(V, T, embed=8, hidden=8, cell=cell)
    # broken: the text VAE's support (empty sentences and rows of T words allowed) loses mass here
    vae_nets = _SeqNets(V, T, None, 0, 8, 8, cell, False, False)

    @jax.jit
    def masses(key):
        """log_prob, its total mass, the token log-probs and their sums, and the text VAE's mass on
        the sentences, in one program."""
        phi = jax.tree_util.tree_map(lambda a: 2.0 * a, lm.init(key))
        lp, tok = lm.model.log_prob(phi, X), lm.token_log_probs(phi, X)
        lost = jnp.sum(jnp.exp(jnp.sum(_token_log_probs(vae_nets, phi, X, jnp.zeros((len(X), 0))), -1)))
        return lp, jnp.sum(jnp.exp(lp)), tok, jnp.sum(tok, -1), lost

    lp, total, tok, tok_sum, lost = masses(jax.random.PRNGKey(10))
    tok, lost = np.asarray(tok), float(lost)
    np.testing.assert_allclose(float(total), 1.0, atol=1e-5)
    np.testing.assert_allclose(tok_sum, lp, rtol=1e-6)
    assert np.all(tok[X == PAD_ID] == 0.0)
    np.testing.assert_allclose(tok[:, -1][X[:, -1] == EOS_ID], 0.0, atol=1e-6)   # <eos> forced after L words
    assert lost < 1.0 - 1e-2, lost


def test_lm_draws_match_log_prob(lm_problem):
    """20,000 ancestral draws: the 39 frequencies vs exp(log_prob), z-test at family-wise
    α = 1e-5 with its power asserted; the temperature-1.5 sampler is caught."""
    lm, phi = lm_problem
    p = np.exp(np.asarray(jax.jit(lm.model.log_prob)(phi, X), np.float64))
    good, bad = run_fast(lambda f, k: (lm.model.sample(f, k, N_DRAWS), lm.sample_tokens(f, k, N_DRAWS, 1.5)),
                         phi, jax.random.PRNGKey(11))
    check_sentences(good, V, T)                      # one <eos>, no empty sentence, ids of the support
    idx = _index(good)
    assert np.all(idx >= 0)
    t = assert_unbiased(np.eye(len(X))[idx], p, "LM ancestral draws")
    assert_power(t, MAX_DETECTABLE, "LM ancestral draws")
    assert_detects(np.eye(len(X))[_index(bad)], p, "LM at temperature 1.5")


def test_noise_distribution_is_the_same_lm(lm_problem):
    lm, phi = lm_problem
    key = jax.random.PRNGKey(12)
    dist = lm.noise.dist(phi)
    assert isinstance(dist, distrax.Distribution) and dist.event_shape == (T,)

    @jax.jit
    def both(phi, key):
        """The distribution's draws and log-probs and the noise's / model's, all traced alike."""
        d = lm.noise.dist(phi)
        return dict(x=d.sample(seed=key, sample_shape=(6,)), noise_x=lm.noise.sample(phi, key, 6),
                    model_x=lm.model.sample(phi, key, 6), log_prob=d.log_prob(X),
                    noise_log_prob=lm.noise.log_prob(phi, X), log_prob_5=d.log_prob(X[5]),
                    x23=d.sample(seed=key, sample_shape=(2, 3)))

    b = both(phi, key)
    x = b["x"]
    assert x.shape == (6, T) and x.dtype == jnp.int32
    np.testing.assert_array_equal(x, b["noise_x"])
    np.testing.assert_array_equal(x, b["model_x"])
    np.testing.assert_allclose(b["log_prob"], b["noise_log_prob"], rtol=1e-6)
    np.testing.assert_allclose(b["log_prob_5"], b["noise_log_prob"][5], rtol=1e-6)
    np.testing.assert_array_equal(b["x23"], np.reshape(x, (2, 3, T)))
    jitted = jax.jit(lambda f, k: (lambda d: d.log_prob(d.sample(seed=k, sample_shape=(4,))))(lm.noise.dist(f)))
    assert jitted(phi, key).shape == (4,)


def test_lm_trains_by_maximum_likelihood(lm_problem):
    lm, phi = lm_problem
    est = maximum_likelihood(lm.model)
    est.init(None, {MODEL: phi}, X)

    @jax.jit
    def estimate_and_reference(phi, key):              # the estimate and the mean log_prob, one program
        out = est.estimate({MODEL: phi}, (), key, Batch(jnp.asarray(X), jnp.arange(len(X))))
        return out, jnp.mean(lm.model.log_prob(phi, X))

    out, mean_log_prob = estimate_and_reference(phi, jax.random.PRNGKey(0))
    np.testing.assert_allclose(out.metrics["log_likelihood"], mean_log_prob, rtol=1e-6)
    assert all(bool(np.all(np.isfinite(np.asarray(g)))) for g in jax.tree_util.tree_leaves(out.grads))


# --------------------------------------------------------------------------
# Bad inputs


BAD_ROWS = [
    (np.array([[7, EOS_ID, PAD_ID, PAD_ID]]), ValueError, r"outside \[0, vocab_size=6\)"),
    (np.array([[3, 4, 5, 3]]), ValueError, "lengths beyond the maximum"),
    (np.array([[EOS_ID, PAD_ID, PAD_ID, PAD_ID]]), ValueError, "empty sentence"),
    (np.array([[3, PAD_ID, EOS_ID, PAD_ID]]), ValueError, "special token"),
    (np.array([[1, 3, EOS_ID, PAD_ID]]), ValueError, "special token"),
    (np.array([[3, EOS_ID, 4, PAD_ID]]), ValueError, "other than <pad>"),
    (np.array([[3, EOS_ID, EOS_ID, PAD_ID]]), ValueError, "other than <pad>"),
    (np.array([[3.5, EOS_ID, PAD_ID, PAD_ID]]), TypeError, "integer token ids"),
    (np.array([[3, EOS_ID, PAD_ID]]), ValueError, r"max_len=4"),
]


@pytest.mark.parametrize("row,error,match", BAD_ROWS, ids=[m for _, _, m in BAD_ROWS])
def test_bad_rows_are_named(row, error, match, lm_problem):
    spec = _spec("bigram")
    theta = spec.init(jax.random.PRNGKey(0))[POTENTIAL]
    lm, phi = lm_problem
    for fn in (lambda x: spec.model.potential(theta, x), lambda x: spec.energy(theta, x), spec.lengths,
               lambda x: lm.model.log_prob(phi, x), lambda x: check_sentences(x, V, T)):
        with pytest.raises(error, match=match):
            fn(row)


class WrongShape(nn.Module):
    @nn.compact
    def __call__(self, tokens, mask):
        return jnp.zeros(tokens.shape) + self.param("w", nn.initializers.zeros, ())


BAD_ARGS = [
    (dict(length_prior=[0.5, 0.5]), ValueError, r"l = 1..L = max_len - 1 = 3: shape \[3\]"),
    (dict(length_prior=[0.5, -0.1, 0.6]), ValueError, "nonnegative"),
    (dict(length_prior=[0.5, 0.2, 0.2]), ValueError, "must sum to 1"),
    (dict(length_prior=PI, potential="rnn"), ValueError, "potential must be one of"),
    (dict(length_prior=PI, potential=len), TypeError, "flax.linen.Module"),
    (dict(length_prior=PI, max_len=1), ValueError, "max_len"),
    (dict(length_prior=PI, vocab_size=3), ValueError, "vocab_size"),
]


@pytest.mark.parametrize("kwargs,error,match", BAD_ARGS, ids=[m for _, _, m in BAD_ARGS])
def test_bad_arguments_are_named(kwargs, error, match):
    kwargs = {"vocab_size": V, "max_len": T, **kwargs}
    with pytest.raises(error, match=match):
        trf(kwargs.pop("vocab_size"), kwargs.pop("max_len"), **kwargs)


def test_bad_parameters_and_modules_are_named():
    spec = _spec("bigram")
    theta = spec.init(jax.random.PRNGKey(0))[POTENTIAL]
    with pytest.raises(ValueError, match="has no 'zeta'"):
        spec.model.potential({k: v for k, v in theta.items() if k != ZETA}, X)
    with pytest.raises(ValueError, match=r"shape \[L=3\]"):
        spec.model.potential({**theta, ZETA: jnp.zeros(4)}, X)
    wrong = _spec(WrongShape())
    with pytest.raises(ValueError, match="one scalar per sentence"):
        wrong.energy(wrong.init(jax.random.PRNGKey(0))[POTENTIAL], X)
    with pytest.raises(ValueError, match="cell must be one of"):
        lstm_lm(V, T, cell="rnn")
    with pytest.raises(ValueError, match="max_sentences"):
        enumerate_sentences(V, 12)
    assert enumerate_sentences(5, 3).tolist() == [[3, 2, 0], [4, 2, 0], [3, 3, 2], [3, 4, 2], [4, 3, 2], [4, 4, 2]]
    assert UNK_ID == 3
