"""What a recipe's run is made of (:class:`Pieces`) and the parts every family
shares: its data (MNIST binarized, MNIST with labels, a 2-D toy density, the
generated text corpus), its step sizes and its optimizers.  A leaf of the
recipe layer: it reads configs (``sajax.recipes``) and builds nothing itself.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import optax


class Pieces(NamedTuple):
    """Everything ``fit`` and the evaluation need, built from a config.

    ``family`` (``sajax.recipes.FAMILIES``) says how the run is built and
    ``evaluation`` how it is scored (``sajax._recipe_eval.EVALUATORS``);
    ``labels`` are the training labels of conditional recipes (else None);
    ``require_binary`` asks ``fit`` to check that the data is binary; ``valid`` is
    the validation set of recipes that stop early on it (else None); ``proposal``
    ``(NoiseModel, φ)`` is the LM whose draws estimate a TRF's log Z_l (φ is replaced
    by the trained ``params["sampler"]`` where the estimator trains one).
    """

    spec: Any
    estimator: Any
    optimizer: Any
    params: Any
    train: np.ndarray
    test: np.ndarray
    preprocess: Optional[Callable]
    family: str = "latent"
    labels: Optional[np.ndarray] = None
    require_binary: bool = True
    valid: Optional[np.ndarray] = None
    evaluation: str = "iw_nll"
    draws: Any = None
    proposal: Any = None


class Data(NamedTuple):
    """A recipe's data: ``train`` (probabilities when ``preprocess`` binarizes each
    visit, else final), ``test``, the training ``labels`` and the text ``vocab`` (or None)."""

    train: np.ndarray
    test: np.ndarray
    preprocess: Optional[Callable] = None
    labels: Optional[np.ndarray] = None
    vocab: Any = None


def load_datasets(cfg: dict, load_data: Callable | None = None) -> Data:
    """MNIST: test fixed-binarized (seed+1); train binarized once (fixed) or left as
    probabilities for ``dynamic_binarize`` (checked to be in [0, 1])."""
    from sajax import data as D

    load = load_data or D.load_mnist
    train = np.asarray(load(cfg["train_split"]), np.float32)
    test = np.asarray(load("test"), np.float32)
    D.check_probabilities(train, name=f"MNIST {cfg['train_split']} images")
    test = D.fixed_binarize(test, seed=cfg["seed"] + 1)
    if cfg["binarization"] == "fixed":
        return Data(D.fixed_binarize(train, seed=cfg["seed"]), test)
    return Data(train, test, D.dynamic_binarize)


def toy_data(cfg: dict, load_data=None) -> Data:
    """A fixed toy training set (seed) and a held-out one of 2,500 points (seed + 1)."""
    from sajax.data import toy_dataset

    n = int(cfg["num_train"]) or None
    return Data(toy_dataset(cfg["dataset"], n, seed=cfg["seed"]), toy_dataset(cfg["dataset"], 2500, seed=cfg["seed"] + 1))


def mnist_with_labels(cfg: dict, load_data=None) -> Data:
    """MNIST grey levels in [0, 1] (not binarized) with the training labels (zeros for ``load_data``)."""
    from sajax import data as D

    if load_data is not None:
        train, test = (np.asarray(load_data(s), np.float32) for s in ("train", "test"))
        return Data(train, test, labels=np.zeros(len(train), np.int32))
    (train, y), (test, _) = (D.load_mnist(s, with_labels=True) for s in ("train", "test"))
    return Data(np.asarray(train, np.float32), np.asarray(test, np.float32), labels=np.asarray(y, np.int32))


def text_data(cfg: dict, load_data=None) -> Data:
    """int32 token rows (16 tokens) of the seeded generated corpus, split 90/10, and its vocabulary."""
    from sajax.data import Vocab, split_corpus, text, text_corpus

    sentences = text_corpus(int(cfg["num_sentences"]), seed=cfg["seed"])
    vocab = Vocab.from_sentences(sentences)
    x = text.encode(sentences, vocab, max_len=16)
    train, _, test = split_corpus(x, (0.9, 0.0, 0.1), seed=cfg["seed"])
    return Data(train, test, vocab=vocab)


# the ``data`` column of sajax.recipes.MODELS
DATA = {"mnist": load_datasets, "toy": toy_data, "mnist_labels": mnist_with_labels, "text": text_data}


def steps_per_epoch(cfg: dict, num_examples: int) -> int:
    return max(num_examples // cfg["batch_size"], 1)


def learning_rate(cfg: dict, num_examples: int):
    """``cfg['lr']`` under ``cfg['lr_decay']``: a float or an optax schedule of the step."""
    from sajax.sa import iwae_schedule, robbins_monro

    per_epoch = steps_per_epoch(cfg, num_examples)
    if cfg.get("lr_decay") == "iwae":
        return iwae_schedule(per_epoch, base=cfg["lr"], epoch_scale=cfg["epochs"] / 3280.0)
    if cfg.get("lr_decay") == "harmonic":  # lr / (1 + 9 t / T): lr/10 at the last step T
        return robbins_monro(cfg["lr"], tau=max(cfg["epochs"] * per_epoch, 1.0) / 9.0)
    return cfg["lr"]


def make_optimizer(cfg: dict, num_examples: int) -> optax.GradientTransformation:
    """Adam (ε = 1e-4, the IWAE paper's) at :func:`learning_rate`."""
    return optax.adam(learning_rate(cfg, num_examples), eps=1e-4)


def players(cfg: dict, first, second, extra=None, wrap=None) -> optax.GradientTransformation:
    """One Adam per group: the groups ``first`` at ``lr``, the groups ``second`` (the
    critic, the sampler) at ``critic_lr`` (0: ``lr``; TTUR otherwise); ``extra``
    ``{group: transform}`` is chained after a group's Adam (WGAN's clipping); ``wrap``
    ``{group: adam -> transform}`` replaces a group's Adam by what it makes of it (a TRF's
    ζ by SGD, :func:`zeta_by_sgd`); with ``n_critic`` > 1 the critic and the generator
    alternate (WGAN)."""
    from sajax import sa

    lr2 = float(cfg.get("critic_lr", 0.0)) or float(cfg["lr"])
    adam = lambda lr: optax.adam(lr, b1=float(cfg.get("beta1", 0.9)))  # noqa: E731
    first, second = (g if isinstance(g, tuple) else (g,) for g in (first, second))
    transforms = {**{g: adam(float(cfg["lr"])) for g in first}, **{g: adam(lr2) for g in second}}
    for g, make in (wrap or {}).items():
        transforms[g] = make(transforms[g])
    for g, tx in (extra or {}).items():
        transforms[g] = optax.chain(transforms[g], tx)
    n_critic = int(cfg.get("n_critic", 1))
    schedule = sa.alternate(critic=n_critic, generator=1) if n_critic > 1 else None
    return sa.per_group(transforms, schedule=schedule)


def zeta_by_sgd(zeta_lr: float):
    """``adam -> transform`` of a TRF's potential group: its ``"zeta"`` leaf by plain SGD at
    ``zeta_lr``, the SA recursion of Wang, Ou & Tan (2018) as written (the 1/π_l preconditioning
    of the ζ step kept, which Adam's per-leaf scaling would undo), the network by ``adam``."""
    import jax

    def labels(params):      # by path: inside per_group the other groups are masked, not removed
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "zeta" if getattr(path[-1], "key", None) == "zeta" else "net", params)

    def make(adam):
        return optax.multi_transform({"net": adam, "zeta": optax.sgd(zeta_lr)}, labels)
    return make
