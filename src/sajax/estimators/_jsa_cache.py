"""JSA's per-example latent cache: layout, compact encoding, and public access
(review Sec. 3.2.3; the chain state z = (h_1, ..., h_n) of Proposition 2).

Storage (``cache="packed"``, the default): all Bernoulli leaves of an example
are concatenated and bit-packed into ceil(d/8) uint8 bytes (d = total binary
latents), categorical leaves are stored as class indices (uint8 for C <= 256),
continuous leaves as float32.  ``cache="dense"`` keeps float32 leaves as they
are (for debugging).

The layout of the latents (their pytree structure and per-example shapes)
is read from the guide's abstract output (``jax.eval_shape``), so it costs
nothing at run time and is static under ``jit``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import GUIDE, ConditionalSampler, require_groups

__all__ = ["JSAState", "fresh_state", "cache_nbytes", "jsa_state", "jsa_latents", "LATENT_KINDS", "CACHE_MODES"]

LATENT_KINDS = ("bernoulli", "categorical", "continuous")
CACHE_MODES = ("packed", "dense")


class JSAState(NamedTuple):
    """The JSA chain state z = (h_1, ..., h_n): one latent sample per training example.

    Attributes:
      cache: dict of arrays with leading axis N (number of training examples):
        ``"bits"`` ``[N, ceil(d/8)]`` uint8 packed Bernoulli latents (packed mode),
        ``"leaf<i>"`` the stored form of latent leaf i otherwise (categorical
        indices or float32 values).
      step: int32 scalar, the JSA iterations done so far (the cache schedule,
        ``jsa(..., cache_from=s)``, reads it: the state alone decides whether
        the cache is in use, so a resumed run is bit-exact across the switch).
      written: int32 ``[N]``, the iteration at which each example's row was
        last written (0 for ``init``'s draws); ``step - written`` is the age
        of a cached latent.
    """

    cache: dict
    step: jax.Array
    written: jax.Array


def fresh_state(cache: dict, step: int = 0) -> JSAState:
    """A :class:`JSAState` holding ``cache`` rows, all written at iteration ``step``."""
    n = jax.tree_util.tree_leaves(cache)[0].shape[0]
    return JSAState(cache, jnp.asarray(step, jnp.int32), jnp.full((n,), step, jnp.int32))


def cache_nbytes(state: JSAState) -> int:
    """Bytes held by the latent cache (``n * d / 8`` for d packed binary latents, d a multiple of 8)."""
    return int(sum(np.prod(a.shape) * np.dtype(a.dtype).itemsize
                   for a in jax.tree_util.tree_leaves(state.cache)))


class _Leaf(NamedTuple):
    kind: str
    shape: tuple          # per-example event shape
    dtype: Any


class _Format(NamedTuple):
    """How latents are stored: one kind per leaf (or one for all), packed or dense."""

    latent: Union[str, tuple]
    packed: bool


def check_format(latent: Union[str, Sequence[str]], cache: str) -> _Format:
    """The storage format for ``latent``/``cache`` options, or ValueError."""
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
    kinds = (latent,) if isinstance(latent, str) else tuple(latent)
    for kind in kinds:
        if kind not in LATENT_KINDS:
            raise ValueError(f"latent kinds must be in {LATENT_KINDS}, got {kind!r}")
    return _Format(latent if isinstance(latent, str) else kinds, cache == "packed")


def layout(guide, phi, x, fmt: _Format):
    """(leaf specs, treedef) of one example's latents, from abstract shapes only."""
    h_shape, _ = jax.eval_shape(
        lambda p, xx: guide.sample_and_log_prob(p, jax.random.PRNGKey(0), xx, 1),
        phi, jax.ShapeDtypeStruct((1,) + tuple(np.shape(x)[1:]), jnp.float32))
    leaves, treedef = jax.tree_util.tree_flatten(h_shape)
    kinds = (fmt.latent,) * len(leaves) if isinstance(fmt.latent, str) else fmt.latent
    if len(kinds) != len(leaves):
        raise ValueError(f"latent names {len(kinds)} kinds but the guide's latents have "
                         f"{len(leaves)} leaves")
    specs = tuple(_Leaf(k, tuple(s.shape[2:]), s.dtype) for k, s in zip(kinds, leaves))
    for s in specs:
        if s.kind == "categorical" and not s.shape:
            raise ValueError("a categorical latent leaf needs a trailing one-hot axis")
    return specs, treedef


def _n_bits(specs) -> int:
    return sum(int(np.prod(s.shape)) for s in specs if s.kind == "bernoulli")


def _storage_dtype(s: _Leaf, packed: bool):
    if packed and s.kind == "categorical":
        c = s.shape[-1]
        return jnp.uint8 if c <= 256 else (jnp.uint16 if c <= 65536 else jnp.int32)
    return jnp.float32


def row_format(specs, packed: bool) -> dict:
    """Stored arrays of one example: name -> (per-example shape, dtype)."""
    rows = {}
    for i, s in enumerate(specs):
        if packed and s.kind == "bernoulli":
            continue
        shape = s.shape[:-1] if packed and s.kind == "categorical" else s.shape
        rows[f"leaf{i}"] = (shape, np.dtype(_storage_dtype(s, packed)))
    if packed and _n_bits(specs):
        rows["bits"] = ((-(-_n_bits(specs) // 8),), np.dtype(np.uint8))
    return rows


def encode(h, specs, packed: bool) -> dict:
    """Latents with leaves [B, ...] -> stored rows {name: [B, ...]}."""
    rows, bits = {}, []
    for i, (a, s) in enumerate(zip(jax.tree_util.tree_leaves(h), specs)):
        if packed and s.kind == "bernoulli":
            bits.append((a > 0.5).reshape(a.shape[0], -1).astype(jnp.uint8))
        elif packed and s.kind == "categorical":
            rows[f"leaf{i}"] = jnp.argmax(a, axis=-1).astype(_storage_dtype(s, packed))
        else:
            rows[f"leaf{i}"] = a.astype(jnp.float32)
    if bits:
        rows["bits"] = jnp.packbits(jnp.concatenate(bits, axis=1), axis=1)
    return rows


def decode(rows: dict, specs, treedef, packed: bool):
    """Stored rows {name: [B, ...]} -> latents with leaves [B, ...] in the guide's structure."""
    out, offset = [], 0
    if "bits" in rows:
        unpacked = jnp.unpackbits(rows["bits"], axis=1, count=_n_bits(specs)).astype(jnp.float32)
    for i, s in enumerate(specs):
        if packed and s.kind == "bernoulli":
            size = int(np.prod(s.shape))
            a = unpacked[:, offset:offset + size].reshape((-1,) + s.shape)
            offset += size
        elif packed and s.kind == "categorical":
            a = jax.nn.one_hot(rows[f"leaf{i}"], s.shape[-1], dtype=jnp.float32)
        else:
            a = rows[f"leaf{i}"]
        out.append(a.astype(s.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)


def check_state(state, specs, packed: bool, n: int) -> None:
    """ValueError unless ``state`` is a JSAState whose cache has this format (static check)."""
    cache = getattr(state, "cache", None)
    if not isinstance(cache, dict):
        raise ValueError(f"JSA's state must be a JSAState (from init or jsa_state), "
                         f"got {type(state).__name__}")
    want = {k: ((n,) + shape, dtype) for k, (shape, dtype) in row_format(specs, packed).items()}
    got = {k: (tuple(np.shape(v)), np.dtype(v.dtype)) for k, v in cache.items()}
    if tuple(np.shape(getattr(state, "written", ()))) != (n,):
        got["written"] = np.shape(getattr(state, "written", ()))
    if got != want:
        raise ValueError(
            f"JSA's state does not fit this estimator's cache (N={n} rows, latent and cache "
            f"options, the guide's latents): expected arrays {want}, got {got}. Build it with the "
            "estimator's init, or jsa_state(..., latent=..., cache=...) with the same options")


def _check_latent_values(leaves, specs) -> None:
    for i, (a, s) in enumerate(zip(leaves, specs)):
        if isinstance(a, jax.core.Tracer) or s.kind == "continuous":
            continue
        arr = np.asarray(a)
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"latents leaf {i} ({s.kind}) must hold values in {{0, 1}}")
        if s.kind == "categorical" and not np.all(arr.sum(-1) == 1):
            raise ValueError(f"latents leaf {i} (categorical) must be one-hot on its last axis")


def jsa_state(guide: ConditionalSampler, params, data, latents, *,
              latent: Union[str, Sequence[str]] = "bernoulli", cache: str = "packed") -> JSAState:
    """A JSA chain state holding the given latents: z = (h_1, ..., h_N).

    Use it to start the chains from chosen latents (e.g. exact posterior
    draws, or a previous run's samples) instead of ``init``'s draws from q.
    The next ``estimate`` of :func:`~sajax.estimators.jsa` reads exactly these
    latents back as each example's current chain state (bit-exact: packing
    is lossless for binary and one-hot values).

    Args:
      guide: the ConditionalSampler given to ``jsa`` (its output fixes the layout).
      params: parameter groups with ``GUIDE`` (φ).
      data: the training set ``[N, ...]`` (as given to ``init``; only its shape is read).
      latents: the guide's latent structure with leaves ``[N, ...]`` (no
        sample axis): Bernoulli leaves in {0, 1}, categorical leaves one-hot.
      latent, cache: the same options as given to ``jsa``.

    Returns:
      :class:`JSAState` for ``jsa(..., latent=latent, cache=cache)`` on this training set.

    Example:
      >>> import jax, sajax
      >>> spec = sajax.models.sbn(8, (4, 3))
      >>> params = spec.init(jax.random.PRNGKey(0))
      >>> train = jax.numpy.ones((5, 8))
      >>> h = (jax.numpy.ones((5, 4)), jax.numpy.zeros((5, 3)))   # one latent per example
      >>> state = sajax.estimators.jsa_state(spec.guide, params, train, h)
      >>> back = sajax.estimators.jsa_latents(spec.guide, params, train, state)
      >>> [bool((a == b).all()) for a, b in zip(back, h)]
      [True, True]
    """
    fmt = check_format(latent, cache)
    (phi,) = require_groups(params, (GUIDE,), "jsa_state")
    specs, treedef = layout(guide, phi, data, fmt)
    leaves, tree = jax.tree_util.tree_flatten(latents)
    if tree != treedef:
        raise ValueError(f"latents must have the guide's structure {treedef}, got {tree}")
    n = np.shape(data)[0]
    for i, (a, s) in enumerate(zip(leaves, specs)):
        if tuple(np.shape(a)) != (n,) + s.shape:
            raise ValueError(f"latents leaf {i} must have shape {(n,) + s.shape} "
                             f"([N, ...] with N = len(data)), got {tuple(np.shape(a))}")
    _check_latent_values(leaves, specs)
    return fresh_state(encode(latents, specs, fmt.packed))


def jsa_latents(guide: ConditionalSampler, params, data, state: JSAState, *,
                latent: Union[str, Sequence[str]] = "bernoulli", cache: str = "packed"):
    """The latents held in a JSA chain state (inverse of :func:`jsa_state`):
    the guide's latent structure with leaves ``[N, ...]``, e.g. the chains'
    current posterior samples after training."""
    fmt = check_format(latent, cache)
    (phi,) = require_groups(params, (GUIDE,), "jsa_latents")
    specs, treedef = layout(guide, phi, data, fmt)
    check_state(state, specs, fmt.packed, np.shape(data)[0])
    return decode(state.cache, specs, treedef, fmt.packed)
