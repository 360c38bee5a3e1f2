"""A small stand-in for the MNIST pickle (no network in tests), trusted by its
hash ($SAJAX_MNIST_SHA256) as a user's own file would be."""
import contextlib
import gzip
import hashlib
import pickle

import numpy as np
import pytest


@contextlib.contextmanager
def fake_mnist_dir(data_dir, sizes=(200, 40, 60), seed=0):
    """Write train/valid/test splits of ``sizes`` grey 784-pixel images to
    ``data_dir/mnist.pkl.gz`` and point the loader at it while the context lasts."""
    rng = np.random.default_rng(seed)
    split = lambda n: (rng.uniform(size=(n, 784)).astype(np.float32) ** 3, rng.integers(0, 10, n))
    with gzip.open(data_dir / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(split(n) for n in sizes), f)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAJAX_DATA_DIR", str(data_dir))
        mp.setenv("SAJAX_MNIST_SHA256", hashlib.sha256((data_dir / "mnist.pkl.gz").read_bytes()).hexdigest())
        yield data_dir
