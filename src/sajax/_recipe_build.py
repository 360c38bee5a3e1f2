"""Turns a checked config (``sajax.recipes.config_for``) into the pieces
``sajax.sa.fit`` needs, by reading the tables of :mod:`sajax.recipes`.

An entry of ``MODELS`` / ``ESTIMATORS`` names its factory (in :mod:`sajax.models`
/ :mod:`sajax.estimators`) and maps the factory's arguments to names; a
:class:`Context` resolves a name to a part of the model being built (``"model"``,
``"guide"``, ``"critic"``, ...), a setting of the config, or a value of
:data:`DERIVED` (computed from the config and the data).  Each model family is
one entry of :data:`BUILDERS`: it loads the family's data, builds the model and
the estimator from their entries, initializes the parameters and picks the
optimizer.  Nothing here branches on a model's or an estimator's name.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import optax

from sajax import recipes
from sajax._pieces import DATA, Data, Pieces, learning_rate, make_optimizer, players, steps_per_epoch, zeta_by_sgd
from sajax.core import CRITIC, ENCODER, GENERATOR, GUIDE, MODEL, POTENTIAL, SAMPLER

# the settings that name the pieces (never a factory's argument)
_NAMES = ("model", "estimator")


class Context:
    """The names a table entry may use while one recipe is built.

    :meth:`part` (an entry's ``inputs``) is a part set by the family's builder
    (``parts``: ``spec``, ``critic``, ...), a value of :data:`DERIVED` (computed
    once) or an attribute of ``parts['spec']`` (``model``, ``guide``, ``layers``);
    ``ctx[name]`` (``args``, ``options``, ``groups``) is a setting of ``cfg`` if the
    config has it, else the part.  A family may give a derived name its own meaning
    (:data:`FAMILY_DERIVED`: NCE's noise is a Gaussian on a toy density, an LSTM LM
    on sentences).
    """

    def __init__(self, cfg: dict, data: Data, load_data: Callable | None = None, **parts):
        self.cfg, self.data, self.load_data, self.parts = cfg, data, load_data, dict(parts)
        self.key = jax.random.PRNGKey(cfg["seed"])
        self.derived = {**DERIVED, **FAMILY_DERIVED.get(recipes.MODELS[cfg["model"]].family, {})}
        self._derived = {}

    def has(self, name: str) -> bool:
        """False only for a setting that this config does not hold (its argument is left out)."""
        return name in self.cfg or name not in recipes.SETTINGS

    def __getitem__(self, name: str):
        if name in self.cfg and name not in _NAMES:
            return self.cfg[name]
        return self.part(name)

    def part(self, name: str):
        if name in self.parts:
            return self.parts[name]
        if name in self.derived:
            if name not in self._derived:
                self._derived[name] = self.derived[name](self)
            return self._derived[name]
        spec = self.parts.get("spec")
        if spec is not None and hasattr(spec, name):
            return getattr(spec, name)
        raise KeyError(f"recipe table name {name!r} is neither a part of {self.cfg['model']}, a setting nor a "
                       f"derived value (sajax._recipe_build.DERIVED)")


def call(factory: Callable, entry: recipes.Entry, ctx: Context, **fixed):
    """``factory(*inputs, **args, **options, **fixed)`` of a table entry: inputs are parts
    (:meth:`Context.part`), args settings or parts (``ctx[name]``)."""
    kwargs = {kw: ctx[name] for kw, name in entry.args.items() if ctx.has(name)}
    for name in entry.options:
        kwargs.update(ctx[name])
    return factory(*(ctx.part(name) for name in entry.inputs), **kwargs, **entry.fixed, **fixed)


def build_model(ctx: Context):
    """The model spec of ``MODELS[cfg['model']]`` (with the estimator's ``model_fixed``); it
    becomes ``ctx.parts['spec']``."""
    from sajax import models

    entry = recipes.MODELS[ctx.cfg["model"]]
    spec = call(getattr(models, entry.factory), entry, ctx,
                **recipes.ESTIMATORS[ctx.cfg["estimator"]].model_fixed)
    ctx.parts["spec"] = spec
    return spec


def build_estimator(ctx: Context):
    """The estimator of ``ESTIMATORS[cfg['estimator']]`` on the model in ``ctx``."""
    from sajax import estimators

    entry = recipes.ESTIMATORS[ctx.cfg["estimator"]]
    return call(getattr(estimators, entry.factory), entry, ctx)


def init_params(ctx: Context, key=None) -> dict:
    """``spec.init(key)`` (default: the config's seed) plus the estimator's own groups
    (NVIL's baseline ψ, an NRF's sampler φ, NCE's log Z)."""
    params = ctx.parts["spec"].init(ctx.key if key is None else key)
    ctx.parts["params"] = params
    return {**params, **{group: ctx[name] for group, name in recipes.ESTIMATORS[ctx.cfg["estimator"]].groups.items()}}


def _transforms(ctx: Context) -> dict:
    """``{group: optax transform}`` the estimator chains after a group's optimizer (WGAN's clipping)."""
    return {group: ctx[name] for group, name in recipes.ESTIMATORS[ctx.cfg["estimator"]].transforms.items()}


def _pieces(ctx: Context, estimator, optimizer, params, **kw) -> Pieces:
    model, est = recipes.MODELS[ctx.cfg["model"]], recipes.ESTIMATORS[ctx.cfg["estimator"]]
    d = ctx.data
    kw.setdefault("require_binary", d.preprocess is None and model.data == "mnist")
    return Pieces(ctx.parts["spec"], estimator, optimizer, params, d.train, d.test, d.preprocess, family=model.family,
                  evaluation=model.evaluation or model.family, draws=ctx[est.draws] if est.draws else None, **kw)


# --------------------------------------------------------------------------
# Values derived from the config and the data (the tables name them)


def _cache_from(ctx: Context):
    """JSA: the step after which chains start at their cached latents (None: never)."""
    share = float(ctx.cfg["cache_on_after"])
    total = int(round(float(ctx.cfg["epochs"]) * (ctx.data.train.shape[0] // int(ctx.cfg["batch_size"]))))
    return None if share >= 1.0 else int(round(share * total))


def _cd_ramp_steps(ctx: Context):
    """CD: the steps over which the Gibbs moves rise from 1 to ``moves`` (None: no ramp)."""
    if ctx.cfg["ramp_moves"] <= 0:
        return None
    total = ctx.cfg["epochs"] * steps_per_epoch(ctx.cfg, ctx.data.train.shape[0])
    return max(int(round(float(ctx.cfg["ramp_moves"]) * total)), 1)


def _estimators():
    from sajax import estimators

    return estimators


def _models():
    from sajax import models

    return models


def _inclusive_nrf_draws(ctx: Context):
    """``(params, key, n) -> {"raw": ..., "revised": ...}``: the sampler's draws and their SGLD revisions."""
    draw = _estimators().inclusive_nrf_samples(ctx["model"], ctx["toy_sampler"], num_moves=int(ctx.cfg["moves"]),
                                                step_size=float(ctx.cfg["step_size"]),
                                                noise_scale=float(ctx.cfg["noise_scale"]))

    def draws(params, key, n):
        raw, revised = draw(params, key, n)
        return {"raw": raw, "revised": revised}
    return draws


def _generator_draws(ctx: Context):
    """``(params, key, n) -> {"generator": ...}``: the exclusive-NRF generator's draws."""
    generator = ctx["toy_generator"]
    return lambda params, key, n: {"generator": generator.sample(params[SAMPLER], key, n)}


DERIVED = {
    "x_dim": lambda ctx: int(ctx.data.train.shape[1]),
    "image_side": lambda ctx: int(round(ctx.data.train.shape[1] ** 0.5)),
    "vocab_size": lambda ctx: ctx.data.vocab.size,
    "sentence_length": lambda ctx: int(ctx.data.train.shape[1]),
    "layer_sizes": lambda ctx: recipes.layer_sizes(ctx.cfg),
    "hidden_layers": lambda ctx: (int(ctx.cfg["hidden"]),),
    "spectral_norm_on": lambda ctx: bool(ctx.cfg["spectral_norm"]),
    "labels": lambda ctx: ctx.data.labels,
    "jsa_latent": lambda ctx: "continuous" if recipes.MODELS[ctx.cfg["model"]].latent == "continuous" else "bernoulli",
    "jsa_cache_from": _cache_from,
    "cd_ramp_steps": _cd_ramp_steps,
    "nvil_baseline": lambda ctx: _estimators().nvil_baseline(ctx["x_dim"]),
    "nvil_baseline_params": lambda ctx: ctx["nvil_baseline"][0](jax.random.fold_in(ctx.key, 7)),
    "toy_sampler": lambda ctx: _models().song_ou_toy_generator(2),
    "toy_sampler_params": lambda ctx: ctx["toy_sampler"].init(ctx["aux_key"]),
    "toy_generator": lambda ctx: _models().batchnorm_generator(2),
    "toy_generator_params": lambda ctx: ctx["toy_generator"].init(ctx["aux_key"]),
    "clip_critic": lambda ctx: _estimators().clip_critic(float(ctx.cfg["clip"])),
    "inclusive_nrf_draws": _inclusive_nrf_draws,
    "generator_draws": _generator_draws,
}




def _sentence_lm(ctx: Context):
    """The LSTM LM of a TRF recipe: NCE's noise, DNCE's noise model, the SA generator."""
    return _models().lstm_lm(ctx["vocab_size"], ctx["sentence_length"], embed=int(ctx.cfg["embed"]),
                             hidden=int(ctx.cfg["hidden"]))


def _pretrained_noise(ctx: Context):
    """φ of the LSTM LM after ``noise_epochs`` epochs of maximum likelihood on the training
    sentences (Adam, ``lr``; seeded by the config): NCE's fixed noise (Wang & Ou 2018a) and the
    start of DNCE's noise and the SA generator.  ``noise_epochs=0``: the LM as initialized."""
    from sajax import sa

    lm = ctx["sentence_lm"]
    phi = lm.init(jax.random.fold_in(ctx.key, 11))
    epochs = float(ctx.cfg["noise_epochs"])
    if epochs <= 0:
        return phi
    print(f"pre-training the LSTM LM ({epochs:g} epochs of maximum likelihood) ...", flush=True)
    ml = _estimators().maximum_likelihood(lm.model)
    res = sa.fit(ml, optax.adam(ctx.cfg["lr"]), {MODEL: phi}, ctx.data.train, key=jax.random.fold_in(ctx.key, 12),
                 batch_size=int(ctx.cfg["batch_size"]), epochs=epochs, progress=False)
    return res.state.params[MODEL]


# Names whose meaning depends on the model family (they replace DERIVED's in that family).
FAMILY_DERIVED = {
    "energy": {
        "noise": lambda ctx: _estimators().fit_gaussian_noise(ctx.data.train),
        "noise_model": lambda ctx: _estimators().gaussian_noise_model(),
        "noise_params": lambda ctx: _estimators().gaussian_noise_params(ctx.data.train),
        "nce_potential": lambda ctx: _estimators().with_log_z(ctx["params"][POTENTIAL]),
        "learn_log_z": lambda ctx: True,
    },
    "trf": {
        "length_prior": lambda ctx: _models().trf_length_prior(ctx.data.train, ctx["sentence_length"]),
        "sentence_lm": _sentence_lm,
        "noise_model": lambda ctx: ctx["sentence_lm"].noise,
        "noise_params": _pretrained_noise,
        "noise": lambda ctx: ctx["noise_model"].dist(ctx["noise_params"]),
        "nce_potential": lambda ctx: ctx["params"][POTENTIAL],    # ζ_l are in θ̂: no extra log Z
        "learn_log_z": lambda ctx: False,
    },
    "lm": {"random_mask_log_prob": lambda ctx: None},
}


# --------------------------------------------------------------------------
# One builder per model family


def _directed(ctx: Context) -> Pieces:
    """Latent-variable models on MNIST (Adam, ε = 1e-4, under ``lr_decay``) and the text VAE (Adam)."""
    build_model(ctx)
    estimator = build_estimator(ctx)
    params = init_params(ctx)
    text = ctx.data.vocab is not None
    opt = optax.adam(ctx.cfg["lr"]) if text else make_optimizer(ctx.cfg, ctx.data.train.shape[0])
    return _pieces(ctx, estimator, opt, params)


def _adversarial(ctx: Context) -> Pieces:
    """A generator and a critic (one Adam each; WGAN's clipping chained after the critic's)."""
    build_model(ctx)
    estimator = build_estimator(ctx)
    opt = players(ctx.cfg, GENERATOR, CRITIC, _transforms(ctx) or None)
    return _pieces(ctx, estimator, opt, init_params(ctx), labels=ctx.data.labels)


def _ali(ctx: Context) -> Pieces:
    """ALI (Dumoulin et al. 2017) on a toy density: G_θ(z) and E_φ(x) MLPs, z ∈ R², and
    PacGAN's maxout critic on the pairs [x, z]."""
    from sajax._recipe_eval import AliSpec
    from sajax.models import gaussian_encoder, mlp_decoder, mlp_gan

    decoder, encoder = mlp_decoder(2, 2, hidden=(400, 400)), gaussian_encoder(2, 2, hidden=(400, 400))
    pair = mlp_gan(x_dim=4, spectral_norm=bool(ctx.cfg.get("spectral_norm", 0)))
    k = jax.random.split(ctx.key, 3)
    params = {GENERATOR: decoder.init(k[0]), ENCODER: encoder.init(k[1]), CRITIC: pair.init(k[2])[CRITIC]}
    ctx.parts.update(spec=AliSpec(decoder, encoder, pair.critic, 2), decoder_sampler=decoder.sampler,
                     encoder_sampler=encoder.sampler, critic=pair.critic)
    return _pieces(ctx, build_estimator(ctx), players(ctx.cfg, (GENERATOR, ENCODER), CRITIC), params)


def _avb(ctx: Context) -> Pieces:
    """AVB (Mescheder et al. 2017) on dynamically binarized MNIST: the IWAE paper's
    one-layer decoder (50 Gaussian latents), an implicit encoder h = f_φ([x, ε]) and an
    adversary T_ψ(x, h), a LeakyReLU MLP on [x, h]."""
    from sajax.models import implicit_encoder, iwae_one_layer, mlp_gan

    x_dim = ctx["x_dim"]
    vae, encoder = iwae_one_layer(x_dim), implicit_encoder(x_dim, 50, hidden=(200, 200))
    adversary = mlp_gan(x_dim=x_dim + 50, critic_hidden=(256, 256), maxout=None)
    k = jax.random.split(ctx.key, 3)
    params = {MODEL: vae.init(k[0])[MODEL], GUIDE: encoder.init(k[1]), CRITIC: adversary.init(k[2])[CRITIC]}
    ctx.parts.update(spec=vae, guide=encoder.sampler, critic=adversary.critic)
    return _pieces(ctx, build_estimator(ctx), players(ctx.cfg, (MODEL, GUIDE), CRITIC), params)


def _energy(ctx: Context) -> Pieces:
    """A potential network on a 2-D toy density (PCD-Langevin from noise, NCE, the NRF
    methods); one Adam, or one per player when the estimator brings a sampler."""
    k_pot, k_aux = jax.random.split(ctx.key)
    ctx.parts.update(aux_key=k_aux, chain_kernel="langevin",
                     chain_options=dict(init="noise", step_size=float(ctx.cfg.get("step_size", 0.01)),
                                        noise_scale=float(ctx.cfg.get("noise_scale", 0.01))))
    build_model(ctx)
    estimator = build_estimator(ctx)
    params = init_params(ctx, k_pot)
    opt = players(ctx.cfg, POTENTIAL, SAMPLER) if SAMPLER in params else optax.adam(ctx.cfg["lr"], b1=ctx.cfg["beta1"])
    return _pieces(ctx, estimator, opt, params)


def _rbm(ctx: Context) -> Pieces:
    """A binary RBM by PCD or CD-k with block Gibbs, visible biases at the data's base
    rates, SGD with momentum and weight decay (:func:`rbm_optimizer`)."""
    ctx.parts.update(chain_kernel="gibbs", chain_options={})
    build_model(ctx)
    estimator = build_estimator(ctx)
    params = base_rate_init(init_params(ctx), ctx.data.train)
    return _pieces(ctx, estimator, rbm_optimizer(ctx.cfg, ctx.data.train.shape[0]), params)


def _tractable(ctx: Context) -> Pieces:
    """NADE / MADE / PixelCNN by maximum likelihood; with ``eval_every`` or ``patience``
    the validation split (binarized once, seed + 2) for the exact validation NLL."""
    from sajax import data as D

    build_model(ctx)
    estimator = build_estimator(ctx)
    valid = None
    if ctx.cfg["eval_every"] > 0 or ctx.cfg["patience"] > 0:
        valid = D.fixed_binarize(np.asarray((ctx.load_data or D.load_mnist)("valid"), np.float32), seed=ctx.cfg["seed"] + 2)
    return _pieces(ctx, estimator, optax.adam(ctx.cfg["lr"]), init_params(ctx), valid=valid)


def _trf(ctx: Context) -> Pieces:
    """A TRF over sentences by NCE, DNCE or SA with MIS: one Adam, or one per player when the
    estimator trains the LSTM noise / generator too, with ζ by SGD at ``zeta_lr`` where the
    estimator reads it (SA); the evaluation's importance-sampling proposal is that LM (the
    fixed noise of NCE)."""
    build_model(ctx)
    estimator = build_estimator(ctx)
    params = init_params(ctx)
    wrap = {POTENTIAL: zeta_by_sgd(float(ctx.cfg["zeta_lr"]))} if "zeta_lr" in ctx.cfg else None
    opt = players(ctx.cfg, POTENTIAL, SAMPLER, wrap=wrap) if SAMPLER in params else optax.adam(ctx.cfg["lr"])
    return _pieces(ctx, estimator, opt, params, proposal=(ctx["noise_model"], ctx["noise_params"]))


def _lm(ctx: Context) -> Pieces:
    """An LSTM LM by maximum likelihood (Adam); its φ is the MODEL group."""
    spec = build_model(ctx)
    params = {MODEL: spec.init(ctx.key)}
    return _pieces(ctx, build_estimator(ctx), optax.adam(ctx.cfg["lr"]), params)


def rbm_optimizer(cfg: dict, num_examples: int) -> optax.GradientTransformation:
    """SGD for RBMs as Hinton's practical guide (2010) trains them: momentum 0.5 for the
    first 5 epochs, then ``momentum``; L2 ``weight_decay`` on W only; the step ``lr``
    under ``lr_decay`` (``harmonic``: lr → lr/10 over the run, as natural_bm's CD-25
    reproduction of Salakhutdinov & Murray 2008 decays 0.01 → 0.001)."""
    warm = 5 * steps_per_epoch(cfg, num_examples)
    momentum = optax.piecewise_constant_schedule(0.5, {warm: float(cfg["momentum"]) / 0.5})
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate(cfg, num_examples), momentum=momentum)
    only_w = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
        lambda path, _: getattr(path[-1], "key", None) == "W", params)
    return optax.chain(optax.add_decayed_weights(float(cfg["weight_decay"]), mask=only_w), sgd)


def base_rate_init(params: dict, train) -> dict:
    """Visible biases b_i = log p_i / (1 - p_i) of the training data's unit means (Hinton 2010, Sec. 8)."""
    import jax.numpy as jnp

    p = np.clip(np.mean(np.asarray(train, np.float64), axis=0), 1e-3, 1.0 - 1e-3)
    theta = dict(params[POTENTIAL], b=jnp.asarray(np.log(p / (1.0 - p)), jnp.float32))
    return {**params, POTENTIAL: theta}


# every family of sajax.recipes.FAMILIES
BUILDERS = {"latent": _directed, "text": _directed, "adversarial": _adversarial, "ali": _ali, "avb": _avb,
            "energy": _energy, "rbm": _rbm, "tractable": _tractable, "trf": _trf, "lm": _lm}


def load_data_for(cfg: dict, load_data: Callable | None = None) -> Data:
    """The data of ``cfg``'s model (its ``data`` column); ``load_data(split)`` replaces MNIST."""
    return DATA[recipes.MODELS[cfg["model"]].data](cfg, load_data)


def build(cfg: dict, *, load_data: Callable | None = None) -> Pieces:
    """Model, estimator, optimizer, initial params and data for ``cfg`` (from
    :func:`sajax.recipes.config_for`).

    ``load_data(split) -> [N, 784]`` defaults to :func:`sajax.data.load_mnist`.
    """
    ctx = Context(cfg, load_data_for(cfg, load_data), load_data)
    return BUILDERS[recipes.MODELS[cfg["model"]].family](ctx)
