"""Recipes whose models are not latent-variable models with a guide: how each
family's pieces are built and how its runs are evaluated (``sajax.recipes``
dispatches here on ``MODELS[name].family``).

* ``adversarial`` (Sec. 3.2.4): a generator and a critic (:func:`sajax.models.mlp_gan`
  on a 2-D toy density, :func:`sajax.models.dcgan` on MNIST, conditional for
  cGAN / AC-GAN); evaluated by PacGAN's mode metrics and a scatter plot (2-D)
  or per-class sample grids, class accuracy and a classifier-feature Fréchet
  distance (MNIST).
* ``ali`` (Sec. 3.2.4 item 4): generator, encoder and a critic on (x, z) pairs.
* ``avb`` (Sec. 3.2.1, Eq. 15-16): a VAE decoder, an implicit encoder and an
  adversary on (x, h) pairs.
* ``energy`` / ``rbm`` (Sec. 4): see :data:`BUILDERS`.
* ``tractable`` (Sec. 3.1.3): NADE, MADE and PixelCNN on binarized MNIST, trained
  by maximum likelihood and scored by their exact test NLL.
* ``text`` (Sec. 3.2.1 item 3): a text VAE (GRU encoder, GRU decoder over tokens)
  on the generated corpus of :mod:`sajax.data.text`, Gaussian or Bernoulli
  latents; scored by KL, active units and the IW perplexity.

Players get one Adam each (``beta1``; the second player's step size
``critic_lr``, TTUR when it differs) through :func:`sajax.sa.per_group`, on
the phase schedule ``alternate(critic=n_critic, generator=1)`` when
``n_critic > 1``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sajax.core import CRITIC, ENCODER, GENERATOR, GUIDE, MODEL


# --------------------------------------------------------------------------
# Shared pieces


def toy_data(cfg: dict):
    """``(train, test)``: a fixed toy training set (seed) and a held-out one (seed + 1)."""
    from sajax.data import toy_dataset

    n = int(cfg["num_train"]) or None
    return toy_dataset(cfg["dataset"], n, seed=cfg["seed"]), toy_dataset(cfg["dataset"], 2500, seed=cfg["seed"] + 1)


def mnist_with_labels(cfg: dict, load_data=None):
    """``(train, train_labels, test, test_labels)``: MNIST grey levels in [0, 1] (not binarized)."""
    from sajax import data as D

    if load_data is not None:
        train, test = (np.asarray(load_data(s), np.float32) for s in ("train", "test"))
        return train, np.zeros(len(train), np.int32), test, np.zeros(len(test), np.int32)
    (train, y), (test, y_test) = (D.load_mnist(s, with_labels=True) for s in ("train", "test"))
    return (np.asarray(train, np.float32), np.asarray(y, np.int32), np.asarray(test, np.float32),
            np.asarray(y_test, np.int32))


def players(cfg: dict, first, second, extra=None) -> optax.GradientTransformation:
    """One Adam per group: the groups ``first`` at ``lr``, the groups ``second`` (the
    critic, the sampler) at ``critic_lr`` (0: ``lr``; TTUR otherwise); ``extra``
    ``{group: transform}`` is chained after a group's Adam (WGAN's clipping); with
    ``n_critic`` > 1 the critic and the generator alternate (WGAN)."""
    from sajax import sa

    lr2 = float(cfg.get("critic_lr", 0.0)) or float(cfg["lr"])
    adam = lambda lr: optax.adam(lr, b1=float(cfg.get("beta1", 0.9)))
    first, second = (g if isinstance(g, tuple) else (g,) for g in (first, second))
    transforms = {**{g: adam(float(cfg["lr"])) for g in first}, **{g: adam(lr2) for g in second}}
    for g, tx in (extra or {}).items():
        transforms[g] = optax.chain(transforms[g], tx)
    n_critic = int(cfg.get("n_critic", 1))
    schedule = sa.alternate(critic=n_critic, generator=1) if n_critic > 1 else None
    return sa.per_group(transforms, schedule=schedule)


# --------------------------------------------------------------------------
# Adversarial: GANs on 2-D toy densities and conditional GANs on MNIST


def _adversarial_estimator(spec, cfg: dict, labels):
    from sajax import estimators as E

    g, c, name = spec.generator, spec.critic, cfg["estimator"]
    pack = int(cfg.get("pack", 1))
    if name in ("gan", "ns-gan"):
        return E.gan(g, c, generator_loss="minimax" if name == "gan" else "non-saturating", pack=pack)
    if name == "fgan":
        return E.fgan(g, c, divergence=cfg["divergence"], activation=cfg["activation"], pack=pack)
    if name == "wgan":
        return E.wgan(g, c, clip=float(cfg["clip"]), pack=pack)
    if name == "wgan-gp":
        return E.wgan_gp(g, c, penalty=float(cfg["penalty"]), pack=pack)
    if name == "hinge":
        return E.hinge_gan(g, c, pack=pack)
    if name == "cgan":
        return E.cgan(g, c, labels)
    return E.acgan(g, c, labels)


def _gan_spec(cfg: dict):
    from sajax.models import dcgan, mlp_gan

    name, sn = cfg["estimator"], bool(cfg.get("spectral_norm", 0))
    if cfg["model"] == "mlp-gan":
        return mlp_gan(x_dim=2, spectral_norm=sn, pack=int(cfg.get("pack", 1)))
    if name == "cgan":
        return dcgan(num_classes=10, spectral_norm=sn, conditioning="projection")
    if name == "acgan":
        return dcgan(num_classes=10, spectral_norm=sn, conditioning="acgan")
    return dcgan(spectral_norm=sn, pack=int(cfg.get("pack", 1)))


def build_adversarial(cfg: dict, load_data=None):
    """Pieces of a GAN recipe: toy data for ``mlp-gan``, MNIST (with labels) for ``dcgan``."""
    from sajax import estimators as E
    from sajax.recipes import Pieces

    labels = None
    if cfg["model"] == "mlp-gan":
        train, test = toy_data(cfg)
    else:
        train, labels, test, _ = mnist_with_labels(cfg, load_data)
    spec = _gan_spec(cfg)
    estimator = _adversarial_estimator(spec, cfg, labels)
    extra = {CRITIC: E.clip_critic(float(cfg["clip"]))} if cfg["estimator"] == "wgan" else None
    params = spec.init(jax.random.PRNGKey(cfg["seed"]))
    return Pieces(spec, estimator, players(cfg, GENERATOR, CRITIC, extra), params, train, test, None,
                  family="adversarial", labels=labels, require_binary=False)


def toy_report(samples, cfg: dict, run_dir: Path, title: str) -> dict:
    """PacGAN's mode metrics of ``samples`` and a scatter plot with the mode centres."""
    from sajax.data import toy_modes, toy_std
    from sajax.evaluate import mode_coverage, plot_samples_2d

    modes = toy_modes(cfg["dataset"])
    cov = mode_coverage(samples, modes, toy_std(cfg["dataset"]))
    plot_samples_2d(np.asarray(samples), modes, run_dir / "samples.png", title=title)
    return {"modes": int(cov.modes), "num_modes": int(modes.shape[0]),
            "high_quality": round(float(cov.high_quality), 4), "reverse_kl": round(float(cov.reverse_kl), 4),
            "eval_samples": int(samples.shape[0]), "samples": str(run_dir / "samples.png")}


def _class_report(pieces, params, cfg: dict, run_dir: Path) -> dict:
    """Per-class sample grid (rows = classes); class accuracy and classifier Fréchet distance."""
    import jax.numpy as jnp

    from sajax.evaluate import save_image_grid

    spec, key = pieces.spec, jax.random.PRNGKey(cfg["seed"] + 3)
    theta = params[GENERATOR]
    if spec.num_classes is None:
        x = spec.generator.sample(theta, key, 100)
        labels = None
    else:
        labels = jnp.repeat(jnp.arange(spec.num_classes), 10)
        x = spec.generator.sample(theta, key, labels.shape[0], labels)
    save_image_grid(np.asarray(x).reshape(-1, 28, 28), run_dir / "samples.png", nrow=10)
    out = {"samples": str(run_dir / "samples.png")}
    if int(cfg.get("eval_classifier", 0)):
        out.update(_classifier_metrics(spec, theta, cfg))
    return out


def _classifier_metrics(spec, theta, cfg: dict) -> dict:
    """Class accuracy of 10,000 conditional samples and the Fréchet distance of the
    classifier's features against the test set (NOT the Inception FID)."""
    import jax.numpy as jnp

    from sajax.evaluate import class_accuracy, feature_frechet_distance, load_or_train_mnist_classifier

    t0 = time.perf_counter()
    clf = load_or_train_mnist_classifier().params
    key = jax.random.PRNGKey(cfg["seed"] + 4)
    n = 10_000
    labels = jnp.arange(n) % 10 if spec.num_classes else None
    x = spec.generator.sample(theta, key, n, labels) if labels is not None else spec.generator.sample(theta, key, n)
    test = _test_images()
    out = {"frechet_classifier": float(feature_frechet_distance(clf, x, test))}
    if labels is not None:
        out["class_accuracy"] = float(class_accuracy(clf, x, labels))
    out["classifier_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _test_images():
    from sajax.data import load_mnist

    return np.asarray(load_mnist("test"), np.float32)


def evaluate_adversarial(pieces, params, cfg: dict, run_dir: Path) -> dict:
    if cfg["model"] != "mlp-gan":
        return _class_report(pieces, params, cfg, run_dir)
    x = pieces.spec.generator.sample(params[GENERATOR], jax.random.PRNGKey(cfg["seed"] + 3),
                                     int(cfg["eval_samples"]))
    return toy_report(x, cfg, run_dir, f"{cfg['estimator']} on {cfg['dataset']}")


# --------------------------------------------------------------------------
# ALI / BiGAN on a 2-D toy density; AVB on MNIST


def build_ali(cfg: dict, load_data=None):
    """ALI (Dumoulin et al. 2017) on a toy density: G_θ(z) and E_φ(x) MLPs, z ∈ R², and
    PacGAN's maxout critic on the pairs [x, z]."""
    from sajax import estimators as E
    from sajax.models import gaussian_encoder, mlp_decoder, mlp_gan
    from sajax.recipes import Pieces

    train, test = toy_data(cfg)
    decoder, encoder = mlp_decoder(2, 2, hidden=(400, 400)), gaussian_encoder(2, 2, hidden=(400, 400))
    pair = mlp_gan(x_dim=4, spectral_norm=bool(cfg.get("spectral_norm", 0)))
    k = jax.random.split(jax.random.PRNGKey(cfg["seed"]), 3)
    params = {GENERATOR: decoder.init(k[0]), ENCODER: encoder.init(k[1]), CRITIC: pair.init(k[2])[CRITIC]}
    spec = AliSpec(decoder, encoder, pair.critic, 2)
    estimator = E.ali(decoder.sampler, encoder.sampler, pair.critic, 2)
    return Pieces(spec, estimator, players(cfg, (GENERATOR, ENCODER), CRITIC), params, train, test, None,
                  family="ali", require_binary=False)


class AliSpec(NamedTuple):
    decoder: Any
    encoder: Any
    critic: Any
    latent_dim: int


def evaluate_ali(pieces, params, cfg: dict, run_dir: Path) -> dict:
    """Mode metrics of G_θ(z), z ~ N(0, I), and of the reconstructions G(E(x)) of held-out data."""
    import jax.numpy as jnp

    from sajax.estimators import ali_reconstruction

    spec, key = pieces.spec, jax.random.PRNGKey(cfg["seed"] + 3)
    n = int(cfg["eval_samples"])
    z = jax.random.normal(key, (n, spec.latent_dim))
    x = spec.decoder.sampler.sample(params[GENERATOR], jax.random.fold_in(key, 1), z, 1)[0]
    out = toy_report(x, cfg, run_dir, f"ALI on {cfg['dataset']}")
    rec = ali_reconstruction(spec.decoder.sampler, spec.encoder.sampler, params, jax.random.fold_in(key, 2),
                             jnp.asarray(pieces.test))
    out["reconstruction_mse"] = round(float(jnp.mean(jnp.sum((rec - pieces.test) ** 2, axis=-1))), 4)
    return out


def build_avb(cfg: dict, load_data=None):
    """AVB (Mescheder et al. 2017) on dynamically binarized MNIST: the IWAE paper's
    one-layer decoder (50 Gaussian latents), an implicit encoder h = f_φ([x, ε]) and an
    adversary T_ψ(x, h), a LeakyReLU MLP on [x, h]."""
    from sajax import estimators as E
    from sajax.models import implicit_encoder, iwae_one_layer, mlp_gan
    from sajax.recipes import Pieces, load_datasets

    train, test, preprocess = load_datasets(cfg, load_data)
    vae = iwae_one_layer(train.shape[1])
    encoder = implicit_encoder(train.shape[1], 50, hidden=(200, 200))
    adversary = mlp_gan(x_dim=train.shape[1] + 50, critic_hidden=(256, 256), maxout=None)
    k = jax.random.split(jax.random.PRNGKey(cfg["seed"]), 3)
    params = {MODEL: vae.init(k[0])[MODEL], GUIDE: encoder.init(k[1]), CRITIC: adversary.init(k[2])[CRITIC]}
    estimator = E.avb(vae.model, encoder.sampler, adversary.critic, num_samples=int(cfg["k"]))
    return Pieces(vae, estimator, players(cfg, (MODEL, GUIDE), CRITIC), params, train, test, preprocess,
                  family="avb", require_binary=preprocess is None)


def evaluate_avb(pieces, params, cfg: dict, run_dir: Path) -> dict:
    """Samples of p_θ(x|h), h ~ p(h) (no IW-NLL: the implicit q has no density)."""
    from sajax.evaluate import sample_grid

    sample_grid(pieces.spec.model, params[MODEL], jax.random.PRNGKey(cfg["seed"] + 3), run_dir / "samples.png")
    return {"samples": str(run_dir / "samples.png")}


# --------------------------------------------------------------------------
# Random fields (Sec. 4): a potential network on a 2-D toy density; RBMs on MNIST


def _energy_estimator(spec, cfg: dict, train, key):
    """``(estimator, extra params {group: ...})`` for ``cfg['estimator']`` on a potential."""
    from sajax import estimators as E
    from sajax.core import SAMPLER
    from sajax.models import batchnorm_generator, song_ou_toy_generator

    name, moves = cfg["estimator"], int(cfg.get("moves", 1))
    step = dict(step_size=float(cfg.get("step_size", 0.01)), noise_scale=float(cfg.get("noise_scale", 0.01)))
    if name == "pcd":
        return E.pcd(spec, "langevin", num_chains=int(cfg["num_chains"]), num_moves=moves, init="noise",
                     **step), {}
    if name == "nce":
        return E.nce(spec.model, E.fit_gaussian_noise(train), nu=float(cfg["nu"])), {}
    if name == "nrf-inclusive":
        sampler = song_ou_toy_generator(2)
        return E.inclusive_nrf(spec.model, sampler, num_moves=moves, potential_control=float(cfg["potential_control"]),
                               **step), {SAMPLER: sampler.init(key)}
    generator = batchnorm_generator(2)
    return E.exclusive_nrf(spec.model, generator), {SAMPLER: generator.init(key)}


class EnergyRun(NamedTuple):
    """What an energy recipe evaluates: the potential spec and, for the NRF methods,
    the auxiliary sampler (None for PCD and NCE)."""

    potential: Any
    sampler: Any = None


def build_energy(cfg: dict, load_data=None):
    """A potential network 2 → 100 → 100 → 1 (leaky ReLU, weight norm; Song & Ou's toy
    potential) trained by PCD-Langevin, NCE or an NRF method on a 2-D toy density."""
    from sajax.core import POTENTIAL, SAMPLER
    from sajax.estimators import with_log_z
    from sajax.models import mlp_potential
    from sajax.recipes import Pieces

    train, test = toy_data(cfg)
    spec = mlp_potential(2)
    k_pot, k_aux = jax.random.split(jax.random.PRNGKey(cfg["seed"]))
    params = spec.init(k_pot)
    estimator, extra = _energy_estimator(spec, cfg, train, k_aux)
    if cfg["estimator"] == "nce":
        params[POTENTIAL] = with_log_z(params[POTENTIAL])
    params.update(extra)
    opt = players(cfg, POTENTIAL, SAMPLER) if SAMPLER in params else optax.adam(cfg["lr"], b1=cfg["beta1"])
    return Pieces(EnergyRun(spec, estimator), estimator, opt, params, train, test, None, family="energy",
                  require_binary=False)


def langevin_samples(potential, theta, key, n: int, *, steps: int = 500, step_size: float = 0.01):
    """``n`` samples of p_θ ∝ exp(u_θ) by ``steps`` Langevin moves from N(0, 3² I)."""
    from sajax.kernels import langevin

    k0, k1 = jax.random.split(key)
    return langevin.run_chains(k1, 3.0 * jax.random.normal(k0, (n, 2)), lambda x: potential(theta, x), steps,
                               step_size)


def _energy_samples(pieces, params, cfg: dict, key) -> dict:
    """``{label: samples [10000, 2]}``: the NRF samplers' (raw, revised) or generator draws,
    and Langevin chains of the potential for every method."""
    from sajax.core import POTENTIAL, SAMPLER
    from sajax.estimators import inclusive_nrf_samples
    from sajax.models import song_ou_toy_generator

    u = pieces.spec.potential.model.potential
    theta = {k: v for k, v in params[POTENTIAL].items() if k != "log_z"}
    out = {"langevin": langevin_samples(u, theta, key, 10_000)}
    if cfg["estimator"] == "nrf-inclusive":
        draw = inclusive_nrf_samples(pieces.spec.potential.model, song_ou_toy_generator(2),
                                     num_moves=int(cfg["moves"]), step_size=float(cfg["step_size"]),
                                     noise_scale=float(cfg["noise_scale"]))
        out["raw"], out["revised"] = draw(params, jax.random.fold_in(key, 1), 10_000)
    elif cfg["estimator"] == "nrf-exclusive":
        from sajax.models import batchnorm_generator

        out["generator"] = batchnorm_generator(2).sample(params[SAMPLER], jax.random.fold_in(key, 1), 10_000)
    return out


def evaluate_energy(pieces, params, cfg: dict, run_dir: Path) -> dict:
    """Song & Ou's covered modes (mean over 100 batches of 100) and realistic ratio of
    every sample set, a density heat map and the samples."""
    from sajax.core import POTENTIAL
    from sajax.data import toy_modes
    from sajax.evaluate import covered_modes, plot_density_2d, plot_samples_grid, realistic_ratio

    modes = toy_modes(cfg["dataset"])
    sets = _energy_samples(pieces, params, cfg, jax.random.PRNGKey(cfg["seed"] + 3))
    theta = {k: v for k, v in params[POTENTIAL].items() if k != "log_z"}
    u = jax.jit(lambda x: pieces.spec.potential.model.potential(theta, x))
    plot_density_2d(u, extent=(-6.0, 6.0, -6.0, 6.0), path=run_dir / "density.png", log_scale=True,
                    title="log density u(x), 15 nats below its maximum and up")
    plot_samples_grid({k: np.asarray(v) for k, v in sets.items()}, modes, run_dir / "samples.png")
    out = {"density": str(run_dir / "density.png"), "samples": str(run_dir / "samples.png"),
           "num_modes": int(modes.shape[0])}
    for label, x in sets.items():
        out[f"covered_modes_{label}"] = round(float(covered_modes(x, modes, 0.3, batch_size=100)), 3)
        out[f"realistic_ratio_{label}"] = round(float(realistic_ratio(x, modes, 0.3)), 4)
    return out


def rbm_optimizer(cfg: dict, num_examples: int) -> optax.GradientTransformation:
    """SGD for RBMs as Hinton's practical guide (2010) trains them: momentum 0.5 for the
    first 5 epochs, then ``momentum``; L2 ``weight_decay`` on W only; the step ``lr``
    under ``lr_decay`` (``harmonic``: lr → lr/10 over the run, as natural_bm's CD-25
    reproduction of Salakhutdinov & Murray 2008 decays 0.01 → 0.001)."""
    from sajax.recipes import learning_rate, steps_per_epoch

    warm = 5 * steps_per_epoch(cfg, num_examples)
    momentum = optax.piecewise_constant_schedule(0.5, {warm: float(cfg["momentum"]) / 0.5})
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate(cfg, num_examples), momentum=momentum)
    only_w = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, _: getattr(path[-1], "key", None) == "W", params)
    return optax.chain(optax.add_decayed_weights(float(cfg["weight_decay"]), mask=only_w), sgd)


def base_rate_init(params: dict, train) -> dict:
    """Visible biases b_i = log p_i / (1 - p_i) of the training data's unit means (Hinton 2010, Sec. 8)."""
    from sajax.core import POTENTIAL

    p = np.clip(np.mean(np.asarray(train, np.float64), axis=0), 1e-3, 1.0 - 1e-3)
    theta = dict(params[POTENTIAL], b=jnp.asarray(np.log(p / (1.0 - p)), jnp.float32))
    return {**params, POTENTIAL: theta}


def build_rbm(cfg: dict, load_data=None):
    """A binary RBM (``hidden`` units) on binarized MNIST (fixed, or a fresh draw per visit),
    by PCD or CD-k with block Gibbs (CD's moves optionally raised from 1: ``ramp_moves``)."""
    from sajax import estimators as E
    from sajax.models import rbm
    from sajax.recipes import Pieces, load_datasets, steps_per_epoch

    train, test, preprocess = load_datasets(cfg, load_data)
    spec = rbm(train.shape[1], int(cfg["hidden"]))
    if cfg["estimator"] == "pcd":
        est = E.pcd(spec, "gibbs", num_chains=int(cfg["num_chains"]), num_moves=int(cfg["moves"]))
    else:
        total = cfg["epochs"] * steps_per_epoch(cfg, train.shape[0])
        ramp = max(int(round(float(cfg["ramp_moves"]) * total)), 1) if cfg["ramp_moves"] > 0 else None
        est = E.cd(spec, k=int(cfg["moves"]), ramp_steps=ramp)
    params = base_rate_init(spec.init(jax.random.PRNGKey(cfg["seed"])), train)
    return Pieces(spec, est, rbm_optimizer(cfg, train.shape[0]), params, train, test, preprocess, family="rbm",
                  require_binary=preprocess is None)


def rbm_eval_fn(pieces, cfg: dict):
    """A quick test log-likelihood during training (``eval/test_ll_ais1000``: AIS with 1,000
    temperatures × 100 runs, 1,000 test images) every ``eval_every`` epochs, or None.  Its
    log Z is biased low next to the final 14,500-temperature estimate: a curve, not a result."""
    from sajax.core import POTENTIAL
    from sajax.evaluate import ais_log_likelihood, rbm_ais

    if cfg.get("eval_every", 0) <= 0:
        return None
    test = pieces.test[:1000]

    def eval_fn(params, step):
        theta = params[POTENTIAL]
        res = rbm_ais(jax.random.PRNGKey(step), theta, num_temps=1000, num_runs=100, data=pieces.train)
        return {"test_ll_ais1000": float(ais_log_likelihood(pieces.spec.model.potential, theta, test, res))}

    return eval_fn


def evaluate_rbm(pieces, params, cfg: dict, run_dir: Path) -> dict:
    """Test log-likelihood with log Z from AIS (Salakhutdinov & Murray 2008: base-rate
    start, tempered Gibbs), its standard error, and Gibbs samples."""
    from sajax.core import POTENTIAL
    from sajax.evaluate import ais_log_likelihood, rbm_ais, save_image_grid

    t0 = time.perf_counter()
    theta = params[POTENTIAL]
    res = rbm_ais(jax.random.PRNGKey(cfg["seed"] + 2), theta, num_temps=int(cfg["ais_temps"]),
                  num_runs=int(cfg["ais_runs"]), data=pieces.train)
    test = pieces.test[: int(cfg["eval_n"])]
    ll = ais_log_likelihood(pieces.spec.model.potential, theta, test, res)
    x = pieces.spec.model.sample(theta, jax.random.PRNGKey(cfg["seed"] + 3), 100)
    save_image_grid(np.asarray(x).reshape(-1, 28, 28), run_dir / "samples.png")
    return {"test_log_likelihood": round(float(ll), 3), "log_z": round(float(res.log_z), 3),
            "log_z_se": round(float(res.log_z_se), 4), "ais_temps": int(cfg["ais_temps"]),
            "ais_runs": int(cfg["ais_runs"]), "eval_n": int(len(test)), "samples": str(run_dir / "samples.png"),
            "eval_seconds": round(time.perf_counter() - t0, 1)}


# --------------------------------------------------------------------------
# Fully visible autoregressive models (Sec. 3.1.3): exact likelihoods


def _tractable_spec(cfg: dict, x_dim: int):
    from sajax.models import made, nade, pixelcnn

    if cfg["model"] == "nade":
        return nade(x_dim, int(cfg["hidden"]))
    if cfg["model"] == "made":
        return made(x_dim, (int(cfg["hidden"]),), num_masks=int(cfg["num_masks"]), seed=cfg["seed"])
    side = int(round(x_dim ** 0.5))
    return pixelcnn(side, side, channels=int(cfg["channels"]))


def build_tractable(cfg: dict, load_data=None):
    """NADE / MADE (one random mask set per step when ``num_masks`` > 1) / PixelCNN
    on binarized MNIST, by maximum likelihood; with ``eval_every`` or ``patience`` the
    validation split (binarized once, seed + 2) for the exact validation NLL."""
    from sajax import data as D
    from sajax import estimators as E
    from sajax.recipes import Pieces, load_datasets

    train, test, preprocess = load_datasets(cfg, load_data)
    spec = _tractable_spec(cfg, train.shape[1])
    est = E.maximum_likelihood(spec.model, stochastic_log_prob=spec.random_mask_log_prob)
    params = spec.init(jax.random.PRNGKey(cfg["seed"]))
    valid = None
    if cfg["eval_every"] > 0 or cfg["patience"] > 0:
        valid = D.fixed_binarize(np.asarray((load_data or D.load_mnist)("valid"), np.float32), seed=cfg["seed"] + 2)
    return Pieces(spec, est, optax.adam(cfg["lr"]), params, train, test, preprocess, family="tractable",
                  require_binary=preprocess is None, valid=valid)


def exact_nll(log_prob, params, x, batch: int) -> np.ndarray:
    """-log p_θ(x) ``[N]`` (float64) of every row by a jitted exact ``log_prob``, ``batch`` rows a call."""
    fn = jax.jit(log_prob)
    return -np.concatenate([np.asarray(fn(params, x[i:i + batch])) for i in range(0, len(x), batch)]
                           ).astype(np.float64)


def tractable_eval_fn(pieces, cfg: dict):
    """The exact validation NLL during training (``eval/valid_nll``), or None without a validation set."""
    if pieces.valid is None:
        return None
    return lambda params, step: {"valid_nll": float(exact_nll(pieces.spec.model.log_prob, params[MODEL],
                                                                pieces.valid, int(cfg["eval_batch"])).mean())}


def evaluate_tractable(pieces, params, cfg: dict, run_dir: Path) -> dict:
    """Exact test NLL -mean log p_θ(x) (MADE: the mixture over its mask sets) and
    ancestral samples."""
    from sajax.evaluate import save_image_grid

    t0 = time.perf_counter()
    nll = exact_nll(pieces.spec.model.log_prob, params[MODEL], pieces.test[: int(cfg["eval_n"])],
                    int(cfg["eval_batch"]))
    x = pieces.spec.model.sample(params[MODEL], jax.random.PRNGKey(cfg["seed"] + 3), 36)
    side = int(round(x.shape[1] ** 0.5))
    save_image_grid(np.asarray(x).reshape(-1, side, side), run_dir / "samples.png")
    return {"test_nll": round(float(nll.mean()), 3), "test_nll_se": round(float(nll.std(ddof=1) / np.sqrt(len(nll))), 3),
            "eval_n": int(len(nll)), "samples": str(run_dir / "samples.png"),
            "eval_seconds": round(time.perf_counter() - t0, 1)}


# --------------------------------------------------------------------------
# Discrete observations (Sec. 3.2.1 item 3): a text VAE on the generated corpus


def text_data(cfg: dict):
    """``(train, test, vocab)``: int32 token rows of the seeded corpus, split 90/10."""
    from sajax.data import Vocab, split_corpus, text, text_corpus

    sentences = text_corpus(int(cfg["num_sentences"]), seed=cfg["seed"])
    vocab = Vocab.from_sentences(sentences)
    x = text.encode(sentences, vocab, max_len=16)
    train, _, test = split_corpus(x, (0.9, 0.0, 0.1), seed=cfg["seed"])
    return train, test, vocab


def build_text(cfg: dict, load_data=None):
    """A text VAE with Gaussian (``text-gauss``) or Bernoulli (``text-bern``) latents."""
    from sajax.models import text_vae
    from sajax.recipes import Pieces, build_estimator

    train, test, vocab = text_data(cfg)
    latent = "gaussian" if cfg["model"] == "text-gauss" else "bernoulli"
    spec = text_vae(vocab.size, train.shape[1], latent=latent, latent_dim=int(cfg["latent_dim"]))
    est = build_estimator(cfg, spec, train.shape[0])
    params = spec.init(jax.random.PRNGKey(cfg["seed"]))
    return Pieces(spec, est, optax.adam(cfg["lr"]), params, train, test, None, family="text",
                  labels=None, require_binary=False)


def evaluate_text(pieces, params, cfg: dict, run_dir: Path) -> dict:
    """KL, active units, reconstruction, ELBO and the IW NLL per token / perplexity on
    the held-out sentences (:func:`sajax.evaluate.collapse_metrics`), and sentences
    decoded from prior draws (``samples.txt``)."""
    from sajax.data import text
    from sajax.evaluate import collapse_metrics

    t0 = time.perf_counter()
    spec = pieces.spec
    test = pieces.test[: int(cfg["eval_n"])]
    out = collapse_metrics(spec.model, spec.guide, params, jax.random.PRNGKey(cfg["seed"] + 2), test,
                           k=int(cfg["eval_k"]))
    x, _ = spec.model.sample(params[MODEL], jax.random.PRNGKey(cfg["seed"] + 3), 10)
    lines = text.decode(x, text_data(cfg)[2])
    (run_dir / "samples.txt").write_text("\n".join(lines) + "\n")
    return {**{k: round(float(v), 4) for k, v in out.items()}, "eval_n": int(len(test)),
            "samples": str(run_dir / "samples.txt"), "eval_seconds": round(time.perf_counter() - t0, 1)}


BUILDERS = {"adversarial": build_adversarial, "ali": build_ali, "avb": build_avb, "energy": build_energy,
            "rbm": build_rbm, "tractable": build_tractable, "text": build_text}
# the periodic evaluation during training, for families that have one (the latent family's is in sajax.cli)
EVAL_FNS = {"rbm": rbm_eval_fn, "tractable": tractable_eval_fn}
EVALUATORS = {"adversarial": evaluate_adversarial, "ali": evaluate_ali, "avb": evaluate_avb,
              "energy": evaluate_energy, "rbm": evaluate_rbm, "tractable": evaluate_tractable,
              "text": evaluate_text}
