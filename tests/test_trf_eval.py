"""Scoring TRFs over sentences against exact answers (``sajax.evaluate.trf``, issue 20), the
per-token perplexity, the ζ step of the TRF-SA recipes, and the TRF / LSTM-LM recipes end to end.

The tiny problem: V = 5 ids (2 token values: <unk> and one word), rows of T = 4 (lengths
1..3), 14 sentences; a bigram potential; an LSTM LM with random weights as the proposal (it
gives every sentence positive mass).  log Z_l is exact by enumeration
(``sajax.models.trf_log_partition``).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sajax import cli
from sajax._pieces import players, zeta_by_sgd
from sajax.core import POTENTIAL, SAMPLER
from sajax.data.text import encode, Vocab
from sajax.evaluate import token_perplexity, trf_log_normalizers, trf_log_prob, trf_resample
from sajax.models import enumerate_sentences, lstm_lm, trf, trf_exact_log_prob, trf_log_partition
from stats import assert_detects, assert_power, assert_unbiased

V, T = 5, 4
PRIOR = np.array([0.2, 0.3, 0.5])


@pytest.fixture(scope="module")
def problem():
    spec = trf(V, T, length_prior=PRIOR, potential="bigram")
    theta = spec.init(jax.random.PRNGKey(0))[POTENTIAL]
    lm = lstm_lm(V, T, embed=4, hidden=8)
    phi = lm.init(jax.random.PRNGKey(1))
    return spec, theta, lm, phi, np.asarray(trf_log_partition(spec, theta), np.float64)


def test_importance_sampled_normalizers_are_unbiased(problem):
    """Ẑ_l = (1/N) Σ 1{|x_i| = l} exp(u(x_i)) / q(x_i) averages to the enumerated Z_l over 600
    independent estimates of N = 32 draws; normalizing by the draws of length l instead of N (a
    plausible slip) is caught."""
    spec, theta, lm, phi, log_z = problem
    runs = [trf_log_normalizers(spec, theta, lm.noise, phi, k, num_samples=32)
            for k in jax.random.split(jax.random.PRNGKey(2), 600)]
    z_hat = np.exp([r.log_z for r in runs])                                   # [600, L]
    t = assert_unbiased(z_hat, np.exp(log_z), "IS estimate of Z_l")
    assert_power(t, 0.1, "IS estimate of Z_l")
    with np.errstate(divide="ignore", invalid="ignore"):
        per_length = np.exp([r.log_z + np.log(r.num_samples) - np.log(r.counts) for r in runs])
    assert_detects(np.where(np.isfinite(per_length), per_length, 0.0), np.exp(log_z), "Ẑ_l normalized by n_l")
    assert all(r.num_samples == 32 and r.counts.sum() == 32 for r in runs)


def test_many_draws_give_log_z_and_a_full_effective_sample_size(problem):
    spec, theta, lm, phi, log_z = problem
    r = trf_log_normalizers(spec, theta, lm.noise, phi, jax.random.PRNGKey(3), num_samples=20000, chunk=5000)
    assert r.num_samples == 20000 and r.counts.sum() == 20000
    np.testing.assert_allclose(r.log_z, log_z, atol=0.05)
    assert np.all(r.ess > 0.3 * r.counts) and np.all(r.ess <= r.counts + 1e-6)


def test_log_prob_with_the_exact_log_z_is_the_normalized_trf(problem):
    spec, theta, _, _, log_z = problem
    x = enumerate_sentences(V, T)
    log_p = trf_log_prob(spec, theta, x, log_z)
    np.testing.assert_allclose(log_p, np.asarray(trf_exact_log_prob(spec, theta, x), np.float64), atol=1e-5)
    np.testing.assert_allclose(np.exp(log_p).sum(), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"no finite log Z for sentence lengths \[2\]"):
        trf_log_prob(spec, theta, x, np.array([log_z[0], -np.inf, log_z[2]]))


def test_resampled_sentences_never_take_a_length_of_zero_prior():
    spec = trf(V, T, length_prior=[0.0, 0.4, 0.6], potential="bigram")
    lm = lstm_lm(V, T, embed=4, hidden=8)

    @jax.jit
    def resample(keys):
        """θ and φ initialized, 500 sentences resampled and their lengths, in one program."""
        theta = spec.init(keys[0])[POTENTIAL]
        x = trf_resample(spec, theta, lm.noise, lm.init(keys[1]), keys[2], 500, num_proposals=2000)
        return x, spec.lengths(x)

    x, lengths = resample(tuple(jax.random.PRNGKey(s) for s in (4, 5, 6)))
    assert x.shape == (500, T) and x.dtype == jnp.int32
    lengths = np.asarray(lengths)
    assert set(lengths.tolist()) <= {2, 3} and {2, 3} <= set(lengths.tolist())


def test_token_perplexity_counts_words_and_eos():
    vocab = Vocab.from_sentences(["a b c", "a b"])
    x = encode(["a b c", "a b"], vocab, max_len=6)                 # 4 + 3 tokens
    out = token_perplexity(np.array([-4.0, -3.0]), x)
    assert out.tokens == 7 and out.nll == pytest.approx(3.5)
    assert out.nll_per_token == pytest.approx(1.0) and out.perplexity == pytest.approx(np.e)
    with pytest.raises(ValueError, match="one value per sentence"):
        token_perplexity(np.zeros(3), x)


def test_zeta_moves_by_plain_sgd_and_the_network_by_adam():
    """TRF-SA's optimizer (the recipe's, through per_group with a sampler group): ζ ← ζ - lr_ζ g_ζ
    exactly (Wang, Ou & Tan's SA step), the network and the sampler Adam's first step (-lr · sign g)."""
    params = {POTENTIAL: {"zeta": jnp.zeros(3), "net": {"w": jnp.ones(2)}}, SAMPLER: {"v": jnp.ones(2)}}
    grads = {POTENTIAL: {"zeta": jnp.array([0.5, -2.0, 4.0]), "net": {"w": jnp.array([3.0, -0.1])}},
             SAMPLER: {"v": jnp.array([-1.0, 2.0])}}
    tx = players({"lr": 0.01}, POTENTIAL, SAMPLER, wrap={POTENTIAL: zeta_by_sgd(0.1)})
    updates, _ = jax.jit(lambda g, p: tx.update(g, tx.init(p), p))(grads, params)   # one program, not one per op
    np.testing.assert_allclose(updates[POTENTIAL]["zeta"], [-0.05, 0.2, -0.4], rtol=1e-6)
    np.testing.assert_allclose(updates[POTENTIAL]["net"]["w"], [-0.01, 0.01], rtol=1e-3)
    np.testing.assert_allclose(updates[SAMPLER]["v"], [0.01, -0.01], rtol=1e-3)


TINY = ["--set", "num_sentences=200", "--set", "epochs=0.5", "--set", "batch_size=20", "--set", "embed=4",
        "--set", "hidden=8", "--set", "eval_n=20"]


@pytest.mark.parametrize("recipe,extra", [
    ("trf-sa-text", ["--set", "noise_epochs=0.5", "--set", "eval_k=2000", "--set", "num_chains=8"]),
    ("lstm-lm-text", [])])
def test_sentence_recipes_run_end_to_end(recipe, extra, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", recipe, "--out", str(run), "--no-progress", *TINY, *extra]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ended"] == "completed" and np.isfinite(summary["perplexity"]) and summary["perplexity"] > 1
    lines = (run / "samples.txt").read_text().splitlines()
    assert len(lines) == 10 and all(line.strip() for line in lines)
    if recipe.startswith("trf"):
        assert (run / "zeta.png").stat().st_size > 0 and summary["is_draws"] >= 2000
        gaps = json.loads((run / "zeta_gap.json").read_text())
        assert len(gaps["lengths"]) == len(gaps["zeta"]) == len(gaps["log_z"]) > 0
