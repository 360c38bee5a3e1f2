"""Sample pictures: image grids written as PNG (matplotlib, no display needed); the frame of
a 2-D scatter or density picture, fitted to the data's support with what falls outside counted
(:func:`frame_for`, :func:`outside_note`); sample panels saved for a cheap redraw."""
from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from sajax.core import LatentVariableModel, check_positive_int

__all__ = ["can_sample", "frame_for", "image_grid", "load_panels", "outside_count", "outside_note", "sample_grid",
           "save_image_grid", "save_panels"]


def image_grid(images, nrow: int = 10, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images into one grayscale array.

    Args:
      images: ``[N, H, W]`` or ``[N, D]`` with D a perfect square (28·28 for MNIST).
      nrow: images per row of the grid.
      padding: pixels of ``pad_value`` between and around the images.
    Returns: float array ``[rows·(H+p)+p, nrow·(W+p)+p]`` with values clipped to [0, 1],
    rows = ceil(N / nrow).
    """
    arr = np.asarray(images, np.float32)
    if arr.ndim == 2:
        side = math.isqrt(arr.shape[1])
        if side * side != arr.shape[1]:
            raise ValueError(f"images of shape [N, D] need D to be a perfect square (e.g. 784 = 28*28), "
                             f"got D = {arr.shape[1]}; pass [N, H, W] instead")
        arr = arr.reshape(arr.shape[0], side, side)
    if arr.ndim != 3 or arr.shape[0] == 0:
        raise ValueError(f"images must have shape [N, H, W] or [N, D] with N >= 1, got {np.shape(images)}")
    nrow = check_positive_int("nrow", nrow)
    padding = check_positive_int("padding", padding, minimum=0)
    n, h, w = arr.shape
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    grid = np.full((rows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value, np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top:top + h, left:left + w] = arr[i]
    return np.clip(np.nan_to_num(grid, nan=0.0), 0.0, 1.0)


def save_image_grid(images, path, nrow: int = 10, padding: int = 2, pad_value: float = 1.0) -> Path:
    """Write :func:`image_grid` of ``images`` (values in [0, 1]) as a grayscale PNG at ``path``.

    One image pixel is one PNG pixel.  Returns the path.
    """
    import matplotlib.image as mpimg   # no pyplot: works headless without choosing a backend

    grid = image_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mpimg.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return path


def can_sample(model) -> bool:
    """Whether :func:`sample_grid` can picture ``model``: it has a ``sample``
    (a :class:`LatentVariableModel`, :class:`~sajax.core.EnergyModel` with a
    sampler, or :class:`~sajax.core.ImplicitGenerator`)."""
    return callable(getattr(model, "sample", None))


def sample_grid(model, params_model, key, path, n: int = 100, nrow: int = 10) -> np.ndarray:
    """Draw ``n`` samples from the model and save them as a PNG grid.

    For a :class:`LatentVariableModel` (``sample(θ, key, n) -> (x, h)``) the
    pictures are the means of p_θ(x|h) (``model.mean``; Bernoulli
    probabilities for binary data) when it has one, else the sampled x.
    For a sample-only model (``sample(θ, key, n) -> x``: an implicit
    generator, an energy model's sampler) they are the samples.

    Args:
      model: any model with a ``sample``; params_model: its parameter group.
    Returns: the pictured array ``[n, D]``.
    """
    n = check_positive_int("n", n)
    if not can_sample(model):
        raise ValueError(f"{type(model).__name__} has no sample function: cannot draw sample pictures")
    out = model.sample(params_model, key, n)
    if isinstance(model, LatentVariableModel):
        x, h = out
        images = model.mean(params_model, h) if model.mean is not None else x
    else:
        images = out
    images = np.asarray(jnp.asarray(images, jnp.float32))
    save_image_grid(images, path, nrow=nrow)
    return images


# --------------------------------------------------------------------------
# The frame of a 2-D picture (scatter or density): fitted to the data's support, never to
# a few far samples; what falls outside is counted, not silently clipped.


def _points_2d(name: str, value, minimum: int = 1) -> np.ndarray:
    x = np.asarray(value, np.float64)
    if x.ndim != 2 or x.shape[1] != 2 or x.shape[0] < minimum:
        raise ValueError(f"{name} must have shape [n, 2] with n >= {minimum}, got {x.shape}")
    return x


def frame_for(modes=None, data=None, *, std=None, margin: float = 0.25, num_std: float = 3.0,
              quantiles=(0.005, 0.995)) -> tuple:
    """Axis limits ``(xmin, xmax, ymin, ymax)`` of a 2-D picture, fitted to the data's support.

    The support is the bounding box of the mode centres ``modes`` ``[M, 2]`` when given, else
    the ``quantiles`` range (0.5 %–99.5 %) of ``data`` ``[n, 2]`` on each axis (non-finite rows
    ignored), so a few far outliers do not move it.  Each side is then widened by
    pad = max(num_std·σ, margin·w), with σ the largest mode standard deviation ``std`` (scalar
    or ``[M]``; none: 0) and w the box's larger side; pad = 1 if both are 0 (a single point).

    >>> grid = np.stack(np.meshgrid([-4., -2., 0., 2., 4.], [-4., -2., 0., 2., 4.]), -1).reshape(-1, 2)
    >>> frame_for(grid, std=0.05)      # 25 modes: their box [-4, 4]² widened by 0.25 · 8
    (-6.0, 6.0, -6.0, 6.0)
    """
    if modes is not None:
        box = _points_2d("modes", modes)
        low, high = box.min(axis=0), box.max(axis=0)
    elif data is not None:
        x = _points_2d("data", data)
        x = x[np.all(np.isfinite(x), axis=1)]
        q0, q1 = (float(q) for q in quantiles)
        if not 0.0 <= q0 < q1 <= 1.0 or x.shape[0] == 0:
            raise ValueError(f"need 0 <= quantiles[0] < quantiles[1] <= 1 and a finite data row, "
                             f"got quantiles {quantiles} and {x.shape[0]} finite rows")
        low, high = np.quantile(x, q0, axis=0), np.quantile(x, q1, axis=0)
    else:
        raise ValueError("frame_for needs the modes or the data whose support the picture shows")
    sigma = 0.0 if std is None else float(np.max(np.asarray(std, np.float64)))
    pad = max(num_std * sigma, margin * float(np.max(high - low))) or 1.0
    return (float(low[0] - pad), float(high[0] + pad), float(low[1] - pad), float(high[1] + pad))


def outside_count(samples, frame) -> int:
    """Number of rows of ``samples`` ``[n, 2]`` outside the closed box ``frame`` =
    ``(xmin, xmax, ymin, ymax)``; a row with a NaN coordinate counts as outside."""
    x = _points_2d("samples", samples, minimum=0)
    x0, x1, y0, y1 = (float(f) for f in frame)
    inside = (x[:, 0] >= x0) & (x[:, 0] <= x1) & (x[:, 1] >= y0) & (x[:, 1] <= y1)
    return int(np.count_nonzero(~inside))


def outside_note(samples, frame) -> str:
    """``"N of M samples outside the frame"`` for the title of a picture framed by ``frame``."""
    return f"{outside_count(samples, frame):,} of {len(samples):,} samples outside the frame"


def save_panels(path, panels: dict) -> Path:
    """Write ``{title: samples [n, 2]}`` (every panel the same n) as a compressed ``.npz``
    (``titles`` and ``samples`` ``[P, n, 2]`` float32), so a picture is redrawn without training."""
    if not panels:
        raise ValueError("panels must map at least one title to samples [n, 2]")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, titles=np.array([str(t) for t in panels]),
                        samples=np.stack([np.asarray(v, np.float32) for v in panels.values()]))
    return path


def load_panels(path) -> dict:
    """``{title: samples [n, 2]}`` as written by :func:`save_panels`."""
    with np.load(Path(path), allow_pickle=False) as f:
        return {str(t): np.asarray(x) for t, x in zip(f["titles"], f["samples"])}
