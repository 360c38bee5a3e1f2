"""Toy 2-D densities: equal-weight mixtures of isotropic Gaussians.

DESIGN.md, "Data".  They are the standard multi-mode targets for the
mode-coverage experiments of Sec. 3.2.4 (adversarial learning: mode
collapse) and Sec. 4.2.2-4.2.3 (random fields learned with auxiliary
generators, exclusive- and inclusive-NRFs):

``ring8``
    8 Gaussians equally spaced on the unit circle (angles 2πk/8), std 0.01:
    the ring of PacGAN's mode-collapse benchmark (Lin et al. 2018, Sec. 5,
    Table 1; after Metz et al. 2017, unrolled GANs).
``grid25``
    25 Gaussians on the 5×5 grid {-4, -2, 0, 2, 4}², std 0.05
    (Srivastava et al. 2017, VEEGAN; PacGAN's grid).
``four_circles``
    The 32-mode density of Song & Ou (2018, "Learning neural random fields
    with inclusive auxiliary generators"), as in the authors' code: circles
    of radius 2, 3, 4, 5 with eight Gaussians each, at angles kπ/4 on radii 2
    and 4 and offset by π/8 on radii 3 and 5, std 0.1.  Their training set
    holds 50 points per mode (``toy_dataset("four_circles")``: 1,600 points).

Every density is p(x) = (1/M) Σ_m N(x; μ_m, σ² I).  Modes are returned in a
fixed order (circle by circle, counter-clockwise from angle 0; grid row-major
in (x, y)), so a mode index is meaningful for coverage counts.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import check_positive_int

TOY_DENSITIES = ("ring8", "grid25", "four_circles")

_STD = {"ring8": 0.01, "grid25": 0.05, "four_circles": 0.1}
# training-set sizes of the papers' set-ups: PacGAN 100k points, Song & Ou 50 a mode
_DEFAULT_SIZE = {"ring8": 100_000, "grid25": 100_000, "four_circles": 1_600}


def _circle(radius: float, n: int, offset: float = 0.0) -> np.ndarray:
    angle = 2.0 * np.pi * np.arange(n) / n + offset
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def _modes_np(name: str) -> np.ndarray:
    if name == "ring8":
        return _circle(1.0, 8)
    if name == "grid25":
        g = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
        return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)
    if name == "four_circles":
        return np.concatenate([_circle(r, 8, 0.0 if r in (2.0, 4.0) else np.pi / 8)
                               for r in (2.0, 3.0, 4.0, 5.0)], axis=0)
    raise ValueError(f"name must be one of {TOY_DENSITIES}, got {name!r}")


def toy_modes(name: str) -> jax.Array:
    """Mode centres μ_m of a toy density, float32 ``[M, 2]`` (M = 8, 25, 32)."""
    return jnp.asarray(_modes_np(name), dtype=jnp.float32)


def toy_std(name: str) -> float:
    """Standard deviation σ of every mixture component of a toy density."""
    _modes_np(name)  # validates the name
    return _STD[name]


def toy_2d(name: str, key: jax.Array, n: int) -> jax.Array:
    """``n`` samples of a toy 2-D density, float32 ``[n, 2]``.

    Ancestral sampling of the equal-weight mixture: a mode index
    m ~ Uniform{0..M-1}, then x = μ_m + σ ε with ε ~ N(0, I).

    Args:
      name: one of :data:`TOY_DENSITIES`.
      key: PRNG key.
      n: number of samples (positive int, static under jit).
    """
    modes = toy_modes(name)
    n = check_positive_int("n", n)
    k_mode, k_noise = jax.random.split(key)
    index = jax.random.randint(k_mode, (n,), 0, modes.shape[0])
    noise = jax.random.normal(k_noise, (n, 2), dtype=jnp.float32)
    return modes[index] + _STD[name] * noise


def toy_log_prob(name: str, x: jax.Array) -> jax.Array:
    """Exact log-density log p(x) of a toy density, ``[..., 2] -> [...]``.

    log p(x) = logsumexp_m [ -|x - μ_m|² / (2σ²) ] - log M - log(2πσ²).
    """
    modes = toy_modes(name)
    std = _STD[name]
    x = jnp.asarray(x, dtype=jnp.float32)
    if x.shape[-1:] != (2,):
        raise ValueError(f"x must have shape [..., 2], got {x.shape}")
    sq = jnp.sum((x[..., None, :] - modes) ** 2, axis=-1)
    return (jax.nn.logsumexp(-0.5 * sq / std**2, axis=-1)
            - math.log(modes.shape[0]) - math.log(2.0 * math.pi * std**2))


def toy_dataset(name: str, n: int | None = None, seed: int = 0) -> np.ndarray:
    """A fixed training set of a toy density, float32 ``[n, 2]`` (numpy).

    ``n`` defaults to the papers' sizes: 100,000 points for ``ring8`` and
    ``grid25`` (PacGAN), 1,600 for ``four_circles`` (Song & Ou: 50 a mode).
    When ``n`` is a multiple of the number of modes every mode gets exactly
    ``n / M`` points (stratified, as Song & Ou's set); otherwise modes are
    drawn at random.  Same ``(name, n, seed)``, same array.
    """
    modes = _modes_np(name)
    n = _DEFAULT_SIZE[name] if n is None else check_positive_int("n", n)
    rng = np.random.default_rng(seed)
    m = modes.shape[0]
    index = np.repeat(np.arange(m), n // m) if n % m == 0 else rng.integers(0, m, n)
    rng.shuffle(index)
    x = modes[index] + _STD[name] * rng.standard_normal((n, 2))
    return x.astype(np.float32)
