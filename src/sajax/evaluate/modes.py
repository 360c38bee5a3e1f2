"""Mode coverage of samples from a known mixture, and 2-D scatter and density plots.

The metrics of mode collapse used for adversarial learning (review Sec. 3.2.4,
"Improve/Stabilize training") and for neural random fields with auxiliary
generators (Sec. 4.2.2-4.2.3).  The target is a mixture with known mode centres
μ_m ``[M, D]`` and component standard deviations σ (a scalar, or ``[M]``);
:func:`sajax.data.toy_modes` / :func:`sajax.data.toy_std` give them for the toy
densities, but every function takes them as arguments.

PacGAN's metrics (Lin, Khetan, Fanti & Oh 2018, Sec. 5 / Table 1; the set-up of
Srivastava et al. 2017, VEEGAN), computed exactly as the authors' code
(``pacgan/extensions.py``, ``MetricLogger``) does, on n samples (2,500 there):

* each sample x is assigned to its nearest mode m*(x) = argmin_m ‖x − μ_m‖/σ_m;
* a sample is **high quality** if ‖x − μ_m*‖/σ_m* < 3 (strictly; ``threshold``);
* ``counts[m]`` = number of high-quality samples assigned to mode m;
* a mode is **captured** if counts[m] >= 1 (at least one high-quality sample);
  ``high_quality`` is the fraction (Σ_m counts[m]) / n;
* **reverse KL** = KL(p̂ ‖ u) = Σ_m p̂_m log(M p̂_m), where p̂ = counts / Σ counts is the
  histogram of the *high-quality* samples only, normalized, and u is uniform over the M
  modes.  Empty bins contribute 0 (0 log 0 = 0), so it is finite whenever some sample is
  high quality: 0 for a perfectly balanced histogram, log M when all fall in one mode.
  With no high-quality sample p̂ is undefined (0/0 in PacGAN's code) and reverse_kl is NaN.

Song & Ou's metrics for their 32-mode four-circles density (2018, "Learning neural
random fields with inclusive auxiliary generators", Sec. 5.1), with a distance
``radius`` r (0.3 there): :func:`covered_modes` counts the modes that have a sample
within Euclidean distance r (``<= r``), averaged over batches of samples;
:func:`realistic_ratio` is the share of samples within r of some mode.

Precision: every metric is computed in the samples' float dtype, at least float32
(float64 samples under ``jax_enable_x64`` are measured in float64; the modes and σ are
cast to it), so a distance at the 3σ boundary is not rounded across it.

Replicas (seeds) stack on a leading axis: ``jax.vmap(mode_coverage, (0, None, None))``
works, and :func:`mean_stderr` reduces any result tree to mean ± standard error.

>>> import jax.numpy as jnp
>>> centres = jnp.array([[0.0, 0.0], [1.0, 0.0]])
>>> x = jnp.array([[0.0, 0.01], [0.0, -0.05], [0.5, 0.5]])  # at 1σ, 5σ, far
>>> cov = mode_coverage(x, centres, 0.01)
>>> int(cov.modes), float(cov.high_quality), [int(c) for c in cov.counts]
(1, 0.3333333432674408, [1, 0])
>>> round(float(cov.reverse_kl), 4)   # all high-quality mass in one of 2 modes: log 2
0.6931
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import check_positive_int
from sajax.evaluate.pictures import frame_for, outside_note

__all__ = [
    "ModeCoverage",
    "covered_modes",
    "mean_stderr",
    "mode_coverage",
    "nearest_mode",
    "plot_density_2d",
    "plot_samples_2d",
    "plot_samples_grid",
    "realistic_ratio",
]


class ModeCoverage(NamedTuple):
    """PacGAN's mode metrics of one set of samples (see the module docstring).

    Attributes:
      modes: int32 scalar, number of captured modes (at least one high-quality sample).
      high_quality: scalar in the samples' float dtype (float32, or float64 under x64), fraction
        of samples within ``threshold``·σ of their nearest mode.
      reverse_kl: scalar, same dtype, KL(histogram of high-quality samples ‖ uniform over M
        modes); NaN when no sample is high quality.
      counts: int32 ``[M]``, high-quality samples per mode.
    """

    modes: jax.Array
    high_quality: jax.Array
    reverse_kl: jax.Array
    counts: jax.Array


def _check_samples(samples, modes, name: str = "samples"):
    """Shape checks at the boundary (static, so they hold under jit/vmap too)."""
    s, m = jnp.shape(samples), jnp.shape(modes)
    if len(m) != 2 or m[0] < 1:
        raise ValueError(f"modes must have shape [M, D] with M >= 1, got {m}")
    if len(s) != 2 or s[-1] != m[-1]:
        raise ValueError(f"{name} must have shape [n, {m[-1]}] (D of the modes), got {s}; "
                         "vmap over leading replica axes")
    if s[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {s}")
    samples = jnp.asarray(samples)
    dtype = jnp.promote_types(samples.dtype, jnp.float32)  # float64 kept under x64; ints, bf16 -> f32
    return samples.astype(dtype), jnp.asarray(modes, dtype)


def _check_scale(name: str, value, num_modes: int, dtype=jnp.float32):
    shape = jnp.shape(value)
    if shape not in ((), (num_modes,)):
        raise ValueError(f"{name} must be a scalar or have shape [M] = [{num_modes}], got {shape}")
    if not isinstance(value, jax.core.Tracer) and not np.all(np.asarray(value) > 0):
        raise ValueError(f"{name} must be > 0, got {value}")
    return jnp.asarray(value, dtype)


def nearest_mode(samples, modes, std=1.0):
    """Nearest mode of each sample in standardized distance ‖x − μ_m‖ / σ_m.

    Args:
      samples: ``[n, D]``; modes: ``[M, D]``; std: σ, scalar or ``[M]``.
    Returns: ``(index, distance)``: int32 ``[n]`` and ``[n]`` in the samples' dtype, the
      standardized distance to that mode (in units of its σ).
    """
    diff = samples[:, None, :] - modes[None, :, :]          # [n, M, D]: exact, no |x|²-2x·μ cancellation
    dist = jnp.sqrt(jnp.sum(diff * diff, axis=-1)) / std    # [n, M]
    index = jnp.argmin(dist, axis=-1).astype(jnp.int32)
    return index, jnp.take_along_axis(dist, index[:, None], axis=-1)[:, 0]


@jax.jit
def _coverage(samples, modes, std, threshold):
    """The jit-able core of :func:`mode_coverage` (inputs already checked)."""
    index, dist = nearest_mode(samples, modes, std)
    good = dist < threshold
    counts = jnp.zeros(modes.shape[0], jnp.int32).at[index].add(good.astype(jnp.int32))
    total = jnp.sum(counts)
    dtype = samples.dtype
    p = counts.astype(dtype) / jnp.maximum(total, 1).astype(dtype)
    terms = jnp.where(counts > 0, p * jnp.log(jnp.where(counts > 0, p * modes.shape[0], 1.0)), 0.0)
    reverse_kl = jnp.where(total > 0, jnp.sum(terms), jnp.nan).astype(dtype)
    return ModeCoverage(modes=jnp.sum(counts > 0).astype(jnp.int32),
                        high_quality=(total / samples.shape[0]).astype(dtype),
                        reverse_kl=reverse_kl, counts=counts)


def mode_coverage(samples, modes, std, threshold: float = 3.0) -> ModeCoverage:
    """PacGAN's mode metrics (Lin et al. 2018, Sec. 5; module docstring for the exact rules).

    Args:
      samples: ``[n, D]`` generated samples (PacGAN: n = 2,500).
      modes: ``[M, D]`` mode centres μ_m of the target mixture.
      std: component standard deviation σ, scalar or ``[M]``.
      threshold: a sample is high quality if within ``threshold``·σ of its nearest mode (3).
    Returns: :class:`ModeCoverage`, in the samples' float dtype (module docstring).  Pure
    and jit/vmap-able in ``samples``, ``modes``, ``std``.
    """
    samples, modes = _check_samples(samples, modes)
    std = _check_scale("std", std, modes.shape[0], samples.dtype)
    return _coverage(samples, modes, std, jnp.asarray(threshold, samples.dtype))


def _within(samples, modes, radius):
    """Boolean ``[n, M]``: ‖x_i − μ_m‖ <= radius."""
    diff = samples[:, None, :] - modes[None, :, :]
    return jnp.sum(diff * diff, axis=-1) <= radius * radius


def covered_modes(samples, modes, radius: float = 0.3, batch_size: Optional[int] = None):
    """Song & Ou (2018)'s covered modes: modes with a sample within distance ``radius``.

    Args:
      samples: ``[n, D]``; modes: ``[M, D]``; radius: r (0.3 in Song & Ou).
      batch_size: if given (it must divide n), the samples are split into n / batch_size
        consecutive batches, modes are counted per batch, and the counts are averaged.
    Returns: scalar in the samples' float dtype, the (average) number of covered modes.
    """
    samples, modes = _check_samples(samples, modes)
    n = samples.shape[0]
    b = n if batch_size is None else check_positive_int("batch_size", batch_size)
    if n % b:
        raise ValueError(f"batch_size must divide the number of samples {n}, got {b}")
    within = _within(samples, modes, radius).reshape(n // b, b, modes.shape[0])
    return jnp.mean(jnp.sum(jnp.any(within, axis=1), axis=-1).astype(samples.dtype))


def realistic_ratio(samples, modes, radius: float = 0.3):
    """Song & Ou (2018)'s realistic ratio: share of samples within distance ``radius`` of some mode.

    Args: samples ``[n, D]``; modes ``[M, D]``; radius r (0.3).  Returns: scalar in [0, 1], in
    the samples' float dtype.
    """
    samples, modes = _check_samples(samples, modes)
    return jnp.mean(jnp.any(_within(samples, modes, radius), axis=-1).astype(samples.dtype))


def mean_stderr(tree, axis: int = 0):
    """Mean and standard error over replicas (seeds) on ``axis``, leaf by leaf.

    se = std(ddof=1) / sqrt(R) for R replicas (0 for R = 1).  NaNs propagate (a replica
    with no high-quality sample makes the reverse-KL mean NaN: report it, do not hide it).
    Returns: ``(mean_tree, se_tree)`` with float64 numpy leaves.
    """
    def _mean(a):
        return np.mean(np.asarray(a, np.float64), axis=axis)

    def _se(a):
        a = np.asarray(a, np.float64)
        r = a.shape[axis]
        return np.std(a, axis=axis, ddof=1) / np.sqrt(r) if r > 1 else np.zeros_like(_mean(a))

    return jax.tree_util.tree_map(_mean, tree), jax.tree_util.tree_map(_se, tree)


# --------------------------------------------------------------------------
# Pictures (matplotlib Figure objects: no pyplot state, headless (Agg) when saved).


def _new_axes(ax, figsize=(4.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")


def plot_samples_2d(samples, modes=None, path=None, title: str = "", ax=None, size: float = 2.0, *,
                    std=None, reference=None, frame=None):
    """Scatter plot of 2-D samples (small dots) with the mode centres as red crosses.

    The axes show ``frame`` = ``(xmin, xmax, ymin, ymax)``, by default
    :func:`~sajax.evaluate.pictures.frame_for` of the modes (their box widened by
    max(3σ, a quarter of its side)), else of the 0.5 %–99.5 % range of ``reference``, else of
    the samples themselves: a few far samples never shrink the picture.  The title's last line
    counts what the frame leaves out: "N of M samples outside the frame".

    Args:
      samples: ``[n, 2]``; modes: ``[M, 2]`` or None; path: write a PNG there if given;
      title: axes title; ax: draw into this matplotlib axes (else a new figure); size: dot size;
      std: the modes' standard deviation σ (scalar or ``[M]``), for the margin;
      reference: ``[N, 2]`` data of the target, framing the picture when no modes are given;
      frame: explicit limits, overriding the above.
    Returns: ``(fig, ax)``.
    """
    x = np.asarray(samples, np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"samples must have shape [n, 2], got {x.shape}")
    if frame is None:
        frame = frame_for(modes, x if reference is None else reference, std=std)
    fig, ax = _new_axes(ax)
    ax.scatter(x[:, 0], x[:, 1], s=size, c="k", alpha=0.4, linewidths=0)
    if modes is not None:
        m = np.asarray(modes, np.float64)
        ax.scatter(m[:, 0], m[:, 1], s=40, c="r", marker="x", linewidths=1.0)
    ax.set_xlim(frame[0], frame[1])
    ax.set_ylim(frame[2], frame[3])
    ax.set_aspect("equal")
    note = outside_note(x, frame)
    ax.set_title(f"{title}\n{note}" if title else note, fontsize=9)   # fits a 3-inch panel
    _save(fig, path)
    return fig, ax


def plot_samples_grid(panels: dict, modes=None, path=None, size: float = 2.0, panel_size: float = 3.0, *,
                      std=None, reference=None, frame=None):
    """Several :func:`plot_samples_2d` panels side by side, one per ``{title: samples}`` item.

    All panels share one frame (``frame``, else that of the modes, else of the ``reference``
    data's 0.5 %–99.5 % range, else of all panels' samples together; ``std`` as in
    :func:`plot_samples_2d`), and each title counts its samples outside it.  Returns the figure.
    """
    from matplotlib.figure import Figure

    if not panels:
        raise ValueError("panels must map at least one title to samples [n, 2]")
    if frame is None and modes is None and reference is None:
        reference = np.concatenate([np.asarray(v, np.float64).reshape(-1, 2) for v in panels.values()])
    if frame is None:
        frame = frame_for(modes, reference, std=std)
    fig = Figure(figsize=(panel_size * len(panels), panel_size))
    axes = fig.subplots(1, len(panels), squeeze=False, sharex=True, sharey=True)[0]
    for ax, (title, samples) in zip(axes, panels.items()):
        plot_samples_2d(samples, modes, title=str(title), ax=ax, size=size, frame=frame)
    fig.tight_layout()
    _save(fig, path)
    return fig


def plot_density_2d(log_density_fn: Callable, extent=None, path=None, ax=None,
                    resolution: int = 200, log_scale: bool = False, title: str = "", *, modes=None, std=None):
    """Heat map of an unnormalized 2-D density exp(log_density_fn(x)) on a regular grid.

    Args:
      log_density_fn: ``[K, 2] -> [K]`` (unnormalized) log density, called once on all grid
        points (e.g. a random field's potential u_θ, Eq. 38).
      extent: ``(xmin, xmax, ymin, ymax)``; default: the frame of :func:`plot_samples_2d` for
        ``modes`` ``[M, 2]`` (with σ = ``std``) when given, else (-5, 5, -5, 5).
      resolution: grid points per axis.
      log_scale: show the log density, floored 15 nats below its maximum (one high mode no
        longer hides the others, nor a far tail the colors), instead of exp(log p − max log p).
    Returns: ``(fig, ax)``.
    """
    resolution = check_positive_int("resolution", resolution, minimum=2)
    if extent is None:
        extent = (-5.0, 5.0, -5.0, 5.0) if modes is None else frame_for(modes, std=std)
    x0, x1, y0, y1 = (float(e) for e in extent)
    gx, gy = np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))
    grid = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], axis=-1), jnp.float32)
    logp = np.asarray(log_density_fn(grid), np.float64).reshape(resolution, resolution)
    finite = logp[np.isfinite(logp)]
    if finite.size == 0:
        raise ValueError("log_density_fn returned no finite value on the grid")
    z = np.maximum(logp, np.max(finite) - 15.0) if log_scale else np.exp(logp - np.max(finite))
    fig, ax = _new_axes(ax)
    ax.imshow(z, origin="lower", extent=(x0, x1, y0, y1), cmap="viridis", aspect="equal")
    ax.set_title(title)
    _save(fig, path)
    return fig, ax
