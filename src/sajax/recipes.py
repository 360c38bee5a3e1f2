"""Named training recipes: a model, an estimator, an optimizer, data and an
evaluation, put together with defaults that a ``--set key=value`` overrides.

This module is data and validation only: the settings (:data:`SETTINGS`), the
estimator, model, kernel and recipe tables that ``sajax list`` prints, and
:func:`config_for`, which checks a config before any data is loaded.  A table
entry says how its piece is built (a factory and a setting→argument map, see
:class:`Entry`); ``sajax._recipe_build.build`` reads the tables and returns the
pieces ``sajax.sa.fit`` needs, and ``sajax._recipe_eval`` scores a run.

Which settings matter depends on the model and the estimator: every config
holds the :data:`COMMON` keys plus the keys its model and its estimator name
in :data:`MODELS` / :data:`ESTIMATORS` (no ``temperature`` unless the
estimator is ``gumbel``).  :func:`config_for` checks every value, and that
the estimator fits the model's family and latents (the tables' ``family`` and
``latent`` columns) and the other settings (:data:`NEEDS`).
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Mapping, NamedTuple


_NONE = MappingProxyType({})


class Setting(NamedTuple):
    """One ``--set`` key: its default and what it means."""

    default: Any
    help: str


SETTINGS = {
    "model": Setting("iwae1", "model (sajax list)"),
    "estimator": Setting("reparam", "estimator (sajax list)"),
    "seed": Setting(0, "PRNG seed of initialization, data order and binarization"),
    "epochs": Setting(10.0, "training length in passes over the data (> 0, fractions allowed)"),
    "batch_size": Setting(100, "minibatch size B"),
    "lr": Setting(1e-3, "step size (> 0): Adam's; SGD's for RBMs"),
    "lr_decay": Setting("none", "'none', 'iwae' (3^i-epoch stages at lr·10^(-i/7), Burda et al.) or 'harmonic' "
                                "(lr / (1 + 9t/T): lr at the start, lr/10 at the end)"),
    "binarization": Setting("dynamic", "'dynamic' (fresh Bernoulli draw per visit) or 'fixed' (one seeded draw)"),
    "train_split": Setting("train", "MNIST split to train on: train, valid, test or train+valid"),
    "eval_k": Setting(5000, "importance samples K of the final test NLL"),
    "eval_n": Setting(10000, "test images in the final test NLL"),
    "eval_batch": Setting(100, "test images per evaluation call"),
    "eval_every": Setting(0, "evaluate a quick NLL (K=100, 1000 images; autoregressive models: the exact "
                             "validation NLL; RBMs: a quick AIS log-likelihood) every N epochs; 0: never"),
    "patience": Setting(0, "early stopping: end training after this many validation evaluations without "
                           "improvement and test the best parameters (autoregressive models); 0: off"),
    "memory_budget_mb": Setting(1024, "memory budget of the evaluation's K-chunks (MB)"),
    "k": Setting(1, "samples per example K (the estimator's num_samples; JSA: proposals per move)"),
    "kl": Setting("mc", "reparam's KL term: 'mc' or 'analytic'"),
    "layers": Setting("200", "SBN latent layer sizes, comma-separated (e.g. 200,200)"),
    "kind": Setting("linear", "SBN transforms: 'linear' or 'mlp'"),
    "phi_update": Setting("wake+sleep", "RWS inference update: 'wake', 'sleep' or 'wake+sleep'"),
    "moves": Setting(1, "kernel moves per step (Algorithm 2): JSA's chain samples per example; Langevin/Gibbs "
                        "moves of PCD, CD-k and the inclusive-NRF revision"),
    "cache_on_after": Setting(0.0, "JSA: share of the training steps after which each chain starts at its "
                                   "cached latent (before: at a fresh draw from q); 0 always, 1 never, "
                                   "0.6 the schedule of Ou & Song 2020"),
    "temperature": Setting(0.5, "Gumbel-softmax temperature τ (> 0)"),
    "pairs": Setting(1, "DisARM: antithetic pairs per example"),
    # 2-D toy data (adversarial and random-field recipes)
    "dataset": Setting("grid25", "2-D toy density: ring8, grid25 or four_circles (sajax.data.toy_dataset)"),
    "num_train": Setting(0, "toy training points; 0: the paper's size (100k ring/grid, 1,600 four circles)"),
    # several players (Sec. 3.2.4, 4.2)
    "beta1": Setting(0.5, "Adam β1 of every player (PacGAN 0.8, Song & Ou 0)"),
    "critic_lr": Setting(0.0, "step size of the second player (critic, sampler); 0: the same as lr"),
    "n_critic": Setting(1, "critic steps per generator step (WGAN: 5); 1: simultaneous updates"),
    "divergence": Setting("js", "f-GAN divergence: gan, js, kl, reverse_kl, pearson, squared_hellinger"),
    "activation": Setting("principled", "f-GAN output activation: principled g_f(v) = f'(e^v) (Eq. 36) or nowozin"),
    "pack": Setting(1, "PacGAN: samples the critic sees at once (must divide batch_size)"),
    "penalty": Setting(10.0, "WGAN-GP gradient-penalty weight λ (>= 0)"),
    "clip": Setting(0.01, "WGAN weight clipping bound c (> 0)"),
    "spectral_norm": Setting(0, "1: spectral normalization of every critic layer (SN-GAN)"),
    "eval_samples": Setting(2500, "generated samples for the 2-D mode metrics (PacGAN: 2,500; Song & Ou: 10,000)"),
    "eval_classifier": Setting(1, "1: class accuracy and Fréchet distance by the MNIST classifier (trained once)"),
    # random fields (Sec. 4)
    "num_chains": Setting(100, "persistent Markov chains (PCD, TRF-SA) / samples per step"),
    "step_size": Setting(0.01, "Langevin / SGLD gradient coefficient (> 0)"),
    "noise_scale": Setting(0.01, "Langevin / SGLD noise scale (>= 0; Song & Ou use 0.01)"),
    "nu": Setting(1.0, "NCE: noise samples per data sample ν (> 0)"),
    "potential_control": Setting(0.0, "inclusive-NRF: weight of the penalty on u(x)² (>= 0)"),
    "hidden": Setting(500, "hidden units of an RBM, NADE or MADE; the LSTM / CNN width of a TRF and an LSTM LM"),
    "num_masks": Setting(32, "MADE: mask sets (orders + connectivity) resampled in training, mixed at test"),
    "channels": Setting(32, "PixelCNN: channels of its masked convolutions"),
    "flow": Setting("planar", "flow in q: planar, radial, nice, realnvp or iaf"),
    "num_flows": Setting(10, "flow steps in q (0: the diagonal Gaussian q)"),
    "refine_steps": Setting(5, "SA-VAE: gradient steps refining each example's q (Kim et al. 2018)"),
    "num_sentences": Setting(20000, "sentences of the generated text corpus (sajax.data.text), 90/10 split"),
    "latent_dim": Setting(16, "text VAE: latent width (Bernoulli: bits)"),
    # random fields over sentences (Sec. 4.1; Wang & Ou 2017, 2018a,b)
    "potential": Setting("cnn", "TRF potential u_θ(x): 'cnn' (1-D convolutions) or 'bilstm'"),
    "embed": Setting(32, "TRF / LSTM LM: token embedding width"),
    "noise_epochs": Setting(1.0, "TRF: epochs of maximum-likelihood pre-training of the LSTM LM that is NCE's fixed "
                                 "noise and the starting point of DNCE's noise and the SA generator (>= 0)"),
    "zeta_lr": Setting(0.01, "TRF-SA: step size of ζ_l's SA update (plain SGD on ζ: Wang, Ou & Tan 2018)"),
    "alpha": Setting(0.25, "DNCE: data weight α of the interpolated data side α p̃ + (1 − α) q_φ, in (0, 1]"),
    "ais_temps": Setting(10000, "AIS: intermediate temperatures of the log Z estimate"),
    "ais_runs": Setting(100, "AIS: independent annealing runs"),
    "momentum": Setting(0.9, "RBM: SGD momentum from epoch 5 on (0.5 before; Hinton 2010's guide)"),
    "weight_decay": Setting(2e-4, "RBM: L2 weight decay on W (>= 0; Hinton 2010's guide)"),
    "ramp_moves": Setting(0.0, "CD: share of training over which the Gibbs moves rise from 1 to `moves` "
                               "(Salakhutdinov & Murray 2008); 0: `moves` from the start"),
}

COMMON = ("model", "estimator", "seed", "epochs", "batch_size", "lr")
# what every MNIST latent-variable model reads: its data and its IW-NLL evaluation
MNIST_LATENT = ("lr_decay", "binarization", "train_split", "eval_k", "eval_n", "eval_batch", "eval_every",
                "memory_budget_mb")
TOY = ("dataset", "num_train")
# fully visible autoregressive models: exact NLLs, validation-based early stopping
TRACTABLE = ("binarization", "train_split", "eval_n", "eval_batch", "eval_every", "patience")
PLAYERS = ("beta1", "critic_lr")

# Settings that may change when a run is resumed (the run continues the same
# SA recursion: only its length and the evaluation differ).
RESUMABLE = ("epochs", "eval_k", "eval_n", "eval_batch", "eval_every", "memory_budget_mb", "eval_samples",
             "eval_classifier", "ais_temps", "ais_runs", "patience")
# the settings ``sajax eval RUN --set`` may change
EVAL_KEYS = ("eval_k", "eval_n", "eval_batch", "memory_budget_mb", "eval_samples", "eval_classifier", "ais_temps",
             "ais_runs")

LATENT_KINDS = ("continuous", "discrete", "any")

# Model families: what kind of model a recipe trains, hence which estimators
# fit it, how its data is made and how it is evaluated (``Entry.family``).
FAMILIES = ("latent", "adversarial", "ali", "avb", "energy", "rbm", "tractable", "text", "trf", "lm")
TEXT = ("num_sentences", "latent_dim", "eval_k", "eval_n")
SENTENCES = ("num_sentences", "embed", "hidden", "eval_n")


class Entry(NamedTuple):
    """One line of ``sajax list``: a name, what it is, where the review has it, which
    latents it takes, which settings it reads, and how to build it, as data.

    The build fields name a factory of :mod:`sajax.estimators` (estimators) or
    :mod:`sajax.models` (models) and its arguments: ``inputs`` positional, ``args``
    ``{keyword: name}`` and ``options`` (names of ``{keyword: value}`` dicts merged
    in).  An input is a part of the model being built (``"model"``, ``"guide"``,
    ``"critic"``, ...) or a value derived from the config and the data
    (``sajax._recipe_build.DERIVED``); an ``args`` name is a setting of the config
    (left out when the config does not hold it) or else such a part;
    ``fixed`` ``{keyword: constant}``.
    An estimator's ``groups`` ``{group: name}`` adds (or replaces) parameter groups,
    its ``transforms`` ``{group: name}`` chains an optax transform after a group's
    optimizer, ``model_fixed`` are constants for the model's factory (the conditional
    GANs' critic) and ``draws`` names the sample sets its evaluation shows.  A model's
    ``data`` says which data it trains on and ``evaluation`` how a run is scored.
    """

    summary: str
    section: str
    factory: str = ""
    latent: str = "any"
    keys: tuple = ()
    family: Any = "latent"   # a model's family; an estimator's family or tuple of families
    inputs: tuple = ()
    args: Mapping = _NONE
    fixed: Mapping = _NONE
    options: tuple = ()
    groups: Mapping = _NONE
    transforms: Mapping = _NONE
    model_fixed: Mapping = _NONE
    draws: str = ""
    data: str = "mnist"
    evaluation: str = ""


class Recipe(NamedTuple):
    """A named recipe: its summary, the review section, its overrides of :data:`SETTINGS`,
    and what a run at these defaults measured (wall time, machine, result), if one was made."""

    summary: str
    section: str
    settings: dict
    measured: str = ""


# --------------------------------------------------------------------------
# Estimators and models: what they are and how they are built (as data)

_MG = ("model", "guide")
_ML = ("model", "layers")
_K = MappingProxyType({"num_samples": "k"})
_GC = ("generator", "critic")
_PACK = MappingProxyType({"pack": "pack"})


def _m(**kw) -> Mapping:
    return MappingProxyType(kw)


ESTIMATORS = {
    "reinforce": Entry("REINFORCE: θ by ∇log p(x,h), φ by learning signal × score (any latents)",
                       "3.2.1, Algorithm 3", "reinforce", "any", ("k",), inputs=_MG, args=_K),
    "reparam": Entry("reparameterized ELBO, Monte Carlo or analytic KL (--set kl=analytic)", "3.2.1, Eq. 13 / Eq. 8",
                     "reparam_elbo", "continuous", ("k", "kl"), ("latent", "text"), _MG, _m(num_samples="k", kl="kl")),
    "stl": Entry("sticking-the-landing / path-derivative ELBO gradient (Roeder et al. 2017)", "3.2.1, after Eq. 13",
                 "stl_elbo", "continuous", ("k",), inputs=_MG, args=_K),
    "iwae": Entry("importance-weighted bound I_K (Burda et al. 2015)", "3.2.1, Eq. 19",
                  "iwae", "continuous", ("k",), ("latent", "text"), _MG, _K),
    "dreg": Entry("IWAE with doubly-reparameterized inference gradient (Tucker et al. 2019)", "3.2.1, Eq. 19",
                  "dreg", "continuous", ("k",), inputs=_MG, args=_K),
    "nvil": Entry("NVIL: centering, input-dependent baseline, variance normalization (Mnih & Gregor 2014)",
                  "3.2.1 (2)", "nvil", "any", ("k",), inputs=_MG + ("nvil_baseline",), args=_K,
                  groups=_m(baseline="nvil_baseline_params")),
    "muprop": Entry("MuProp: Taylor control variate around the mean field (Gu et al. 2015)", "3.2.1 (2)",
                    "muprop", "discrete", ("k",), inputs=_ML, args=_K),
    "vimco": Entry("VIMCO: I_K with leave-one-out baselines (Mnih & Rezende 2016)", "3.2.1 (2), Eq. 19",
                   "vimco", "any", ("k",), ("latent", "text"), _MG, _K),
    "rloo": Entry("REINFORCE leave-one-out on the ELBO (Kool et al. 2019)", "3.2.1 (2)",
                  "rloo", "any", ("k",), inputs=_MG, args=_K),
    "disarm": Entry("DisARM antithetic gradient for Bernoulli latents (Dong et al. 2020)", "3.2.1 (2)",
                    "disarm", "discrete", ("pairs",), inputs=_ML, args=_m(num_pairs="pairs")),
    "straight-through": Entry("straight-through estimator, biased (Bengio et al. 2013)", "3.2.1 (2)",
                              "straight_through", "discrete", ("k",), inputs=_ML, args=_K),
    "gumbel": Entry("Gumbel-softmax / binary Concrete, straight-through, biased (Jang et al. 2017)", "3.2.1 (2)",
                    "gumbel_softmax", "discrete", ("k", "temperature"), inputs=_ML,
                    args=_m(num_samples="k", temperature="temperature"), fixed=_m(hard=True)),
    "wake-sleep": Entry("wake-sleep: wake θ on q samples, sleep φ on model samples", "3.2.2, Algorithm 4",
                        "wake_sleep", "any", (), inputs=_MG),
    "rws": Entry("reweighted wake-sleep: wake-θ, wake/sleep/wake+sleep φ (Bornschein & Bengio 2015)",
                 "3.2.2, Eq. 23, 25", "rws", "any", ("k", "phi_update"), ("latent", "text"), _MG,
                 _m(num_samples="k", phi_update="phi_update")),
    "jsa": Entry("joint stochastic approximation with the MIS kernel and a per-example latent cache",
                 "3.2.3, Algorithm 5, Eq. 26-27", "jsa", "any", ("k", "moves", "cache_on_after"), ("latent", "text"),
                 _MG, _m(latent="jsa_latent", cache_from="jsa_cache_from",
                         num_moves="moves", num_proposals="k")),
    "savae": Entry("semi-amortized VAE: q refined per example by SGD steps, differentiated through (Kim et al. 2018)",
                   "3.2.1 (5)", "semi_amortized", "continuous", ("refine_steps", "step_size"),
                   inputs=("model", "spec"), args=_m(num_steps="refine_steps", step_size="step_size"),
                   fixed=_m(max_grad_norm=5.0, num_samples=1)),
    "hvi": Entry("Hamiltonian variational inference: q followed by leapfrog steps, auxiliary bound "
                 "(Salimans et al. 2015)", "3.2.1 (4)", "hvi", "continuous", ("moves", "step_size"), inputs=_MG,
                 args=_m(num_leapfrog="moves", step_size="step_size"), fixed=_m(num_samples=1)),
    "ml": Entry("maximum likelihood on an exact log-likelihood (fully visible autoregressive models, LSTM LMs)",
                "3.1.3", "maximum_likelihood", family=("tractable", "lm"), inputs=("model",),
                args=_m(stochastic_log_prob="random_mask_log_prob")),
    # adversarial learning (Sec. 3.2.4): the generator and the critic are separate groups
    "gan": Entry("GAN minimax game, generator minimizes log(1 − D) (Goodfellow et al. 2014)", "3.2.4, Eq. 28",
                 "gan", keys=PLAYERS + ("pack",), family="adversarial", inputs=_GC, args=_PACK,
                 fixed=_m(generator_loss="minimax")),
    "ns-gan": Entry("GAN with the non-saturating generator loss −log D", "3.2.4, Eq. 28",
                    "gan", keys=PLAYERS + ("pack",), family="adversarial", inputs=_GC, args=_PACK,
                    fixed=_m(generator_loss="non-saturating")),
    "fgan": Entry("f-GAN / VDM with the principled activation g_f(v) = f'(e^v) or Nowozin's (--set divergence=kl)",
                  "3.2.4, Algorithm 6, Eq. 33-36", "fgan", keys=PLAYERS + ("pack", "divergence", "activation"),
                  family="adversarial", inputs=_GC, args=_m(divergence="divergence", activation="activation",
                                                            pack="pack"), fixed=_m(generator_loss="minimax")),
    "wgan": Entry("Wasserstein GAN with weight clipping, n_critic critic steps (Arjovsky et al. 2017)",
                  "3.2.4, Eq. 37", "wgan", keys=PLAYERS + ("pack", "clip", "n_critic"), family="adversarial",
                  inputs=_GC, args=_m(monitor_clip="clip", pack="pack"), transforms=_m(critic="clip_critic")),
    "wgan-gp": Entry("WGAN with a gradient penalty (Gulrajani et al. 2017)", "3.2.4, Eq. 37",
                     "wgan_gp", keys=PLAYERS + ("pack", "penalty", "n_critic"), family="adversarial",
                     inputs=_GC, args=_m(penalty="penalty", pack="pack")),
    "hinge": Entry("hinge-loss GAN; with --set spectral_norm=1 the SN-GAN of Miyato et al. 2018", "3.2.4 (2)",
                   "hinge_gan", keys=PLAYERS + ("pack",), family="adversarial", inputs=_GC, args=_PACK),
    "cgan": Entry("conditional GAN with a projection critic (Mirza & Osindero 2014; Miyato & Koyama 2018)",
                  "3.2.4 (7)", "cgan", keys=PLAYERS, family="adversarial", inputs=_GC + ("labels",),
                  model_fixed=_m(num_classes=10, conditioning="projection")),
    "acgan": Entry("AC-GAN: source and class heads, F_S + F_C (Odena et al. 2017)", "3.2.4 (7)",
                   "acgan", keys=PLAYERS, family="adversarial", inputs=_GC + ("labels",),
                   model_fixed=_m(num_classes=10, conditioning="acgan"), fixed=_m(source_loss="minimax")),
    "ali": Entry("ALI / BiGAN: a critic on (x, z) pairs gives the GAN an encoder (Dumoulin et al. 2017)",
                 "3.2.4 (4)", "ali", keys=PLAYERS, family="ali",
                 inputs=("decoder_sampler", "encoder_sampler", "critic", "latent_dim")),
    "avb": Entry("adversarial variational Bayes: implicit q(h|x), an adversary estimates log q − log p(h)",
                 "3.2.1, Eq. 15-16, App. A", "avb", keys=PLAYERS + ("k",), family="avb",
                 inputs=("model", "guide", "critic"), args=_K),
    # random fields (Sec. 4): the potential and the auxiliary sampler are separate groups
    "pcd": Entry("SML / persistent contrastive divergence: persistent Langevin or Gibbs chains",
                 "4.2.1, Algorithm 7, Eq. 39", "pcd", keys=("num_chains", "moves", "step_size", "noise_scale"),
                 family=("energy", "rbm"), inputs=("spec",),
                 args=_m(kernel="chain_kernel", num_chains="num_chains", num_moves="moves"), options=("chain_options",)),
    "cd": Entry("contrastive divergence CD-k: Gibbs chains restarted at the batch (Hinton 2002), biased",
                "4.2.1", "cd", keys=("moves", "ramp_moves"), family="rbm", inputs=("spec",),
                args=_m(num_moves="moves", ramp_steps="cd_ramp_steps")),
    "nce": Entry("noise-contrastive estimation: log Z a parameter (a TRF: ζ_l per length), noise a Gaussian fitted "
                 "to the data (toy) or an LSTM LM pre-trained by ML (sentences)", "4.2.4, Algorithm 9, Eq. 45-49",
                 "nce", keys=("nu",), family=("energy", "trf"), inputs=("model", "noise"),
                 args=_m(nu="nu", learn_log_z="learn_log_z"), groups=_m(potential="nce_potential")),
    "dnce": Entry("dynamic NCE: the noise q_φ trained by ML at the same time, data side α p̃ + (1 − α) q_φ "
                  "(Wang & Ou 2018b)", "4.2.4, last paragraph", "dnce", keys=PLAYERS + ("nu", "alpha"),
                  family=("energy", "trf"), inputs=("model", "noise_model"),
                  args=_m(nu="nu", alpha="alpha", learn_log_z="learn_log_z"),
                  groups=_m(potential="nce_potential", sampler="noise_params")),
    "trf-sa": Entry("SA with MIS on sentences: an LSTM generator proposes, MIS accepts under the TRF, ζ_l by SA, "
                    "the generator fitted to the chains (Wang & Ou 2017; Wang, Ou & Tan 2018)", "4.2.3, Eq. 44",
                    "trf_sa", keys=PLAYERS + ("num_chains", "moves", "zeta_lr"), family="trf", inputs=("spec", "noise_model"),
                    args=_m(num_chains="num_chains", num_moves="moves"), groups=_m(sampler="noise_params")),
    "nrf-inclusive": Entry("inclusive-NRF: generator samples revised by SGLD, generator fitted to them "
                           "(Song & Ou 2018)", "4.2.3, Algorithm 8, Eq. 42-43", "inclusive_nrf",
                           keys=PLAYERS + ("moves", "step_size", "noise_scale", "potential_control"),
                           family="energy", inputs=("model", "toy_sampler"),
                           args=_m(num_moves="moves", potential_control="potential_control", step_size="step_size",
                                   noise_scale="noise_scale"),
                           groups=_m(sampler="toy_sampler_params"), draws="inclusive_nrf_draws"),
    "nrf-exclusive": Entry("exclusive-NRF: generator minimizes KL(q‖p) with a batch-norm entropy (Kim & Bengio 2016)",
                           "4.2.2, Eq. 40-41", "exclusive_nrf", keys=PLAYERS, family="energy",
                           inputs=("model", "toy_generator"), groups=_m(sampler="toy_generator_params"),
                           draws="generator_draws"),
}
# names of earlier versions, still accepted in saved run configs
_ALIASES = {"reinforce-bernoulli": "reinforce"}

_X = ("x_dim",)
MODELS = {
    "iwae1": Entry("VAE, one stochastic layer: 50 Gaussian latents, tanh 200-200 in p and q (Burda et al. 2015)",
                   "3.1.2, Eq. 4", "iwae_one_layer", latent="continuous", keys=MNIST_LATENT, inputs=_X),
    "iwae2": Entry("DLGM, two stochastic layers: 100 then 50 latents, q 200-200 / 100-100, p mirrored",
                   "3.1.1, Eq. 3", "iwae_two_layer", latent="continuous", keys=MNIST_LATENT, inputs=_X),
    "sbn": Entry("sigmoid belief net, Bernoulli layers, linear or MLP transforms (--set layers=200,200 kind=linear)",
                 "3.1.1, Eq. 2", "sbn", latent="discrete", keys=MNIST_LATENT + ("layers", "kind"), inputs=_X,
                 args=_m(latent_sizes="layer_sizes", kind="kind")),
    "mlp-gan": Entry("PacGAN's 2-D pair: generator 2→400×4 (BN+ReLU)→2, critic 3 maxout layers 200×5",
                     "3.1.4, Eq. 5", "mlp_gan", keys=TOY + ("spectral_norm", "eval_samples"), family="adversarial",
                     args=_m(spectral_norm="spectral_norm_on", pack="pack"), fixed=_m(x_dim=2), data="toy",
                     evaluation="toy_modes"),
    "dcgan": Entry("DCGAN-style conv generator and critic for 28×28 MNIST (conditional for cgan / acgan)",
                   "3.1.4, Eq. 5", "dcgan", keys=("spectral_norm", "eval_classifier"), family="adversarial",
                   args=_m(spectral_norm="spectral_norm_on", pack="pack"), data="mnist_labels",
                   evaluation="class_samples"),
    "ali-mlp": Entry("ALI on a 2-D toy density: MLP G(z), Gaussian E(x), maxout critic on [x, z]", "3.2.4 (4)",
                     keys=TOY + ("eval_samples",), family="ali", data="toy"),
    "mlp-potential": Entry("Song & Ou's toy potential 2 → 100 → 100 → 1 (leaky ReLU, weight norm)",
                           "4.1, Eq. 38", "mlp_potential", keys=TOY + ("beta1", "eval_samples"), family="energy", fixed=_m(x_dim=2),
                           data="toy"),
    "rbm": Entry("binary RBM on binarized MNIST (fixed or drawn afresh per visit); test log-likelihood, log Z by AIS",
                 "4.1", "rbm", keys=("lr_decay", "binarization", "train_split", "eval_every", "hidden", "momentum",
                                     "weight_decay", "ais_temps", "ais_runs", "eval_n"), family="rbm",
                 inputs=_X, args=_m(num_hidden="hidden")),
    "flow-vae": Entry("the IWAE paper's one-layer VAE (50 latents, tanh 200-200) with a normalizing flow in q",
                      "3.2.1 (4)", "flow_vae", latent="continuous", keys=MNIST_LATENT + ("flow", "num_flows"),
                      inputs=_X, args=_m(flow="flow", num_flows="num_flows"),
                      fixed=_m(latent_dim=50, hidden=(200, 200))),
    "nade": Entry("NADE, one hidden layer, shared weights (Larochelle & Murray 2011)", "3.1.3", "nade",
                  keys=TRACTABLE + ("hidden",), family="tractable", inputs=_X,
                  args=_m(hidden="hidden")),
    "made": Entry("MADE, one hidden layer, order/connectivity-agnostic training, mask ensemble at test "
                  "(Germain et al. 2015)", "3.1.3", "made", keys=TRACTABLE + ("hidden", "num_masks"),
                  family="tractable", inputs=_X + ("hidden_layers",), args=_m(num_masks="num_masks", seed="seed")),
    "pixelcnn": Entry("small PixelCNN: mask-A 7×7 then residual mask-B 3×3 convolutions (van den Oord et al. 2016)",
                      "3.1.3", "pixelcnn", keys=TRACTABLE + ("channels",), family="tractable",
                      inputs=("image_side", "image_side"), args=_m(channels="channels")),
    "text-gauss": Entry("text VAE on the generated corpus: GRU encoder, GRU decoder over tokens, Gaussian h",
                        "3.2.1 (3)", "text_vae", latent="continuous", keys=TEXT, family="text",
                        inputs=("vocab_size", "sentence_length"), args=_m(latent_dim="latent_dim"),
                        fixed=_m(latent="gaussian"), data="text"),
    "text-bern": Entry("text VAE on the generated corpus with Bernoulli latents (JSA / RWS / VIMCO)",
                       "3.2.1 (3)", "text_vae", latent="discrete", keys=TEXT, family="text",
                       inputs=("vocab_size", "sentence_length"), args=_m(latent_dim="latent_dim"),
                       fixed=_m(latent="bernoulli"), data="text"),
    "trf": Entry("trans-dimensional random field over sentences: π_l exp(u_θ(x) − ζ_l), a CNN or BiLSTM "
                 "potential, ζ_l per length (Wang & Ou 2017, 2018)", "4.1, Eq. 38", "trf",
                 keys=SENTENCES + ("potential", "noise_epochs", "eval_k"), family="trf",
                 inputs=("vocab_size", "sentence_length"),
                 args=_m(length_prior="length_prior", potential="potential", embed="embed", hidden="hidden"),
                 data="text"),
    "lstm-lm": Entry("LSTM language model over sentences, trained by maximum likelihood (the TRFs' baseline)",
                     "3.1.3", "lstm_lm", keys=SENTENCES, family="lm", inputs=("vocab_size", "sentence_length"),
                     args=_m(embed="embed", hidden="hidden"), data="text"),
    "avb-vae": Entry("the one-layer VAE decoder with an implicit encoder h = f([x, ε]) and an MLP adversary",
                     "3.2.1 (4)", keys=("binarization", "train_split"), family="avb"),
}

KERNELS = {
    "mis": Entry("Metropolis independence sampler, per-example weight ratio (p(x) cancels)", "3.2.3, footnote 14"),
    "langevin": Entry("unadjusted Langevin / SGLD, separate step size and noise scale", "4.2.1, 4.2.3"),
    "mala": Entry("Metropolis-adjusted Langevin", "4.2.1"),
    "sghmc": Entry("stochastic-gradient Hamiltonian Monte Carlo (Chen et al. 2014)", "4.2.3"),
    "gibbs": Entry("block Gibbs for RBMs: h ~ p(h|v), then v ~ p(v|h)", "4.1-4.2.1"),
}

_SBN = dict(model="sbn", lr=3e-4, binarization="fixed", eval_k=1000)
_CIRCLES = dict(model="mlp-potential", dataset="four_circles", lr=1e-3, beta1=0.0, batch_size=100, epochs=100.0,
                moves=10, eval_samples=10_000)
# Salakhutdinov & Murray (2008)'s set-up: 60,000 training images, batch 100; SGD as Hinton's guide
_RBM = dict(model="rbm", lr=0.01, lr_decay="harmonic", momentum=0.9, weight_decay=2e-4, batch_size=100,
            epochs=250.0, moves=1, binarization="dynamic", train_split="train+valid", eval_n=10000, ais_temps=14500,
            eval_every=10)
_TRF = dict(model="trf", potential="cnn", embed=32, hidden=128, batch_size=64, epochs=5.0, num_sentences=20000,
            noise_epochs=2.0, eval_k=100000, eval_n=2000, beta1=0.9)
_GAN2D = dict(model="mlp-gan", dataset="grid25", lr=1e-4, beta1=0.8, batch_size=100, epochs=20.0)
RECIPES = {
    "vae-mnist": Recipe("VAE (reparameterized ELBO, K=1) on dynamically binarized MNIST, one stochastic layer",
                        "3.2.1", dict(model="iwae1", estimator="reparam")),
    "iwae-mnist": Recipe("IWAE on MNIST, one stochastic layer; --set k=50", "3.2.1, Eq. 19",
                         dict(model="iwae1", estimator="iwae", k=5)),
    "iwae2-mnist": Recipe("IWAE on MNIST, two stochastic layers (100-50)", "3.2.1, Eq. 19",
                          dict(model="iwae2", estimator="iwae", k=5)),
    "vae-planar-mnist": Recipe("VAE with 10 planar flows in q (Rezende & Mohamed 2015), reparameterized ELBO",
                               "3.2.1 (4)", dict(model="flow-vae", estimator="reparam", flow="planar", num_flows=10)),
    "vae-iaf-mnist": Recipe("VAE with 2 IAF steps in q, each a conditional MADE (Kingma et al. 2016)",
                            "3.2.1 (4)", dict(model="flow-vae", estimator="reparam", flow="iaf", num_flows=2)),
    "savae-mnist": Recipe("semi-amortized VAE: 5 SGD steps per example refine q, differentiated through",
                          "3.2.1 (5)", dict(model="iwae1", estimator="savae", step_size=0.1)),
    "nade-mnist": Recipe("NADE with 500 hidden units on fixed-binarized MNIST, exact test NLL", "3.1.3",
                         dict(model="nade", estimator="ml", binarization="fixed")),
    "made-mnist": Recipe("MADE, 500 hidden units, 32 mask sets (trained one at a time, mixed at test); early "
                         "stopping on the exact validation NLL", "3.1.3",
                         dict(model="made", estimator="ml", binarization="fixed", epochs=300.0, eval_every=2,
                              patience=5),
                         "stopped by hand at 65 epochs, still improving: exact test NLL 103.09 (published 88.04); "
                         "5 s an epoch of training and ~18 s a validation on 2 shared CPU cores "
                         "(benchmarks/results/made_mnist_repro_cpu.md)"),
    "pixelcnn-mnist": Recipe("small PixelCNN (32 channels, 4 residual blocks) on fixed-binarized MNIST", "3.1.3",
                             dict(model="pixelcnn", estimator="ml", binarization="fixed")),
    "text-vae": Recipe("text VAE, Gaussian latents, reparameterized ELBO with analytic KL, generated corpus",
                       "3.2.1 (3)", dict(model="text-gauss", estimator="reparam", kl="analytic", epochs=5.0,
                                         batch_size=64, eval_k=100, eval_n=2000)),
    "text-jsa": Recipe("text VAE with 16 Bernoulli latents trained by JSA (MIS proposals from q)", "3.2.3, 3.2.1 (3)",
                       dict(model="text-bern", estimator="jsa", k=4, epochs=5.0, batch_size=64, eval_k=100,
                            eval_n=2000)),
    "sbn-jsa": Recipe("JSA on a linear SBN (200 Bernoulli latents), binarized MNIST; the cache in use after 60 % "
                      "of training (Ou & Song's schedule: benchmarks/results/jsa_study_cpu.md)", "3.2.3, Algorithm 5",
                      dict(_SBN, estimator="jsa", cache_on_after=0.6)),
    "sbn-rws": Recipe("reweighted wake-sleep (wake+sleep φ, K=5) on a linear SBN", "3.2.2, Eq. 23, 25",
                      dict(_SBN, estimator="rws", k=5)),
    "sbn-vimco": Recipe("VIMCO (K=5) on a linear SBN", "3.2.1 (2)", dict(_SBN, estimator="vimco", k=5)),
    "sbn-nvil": Recipe("NVIL on a linear SBN", "3.2.1 (2)", dict(_SBN, estimator="nvil")),
    # adversarial learning, PacGAN's 2-D set-up (Adam 1e-4, β1 0.8, batch 100)
    "gan-ring": Recipe("GAN (non-saturating) on PacGAN's ring of 8 modes", "3.2.4, Eq. 28",
                       dict(_GAN2D, estimator="ns-gan", dataset="ring8")),
    "gan-grid": Recipe("GAN (non-saturating) on PacGAN's 5×5 grid", "3.2.4, Eq. 28",
                       dict(_GAN2D, estimator="ns-gan")),
    "pacgan-grid": Recipe("PacGAN4: the critic sees 4 samples at once, on the grid", "3.2.4 (2)",
                          dict(_GAN2D, estimator="ns-gan", pack=4)),
    "wgan-gp-grid": Recipe("WGAN-GP, 5 critic steps per generator step, on the grid", "3.2.4, Eq. 37",
                           dict(_GAN2D, estimator="wgan-gp", n_critic=5, beta1=0.5)),
    "fgan-grid": Recipe("f-GAN with the principled activation on the grid; --set divergence=kl|reverse_kl|...",
                        "3.2.4, Algorithm 6", dict(_GAN2D, estimator="fgan")),
    "ali-grid": Recipe("ALI on the grid: generator, encoder and a joint critic", "3.2.4 (4)",
                       dict(_GAN2D, model="ali-mlp", estimator="ali")),
    "cgan-mnist": Recipe("conditional DCGAN with a projection critic on MNIST", "3.2.4 (7)",
                         dict(model="dcgan", estimator="cgan", lr=2e-4, batch_size=64, epochs=5.0)),
    "acgan-mnist": Recipe("AC-GAN on MNIST", "3.2.4 (7)",
                          dict(model="dcgan", estimator="acgan", lr=2e-4, batch_size=64, epochs=5.0)),
    # random fields, Song & Ou's four circles (Adam 1e-3, β1 0, batch 100, SGLD 10 moves, 0.01 / 0.01)
    "nrf-inclusive-circles": Recipe("inclusive-NRF on Song & Ou's four circles (32 modes)", "4.2.3, Algorithm 8",
                                    dict(_CIRCLES, estimator="nrf-inclusive")),
    "nrf-exclusive-circles": Recipe("exclusive-NRF on the four circles", "4.2.2, Eq. 40-41",
                                    dict(_CIRCLES, estimator="nrf-exclusive")),
    "ebm-pcd-circles": Recipe("PCD with persistent Langevin chains on the four circles", "4.2.1, Algorithm 7",
                              dict(_CIRCLES, estimator="pcd")),
    "nce-circles": Recipe("NCE (ν = 10, Gaussian noise) on the four circles", "4.2.4, Algorithm 9",
                          dict(_CIRCLES, estimator="nce", nu=10.0)),
    "rbm-pcd-mnist": Recipe("RBM with 500 hidden units by PCD (persistent Gibbs chains), AIS test log-likelihood",
                            "4.2.1, Algorithm 7", dict(_RBM, estimator="pcd"),
                            "250 epochs of PCD-1 in 23 min + 1 min of AIS on 2 CPU cores shared with one other "
                            "job: test log-likelihood −104.82 nats (benchmarks/results/rbm_mnist_repro_cpu.md)"),
    "rbm-cd-mnist": Recipe("RBM with 500 hidden units by CD-25, its moves raised from 1 over the first half "
                           "(Salakhutdinov & Murray 2008); --set moves=1 ramp_moves=0 for CD-1", "4.2.1",
                           dict(_RBM, estimator="cd", moves=25, ramp_moves=0.5, epochs=100.0),
                           "100 epochs in 60 min on 2 CPU cores shared with two other jobs: test log-likelihood "
                           "−88.42 nats; S&M 2008: −86.34 (benchmarks/results/rbm_mnist_repro_cpu.md)"),
    # random fields over sentences, the generated corpus (Wang & Ou's TRF LMs at a CPU scale)
    "trf-nce-text": Recipe("TRF LM (CNN potential) by NCE against an LSTM LM pre-trained as the noise", "4.2.4, Algorithm 9",
                           dict(_TRF, estimator="nce", nu=4.0)),
    "trf-dnce-text": Recipe("TRF LM by dynamic NCE: the LSTM noise trained with it, interpolated data side",
                            "4.2.4 (DNCE)", dict(_TRF, estimator="dnce", nu=4.0, alpha=0.25)),
    "trf-sa-text": Recipe("TRF LM by SA with MIS: an LSTM generator proposes sentences, ζ_l by SA",
                          "4.2.3, Eq. 44", dict(_TRF, estimator="trf-sa", num_chains=64, moves=1)),
    "lstm-lm-text": Recipe("LSTM LM by maximum likelihood on the generated corpus (the TRFs' baseline)", "3.1.3",
                           dict(model="lstm-lm", estimator="ml", embed=32, hidden=128, batch_size=64, epochs=5.0,
                                num_sentences=20000, eval_n=2000)),
    "avb-mnist": Recipe("AVB on dynamically binarized MNIST, implicit encoder", "3.2.1, Eq. 15-16",
                        dict(model="avb-vae", estimator="avb", lr=1e-4, epochs=10.0)),
}


# --------------------------------------------------------------------------
# Parsing and checking settings (no data needed)


def _parse(key: str, raw, default):
    """``raw`` (a string from ``--set`` or a saved JSON value) as the type of ``default``."""
    if not isinstance(raw, str):
        raw = str(raw)
    try:
        if isinstance(default, int) and not isinstance(default, bool):
            value = float(raw)
            if not value.is_integer():
                raise ValueError
            return int(value)
        return type(default)(raw)
    except (ValueError, OverflowError):
        kind = "an integer" if isinstance(default, int) else f"a {type(default).__name__}"
        raise ValueError(f"--set {key}={raw!r}: expected {kind} (default {default!r})") from None


def _choice(options):
    return lambda v: None if v in options else f"must be one of {list(options)}"


def _at_least(m):
    return lambda v: None if v >= m else f"must be >= {m}"


def _positive_finite(v):
    return None if math.isfinite(v) and v > 0 else "must be a finite number > 0"


def _layers_ok(v):
    parts = [s.strip() for s in str(v).split(",")]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        return "must be comma-separated positive integers, e.g. 200 or 200,200"
    return None


def _checks() -> dict:
    from sajax.data import MNIST_SPLITS, TOY_DENSITIES
    from sajax.estimators import DIVERGENCES, PHI_UPDATES

    return {
        "model": _choice(MODELS), "estimator": _choice(ESTIMATORS), "seed": _at_least(0),
        "epochs": _positive_finite, "batch_size": _at_least(1), "lr": _positive_finite,
        "lr_decay": _choice(("none", "iwae", "harmonic")), "binarization": _choice(("dynamic", "fixed")),
        "train_split": _choice(MNIST_SPLITS), "eval_k": _at_least(1), "eval_n": _at_least(1),
        "eval_batch": _at_least(1), "eval_every": _at_least(0), "patience": _at_least(0), "memory_budget_mb": _at_least(1),
        "k": _at_least(1), "kl": _choice(("mc", "analytic")), "layers": _layers_ok,
        "kind": _choice(("linear", "mlp")), "phi_update": _choice(PHI_UPDATES), "moves": _at_least(1),
        "cache_on_after": _unit_interval, "temperature": _positive_finite, "pairs": _at_least(1),
        "dataset": _choice(TOY_DENSITIES), "num_train": _at_least(0), "beta1": _unit_interval,
        "critic_lr": _nonnegative_finite, "n_critic": _at_least(1), "divergence": _choice(DIVERGENCES),
        "activation": _choice(("principled", "nowozin")), "pack": _at_least(1), "penalty": _nonnegative_finite,
        "clip": _positive_finite, "spectral_norm": _choice((0, 1)), "eval_samples": _at_least(1),
        "eval_classifier": _choice((0, 1)), "num_chains": _at_least(1), "step_size": _positive_finite,
        "noise_scale": _nonnegative_finite, "nu": _positive_finite, "potential_control": _nonnegative_finite,
        "hidden": _at_least(1), "num_masks": _at_least(1), "channels": _at_least(1),
        "flow": _choice(("planar", "radial", "nice", "realnvp", "iaf")), "num_flows": _at_least(0),
        "refine_steps": _at_least(0), "num_sentences": _at_least(100), "latent_dim": _at_least(1),
        "potential": _choice(("cnn", "bilstm")), "embed": _at_least(1), "noise_epochs": _nonnegative_finite,
        "alpha": _alpha_ok, "zeta_lr": _positive_finite, "ais_temps": _at_least(2), "ais_runs": _at_least(2),
        "momentum": _unit_interval, "weight_decay": _nonnegative_finite, "ramp_moves": _unit_interval_closed,
    }


def _nonnegative_finite(v):
    return None if math.isfinite(v) and v >= 0 else "must be a finite number >= 0"


def _alpha_ok(v):
    return None if 0.0 < v <= 1.0 else "must be in (0, 1]"


def _unit_interval(v):
    return None if 0.0 <= v < 1.0 else "must be in [0, 1)"


def _unit_interval_closed(v):
    return None if 0.0 <= v <= 1.0 else "must be in [0, 1]"


def length_sets_schedule(cfg: dict) -> bool:
    """Whether the run's schedules are fractions of its length (so ``epochs`` may not change on resume)."""
    return cfg.get("lr_decay") in ("iwae", "harmonic") or float(cfg.get("ramp_moves", 0.0)) > 0


def relevant_keys(model: str, estimator: str) -> tuple:
    """The settings that matter for ``model`` trained by ``estimator``, in :data:`SETTINGS` order."""
    wanted = set(COMMON) | set(MODELS[model].keys) | set(ESTIMATORS[estimator].keys)
    return tuple(k for k in SETTINGS if k in wanted)


def users_of(key: str) -> str:
    """Which models and estimators read ``key`` ("every recipe" for a common key)."""
    if key in COMMON:
        return "every recipe"
    models = [m for m, e in MODELS.items() if key in e.keys]
    ests = [n for n, e in ESTIMATORS.items() if key in e.keys]
    parts = ([f"model{'s' if len(models) > 1 else ''} {', '.join(models)}"] if models else []) + \
            ([f"estimator{'s' if len(ests) > 1 else ''} {', '.join(ests)}"] if ests else [])
    return "; ".join(parts)


def estimator_families(entry: Entry) -> tuple:
    """The model families an estimator entry trains."""
    return entry.family if isinstance(entry.family, tuple) else (entry.family,)


def article(word: str) -> str:
    """``word`` with its indefinite article ("an rbm", "an adversarial", "a latent")."""
    return f"{'an' if word[:1].lower() in 'aeior' else 'a'} {word}"


def estimators_for(model: str) -> list:
    """The estimators that fit ``model``: its family, its latents and its data."""
    m = MODELS[model]
    return sorted(n for n, e in ESTIMATORS.items() if m.family in estimator_families(e) and
                  e.latent in ("any", m.latent) and ("num_classes" not in e.model_fixed or m.data == "mnist_labels"))


def check_compatible(cfg: dict) -> None:
    """ValueError unless the estimator fits the model's family, its latents and the data setup."""
    est, model = ESTIMATORS[cfg["estimator"]], MODELS[cfg["model"]]
    fits = ", ".join(estimators_for(cfg["model"]))
    if model.family not in estimator_families(est):
        raise ValueError(f"estimator={cfg['estimator']} trains {' or '.join(estimator_families(est))} models, but "
                         f"model={cfg['model']} is {article(model.family)} model; estimators for it: {fits}")
    if est.latent != "any" and est.latent != model.latent:
        why = ("it differentiates through reparameterized samples h = g(ε, φ)" if est.latent == "continuous"
               else "it samples the guide layer by layer as discrete (Bernoulli) units")
        raise ValueError(f"estimator={cfg['estimator']} needs {est.latent} latents ({why}), but model="
                         f"{cfg['model']} has {model.latent} latents; estimators for it: {fits}")
    if "num_classes" in est.model_fixed and model.data != "mnist_labels":
        raise ValueError(f"estimator={cfg['estimator']} is class-conditional and needs labelled data, but model="
                         f"{cfg['model']} trains on {model.data} data; use model=dcgan")
    keys = relevant_keys(cfg["model"], cfg["estimator"])
    for key, ok, why in NEEDS.get(cfg["estimator"], ()):
        if key in keys and not ok(cfg[key]):
            raise ValueError(f"estimator={cfg['estimator']} needs {why}, got {key}={cfg[key]!r}")
    if "pack" in keys and cfg["batch_size"] % cfg["pack"]:
        raise ValueError(f"pack={cfg['pack']} must divide the batch size, got batch_size={cfg['batch_size']} "
                         f"(the critic sees the batch in groups of pack samples, PacGAN)")


_LOO = (("k", lambda k: k >= 2, "k >= 2 (a leave-one-out baseline needs another sample)"),)
# what an estimator asks of the other settings: (setting, test, why); checked where the model reads the setting
NEEDS = {
    "vimco": _LOO,
    "rloo": _LOO,
    "jsa": (("binarization", lambda b: b == "fixed",
             "binarization=fixed: its per-example latent cache holds a Markov chain on p(h|x_n) for each "
             "fixed training image x_n (Algorithm 5), which dynamic binarization redraws at every visit; "
             "add --set binarization=fixed"),),
}


def config_for(recipe: str, overrides: dict | None = None, *, strict: bool = True) -> dict:
    """The checked settings of ``recipe`` with ``key=value`` overrides, holding only
    the keys that matter for its model and estimator (:func:`relevant_keys`).

    Args:
      recipe: a name in :data:`RECIPES`.
      overrides: ``{key: value}``; strings are parsed to the default's type.
      strict: refuse an override that the model and estimator do not read
        (``temperature`` for ``reparam``); False drops it silently.
    Raises: ValueError naming the setting (unknown recipe or key, wrong type,
      out of range, an estimator that does not fit the model).
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)}")
    overrides = dict(overrides or {})
    if overrides.get("estimator") in _ALIASES:
        overrides["estimator"] = _ALIASES[overrides["estimator"]]
    full = {k: s.default for k, s in SETTINGS.items()}
    full.update(RECIPES[recipe].settings)
    for key, raw in overrides.items():
        if key not in SETTINGS:
            raise ValueError(f"unknown --set key {key!r} for recipe {recipe!r}; known keys: {sorted(SETTINGS)}")
        full[key] = _parse(key, raw, SETTINGS[key].default)
    checks = _checks()
    for key in ("model", "estimator"):
        if (err := checks[key](full[key])) is not None:
            raise ValueError(f"unknown {key} {full[key]!r}: {err}")
    check_compatible(full)
    keys = relevant_keys(full["model"], full["estimator"])
    extra = [k for k in overrides if k not in keys]
    if strict and extra:
        k = extra[0]
        raise ValueError(f"--set {k} does not apply to model={full['model']} with estimator="
                         f"{full['estimator']} (used by {users_of(k)})")
    cfg = {k: full[k] for k in keys}
    for key, value in cfg.items():
        if (err := checks[key](value)) is not None:
            raise ValueError(f"{key} {err}, got {key}={value!r}")
    return cfg


def config_from_saved(saved: dict) -> tuple[str, dict]:
    """``(recipe, cfg)`` of a run's ``config.json`` (keys that no longer matter are dropped)."""
    saved = dict(saved)
    recipe = saved.pop("recipe", None)
    if recipe is None:
        raise ValueError("config.json names no recipe")
    return recipe, config_for(recipe, {k: v for k, v in saved.items() if not k.startswith("_")}, strict=False)


def layer_sizes(cfg: dict) -> tuple:
    return tuple(int(s) for s in str(cfg["layers"]).split(","))
