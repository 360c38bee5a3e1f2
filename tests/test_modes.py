"""Mode metrics (sajax.evaluate.modes) against constructed answers and a brute-force
reference written as PacGAN's own MetricLogger loops; scatter/density plots are smoke-tested."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sajax.evaluate.modes import (
    covered_modes,
    mean_stderr,
    mode_coverage,
    plot_density_2d,
    plot_samples_2d,
    plot_samples_grid,
    realistic_ratio,
)

M = 8
STD = 0.01
MODES = np.stack([np.cos(2 * np.pi * np.arange(M) / M), np.sin(2 * np.pi * np.arange(M) / M)], -1)


def _brute_force(x, modes, std, thre=3.0):
    """PacGAN's MetricLogger, loop by loop: nearest mode in σ units, HQ if < thre; KL(p̂ ‖ uniform)."""
    counts = np.zeros(len(modes))
    for xi in np.asarray(x, np.float64):
        dis = [math.sqrt(np.sum((xi - mj) ** 2 / std ** 2)) for mj in modes]
        j = int(np.argmin(dis))
        if dis[j] < thre:
            counts[j] += 1
    p = counts / counts.sum() if counts.sum() else None
    kl = np.nan if p is None else sum(pj * math.log(pj * len(modes)) for pj in p if pj > 0)
    return np.count_nonzero(counts), counts.sum() / len(x), kl, counts


def test_all_at_the_modes_balanced():
    x = np.tile(MODES, (5, 1))                         # 5 samples exactly at every mode
    cov = mode_coverage(x, MODES, STD)
    assert int(cov.modes) == M and float(cov.high_quality) == 1.0
    assert abs(float(cov.reverse_kl)) < 1e-6
    np.testing.assert_array_equal(cov.counts, np.full(M, 5))


def test_all_in_one_mode_gives_log_m():
    x = MODES[3] + STD * np.array([[0.5, 0.0], [0.0, -1.0], [1.0, 1.0]])
    cov = mode_coverage(x, MODES, STD)
    assert int(cov.modes) == 1 and float(cov.high_quality) == 1.0
    np.testing.assert_allclose(float(cov.reverse_kl), math.log(M), rtol=1e-6)
    assert int(cov.counts[3]) == 3


def test_three_sigma_boundary():
    """2.9σ from a mode is high quality, 3.1σ is not (in every direction)."""
    angle = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    u = np.stack([np.cos(angle), np.sin(angle)], -1)
    inside = mode_coverage(MODES[0] + 2.9 * STD * u, MODES, STD)
    outside = mode_coverage(MODES[0] + 3.1 * STD * u, MODES, STD)
    assert float(inside.high_quality) == 1.0 and int(inside.modes) == 1
    assert float(outside.high_quality) == 0.0 and int(outside.modes) == 0


def test_no_high_quality_sample_and_empty_input():
    cov = mode_coverage(np.zeros((4, 2)), MODES, STD)  # the centre: 100σ from every mode
    assert int(cov.modes) == 0 and float(cov.high_quality) == 0.0 and np.isnan(float(cov.reverse_kl))
    np.testing.assert_array_equal(cov.counts, np.zeros(M))
    with pytest.raises(ValueError, match="at least one sample"):
        mode_coverage(np.zeros((0, 2)), MODES, STD)
    with pytest.raises(ValueError, match="samples must have shape"):
        mode_coverage(np.zeros((4, 3)), MODES, STD)
    with pytest.raises(ValueError, match="std"):
        mode_coverage(np.zeros((4, 2)), MODES, -1.0)


def _random_samples(seed, n=300, m=M):
    """Near-mode samples at 0..6σ (so the 3σ cut matters), uneven over modes, plus uniform junk."""
    rng = np.random.default_rng(seed)
    which = rng.choice(m, size=n, p=np.arange(1, m + 1) / np.sum(np.arange(1, m + 1)))
    x = MODES[which] + 2.0 * STD * rng.standard_normal((n, 2))
    junk = rng.uniform(size=n) < 0.2
    x[junk] = rng.uniform(-1.2, 1.2, size=(junk.sum(), 2))
    return x.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed):
    x = _random_samples(seed)
    cov = mode_coverage(x, MODES, STD)
    modes, hq, kl, counts = _brute_force(x, MODES, STD)
    assert 0.3 < hq < 0.9                              # the threshold is exercised
    assert int(cov.modes) == modes
    np.testing.assert_array_equal(cov.counts, counts)
    np.testing.assert_allclose(float(cov.high_quality), hq, rtol=1e-6)
    np.testing.assert_allclose(float(cov.reverse_kl), kl, rtol=1e-5, atol=1e-6)


def test_per_mode_std_matches_brute_force():
    x = _random_samples(5, n=200)
    std = np.linspace(0.005, 0.03, M)
    cov = mode_coverage(x, MODES, std)
    counts = np.zeros(M)
    for xi in x.astype(np.float64):
        dis = np.sqrt(np.sum((xi - MODES) ** 2, -1)) / std
        if dis.min() < 3:
            counts[np.argmin(dis)] += 1
    np.testing.assert_array_equal(cov.counts, counts)


def test_vmap_over_replicas_and_mean_stderr():
    xs = np.stack([_random_samples(s) for s in range(4)])       # [R, n, 2]
    batched = jax.jit(jax.vmap(mode_coverage, in_axes=(0, None, None)))(xs, MODES, STD)
    for r in range(4):
        one = mode_coverage(xs[r], MODES, STD)
        for a, b in zip(batched, one):
            np.testing.assert_allclose(np.asarray(a[r]), np.asarray(b), rtol=1e-6)
    mean, se = mean_stderr(batched)
    kl = np.asarray(batched.reverse_kl, np.float64)
    np.testing.assert_allclose(mean.reverse_kl, kl.mean(), rtol=1e-12)
    np.testing.assert_allclose(se.reverse_kl, kl.std(ddof=1) / 2.0, rtol=1e-12)
    assert mean.counts.shape == (M,)


def test_song_ou_metrics():
    modes = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    x = np.array([[0.29, 0.0], [1.0, 0.31], [0.0, 1.0], [3.0, 3.0]], np.float32)
    assert float(covered_modes(x, modes, 0.3)) == 2.0          # modes 0 and 2 (1 is 0.31 away)
    assert float(realistic_ratio(x, modes, 0.3)) == 0.5
    # Batches of 2: first batch covers {0}, second {2} -> 1 on average.
    assert float(covered_modes(x, modes, 0.3, batch_size=2)) == 1.0
    with pytest.raises(ValueError, match="divide"):
        covered_modes(x, modes, 0.3, batch_size=3)
    xr = _random_samples(7, n=100) * 2.0
    d = np.linalg.norm(xr[:, None, :].astype(np.float64) - 2.0 * MODES[None], axis=-1)
    assert float(covered_modes(xr, 2.0 * MODES, 0.3)) == np.sum(np.any(d <= 0.3, axis=0))
    np.testing.assert_allclose(float(realistic_ratio(xr, 2.0 * MODES, 0.3)), np.mean(np.any(d <= 0.3, 1)))


def test_plots_write_pngs(tmp_path):
    x = _random_samples(0, n=50)
    fig, ax = plot_samples_2d(x, MODES, path=tmp_path / "a.png", title="ring")
    assert (tmp_path / "a.png").stat().st_size > 0 and ax.get_title() == "ring\n0 of 50 samples outside the frame"
    far = np.concatenate([x[:10], 100.0 + x[:10]])      # half the samples far from every mode
    fig = plot_samples_grid({"GAN": x, "PacGAN": far}, MODES, tmp_path / "grid.png")
    assert len(fig.axes) == 2 and (tmp_path / "grid.png").is_file()
    # the axes fit the modes (their box widened by a quarter of its side), not the far samples;
    # titles count those outside (tests/test_pictures.py has the frame's rules)
    (x0, x1), (y0, y1) = fig.axes[0].get_xlim(), fig.axes[0].get_ylim()
    assert (x0, x1, y0, y1) == (MODES[:, 0].min() - 0.5, MODES[:, 0].max() + 0.5, MODES[:, 1].min() - 0.5,
                                MODES[:, 1].max() + 0.5)
    assert fig.axes[0].get_title() == "GAN\n0 of 50 samples outside the frame"
    assert fig.axes[1].get_title() == "PacGAN\n10 of 20 samples outside the frame"

    def log_p(g):
        return jax.nn.logsumexp(-0.5 * jnp.sum((g[:, None] - MODES) ** 2, -1) / 0.1 ** 2, -1)

    fig, ax = plot_density_2d(log_p, (-1.5, 1.5, -1.5, 1.5), tmp_path / "d.png", resolution=40)
    image = ax.images[0].get_array()
    assert image.shape == (40, 40) and float(np.max(image)) == pytest.approx(1.0)
    assert (tmp_path / "d.png").is_file()


def _x64():
    """Context manager turning jax_enable_x64 on (jax.enable_x64; older jax: jax.experimental)."""
    import jax.experimental

    return jax.enable_x64(True) if hasattr(jax, "enable_x64") else jax.experimental.enable_x64()


def test_float64_samples_are_measured_in_float64_under_x64():
    """A sample 1e-12 σ inside the 3σ boundary is high quality in float64; float32 rounds its
    distance to 3.0 and drops it.  Under x64 every metric keeps the samples' float64 (float32
    samples stay float32); without x64 nothing changes."""
    x, modes = np.array([[3.0 - 1e-12, 0.0], [0.0, 0.5]]), np.array([[0.0, 0.0], [5.0, 5.0]])
    with _x64():
        cov = mode_coverage(x, modes, 1.0)
        assert [int(c) for c in cov.counts] == [2, 0] and float(cov.high_quality) == 1.0
        assert cov.high_quality.dtype == jnp.float64 and cov.reverse_kl.dtype == jnp.float64
        assert covered_modes(x, modes, radius=3.0 - 1e-13).dtype == jnp.float64
        assert realistic_ratio(x, modes, radius=3.0 - 1e-13) == 1.0
        assert mode_coverage(x.astype(np.float32), modes, 1.0).high_quality.dtype == jnp.float32
    cov32 = mode_coverage(x, modes, 1.0)
    assert [int(c) for c in cov32.counts] == [1, 0] and cov32.high_quality.dtype == jnp.float32
