"""Named training recipes: a model, an estimator, an optimizer, data and an
evaluation, put together with defaults that a ``--set key=value`` overrides.

A recipe is data (a dict of defaults) plus the shared :func:`build` that turns
a config into the pieces ``sajax.sa.fit`` needs.  The registries below are also
what ``sajax list`` prints.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np
import optax


class Entry(NamedTuple):
    """One line of ``sajax list``: a name, what it is, and where the review has it."""

    summary: str
    section: str
    build: Optional[Callable] = None


def _variational(name):
    def build(spec, cfg):
        from sajax.estimators import variational as v

        k = int(cfg["k"])
        if name == "reparam":
            return v.reparam_elbo(spec.model, spec.guide, num_samples=k, kl=cfg.get("kl", "mc"))
        return getattr(v, {"reinforce": "reinforce_elbo", "stl": "stl_elbo", "iwae": "iwae",
                           "dreg": "dreg"}[name])(spec.model, spec.guide, num_samples=k)
    return build


def _discrete(name):
    def build(spec, cfg):
        from sajax.estimators import discrete as d

        k = int(cfg["k"])
        if name in ("vimco", "rloo"):
            return getattr(d, name)(spec.model, spec.guide, num_samples=k)
        if name == "nvil":
            return d.nvil(spec.model, spec.guide, x_dim=spec.x_dim)
        if name == "reinforce-bernoulli":
            return d.reinforce(spec.model, spec.guide, num_samples=k)
        # relaxations and MuProp/DisARM sample layer by layer: they take the whole spec
        if name == "gumbel":
            return d.gumbel_softmax(spec.model, spec, temperature=float(cfg["temperature"]), hard=True)
        return getattr(d, {"muprop": "muprop", "disarm": "disarm",
                           "straight-through": "straight_through"}[name])(spec.model, spec)
    return build


def _wake_sleep(name):
    def build(spec, cfg):
        from sajax.estimators.wake_sleep import rws, wake_sleep

        if name == "wake-sleep":
            return wake_sleep(spec.model, spec.guide)
        return rws(spec.model, spec.guide, num_samples=int(cfg["k"]), phi_update=cfg["phi_update"])
    return build


def _jsa(spec, cfg):
    from sajax.estimators.jsa import jsa

    return jsa(spec.model, spec.guide, num_examples=cfg["_num_examples"],
                   num_moves=int(cfg["moves"]), num_proposals=int(cfg["k"]))


ESTIMATORS = {
    "reinforce": Entry("REINFORCE ELBO: θ by ∇log p(x,h), φ by learning signal × score", "3.2.1, Algorithm 3", _variational("reinforce")),
    "reparam": Entry("reparameterized ELBO, Monte Carlo or analytic KL (--set kl=analytic)", "3.2.1, Eq. 13 / Eq. 8", _variational("reparam")),
    "stl": Entry("sticking-the-landing / path-derivative ELBO gradient (Roeder et al. 2017)", "3.2.1, after Eq. 13", _variational("stl")),
    "iwae": Entry("importance-weighted bound I_K (Burda et al. 2015)", "3.2.1, Eq. 19", _variational("iwae")),
    "dreg": Entry("IWAE with doubly-reparameterized inference gradient (Tucker et al. 2019)", "3.2.1, Eq. 19", _variational("dreg")),
    "reinforce-bernoulli": Entry("REINFORCE on discrete latents", "3.2.1, Algorithm 3", _discrete("reinforce-bernoulli")),
    "nvil": Entry("NVIL: centering, input-dependent baseline, variance normalization (Mnih & Gregor 2014)", "3.2.1 (2)", _discrete("nvil")),
    "muprop": Entry("MuProp: Taylor control variate around the mean field (Gu et al. 2015)", "3.2.1 (2)", _discrete("muprop")),
    "vimco": Entry("VIMCO: I_K with leave-one-out baselines (Mnih & Rezende 2016)", "3.2.1 (2), Eq. 19", _discrete("vimco")),
    "rloo": Entry("REINFORCE leave-one-out on the ELBO (Kool et al. 2019)", "3.2.1 (2)", _discrete("rloo")),
    "disarm": Entry("DisARM antithetic gradient for Bernoulli latents (Dong et al. 2020)", "3.2.1 (2)", _discrete("disarm")),
    "straight-through": Entry("straight-through estimator, biased (Bengio et al. 2013)", "3.2.1 (2)", _discrete("straight-through")),
    "gumbel": Entry("Gumbel-softmax / binary Concrete, straight-through, biased (Jang et al. 2017)", "3.2.1 (2)", _discrete("gumbel")),
    "wake-sleep": Entry("wake-sleep: wake θ on q samples, sleep φ on model samples", "3.2.2, Algorithm 4", _wake_sleep("wake-sleep")),
    "rws": Entry("reweighted wake-sleep: wake-θ, wake/sleep/wake+sleep φ (Bornschein & Bengio 2015)", "3.2.2, Eq. 23, 25", _wake_sleep("rws")),
    "jsa": Entry("joint stochastic approximation with the MIS kernel and a per-example latent cache", "3.2.3, Algorithm 5, Eq. 26-27", _jsa),
}

MODELS = {
    "iwae1": Entry("VAE, one stochastic layer: 50 Gaussian latents, tanh 200-200 in p and q (Burda et al. 2015)", "3.1.2, Eq. 4"),
    "iwae2": Entry("DLGM, two stochastic layers: 100 then 50 latents, q 200-200 / 100-100, p mirrored", "3.1.1, Eq. 3"),
    "sbn": Entry("sigmoid belief net, Bernoulli layers, linear or MLP transforms (--set layers=200,200 kind=linear)", "3.1.1, Eq. 2"),
}

KERNELS = {
    "mis": Entry("Metropolis independence sampler, per-example weight ratio (p(x) cancels)", "3.2.3, footnote 14"),
}

_COMMON = dict(seed=0, epochs=10.0, batch_size=100, lr=1e-3, k=1, kl="mc", binarization="dynamic",
               train_split="train", eval_k=5000, eval_n=10000, eval_batch=100, eval_every=0,
               memory_budget_mb=1024, layers="200", kind="linear", phi_update="wake+sleep",
               moves=1, temperature=0.5, lr_decay="none")

RECIPES = {
    "vae-mnist": Entry("VAE (reparameterized ELBO, K=1) on dynamically binarized MNIST, one stochastic layer", "3.2.1",
                       dict(_COMMON, model="iwae1", estimator="reparam")),
    "iwae-mnist": Entry("IWAE on MNIST, one stochastic layer; --set k=50", "3.2.1, Eq. 19",
                        dict(_COMMON, model="iwae1", estimator="iwae", k=5)),
    "iwae2-mnist": Entry("IWAE on MNIST, two stochastic layers (100-50)", "3.2.1, Eq. 19",
                         dict(_COMMON, model="iwae2", estimator="iwae", k=5)),
    "sbn-jsa": Entry("JSA on a linear SBN (200 Bernoulli latents), binarized MNIST", "3.2.3, Algorithm 5",
                     dict(_COMMON, model="sbn", estimator="jsa", k=1, lr=3e-4, binarization="fixed", eval_k=1000)),
    "sbn-rws": Entry("reweighted wake-sleep (wake+sleep φ, K=5) on a linear SBN", "3.2.2, Eq. 23, 25",
                     dict(_COMMON, model="sbn", estimator="rws", k=5, lr=3e-4, binarization="fixed", eval_k=1000)),
    "sbn-vimco": Entry("VIMCO (K=5) on a linear SBN", "3.2.1 (2)",
                       dict(_COMMON, model="sbn", estimator="vimco", k=5, lr=3e-4, binarization="fixed", eval_k=1000)),
    "sbn-nvil": Entry("NVIL on a linear SBN", "3.2.1 (2)",
                      dict(_COMMON, model="sbn", estimator="nvil", k=1, lr=3e-4, binarization="fixed", eval_k=1000)),
}


def config_for(recipe: str, overrides: dict[str, str] | None = None) -> dict:
    """The recipe's defaults with ``key=value`` string overrides parsed to the default's type.

    Raises ValueError for an unknown recipe, an unknown key or a value of the wrong type.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    cfg = dict(RECIPES[recipe].build)
    for key, raw in (overrides or {}).items():
        if key not in cfg:
            raise ValueError(f"unknown --set key {key!r} for recipe {recipe!r}; known keys: {sorted(cfg)}")
        default = cfg[key]
        try:
            cfg[key] = type(default)(float(raw)) if isinstance(default, int) and not isinstance(default, bool) \
                and float(raw).is_integer() else type(default)(raw)
        except ValueError:
            raise ValueError(f"--set {key}={raw!r}: expected a {type(default).__name__} "
                             f"(default {default!r})") from None
    if cfg["estimator"] not in ESTIMATORS:
        raise ValueError(f"unknown estimator {cfg['estimator']!r}; choose one of {sorted(ESTIMATORS)}")
    if cfg["model"] not in MODELS:
        raise ValueError(f"unknown model {cfg['model']!r}; choose one of {sorted(MODELS)}")
    if cfg["binarization"] not in ("dynamic", "fixed"):
        raise ValueError(f"binarization must be 'dynamic' or 'fixed', got {cfg['binarization']!r}")
    if cfg["k"] < 1:
        raise ValueError(f"k must be >= 1, got {cfg['k']}")
    return cfg


class Pieces(NamedTuple):
    """Everything ``fit`` and the evaluation need, built from a config."""

    spec: Any
    estimator: Any
    optimizer: Any
    params: Any
    train: np.ndarray
    test: np.ndarray
    preprocess: Optional[Callable]


def build_model(cfg: dict, x_dim: int = 784):
    """The model spec (protocols + init) named by ``cfg['model']``."""
    if cfg["model"] == "iwae1":
        from sajax.models.vae import iwae_one_layer

        return iwae_one_layer(x_dim)
    if cfg["model"] == "iwae2":
        from sajax.models.vae import iwae_two_layer

        return iwae_two_layer(x_dim)
    from sajax.models.sbn import sbn

    layers = tuple(int(s) for s in str(cfg["layers"]).split(",") if s)
    return sbn(x_dim, latent_sizes=layers, kind=cfg["kind"])


def build(cfg: dict, *, load_data: Callable | None = None) -> Pieces:
    """Build model, estimator, optimizer, initial params and data for ``cfg``.

    ``load_data(split) -> [N, 784]`` defaults to :func:`sajax.data.load_mnist`.
    """
    from sajax import data as D

    load = load_data or D.load_mnist
    train = np.asarray(load(cfg["train_split"]), np.float32)
    test = np.asarray(load("test"), np.float32)
    test = D.fixed_binarize(test, seed=cfg["seed"] + 1)
    if cfg["binarization"] == "fixed":
        train, preprocess = D.fixed_binarize(train, seed=cfg["seed"]), None
    else:
        preprocess = D.dynamic_binarize
    spec = build_model(cfg, train.shape[1])
    cfg = dict(cfg, _num_examples=train.shape[0])
    estimator = ESTIMATORS[cfg["estimator"]].build(spec, cfg)
    params = spec.init(jax.random.PRNGKey(cfg["seed"]))
    if cfg["estimator"] == "nvil":
        from sajax.estimators.discrete import nvil_baseline

        params["baseline"] = nvil_baseline(spec.x_dim)[0](jax.random.PRNGKey(cfg["seed"] + 7))
    lr = cfg["lr"]
    if cfg["lr_decay"] == "iwae":
        from sajax.sa import iwae_schedule

        lr = iwae_schedule(train.shape[0] // cfg["batch_size"], base=cfg["lr"],
                           epoch_scale=cfg["epochs"] / 3280.0)
    elif cfg["lr_decay"] != "none":
        raise ValueError(f"lr_decay must be 'none' or 'iwae', got {cfg['lr_decay']!r}")
    optimizer = optax.adam(lr, eps=1e-4)
    return Pieces(spec, estimator, optimizer, params, train, test, preprocess)
