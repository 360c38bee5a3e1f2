"""Sample pictures: image grids written as PNG (matplotlib, no display needed)."""
from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from sajax.core import LatentVariableModel, check_positive_int

__all__ = ["can_sample", "image_grid", "save_image_grid", "sample_grid"]


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
