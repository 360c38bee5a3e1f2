"""How a recipe's run is scored, per model: :data:`EVALUATORS` (the final
evaluation) and :data:`EVAL_FNS` (the periodic one during training), keyed by
the ``evaluation`` column of ``sajax.recipes.MODELS`` (default: the family).

* ``latent``: the importance-weighted test NLL (Eq. 19's bound at large K) and
  samples of p_θ(x).
* ``toy_modes`` / ``class_samples`` (Sec. 3.2.4): PacGAN's mode metrics and a
  scatter plot (2-D), or per-class sample grids, class accuracy and a
  classifier-feature Fréchet distance (MNIST).
* ``ali`` (Sec. 3.2.4 item 4), ``avb`` (Sec. 3.2.1, Eq. 15-16): mode metrics and
  reconstructions; samples.
* ``energy`` / ``rbm`` (Sec. 4): covered modes and density maps; AIS test
  log-likelihood.
* ``tractable`` (Sec. 3.1.3): exact test NLL.  ``text`` (Sec. 3.2.1 item 3): KL,
  active units, IW perplexity and decoded samples.
* ``trf`` (Sec. 4.1, random fields over sentences): test perplexity with log Z_l
  estimated by importance sampling from the run's LSTM LM, ζ_l against it (a plot),
  and resampled sentences.  ``lm``: an LSTM LM's exact test perplexity and samples.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from sajax.core import GENERATOR, MODEL, POTENTIAL, SAMPLER


def _sample_group(model) -> str:
    from sajax.core import EnergyModel, ImplicitGenerator

    if isinstance(model, ImplicitGenerator):
        return GENERATOR
    return POTENTIAL if isinstance(model, EnergyModel) else MODEL


def evaluate_latent(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
    """Test NLL by importance sampling (K = ``eval_k``) if the spec has a guide with a
    density, and a sample grid if the model samples."""
    from sajax.evaluate import can_sample, iw_nll, sample_grid, supports_iw_nll

    out = {}
    spec = pieces.spec
    if supports_iw_nll(spec.model, getattr(spec, "guide", None)):
        test = pieces.test[: int(cfg["eval_n"])]
        t0 = time.perf_counter()
        nll = iw_nll(spec.model, spec.guide, params, jax.random.PRNGKey(cfg["seed"] + 2), test,
                     num_samples=int(cfg["eval_k"]), batch_size=int(cfg["eval_batch"]),
                     memory_budget_mb=int(cfg["memory_budget_mb"]), progress=progress)
        out.update(test_nll=float(nll), eval_k=int(cfg["eval_k"]), eval_n=int(len(test)),
                   eval_seconds=round(time.perf_counter() - t0, 2))
    if can_sample(spec.model):
        sample_grid(spec.model, params[_sample_group(spec.model)], jax.random.PRNGKey(cfg["seed"] + 3),
                    run_dir / "samples.png")
        out["samples"] = str(run_dir / "samples.png")
    return out


def latent_eval_fn(pieces, cfg: dict):
    """A quick test NLL during training (K = 100, 1,000 test images) every ``eval_every`` epochs, or None."""
    from sajax.evaluate import iw_nll, supports_iw_nll

    if cfg.get("eval_every", 0) <= 0 or not supports_iw_nll(pieces.spec.model, getattr(pieces.spec, "guide", None)):
        return None
    x = pieces.test[:1000]

    def eval_fn(params, step):
        return {"test_nll_k100": float(iw_nll(pieces.spec.model, pieces.spec.guide, params,
                                              jax.random.PRNGKey(step), x, num_samples=100))}
    return eval_fn


def toy_report(samples, cfg: dict, run_dir: Path, title: str) -> dict:
    """PacGAN's mode metrics of ``samples`` and a scatter plot with the mode centres."""
    from sajax.data import toy_modes, toy_std
    from sajax.evaluate import mode_coverage, plot_samples_2d

    modes, std = toy_modes(cfg["dataset"]), toy_std(cfg["dataset"])
    cov = mode_coverage(samples, modes, std)
    plot_samples_2d(np.asarray(samples), modes, run_dir / "samples.png", title=title, std=std)
    return {"modes": int(cov.modes), "num_modes": int(modes.shape[0]),
            "high_quality": round(float(cov.high_quality), 4), "reverse_kl": round(float(cov.reverse_kl), 4),
            "eval_samples": int(samples.shape[0]), "samples": str(run_dir / "samples.png")}


def _class_report(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
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


def evaluate_toy_modes(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
    """PacGAN's mode metrics and a scatter plot of ``eval_samples`` draws of G_θ."""
    x = pieces.spec.generator.sample(params[GENERATOR], jax.random.PRNGKey(cfg["seed"] + 3),
                                     int(cfg["eval_samples"]))
    return toy_report(x, cfg, run_dir, f"{cfg['estimator']} on {cfg['dataset']}")


class AliSpec(NamedTuple):
    decoder: Any
    encoder: Any
    critic: Any
    latent_dim: int


def evaluate_ali(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
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


def evaluate_avb(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
    """Samples of p_θ(x|h), h ~ p(h) (no IW-NLL: the implicit q has no density)."""
    from sajax.evaluate import sample_grid

    sample_grid(pieces.spec.model, params[MODEL], jax.random.PRNGKey(cfg["seed"] + 3), run_dir / "samples.png")
    return {"samples": str(run_dir / "samples.png")}


def langevin_samples(potential, theta, key, n: int, *, steps: int = 500, step_size: float = 0.01):
    """``n`` samples of p_θ ∝ exp(u_θ) by ``steps`` Langevin moves from N(0, 3² I)."""
    from sajax.kernels import langevin

    k0, k1 = jax.random.split(key)
    return langevin.run_chains(k1, 3.0 * jax.random.normal(k0, (n, 2)), lambda x: potential(theta, x), steps,
                               step_size)


def _energy_samples(pieces, params, cfg: dict, key) -> dict:
    """``{label: samples [eval_samples, 2]}``: Langevin chains of the potential for every method,
    and the estimator's own sample sets (``pieces.draws``: the NRF samplers' draws)."""
    u, n = pieces.spec.model.potential, int(cfg["eval_samples"])
    theta = {k: v for k, v in params[POTENTIAL].items() if k != "log_z"}
    out = {"langevin": langevin_samples(u, theta, key, n)}
    if pieces.draws is not None:
        out.update(pieces.draws(params, jax.random.fold_in(key, 1), n))
    return out


def evaluate_energy(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
    """Song & Ou's covered modes (mean over batches of 100; ``eval_samples`` = 10,000 in their
    set-up) and realistic ratio of every sample set, a density heat map and the samples."""
    from sajax.core import POTENTIAL
    from sajax.data import toy_modes, toy_std
    from sajax.evaluate import covered_modes, plot_density_2d, plot_samples_grid, realistic_ratio

    modes, std = toy_modes(cfg["dataset"]), toy_std(cfg["dataset"])
    sets = _energy_samples(pieces, params, cfg, jax.random.PRNGKey(cfg["seed"] + 3))
    theta = {k: v for k, v in params[POTENTIAL].items() if k != "log_z"}
    u = jax.jit(lambda x: pieces.spec.model.potential(theta, x))
    plot_density_2d(u, path=run_dir / "density.png", log_scale=True, modes=modes, std=std,
                    title="log density u(x), 15 nats below its maximum and up")
    plot_samples_grid({k: np.asarray(v) for k, v in sets.items()}, modes, run_dir / "samples.png", std=std)
    out = {"density": str(run_dir / "density.png"), "samples": str(run_dir / "samples.png"),
           "num_modes": int(modes.shape[0])}
    for label, x in sets.items():
        out[f"covered_modes_{label}"] = round(float(covered_modes(x, modes, 0.3, batch_size=100)), 3)
        out[f"realistic_ratio_{label}"] = round(float(realistic_ratio(x, modes, 0.3)), 4)
    return out


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


def evaluate_rbm(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
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


def evaluate_tractable(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
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


def evaluate_text(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
    """KL, active units, reconstruction, ELBO and the IW NLL per token / perplexity on
    the held-out sentences (:func:`sajax.evaluate.collapse_metrics`), and sentences
    decoded from prior draws (``samples.txt``)."""
    from sajax.evaluate import collapse_metrics

    t0 = time.perf_counter()
    spec = pieces.spec
    test = pieces.test[: int(cfg["eval_n"])]
    out = collapse_metrics(spec.model, spec.guide, params, jax.random.PRNGKey(cfg["seed"] + 2), test,
                           num_samples=int(cfg["eval_k"]))
    x, _ = spec.model.sample(params[MODEL], jax.random.PRNGKey(cfg["seed"] + 3), 10)
    return {**{k: round(float(v), 4) for k, v in out.items()}, "eval_n": int(len(test)),
            "samples": _write_sentences(x, cfg, run_dir / "samples.txt"),
            "eval_seconds": round(time.perf_counter() - t0, 1)}


def _write_sentences(x, cfg: dict, path: Path) -> str:
    from sajax._pieces import text_data
    from sajax.data import text

    path.write_text("\n".join(text.decode(np.asarray(x), text_data(cfg).vocab)) + "\n")
    return str(path)


def _perplexity_report(log_p, test) -> dict:
    from sajax.evaluate import token_perplexity

    out = token_perplexity(log_p, test)
    return {"nll": round(out.nll, 4), "nll_per_token": round(out.nll_per_token, 4),
            "perplexity": round(out.perplexity, 3), "eval_n": int(len(test))}


def plot_zeta(zeta, log_z, prior, path: Path, title: str = "") -> str:
    """ζ_l (learned) and log Ẑ_l (importance sampling) per length l where π_l > 0."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = np.arange(1, len(zeta) + 1)
    seen = np.asarray(prior) > 0
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(lengths[seen], np.asarray(zeta)[seen], "o-", label="ζ_l (learned)")
    ax.plot(lengths[seen], np.asarray(log_z)[seen], "x--", label="log Ẑ_l (importance sampling)")
    ax.set_xlabel("sentence length l")
    ax.set_ylabel("log normalizer")
    ax.set_title(title or "TRF normalizers per length")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def evaluate_trf(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
    """Test perplexity of a TRF with log Z_l by importance sampling (``eval_k`` draws of the
    run's LSTM LM: the trained sampler group, else NCE's fixed noise), the same with the learned
    ζ, the LM's own perplexity, ζ against log Ẑ (``zeta.png``) and resampled sentences."""
    from sajax.evaluate import trf_log_normalizers, trf_log_prob, trf_resample

    t0 = time.perf_counter()
    spec, (lm, phi) = pieces.spec, pieces.proposal
    phi = params.get(SAMPLER, phi)
    theta = params[POTENTIAL]
    test = pieces.test[: int(cfg["eval_n"])]
    key = jax.random.PRNGKey(cfg["seed"] + 2)
    norm = trf_log_normalizers(spec, theta, lm, phi, key, num_samples=int(cfg["eval_k"]))
    prior = np.exp(np.asarray(spec.log_length_prior, np.float64))
    zeta = np.asarray(theta["zeta"], np.float64)
    seen = prior > 0
    out = {**_perplexity_report(trf_log_prob(spec, theta, test, norm.log_z), test),
           "perplexity_with_zeta": round(_perplexity_report(trf_log_prob(spec, theta, test, zeta), test)["perplexity"], 3),
           "proposal_perplexity": _perplexity_report(np.asarray(lm.log_prob(phi, test)), test)["perplexity"],
           "min_ess": round(float(np.min(norm.ess[seen])), 1), "is_draws": norm.num_samples,
           "max_zeta_gap": round(float(np.max(np.abs(zeta - norm.log_z)[seen])), 3)}
    x = trf_resample(spec, theta, lm, phi, jax.random.PRNGKey(cfg["seed"] + 3), 10)
    out["samples"] = _write_sentences(x, cfg, run_dir / "samples.txt")
    out["zeta_plot"] = plot_zeta(zeta, norm.log_z, prior, run_dir / "zeta.png", f"TRF by {cfg['estimator']}")
    lengths = np.flatnonzero(seen) + 1
    (run_dir / "zeta_gap.json").write_text(json.dumps({"lengths": lengths.tolist(), "zeta": zeta[seen].tolist(),
                                                       "log_z": norm.log_z[seen].tolist(),
                                                       "ess": norm.ess[seen].tolist()}))
    return {**out, "eval_seconds": round(time.perf_counter() - t0, 1)}


def evaluate_lm(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
    """An LSTM LM's exact test perplexity (words + <eos>) and ancestral samples."""
    t0 = time.perf_counter()
    test = pieces.test[: int(cfg["eval_n"])]
    model = pieces.spec.model
    out = _perplexity_report(np.asarray(model.log_prob(params[MODEL], test)), test)
    out["samples"] = _write_sentences(model.sample(params[MODEL], jax.random.PRNGKey(cfg["seed"] + 3), 10), cfg,
                                      run_dir / "samples.txt")
    return {**out, "eval_seconds": round(time.perf_counter() - t0, 1)}


EVALUATORS = {"latent": evaluate_latent, "toy_modes": evaluate_toy_modes, "class_samples": _class_report,
              "ali": evaluate_ali, "avb": evaluate_avb, "energy": evaluate_energy, "rbm": evaluate_rbm,
              "tractable": evaluate_tractable, "text": evaluate_text, "trf": evaluate_trf, "lm": evaluate_lm}
# the periodic evaluation during training, where a model has one
EVAL_FNS = {"latent": latent_eval_fn, "rbm": rbm_eval_fn, "tractable": tractable_eval_fn}


def evaluate(pieces, params, cfg: dict, run_dir: Path, progress: bool = True) -> dict:
    """The final evaluation of a run (``pieces.evaluation``'s entry of :data:`EVALUATORS`);
    ``progress``: a progress bar where the evaluation is long (the IW-NLL)."""
    return EVALUATORS[pieces.evaluation](pieces, params, cfg, run_dir, progress=progress)


def eval_fn_for(pieces, cfg: dict):
    """The periodic evaluation during training, or None."""
    make = EVAL_FNS.get(pieces.evaluation)
    return make(pieces, cfg) if make else None
