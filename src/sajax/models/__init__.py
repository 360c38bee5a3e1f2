"""Model definitions (review Sec. 3.1) as Flax modules behind sajax protocols.

Each factory returns a spec NamedTuple holding ``model``
(:class:`sajax.core.LatentVariableModel`, with its ``observation`` kind),
``guide`` (:class:`sajax.core.ConditionalSampler`) and ``init(key) ->
{"model": θ, "guide": φ}``, so any estimator can train it.  Specs with
discrete latents also hold ``layers`` (:class:`sajax.core.DiscreteLayers`).

* :func:`vae`, :func:`iwae_one_layer`, :func:`iwae_two_layer`: VAE (Eq. 4)
  and DLGM (Eq. 3) with Gaussian latents, built from :class:`MLP` and the heads;
  a user's own Flax encoder / decoder through :func:`guide_from_module` and
  :func:`model_from_modules` (the same densities and reparameterized sampler).
* :func:`sbn`, :func:`paper_sbn`: sigmoid belief nets (Eq. 2);
  :func:`sbn_weights` reads W_l, b_l of a linear one; :func:`darn_sbn`: an
  SBN layer with an autoregressive prior and guide (DARN, Gregor et al. 2014).
* :func:`categorical_vae`: a small model with categorical latents.
* adversarial players (Sec. 3.1.4, 3.2.4): :func:`mlp_gan`, :func:`dcgan`
  (:class:`GANSpec`: an ImplicitGenerator and a Critic), spectral
  normalization (:class:`SpectralDense`, :class:`SpectralConv`); implicit
  conditionals for AVB and ALI (:func:`implicit_encoder`,
  :func:`gaussian_encoder`, :func:`mlp_decoder`).
* random fields (Sec. 4.1): :func:`rbm` (binary and Gaussian-binary, exact
  :func:`rbm_log_partition`, the Gibbs pair :func:`rbm_conditionals`), potential networks :func:`mlp_potential`,
  :func:`conv_potential`; auxiliary generators of the NRF methods
  (:func:`prescribed_generator`, :func:`song_ou_toy_generator`,
  :func:`batchnorm_generator`); trans-dimensional random fields over sentences
  (:func:`trf`, :class:`TRFSpec`, CNN / BiLSTM / bigram potentials, the length prior
  :func:`trf_length_prior`, exact :func:`enumerate_sentences`, :func:`trf_log_partition`,
  :func:`trf_exact_log_prob`, :func:`trf_exact_sample`; Wang & Ou 2017, 2018a,b).
* text (Sec. 3.2.1 item 3, 3.1.3): :func:`text_vae`; :func:`lstm_lm`, an LSTM / GRU
  language model over complete sentences (the TRF's noise and generator);
  :func:`check_tokens`, :func:`check_sentences`.

The implementations live in private modules (``_vae``, ``_sbn``,
``_categorical``) so that no function shadows its own module.
"""
from sajax.models._auxiliary import (
    AuxiliaryGenerator,
    EntropyGenerator,
    batchnorm_entropy,
    batchnorm_generator,
    prescribed_generator,
    song_ou_toy_generator,
)
from sajax.models._categorical import CategoricalSpec, categorical_vae
from sajax.models._energy import EnergySpec, conv_potential, energy_from_module, mlp_potential
from sajax.models._gan import CONDITIONINGS, GANSpec, dcgan, mlp_gan
from sajax.models._autoregressive import (
    ARSpec,
    NADE,
    MaskedConv2D,
    PixelCNN,
    ancestral_scan,
    made,
    nade,
    pixelcnn,
)
from sajax.models._flows import FLOWS, INVERTIBLE, FlowGuideSpec, FlowVAESpec, flow_guide, flow_vae
from sajax.models._made import MADE, MaskedDense, made_degrees, made_mask_sets, made_masks
from sajax.models._sequence import LMSpec, TextVAESpec, check_sentences, check_tokens, lstm_lm, text_vae
from sajax.models._trf import (
    LOG_PRIOR_FLOOR,
    POTENTIALS,
    ZETA,
    BiLSTMPotential,
    BigramPotential,
    CNNPotential,
    TRFSpec,
    enumerate_sentences,
    trf,
    trf_exact_log_prob,
    trf_exact_sample,
    trf_length_prior,
    trf_log_partition,
)
from sajax.models._implicit import ImplicitSpec, gaussian_encoder, implicit_encoder, mlp_decoder
from sajax.models._rbm import RBMSpec, rbm, rbm_conditionals, rbm_log_partition
from sajax.models._spectral import SpectralConv, SpectralDense, spectral_norm_estimate, spectral_normalize
from sajax.models._sbn import (
    DARN_LIKELIHOODS,
    PAPER_ARCHITECTURES,
    DARNSpec,
    SBNSpec,
    darn_sbn,
    paper_sbn,
    sbn,
    sbn_weights,
)
from sajax.models._vae import (
    ACTIVATIONS,
    LIKELIHOODS,
    MLP,
    BernoulliHead,
    DiagGaussianHead,
    GuideSpec,
    HomoscedasticGaussianHead,
    ModuleSpec,
    VAESpec,
    guide_from_module,
    iwae_one_layer,
    iwae_two_layer,
    model_from_modules,
    vae,
)

__all__ = [
    "ARSpec",
    "DARNSpec",
    "DARN_LIKELIHOODS",
    "NADE",
    "MaskedConv2D",
    "PixelCNN",
    "ancestral_scan",
    "darn_sbn",
    "made",
    "nade",
    "pixelcnn",
    "MADE",
    "MaskedDense",
    "made_degrees",
    "made_mask_sets",
    "made_masks",
    "FLOWS",
    "INVERTIBLE",
    "FlowGuideSpec",
    "FlowVAESpec",
    "flow_guide",
    "flow_vae",
    "TextVAESpec",
    "check_tokens",
    "text_vae",
    "check_sentences",
    "LMSpec",
    "lstm_lm",
    "TRFSpec",
    "trf",
    "trf_length_prior",
    "CNNPotential",
    "BiLSTMPotential",
    "BigramPotential",
    "POTENTIALS",
    "ZETA",
    "LOG_PRIOR_FLOOR",
    "enumerate_sentences",
    "trf_log_partition",
    "trf_exact_log_prob",
    "trf_exact_sample",
    "CategoricalSpec",
    "SBNSpec",
    "categorical_vae",
    "paper_sbn",
    "sbn",
    "sbn_weights",
    "PAPER_ARCHITECTURES",
    "ACTIVATIONS",
    "LIKELIHOODS",
    "MLP",
    "BernoulliHead",
    "DiagGaussianHead",
    "HomoscedasticGaussianHead",
    "VAESpec",
    "guide_from_module",
    "model_from_modules",
    "GuideSpec",
    "ModuleSpec",
    "iwae_one_layer",
    "iwae_two_layer",
    "vae",
    "GANSpec",
    "CONDITIONINGS",
    "mlp_gan",
    "dcgan",
    "SpectralDense",
    "SpectralConv",
    "spectral_norm_estimate",
    "spectral_normalize",
    "ImplicitSpec",
    "implicit_encoder",
    "gaussian_encoder",
    "mlp_decoder",
    "RBMSpec",
    "rbm",
    "rbm_conditionals",
    "rbm_log_partition",
    "EnergySpec",
    "mlp_potential",
    "conv_potential",
    "energy_from_module",
    "AuxiliaryGenerator",
    "EntropyGenerator",
    "prescribed_generator",
    "song_ou_toy_generator",
    "batchnorm_generator",
    "batchnorm_entropy",
]
