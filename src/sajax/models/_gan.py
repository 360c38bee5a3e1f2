"""Implicit generators and critics for adversarial learning (review Sec. 3.2.4;
the generator is the implicit model x = G_θ(ε) of Sec. 3.1, Eq. 5).

A :class:`GANSpec` holds the two players as sajax protocols:

* ``generator``: :class:`sajax.core.ImplicitGenerator`,
  ``sample(θ, key, n[, condition]) -> x [n, x_dim]``, ε ~ N(0, I_latent),
  differentiable in θ;
* ``critic``: :class:`sajax.core.Critic`, the adversary V_ψ of Eq. 28 (the
  discriminator's logit), of Eq. 33-34 (f-GAN's V, T = g_f(V)) or the
  critic T_ψ of Eq. 37 (WGAN): ``apply(ψ, state, x, condition=None)
  -> (v, state)`` with ``v [B]`` (or ``[B, C]`` for several outputs) and
  ``init_state(key) -> state`` (the spectral-norm vectors, ``()`` without
  spectral normalization; see :mod:`sajax.models._spectral`);
* ``init(key) -> {"generator": θ, "critic": ψ}``.  The critic's mutable state
  is NOT in the params: the estimators get it from ``critic.init_state``.

Two families: :func:`mlp_gan` (PacGAN's 2-D set-up, Lin et al. 2018: a
generator 2 → 400×4 (BN + ReLU) → 2 and a critic of three maxout layers of
200 units × 5 pieces; maxout: Goodfellow et al. 2013) and :func:`dcgan` (a small DCGAN-style convolutional
pair for 28×28 images, Radford et al. 2016).

Batch normalization in the generator.  It always normalizes with the mean
and variance of the batch being generated (train-mode BN) and keeps no
running averages, so the generator has no mutable state and ``sample`` is a
pure function of ``(θ, key, n)``.  A consequence: a sample depends on the
other samples of its batch, and a batch of one is degenerate (its variance
is 0, so every BN layer outputs its bias).  Draw samples for evaluation in
large batches (hundreds or more), as in training.

Conditional models (review Sec. 3.2.4, item 7), ``num_classes=K``:

* generator G_θ(c, ε): one-hot(c) concatenated to ε (Mirza & Osindero 2014);
* ``conditioning="concat"``: the critic sees one-hot(c) concatenated to x
  (to the pixels as K constant channels for :func:`dcgan`);
* ``conditioning="projection"``: the projection discriminator of Miyato &
  Koyama (2018), v = ψ_out(φ(x)) + ⟨embed(c), φ(x)⟩, with φ(x) the critic's
  last hidden features and ``embed`` a bias-free linear map of one-hot(c)
  (spectrally normalized with the rest when ``spectral_norm=True``);
* AC-GAN (Odena et al. 2017): ``critic_outputs=K+1`` (or
  ``conditioning="acgan"``): an unconditional-input critic with output
  ``[B, K+1]``, column 0 the source logit, columns 1..K the class logits;
  its ``critic.num_classes`` is None (it takes no condition), the
  generator's is K.

Bad input fails at trace time (shapes are static): a condition given to an
unconditional player or missing for a conditional one, labels not int
``[B]``, an ``x`` with the wrong feature size -> ValueError/TypeError naming it.

Parameter trees: generator ``{"hidden_0", "bn_0", ..., "out"}``; MLP critic
``{"hidden_0", ..., "head": {"out"[, "embed"]}}``, Flax's kernel layout
``[in, out]``.  A maxout layer with k pieces is a Dense of ``width·k``
outputs reshaped to ``[..., width, k]`` and maximized over the last axis.

Example::

    >>> import jax
    >>> spec = mlp_gan(generator_hidden=(8,), critic_hidden=(8,), maxout=2)
    >>> params = spec.init(jax.random.PRNGKey(0))
    >>> x = spec.generator.sample(params["generator"], jax.random.PRNGKey(1), 16)
    >>> v, state = spec.critic.apply(params["critic"], spec.critic.init_state(jax.random.PRNGKey(2)), x)
    >>> x.shape, v.shape, state
    ((16, 2), (16,), ())
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import CRITIC, GENERATOR, Critic, ImplicitGenerator, check_positive_int
from sajax.models._spectral import COLLECTION, SpectralConv, SpectralDense

__all__ = ["GANSpec", "BatchStatNorm", "CONDITIONINGS", "mlp_gan", "dcgan"]

CONDITIONINGS = ("concat", "projection", "acgan")
_LEAK = 0.2
_IMAGE = (28, 28)


# --------------------------------------------------------------------------
# Flax modules


class BatchStatNorm(nn.Module):
    """Batch normalization with the current batch's statistics only (train-mode
    BN without running averages, Ioffe & Szegedy 2015): no mutable state.

    ``y = scale · (x − mean) / sqrt(var + eps) + bias`` with mean and var over
    every axis but the last (features / channels).  Gradients flow through
    the batch statistics.  Shapes: ``[n, ..., C] -> [n, ..., C]``.
    """

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x):
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes)
        var = jnp.mean(jnp.square(x - mean), axis=axes)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * scale + bias


def _one_hot_concat(x, condition, num_classes):
    """``[x, one-hot(condition)]`` along the last axis (x unchanged if unconditional)."""
    if num_classes is None or condition is None:
        return x
    return jnp.concatenate([x, jax.nn.one_hot(condition, num_classes, dtype=x.dtype)], axis=-1)


def _dense(features, spectral, n_steps, name, use_bias=True):
    if spectral:
        return SpectralDense(features, use_bias=use_bias, n_steps=n_steps, name=name)
    return nn.Dense(features, use_bias=use_bias, name=name)


def _norm_relu(h, batch_norm, name):
    return jax.nn.relu(BatchStatNorm(name=name)(h) if batch_norm else h)


class _MLPGenerator(nn.Module):
    """G_θ(ε) or G_θ(c, ε): ``[n, latent] -> [n, x_dim]``, Dense (+ BN) + ReLU
    hidden layers, linear output.  Hidden Dense layers have no bias under BN
    (BN's mean subtraction would cancel it)."""

    x_dim: int
    hidden: tuple
    batch_norm: bool = True
    num_classes: Optional[int] = None

    @nn.compact
    def __call__(self, eps, condition=None):
        h = _one_hot_concat(eps, condition, self.num_classes)
        for i, width in enumerate(self.hidden):
            h = nn.Dense(width, use_bias=not self.batch_norm, name=f"hidden_{i}")(h)
            h = _norm_relu(h, self.batch_norm, f"bn_{i}")
        return nn.Dense(self.x_dim, name="out")(h)


class _CriticHead(nn.Module):
    """Output layer on features φ ``[B, F]``: ``ψ_out(φ)`` ``[B, outputs]``, plus
    the projection term ``⟨embed(c), φ⟩`` (Miyato & Koyama 2018) when
    ``projection``.  Returns ``[B]`` if ``outputs == 1``."""

    outputs: int = 1
    num_classes: Optional[int] = None
    projection: bool = False
    spectral: bool = False
    n_steps: int = 1

    @nn.compact
    def __call__(self, phi, condition=None):
        v = _dense(self.outputs, self.spectral, self.n_steps, "out")(phi)
        if self.projection:
            onehot = jax.nn.one_hot(condition, self.num_classes, dtype=phi.dtype)
            embed = _dense(phi.shape[-1], self.spectral, self.n_steps, "embed", use_bias=False)(onehot)
            v = v + jnp.sum(embed * phi, axis=-1, keepdims=True)
        return v[..., 0] if self.outputs == 1 else v


class _MLPCritic(nn.Module):
    """V_ψ(x) or V_ψ(c, x): maxout (k pieces) or LeakyReLU(0.2) (k = 1) layers,
    then :class:`_CriticHead`.  ``[B, in_dim] -> [B]`` or ``[B, outputs]``."""

    hidden: tuple
    maxout: int = 5
    outputs: int = 1
    num_classes: Optional[int] = None
    conditioning: Optional[str] = None  # None (unconditional input), "concat" or "projection"
    spectral: bool = False
    n_steps: int = 1

    @nn.compact
    def __call__(self, x, condition=None):
        h = _one_hot_concat(x, condition, self.num_classes) if self.conditioning == "concat" else x
        k = self.maxout
        for i, width in enumerate(self.hidden):
            h = _dense(width * k, self.spectral, self.n_steps, f"hidden_{i}")(h)
            h = jax.nn.leaky_relu(h, _LEAK) if k == 1 else jnp.max(h.reshape(h.shape[:-1] + (width, k)), -1)
        return _CriticHead(self.outputs, self.num_classes, self.conditioning == "projection",
                           self.spectral, self.n_steps, name="head")(h, condition)


class _ConvGenerator(nn.Module):
    """DCGAN-style G_θ: ``[n, latent] -> Dense -> 7×7×c0 -> ConvT(c1, 4, stride 2)
    -> 14×14 -> ConvT(1, 4, stride 2) -> 28×28 -> sigmoid``, flattened ``[n, 784]``."""

    channels: tuple = (64, 32)
    batch_norm: bool = True
    num_classes: Optional[int] = None

    @nn.compact
    def __call__(self, eps, condition=None):
        c0, c1 = self.channels
        h = _one_hot_concat(eps, condition, self.num_classes)
        h = nn.Dense(7 * 7 * c0, use_bias=not self.batch_norm, name="hidden_0")(h)
        h = _norm_relu(h, self.batch_norm, "bn_0").reshape((-1, 7, 7, c0))
        h = nn.ConvTranspose(c1, (4, 4), (2, 2), "SAME", use_bias=not self.batch_norm, name="hidden_1")(h)
        h = _norm_relu(h, self.batch_norm, "bn_1")
        h = nn.ConvTranspose(1, (4, 4), (2, 2), "SAME", name="out")(h)
        return jax.nn.sigmoid(h).reshape((h.shape[0], -1))


class _ConvCritic(nn.Module):
    """DCGAN-style V_ψ on flattened ``[B, pack·784]``: pixels as ``[B, 28, 28,
    pack]`` (+ K one-hot channels under concat) -> strided 4×4 convs + LeakyReLU
    -> flatten -> :class:`_CriticHead`."""

    channels: tuple = (32, 64)
    pack: int = 1
    outputs: int = 1
    num_classes: Optional[int] = None
    conditioning: Optional[str] = None
    spectral: bool = False
    n_steps: int = 1

    @nn.compact
    def __call__(self, x, condition=None):
        h = jnp.moveaxis(x.reshape((x.shape[0], self.pack) + _IMAGE), 1, -1)
        if self.conditioning == "concat":
            onehot = jax.nn.one_hot(condition, self.num_classes, dtype=x.dtype)[:, None, None, :]
            h = jnp.concatenate([h, jnp.broadcast_to(onehot, h.shape[:3] + onehot.shape[-1:])], -1)
        for i, c in enumerate(self.channels):
            name = f"hidden_{i}"
            conv = (SpectralConv(c, (4, 4), (2, 2), n_steps=self.n_steps, name=name) if self.spectral
                    else nn.Conv(c, (4, 4), (2, 2), name=name))
            h = jax.nn.leaky_relu(conv(h), _LEAK)
        return _CriticHead(self.outputs, self.num_classes, self.conditioning == "projection",
                           self.spectral, self.n_steps, name="head")(h.reshape((h.shape[0], -1)), condition)


# --------------------------------------------------------------------------
# Input checks (trace time: shapes and dtypes are static)


def _check_condition(condition, num_classes, batch: int, who: str):
    """None for an unconditional player; int labels ``[batch]`` for a conditional one."""
    if num_classes is None:
        if condition is not None:
            raise ValueError(f"{who} is unconditional (num_classes=None) but got a condition; "
                             f"build the model with num_classes=K for conditional GANs")
        return None
    if condition is None:
        raise ValueError(f"{who} is conditional (num_classes={num_classes}) and needs condition: "
                         f"int labels of shape [{batch}]")
    if np.shape(condition) != (batch,):
        raise ValueError(f"{who}: condition must be int labels of shape [{batch}] (one per example), "
                         f"got shape {np.shape(condition)}")
    if not isinstance(condition, jax.Array):
        condition = jnp.asarray(condition)
    if not jnp.issubdtype(condition.dtype, jnp.integer):
        raise TypeError(f"{who}: condition must be integer class labels, got dtype {condition.dtype}")
    if not isinstance(condition, jax.core.Tracer):
        c = np.asarray(condition)
        if c.size and (c.min() < 0 or c.max() >= num_classes):
            raise ValueError(f"{who}: condition labels must lie in [0, {num_classes}), "
                             f"got values in [{c.min()}, {c.max()}]")
    return condition


def _check_x(x, in_dim: int, pack: int):
    """``x [B, in_dim]`` or ValueError naming the expected feature size."""
    shape = tuple(np.shape(x))
    if len(shape) != 2 or shape[1] != in_dim:
        what = f"{in_dim}" if pack == 1 else f"{in_dim} = pack {pack} × {in_dim // pack}"
        raise ValueError(f"critic: x must have shape [B, {what}], got shape {shape}")
    return x


# --------------------------------------------------------------------------
# Adapters to the protocols


class GANSpec(NamedTuple):
    """A generator and a critic as sajax protocols (review Sec. 3.2.4).

    Attributes:
      generator: :class:`sajax.core.ImplicitGenerator` (``num_classes`` K or None).
      critic: :class:`sajax.core.Critic`; its state comes from ``critic.init_state``.
      init: ``key -> {"generator": θ, "critic": ψ}``.
      x_dim: D of one sample (the critic sees ``pack·D`` features).
      latent_dim: dimension of ε ~ N(0, I).
      num_classes: K of a conditional GAN, else None.
      conditioning: None (unconditional), ``"concat"``, ``"projection"`` or ``"acgan"``.
      critic_outputs: columns of ``v`` (1: ``v`` is ``[B]``).
      pack: PacGAN's m (the critic takes m samples concatenated along features).
    """

    generator: ImplicitGenerator
    critic: Critic
    init: Callable
    x_dim: int
    latent_dim: int
    num_classes: Optional[int]
    conditioning: Optional[str] = None
    critic_outputs: int = 1
    pack: int = 1


def _generator_adapter(module, latent_dim, num_classes, observation=None) -> ImplicitGenerator:
    """``sample(θ, key, n[, condition]) = G_θ([c,] ε)``, ε ~ N(0, I) ``[n, latent_dim]``."""

    def sample(theta, key, n, condition=None):
        n = check_positive_int("n", n)
        condition = _check_condition(condition, num_classes, n, "generator")
        eps = jax.random.normal(key, (n, latent_dim))
        return module.apply({"params": theta}, eps, condition)

    return ImplicitGenerator(sample=sample, observation=observation, num_classes=num_classes)


def _critic_adapter(module, in_dim, num_classes, spectral, pack):
    """``(Critic, dummy_condition)``: ``apply(ψ, state, x, condition=None) -> (v, state)``; state = the
    ``"spectral"`` collection (updated by each call) or ``()``."""

    def dummy_condition():
        return None if num_classes is None else jnp.zeros((2,), jnp.int32)

    def init_state(key):
        if not spectral:
            return ()
        return module.init({"params": key}, jnp.zeros((2, in_dim)), dummy_condition())[COLLECTION]

    def apply(psi, state, x, condition=None):
        x = _check_x(x, in_dim, pack)
        condition = _check_condition(condition, num_classes, x.shape[0], "critic")
        if not spectral:
            return module.apply({"params": psi}, x, condition), state
        if not state:
            raise ValueError("critic: this critic is spectrally normalized; pass the state from "
                             "critic.init_state(key) (then the state each call returns)")
        v, updates = module.apply({"params": psi, COLLECTION: state}, x, condition, mutable=[COLLECTION])
        return v, updates[COLLECTION]

    return Critic(apply=apply, init_state=init_state, num_classes=num_classes), dummy_condition


def _make_spec(gen_module, critic_module, *, x_dim, latent_dim, num_classes, conditioning,
               outputs, spectral, pack, observation=None) -> GANSpec:
    """Wire the two Flax modules into a :class:`GANSpec`."""
    critic_classes = None if conditioning in (None, "acgan") else num_classes
    generator = _generator_adapter(gen_module, latent_dim, num_classes, observation)
    critic, dummy_condition = _critic_adapter(critic_module, pack * x_dim, critic_classes, spectral, pack)

    def init(key):
        k_gen, k_critic = jax.random.split(key)
        gen_c = None if num_classes is None else jnp.zeros((2,), jnp.int32)
        theta = gen_module.init(k_gen, jnp.zeros((2, latent_dim)), gen_c)["params"]
        psi = critic_module.init({"params": k_critic}, jnp.zeros((2, pack * x_dim)), dummy_condition())["params"]
        return {GENERATOR: theta, CRITIC: psi}

    return GANSpec(generator, critic, init, x_dim, latent_dim, num_classes, conditioning, outputs, pack)


# --------------------------------------------------------------------------
# Factories


def _widths(name, widths) -> tuple:
    if isinstance(widths, int) and not isinstance(widths, bool):
        widths = (widths,)
    widths = tuple(check_positive_int(name, w) for w in widths)
    if not widths:
        raise ValueError(f"{name} must give at least one width, got ()")
    return widths


def _check_players(num_classes, conditioning, critic_outputs, pack):
    """Validated ``(num_classes, conditioning, critic_outputs, pack)``: conditioning
    resolved to None (unconditional), "concat", "projection" or "acgan"."""
    if conditioning not in CONDITIONINGS:
        raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
    critic_outputs = check_positive_int("critic_outputs", critic_outputs)
    pack = check_positive_int("pack", pack)
    if num_classes is None:
        if conditioning != "concat":
            raise ValueError(f"conditioning={conditioning!r} needs num_classes=K (a conditional GAN)")
        return None, None, critic_outputs, pack
    num_classes = check_positive_int("num_classes", num_classes, minimum=2)
    if pack != 1:
        raise ValueError("pack > 1 (PacGAN) is supported for unconditional GANs only; got num_classes "
                         f"={num_classes} with pack={pack}")
    if conditioning == "acgan" or (conditioning == "concat" and critic_outputs == num_classes + 1):
        if critic_outputs not in (1, num_classes + 1):
            raise ValueError(f"an AC-GAN critic has num_classes + 1 = {num_classes + 1} outputs, "
                             f"got critic_outputs={critic_outputs}")
        return num_classes, "acgan", num_classes + 1, pack
    if conditioning == "projection" and critic_outputs != 1:
        raise ValueError(f"a projection critic has one output, got critic_outputs={critic_outputs}")
    return num_classes, conditioning, critic_outputs, pack


def _check_maxout(maxout) -> int:
    if maxout is None:
        return 1
    if isinstance(maxout, bool) or not isinstance(maxout, (int, np.integer)) or maxout < 1:
        raise ValueError(f"maxout must be an integer >= 1 (pieces per unit; 1 or None: LeakyReLU), "
                         f"got {maxout!r}")
    return int(maxout)


def mlp_gan(x_dim: int = 2, latent_dim: int = 2, generator_hidden: Sequence[int] = (400,) * 4,
            critic_hidden: Sequence[int] = (200,) * 3, maxout: Optional[int] = 5,
            batch_norm: bool = True, spectral_norm: bool = False, num_classes: Optional[int] = None,
            conditioning: str = "concat", critic_outputs: int = 1, *, pack: int = 1,
            sn_steps: int = 1) -> GANSpec:
    """MLP generator and critic; defaults are PacGAN's 2-D set-up (Lin et al. 2018).

    Generator: ε ~ N(0, I_latent) ``[n, latent_dim]`` (with one-hot(c) appended
    when conditional) -> ``generator_hidden`` Dense + BN + ReLU layers ->
    linear Dense -> x ``[n, x_dim]``.  BN normalizes with the generated batch's
    own statistics, no running averages (module docstring): no state;
    ``batch_norm=False`` drops it.

    Critic: ``critic_hidden`` maxout layers (``maxout`` pieces per unit; 1 or
    None: Dense + LeakyReLU(0.2)) -> ``critic_outputs`` outputs; v ``[B]`` for
    one output, ``[B, critic_outputs]`` otherwise.  ``spectral_norm=True``
    normalizes every Dense (Miyato et al. 2018) with ``sn_steps`` power
    iterations per call; the vectors are the critic's state.  ``pack=m``: the
    critic takes ``[B, m·x_dim]`` (PacGAN's packed samples).

    Conditional (``num_classes=K``): see the module docstring for
    ``conditioning`` "concat" / "projection" and the AC-GAN head
    (``critic_outputs=K+1`` or ``conditioning="acgan"``).

    Returns: :class:`GANSpec`.  Raises ValueError/TypeError naming a bad argument.
    """
    x_dim = check_positive_int("x_dim", x_dim)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    generator_hidden = _widths("generator_hidden", generator_hidden)
    critic_hidden = _widths("critic_hidden", critic_hidden)
    maxout = _check_maxout(maxout)
    sn_steps = check_positive_int("sn_steps", sn_steps)
    num_classes, conditioning, outputs, pack = _check_players(num_classes, conditioning, critic_outputs, pack)
    gen = _MLPGenerator(x_dim, generator_hidden, bool(batch_norm), num_classes)
    critic = _MLPCritic(critic_hidden, maxout, outputs, num_classes,
                        None if conditioning == "acgan" else conditioning, bool(spectral_norm), sn_steps)
    return _make_spec(gen, critic, x_dim=x_dim, latent_dim=latent_dim, num_classes=num_classes,
                      conditioning=conditioning, outputs=outputs, spectral=bool(spectral_norm), pack=pack)


def dcgan(num_classes: Optional[int] = None, latent_dim: int = 64, *,
          generator_channels: Sequence[int] = (64, 32), critic_channels: Sequence[int] = (32, 64),
          batch_norm: bool = True, spectral_norm: bool = False, conditioning: str = "concat",
          critic_outputs: int = 1, pack: int = 1, sn_steps: int = 1) -> GANSpec:
    """A small DCGAN-style pair for 28×28 images in [0, 1] (Radford et al. 2016).

    Generator: ε ``[n, latent_dim]`` (+ one-hot(c)) -> Dense -> 7×7×c0 (BN, ReLU)
    -> 4×4 stride-2 transposed conv -> 14×14×c1 (BN, ReLU) -> 4×4 stride-2
    transposed conv -> 28×28×1 -> sigmoid, returned flattened ``[n, 784]`` in
    [0, 1] (``generator_channels=(c0, c1)``).  BN as in :func:`mlp_gan`.
    ``generator.observation`` is None: the generator has no likelihood, and
    its outputs are grey levels, not binary.

    Critic: flattened ``[B, pack·784]`` -> ``[B, 28, 28, pack]`` (+ K one-hot
    channels under ``conditioning="concat"``) -> one 4×4 stride-2 conv +
    LeakyReLU(0.2) per ``critic_channels`` entry -> flatten -> output head
    (projection / AC-GAN as in :func:`mlp_gan`); ``spectral_norm=True``
    normalizes every conv and Dense.

    Returns: :class:`GANSpec` with ``x_dim=784``.
    """
    latent_dim = check_positive_int("latent_dim", latent_dim)
    generator_channels = _widths("generator_channels", generator_channels)
    if len(generator_channels) != 2:
        raise ValueError(f"generator_channels must be a pair (c0 at 7×7, c1 at 14×14), got {generator_channels}")
    critic_channels = _widths("critic_channels", critic_channels)
    sn_steps = check_positive_int("sn_steps", sn_steps)
    num_classes, conditioning, outputs, pack = _check_players(num_classes, conditioning, critic_outputs, pack)
    gen = _ConvGenerator(generator_channels, bool(batch_norm), num_classes)
    critic = _ConvCritic(critic_channels, pack, outputs, num_classes,
                         None if conditioning == "acgan" else conditioning, bool(spectral_norm), sn_steps)
    return _make_spec(gen, critic, x_dim=_IMAGE[0] * _IMAGE[1], latent_dim=latent_dim, num_classes=num_classes,
                      conditioning=conditioning, outputs=outputs, spectral=bool(spectral_norm), pack=pack)
