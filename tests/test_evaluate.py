"""Importance-weighted log-likelihood (Eq. 17 / 19) against the closed-form
log p(x) of a linear-Gaussian model (tests/linear_gaussian.py: h ~ N(0, I),
x|h ~ N(W h + b, σ² I), pure jnp), and sample pictures."""
from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest

import linear_gaussian as lg
from sajax.core import log_joint
from sajax.evaluate import (LIVE_ACTIVATIONS, image_grid, iw_log_likelihood, iw_nll, k_chunk_for_budget,
                            sample_grid, save_image_grid)
from sajax.evaluate.nll import _batch_estimator
from sajax.models import iwae_one_layer, vae


@pytest.fixture(scope="module")
def problem():
    theta = jax.jit(lg.make_theta)(jax.random.PRNGKey(0))
    x = np.asarray(lg.make_data(theta, jax.random.PRNGKey(1)))           # [4, 3]
    phi_star = lg.exact_posterior_params(theta)
    phi_wrong = lg.perturb(phi_star, jax.random.PRNGKey(2), 0.3)
    return theta, x, phi_star, phi_wrong


def test_exact_posterior_gives_exact_log_marginal(problem):
    """q = p(h|x) makes every weight equal p(x): zero variance, any K, any chunking."""
    theta, x, phi_star, _ = problem
    exact = np.asarray(jax.jit(lg.log_marginal)(theta, x))
    for k, k_chunk in [(1, None), (7, 3), (64, None)]:
        est = iw_log_likelihood(lg.model(), lg.guide(), {"model": theta, "guide": phi_star},
                                jax.random.PRNGKey(3), x, num_samples=k, k_chunk=k_chunk)
        np.testing.assert_allclose(est, exact, rtol=0, atol=2e-4)


def test_wrong_guide_is_below_and_approaches_log_marginal(problem):
    """Each of R copies of an example gets independent samples, so the mean over
    copies estimates E log p̂_K = I_K (Eq. 19) with a measured standard error.
    K = 1 gives the closed-form ELBO; I_K grows with K towards log p(x)."""
    theta, x, _, phi_wrong = problem
    params = {"model": theta, "guide": phi_wrong}
    exact, elbo = jax.jit(lambda theta, phi, x: (lg.log_marginal(theta, x), lg.elbo(theta, phi, x)))(theta, phi_wrong, x)
    exact, elbo = np.asarray(exact, np.float64), np.asarray(elbo, np.float64)
    assert np.all(exact - elbo > 0.02)                # q is really wrong: KL(q || p(h|x)) > 0
    reps = 1000
    data = np.tile(x, (reps, 1))                      # row r*4 + j is a copy of example j
    means, ses = {}, {}
    for k in (1, 10, 1000):
        est = iw_log_likelihood(lg.model(), lg.guide(), params, jax.random.PRNGKey(4), data, num_samples=k,
                                batch_size=1000).reshape(reps, -1).astype(np.float64)
        means[k], ses[k] = est.mean(0), est.std(0) / math.sqrt(reps)
        assert np.all(means[k] <= exact + 5 * ses[k])
    assert np.all(np.abs(means[1] - elbo) < 5 * ses[1])
    assert np.all(means[10] - means[1] > 5 * np.hypot(ses[1], ses[10]))
    assert np.all(means[1000] - means[10] > -5 * np.hypot(ses[10], ses[1000]))
    assert np.all(exact - means[1000] < (exact - elbo) / 20 + 5 * ses[1000])


def test_result_does_not_depend_on_chunking(problem):
    theta, x, _, phi_wrong = problem
    params = {"model": theta, "guide": phi_wrong}
    data = np.tile(x, (3, 1))                         # 12 rows
    key = jax.random.PRNGKey(5)
    ref = iw_log_likelihood(lg.model(), lg.guide(), params, key, data, num_samples=50, k_chunk=50, batch_size=12)
    for k_chunk, batch_size in [(7, 5), (1, 12), (None, 4)]:
        got = iw_log_likelihood(lg.model(), lg.guide(), params, key, data, num_samples=50, k_chunk=k_chunk,
                                batch_size=batch_size, progress=k_chunk is None)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    other = iw_log_likelihood(lg.model(), lg.guide(), params, jax.random.PRNGKey(6), data, num_samples=50)
    assert not np.allclose(other, ref)                # a different key gives different samples
    nll = iw_nll(lg.model(), lg.guide(), params, key, data, num_samples=50, k_chunk=50, batch_size=12)
    np.testing.assert_allclose(nll, -np.mean(ref, dtype=np.float64), rtol=1e-6)


def test_documented_key_layout():
    """Sample k of row n uses fold_in(fold_in(key, n), k): reproduce K = 3 by hand on a VAE."""
    spec = vae(5, (2,), ((4,),))
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    x = np.asarray(jax.jit(lambda k: jax.random.uniform(k, (3, 5)) < 0.5)(jax.random.PRNGKey(1)), np.float32)
    key = jax.random.PRNGKey(7)
    est = iw_log_likelihood(spec.model, spec.guide, params, key, x, num_samples=3, k_chunk=2, batch_size=2)

    @jax.jit
    def log_sum_weights(params, x):
        """log Σ_k w_nk per row n, [3], sample k of row n drawn with the key fold_in(fold_in(key, n), k)."""
        rows = []
        for n in range(3):
            log_w = []
            for k in range(3):
                sk = jax.random.fold_in(jax.random.fold_in(key, n), k)
                h, log_q = spec.guide.sample_and_log_prob(params["guide"], sk, x[n:n + 1], 1)
                log_w.append((log_joint(spec.model, params["model"], x[n:n + 1], h) - log_q)[0, 0])
            rows.append(jax.nn.logsumexp(jnp.stack(log_w)))
        return jnp.stack(rows)

    log_sum_w = log_sum_weights(params, x)
    for n in range(3):
        ref = float(log_sum_w[n]) - math.log(3)
        np.testing.assert_allclose(est[n], ref, rtol=1e-5, atol=1e-4)


def test_memory_budget_holds_for_iwae_model():
    assert k_chunk_for_budget(5000, 100, 784, 512) == math.floor(512 * 2 ** 20 / (LIVE_ACTIVATIONS * 100 * 784 * 4))
    assert k_chunk_for_budget(10, 100, 784, 512) == 10
    assert k_chunk_for_budget(5000, 100, 784, 0.001) == 1
    spec = iwae_one_layer()
    params = jax.eval_shape(spec.init, jax.random.PRNGKey(0))   # lowering needs the shapes only
    budget_mb, batch = 4, 20
    k_chunk = k_chunk_for_budget(5000, batch, 784, budget_mb)
    compiled = _batch_estimator(spec.model, spec.guide, 5000, k_chunk).lower(
        params, jax.random.PRNGKey(0), jnp.zeros((batch, 784)), jnp.arange(batch)).compile()
    stats = compiled.memory_analysis()
    assert stats.temp_size_in_bytes <= budget_mb * 2 ** 20


def test_bad_input_raises(problem):
    theta, x, phi_star, _ = problem
    params = {"model": theta, "guide": phi_star}
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="num_samples must be"):
        iw_log_likelihood(lg.model(), lg.guide(), params, key, x, num_samples=0)
    with pytest.raises(TypeError, match="num_samples"):          # K is required (it sets the bound I_K)
        iw_nll(lg.model(), lg.guide(), params, key, x)
    with pytest.raises(ValueError, match="k_chunk"):
        iw_log_likelihood(lg.model(), lg.guide(), params, key, x, num_samples=5, k_chunk=0)
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        iw_log_likelihood(lg.model(), lg.guide(), params, key, bad, num_samples=5)
    with pytest.raises(ValueError, match="binary"):
        iw_log_likelihood(lg.model(), lg.guide(), params, key, x, num_samples=5, binary=True)
    spec = vae(6, (2,), ((4,),))
    vparams = jax.jit(spec.init)(key)
    gray = np.full((3, 6), 0.5, np.float32)
    with pytest.raises(ValueError, match="binary"):          # the model's Bernoulli tag asks for it
        iw_nll(spec.model, spec.guide, vparams, key, gray, num_samples=5)
    with pytest.raises(ValueError, match="event shape"):
        iw_nll(spec.model, spec.guide, vparams, key, np.zeros((3, 5), np.float32), num_samples=5)


def test_sample_grid_writes_png(tmp_path):
    spec = vae(16, (2,), ((8,),))                     # 4x4 "images"
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    path = tmp_path / "sub" / "samples.png"
    means = sample_grid(spec.model, params["model"], jax.random.PRNGKey(1), path, n=12, nrow=5)
    assert means.shape == (12, 16)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[:2] == (3 * (4 + 2) + 2, 5 * (4 + 2) + 2)
    # first image at (2, 2); cells 12-14 (last row, columns 2-4) are empty padding
    np.testing.assert_allclose(img[2:6, 2:6, 0], means[0].reshape(4, 4), atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(img[14:18, 20:24, 0], 1.0)


def test_image_grid_shapes_and_errors(tmp_path):
    imgs = np.random.default_rng(0).random((7, 3, 5))
    grid = image_grid(imgs, nrow=3, padding=1)
    assert grid.shape == (3 * 4 + 1, 3 * 6 + 1)
    np.testing.assert_allclose(grid[1 + 4:4 + 4, 1 + 6:6 + 6], imgs[4], rtol=1e-6)
    p = save_image_grid(imgs, tmp_path / "g.png", nrow=10, padding=0)
    assert mpimg.imread(p).shape[:2] == (3, 7 * 5)
    with pytest.raises(ValueError, match="perfect square"):
        image_grid(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="nrow"):
        image_grid(np.zeros((2, 4)), nrow=0)


def _x64():
    """Context manager turning jax_enable_x64 on (jax.enable_x64; older jax: jax.experimental)."""
    import jax.experimental

    return getattr(jax, "enable_x64", None)(True) if hasattr(jax, "enable_x64") \
        else jax.experimental.enable_x64()


def test_float64_under_x64_is_exact_to_float64_precision():
    """With jax_enable_x64 the scan carry and the data keep float64: the exact
    posterior gives log p(x) to ~1e-10 (float32 could not), for float32 data too."""
    with _x64():
        @jax.jit
        def problem(key_theta, key_x):
            """θ in float64, data and the exact log p(x), from one program."""
            theta = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), lg.make_theta(key_theta))
            x = jnp.asarray(lg.make_data(theta, key_x), jnp.float64)
            return theta, x, lg.log_marginal(theta, x)

        theta, x, exact = problem(jax.random.PRNGKey(0), jax.random.PRNGKey(1))
        x, exact = np.asarray(x, np.float64), np.asarray(exact)
        params = {"model": theta, "guide": lg.exact_posterior_params(theta)}
        assert exact.dtype == np.float64
        est = iw_log_likelihood(lg.model(), lg.guide(), params, jax.random.PRNGKey(3), x, num_samples=9, k_chunk=4)
        assert est.dtype == np.float64
        np.testing.assert_allclose(est, exact, rtol=0, atol=1e-9)
        est32 = iw_log_likelihood(lg.model(), lg.guide(), params, jax.random.PRNGKey(3), x.astype(np.float32),
                                  num_samples=9, k_chunk=4)
        np.testing.assert_allclose(est32, exact, rtol=0, atol=1e-4)


def test_bfloat16_data_is_evaluated_in_float32():
    spec = vae(6, (2,), ((4,),))
    params = jax.jit(spec.init)(jax.random.PRNGKey(0))
    x = np.asarray(jax.jit(lambda k: jax.random.uniform(k, (5, 6)) < 0.5)(jax.random.PRNGKey(1)), np.float32)
    key = jax.random.PRNGKey(2)
    ref = iw_log_likelihood(spec.model, spec.guide, params, key, x, num_samples=4)
    got = iw_log_likelihood(spec.model, spec.guide, params, key, jnp.asarray(x, jnp.bfloat16), num_samples=4)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_api_errors_are_clear_at_the_boundary(problem):
    theta, x, phi_star, _ = problem
    params = {"model": theta, "guide": phi_star}
    with pytest.raises(TypeError, match=r"key must be a PRNG key, e.g. jax.random.PRNGKey\(0\)"):
        iw_nll(lg.model(), lg.guide(), params, 0, x, num_samples=5)
    with pytest.raises(ValueError, match=r"no group\(s\) \['guide'\]"):
        iw_nll(lg.model(), lg.guide(), {"model": theta}, jax.random.PRNGKey(0), x, num_samples=5)


def test_plot_curves_reads_objective_and_evaluations(tmp_path):
    from sajax.evaluate import plot_curves, read_metrics

    log = tmp_path / "metrics.jsonl"
    recs = [{"step": 10, "epoch": 1.0, "seconds": 0.1, "objective": -100.0, "elbo": -100.0},
            {"step": 20, "epoch": 2.0, "seconds": 0.1, "objective": -90.0, "eval/test_nll": 95.0},
            {"step": 20, "epoch": 2.0, "seconds": 0.1, "objective": -89.0, "eval/test_nll": 94.0},
            {"step": 30, "epoch": 3.0, "seconds": 0.1, "objective": [-80.0, -82.0]}]
    log.write_text("\n".join(json.dumps(r) for r in recs) + '\n{"step": 40, "obj')   # truncated tail
    got = read_metrics(log)
    assert [r["step"] for r in got] == [10, 20, 30] and got[1]["objective"] == -89.0
    out = plot_curves(log, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert plot_curves(empty, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()


def test_sample_grid_of_a_sample_only_model(tmp_path):
    """A generator whose sample returns x only (ImplicitGenerator) is pictured too;
    a model without a sampler gives a clear error."""
    from sajax.core import EnergyModel, ImplicitGenerator
    from sajax.evaluate import can_sample

    gen = ImplicitGenerator(sample=lambda theta, key, n: jax.random.uniform(key, (n, 9)) * theta)
    imgs = sample_grid(gen, 0.5, jax.random.PRNGKey(0), tmp_path / "g.png", n=4)
    assert imgs.shape == (4, 9) and imgs.max() <= 0.5
    energy = EnergyModel(potential=lambda theta, x: -jnp.sum(x ** 2, -1))
    assert can_sample(gen) and not can_sample(energy)
    with pytest.raises(ValueError, match="no sample function"):
        sample_grid(energy, {}, jax.random.PRNGKey(0), tmp_path / "e.png")
