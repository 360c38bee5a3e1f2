"""Learning methods as estimators: ``factory(...) -> Estimator(init, estimate)``.

Every public name lives here; the implementation modules are private (as in
optax), one per family of the review:

* variational learning (Sec. 3.2.1), ``_variational``: :func:`reinforce`
  (Algorithm 3, any latents), :func:`reparam_elbo` (Eq. 13), :func:`stl_elbo`,
  :func:`iwae` (Eq. 19), :func:`dreg`;
* more expressive q and the amortization gap (Sec. 3.2.1, items 4-5),
  ``_refined_q``: :func:`semi_amortized` (SA-VAE), :func:`hvi` (Hamiltonian
  variational inference);
* fully visible models with exact likelihoods (Sec. 3.1.3), ``_likelihood``:
  :func:`maximum_likelihood`;
* discrete latents, score-function family (Sec. 3.2.1, item 2),
  ``_score_function``: :func:`nvil` (+ :func:`nvil_baseline`,
  :class:`NVILState`), :func:`rloo`, :func:`vimco`;
* discrete latents sampled layer by layer (Sec. 3.2.1, item 2),
  ``_layerwise``: :func:`muprop`, :func:`disarm`, :func:`straight_through`,
  :func:`gumbel_softmax`; they take a :class:`DiscreteLayers` (e.g.
  ``spec.layers``), see :func:`discrete_layers`;
* wake-sleep and reweighted wake-sleep (Sec. 3.2.2), ``_wake_sleep``:
  :func:`wake_sleep`, :func:`rws`;
* joint stochastic approximation (Sec. 3.2.3), ``_jsa``: :func:`jsa`, its
  chain state :class:`JSAState`, :func:`jsa_state` (a state from given
  latents), :func:`jsa_latents` (the latents of a state), :func:`cache_nbytes`;
* adversarial learning (Sec. 3.2.4), ``_adversarial``: :func:`gan`,
  :func:`fgan` (VDM, Algorithm 6; its f-divergences, their conventions and
  output activations in ``_divergences``: :data:`DIVERGENCES`),
  :func:`wgan` (+ :func:`clip_critic`),
  :func:`wgan_gp`, :func:`hinge_gan`, PacGAN by ``pack=m``;
  ``_conditional_gan``: :func:`cgan`, :func:`acgan`; ``_ali``: :func:`ali`;
  ``_avb`` (Sec. 3.2.1, Eq. 15-16): :func:`avb`;
* random fields (Sec. 4), ``_random_field``: :func:`pcd` (SML, Algorithm 7),
  :func:`cd`; ``_nrf``: :func:`exclusive_nrf`, :func:`inclusive_nrf`
  (Algorithm 8), :func:`trf_sa` (trans-dimensional random fields over sentences by
  SA with MIS, Eq. 44; :class:`TRFSAState`); ``_nce``: :func:`nce` (Algorithm 9),
  :func:`dnce` (``learn_log_z=False`` for a TRF's per-length ζ_l).

The building kit, for writing a new estimator (as optax publishes
``stateless``): :func:`from_objective` (a differentiable stochastic objective
-> Estimator), :func:`score_function_estimator` (a REINFORCE-style surrogate
over K draws of q held fixed -> Estimator; Algorithm 3, Eq. 11),
:func:`complete_grads` (zero grads for the groups an estimator does not
move), :func:`critic_state_init` (``init`` of estimators whose state is the
critic's mutable state) and :func:`players_grads` (both players' gradients
of a two-player game from one forward pass).

One option vocabulary.  Every option of every factory is keyword-only.

* ``num_samples`` is K, the samples drawn per example, everywhere (estimators,
  :func:`sajax.evaluate.iw_log_likelihood` / ``iw_nll`` / ``token_nll`` /
  ``collapse_metrics``, :func:`sajax.diagnostics.high_k_reference`).  It is
  REQUIRED, with no default, wherever it appears in an estimator or an
  importance-weighted evaluator: K changes the objective (the IW-LB I_K of
  Eq. 19 for ``iwae``, ``dreg``, ``vimco``, ``rws``; the leave-one-out
  baselines of ``rloo`` and ``vimco``, which need K >= 2) or at least the
  estimate's variance and cost, and a hidden default hides that.  DisARM
  counts antithetic pairs (``num_pairs``, 2 samples each), also required.
  Plain Monte Carlo averages of K-free quantities (``sajax.evaluate.mean_kl``,
  ``posterior_means``, ``reconstruction``) keep a default; ``collapse_metrics``
  calls theirs ``mc_samples``; the NRF estimators' per-iteration generator
  draws are ``num_model_samples`` (not per example).
* ``num_moves`` is the length of every Markov chain run per iteration, k of
  Algorithm 2 (:func:`pcd`, :func:`cd`, :func:`jsa`, :func:`inclusive_nrf`,
  :func:`trf_sa`); persistent chains are ``num_chains`` (:func:`pcd`, :func:`trf_sa`).
* The adversarial estimators default to the non-saturating generator loss
  (:func:`gan`, :func:`fgan`, :func:`cgan`, :func:`acgan`, :func:`ali`);
  ``generator_loss="minimax"`` (``source_loss`` for AC-GAN) is Eq. 28 as written.
* State sized by the data is sized in ``init`` from the training set it
  receives (:func:`jsa`'s cache, :func:`pcd`'s chains from data).

Contracts (DESIGN.md, "The four pieces"): ``init(key, params, data)`` takes
the WHOLE training set ``data`` ``[N, ...]`` as given to :func:`sajax.sa.fit`;
``estimate(params, state, key, batch)`` returns a DESCENT direction for every
group of ``params`` (missing groups raise a ValueError naming them) and
metrics with their natural sign, the estimator's objective always also under
``sajax.core.OBJECTIVE`` (``"objective"``).
"""
from sajax.core import DiscreteLayers, complete_grads
from sajax.estimators._adversarial import (
    clip_critic,
    fgan,
    gan,
    hinge_gan,
    pack_samples,
    players_grads,
    wgan,
    wgan_gp,
)
from sajax.estimators._ali import ali, ali_reconstruction
from sajax.estimators._avb import avb, pair_features
from sajax.estimators._divergences import DIVERGENCES, Activation, Divergence, check_activation
from sajax.estimators._common import critic_state_init, from_objective, score_function_estimator
from sajax.estimators._conditional_gan import acgan, cgan
from sajax.estimators._jsa import jsa
from sajax.estimators._likelihood import maximum_likelihood
from sajax.estimators._jsa_cache import JSAState, cache_nbytes, jsa_latents, jsa_state
from sajax.estimators._layerwise import (
    discrete_layers,
    disarm,
    gumbel_softmax,
    muprop,
    straight_through,
)
from sajax.estimators._nce import (LOG_Z, NoiseModel, dnce, fit_gaussian_noise, gaussian_noise_model,
                                   gaussian_noise_params, nce, with_log_z)
from sajax.estimators._nrf import (
    TRFSAState,
    exclusive_nrf,
    inclusive_nrf,
    inclusive_nrf_samples,
    inclusive_nrf_update,
    trf_sa,
    trf_sa_update,
)
from sajax.estimators._refined_q import (
    ReverseModel,
    auxiliary_bound,
    hvi,
    leapfrog,
    mlp_reverse_model,
    refine_gaussian,
    semi_amortized,
)
from sajax.estimators._random_field import CDState, ChainKernel, PCDState, cd, cd_moves, gibbs_transition, langevin_transition, mala_transition, pcd
from sajax.estimators._score_function import NVILState, nvil, nvil_baseline, rloo, vimco
from sajax.estimators._variational import dreg, iwae, reinforce, reparam_elbo, stl_elbo
from sajax.estimators._wake_sleep import PHI_UPDATES, rws, wake_sleep

__all__ = [
    # the building kit
    "from_objective",
    "score_function_estimator",
    "complete_grads",
    "critic_state_init",
    "players_grads",
    # variational (Sec. 3.2.1)
    "reinforce",
    "reparam_elbo",
    "stl_elbo",
    "iwae",
    "dreg",
    # more expressive q and the amortization gap (Sec. 3.2.1, items 4-5)
    "semi_amortized",
    "refine_gaussian",
    "hvi",
    "leapfrog",
    "auxiliary_bound",
    "ReverseModel",
    "mlp_reverse_model",
    # exact likelihoods (Sec. 3.1.3)
    "maximum_likelihood",
    # discrete latents: score-function family
    "nvil",
    "nvil_baseline",
    "NVILState",
    "rloo",
    "vimco",
    # discrete latents: layer by layer
    "DiscreteLayers",
    "discrete_layers",
    "muprop",
    "disarm",
    "straight_through",
    "gumbel_softmax",
    # wake-sleep (Sec. 3.2.2)
    "wake_sleep",
    "rws",
    "PHI_UPDATES",
    # JSA (Sec. 3.2.3)
    "jsa",
    "JSAState",
    "jsa_state",
    "jsa_latents",
    "cache_nbytes",
    # adversarial (Sec. 3.2.4)
    "gan",
    "fgan",
    "wgan",
    "wgan_gp",
    "hinge_gan",
    "clip_critic",
    "pack_samples",
    "DIVERGENCES",
    "Divergence",
    "Activation",
    "check_activation",
    "cgan",
    "acgan",
    "ali",
    "ali_reconstruction",
    "avb",
    "pair_features",
    # random fields (Sec. 4)
    "pcd",
    "cd",
    "cd_moves",
    "CDState",
    "PCDState",
    "ChainKernel",
    "langevin_transition",
    "mala_transition",
    "gibbs_transition",
    "exclusive_nrf",
    "inclusive_nrf",
    "inclusive_nrf_samples",
    "inclusive_nrf_update",
    "trf_sa",
    "trf_sa_update",
    "TRFSAState",
    "nce",
    "dnce",
    "NoiseModel",
    "with_log_z",
    "fit_gaussian_noise",
    "gaussian_noise_model",
    "gaussian_noise_params",
    "LOG_Z",
]
