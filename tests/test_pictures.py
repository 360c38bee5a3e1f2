"""The frame of the 2-D pictures (scatter, grid of scatters, density): fitted to the modes
(or the data's 0.5 %–99.5 % range) with a margin, never to a few far samples, and the
number of samples outside it written on the panel."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sajax.evaluate import plot_density_2d, plot_samples_2d, plot_samples_grid
from sajax.evaluate.pictures import frame_for, load_panels, outside_count, save_panels

GRID = np.stack(np.meshgrid(np.arange(-4.0, 5.0, 2.0), np.arange(-4.0, 5.0, 2.0)), -1).reshape(-1, 2)
STD = 0.05
# far outliers, plus one just outside the frame [-6, 6]² and one just inside
OUTLIERS = np.array([[100.0, 0.0], [0.0, -80.0], [50.0, 50.0], [-30.0, 1.0], [6.5, 0.0]])
EDGE = np.array([[5.9, -5.9]])


def _samples(n=2500, seed=0):
    """``n`` samples at the 25 grid modes (σ = 0.05), then the outliers and the edge point."""
    rng = np.random.default_rng(seed)
    x = GRID[rng.integers(0, 25, n)] + STD * rng.standard_normal((n, 2))
    return np.concatenate([x, OUTLIERS, EDGE])


def test_frame_for_modes_with_margin():
    assert frame_for(GRID, std=STD) == (-6.0, 6.0, -6.0, 6.0)              # pad = 0.25 · 8 > 3σ
    assert frame_for(GRID, std=1.0) == (-7.0, 7.0, -7.0, 7.0)              # pad = 3σ > 0.25 · 8
    assert frame_for(GRID, std=np.full(25, STD), margin=0.5) == (-8.0, 8.0, -8.0, 8.0)
    assert frame_for(GRID[:1]) == (-5.0, -3.0, -5.0, -3.0)                  # one point: pad 1
    with pytest.raises(ValueError, match="modes must have shape"):
        frame_for(GRID[:, :1])
    with pytest.raises(ValueError, match="needs the modes or the data"):
        frame_for()


def test_frame_for_data_ignores_far_outliers():
    x = _samples()
    x0, x1, y0, y1 = frame_for(data=np.concatenate([x, [[np.nan, 0.0]]]))
    assert -7.0 < x0 < -4.0 and 4.0 < x1 < 7.0 and -7.0 < y0 < -4.0 and 4.0 < y1 < 7.0
    with pytest.raises(ValueError, match="quantiles"):
        frame_for(data=x, quantiles=(0.9, 0.1))


def test_outside_count_is_exact():
    x = _samples()
    assert outside_count(x, (-6.0, 6.0, -6.0, 6.0)) == len(OUTLIERS)
    assert outside_count(np.array([[6.0, -6.0], [np.nan, 0.0]]), (-6.0, 6.0, -6.0, 6.0)) == 1


def test_scatter_axes_fit_the_modes_not_the_outliers(tmp_path):
    x = _samples()
    fig, ax = plot_samples_2d(x, GRID, path=tmp_path / "a.png", title="gan")
    assert ax.get_xlim() == (-6.0, 6.0) and ax.get_ylim() == (-6.0, 6.0)
    assert ax.get_title() == "gan\n5 of 2,506 samples outside the frame"
    assert (tmp_path / "a.png").stat().st_size > 0
    _, ax = plot_samples_2d(x)                                              # no modes: the data's range
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert -7.0 < x0 < -4.0 and 4.0 < x1 < 7.0 and -7.0 < y0 < -4.0 and 4.0 < y1 < 7.0
    _, ax = plot_samples_2d(x, GRID, frame=(-1.0, 1.0, -2.0, 2.0))          # an explicit frame wins
    assert ax.get_xlim() == (-1.0, 1.0) and ax.get_ylim() == (-2.0, 2.0)


def test_grid_shares_the_frame_and_counts_each_panel(tmp_path):
    clean, x = _samples(100, seed=1)[:100], _samples(100, seed=2)
    fig = plot_samples_grid({"ns-gan": clean, "gan": x}, GRID, tmp_path / "grid.png")
    for ax in fig.axes:
        assert ax.get_xlim() == (-6.0, 6.0) and ax.get_ylim() == (-6.0, 6.0)
    assert [ax.get_title() for ax in fig.axes] == ["ns-gan\n0 of 100 samples outside the frame",
                                                  "gan\n5 of 106 samples outside the frame"]
    reference = _samples(2000, seed=3)[:2000]                              # no modes: the data's range
    fig = plot_samples_grid({"gan": x}, reference=reference)
    x0, x1 = fig.axes[0].get_xlim()
    assert -7.0 < x0 < -4.0 and 4.0 < x1 < 7.0


def test_density_extent_from_the_modes():
    def log_p(g):
        return jax.nn.logsumexp(-0.5 * jnp.sum((g[:, None] - GRID) ** 2, -1) / STD ** 2, -1)

    _, ax = plot_density_2d(log_p, modes=GRID, std=STD, resolution=20)
    assert tuple(ax.images[0].get_extent()) == (-6.0, 6.0, -6.0, 6.0)
    _, ax = plot_density_2d(log_p, resolution=20)                          # default kept: [-5, 5]²
    assert tuple(ax.images[0].get_extent()) == (-5.0, 5.0, -5.0, 5.0)


def test_saved_panels_round_trip(tmp_path):
    panels = {"pcd: langevin": _samples(50)[:50], "gan (grid25)": _samples(50, seed=1)[:50]}
    back = load_panels(save_panels(tmp_path / "s.npz", panels))
    assert list(back) == list(panels)
    for k in panels:
        np.testing.assert_array_equal(back[k], panels[k].astype(np.float32))
