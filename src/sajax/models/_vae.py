"""VAE-style models with Gaussian latents: the VAE (review Sec. 3.1.2, Eq. 4)
and the deep latent Gaussian model, DLGM (Sec. 3.1.1, Eq. 3).

Generative model p_θ with L Gaussian stochastic layers (top layer last)::

    h_L ~ N(0, I),
    h_l | h_{l+1} ~ N(μ_θ,l(h_{l+1}), diag σ_θ,l(h_{l+1})²),    l = L-1, ..., 1   (Eq. 3)
    x | h_1 ~ FB[σ(g_θ(h_1))]  (Bernoulli)  or  N(g_θ(h_1), diag s²)  (Gaussian),

where every map is a small MLP (``hidden[l]`` deterministic layers) followed
by a head.  L = 1 is the VAE decoder of Eq. 4.  The inference model q_φ
mirrors it bottom-up (Rezende et al. 2014; Kingma & Welling 2014)::

    q_φ(h_1, ..., h_L | x) = q_φ(h_1|x) q_φ(h_2|h_1) ... q_φ(h_L|h_{L-1}),
    q_φ(h_{l+1}|h_l) = N(μ_φ,l(h_l), diag σ_φ,l(h_l)²),

sampled by reparameterization h = μ + σ ⊙ ε, ε ~ N(0, I) (Eq. 12), so samples
are differentiable in φ.

Architectures of the IWAE paper (Burda, Grosse & Salakhutdinov 2015), x_dim = 784:

* :func:`iwae_one_layer`: q: x -> 200-200 tanh -> h (50); p mirrored, Bernoulli x.
* :func:`iwae_two_layer`: q: x -> 200-200 tanh -> h_1 (100) -> 100-100 tanh -> h_2 (50);
  p: h_2 ~ N(0, I) -> 100-100 tanh -> h_1 (100, Gaussian) -> 200-200 tanh -> x (Bernoulli).

Latents: a single array ``[..., B, d]`` for one stochastic layer (so
``guide.dist`` / ``model.prior`` give the analytic KL of Eq. 8), a tuple
``(h_1, ..., h_L)`` of such arrays for several.  ``x`` is ``[B, x_dim]``.

Parameter trees follow :func:`sajax.models.sbn`: θ = ``{"layer0": p(x|h_1),
"layer1": p(h_1|h_2), ...}``, φ = ``{"layer0": q(h_1|x), "layer1": q(h_2|h_1), ...}``;
each layer is ``{"MLP_0": {"Dense_0", ...}, "head": {"Dense_0", ...}}`` with
Flax's kernel layout ``[in, out]`` (``Dense(h) = h @ kernel + bias``).

Cost: the encoder of ``x`` runs once per example and its output is broadcast
over the K samples; the mean and log-std of a Gaussian come from one fused
``Dense``; log q of a fresh sample is computed from ε, and all densities are
plain ``jnp`` expressions (no distribution objects on the hot path).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence, Union

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from sajax._densities import bernoulli_log_prob, diag_normal_log_prob, std_normal_log_prob
from sajax.core import GUIDE, MODEL, ConditionalSampler, LatentVariableModel, check_data, check_positive_int

__all__ = [
    "guide_from_module",
    "model_from_modules",
    "GuideSpec",
    "ModuleSpec",
    "MLP",
    "DiagGaussianHead",
    "HomoscedasticGaussianHead",
    "BernoulliHead",
    "VAESpec",
    "vae",
    "iwae_one_layer",
    "iwae_two_layer",
    "LIKELIHOODS",
    "ACTIVATIONS",
]

LIKELIHOODS = ("bernoulli", "gaussian")
ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "swish": jax.nn.swish,
}
STD_PARAMS = ("exp", "softplus")

_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------
# Flax modules


def _activation(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Deterministic layers ``x -> act(Dense(features[0])) -> ... -> act(Dense(features[-1]))``.

    Attributes:
      features: widths of the hidden layers; ``()`` is the identity.
      activation: a name in :data:`ACTIVATIONS` (``"tanh"`` as in the IWAE paper).
    Shapes: ``[..., d_in] -> [..., features[-1]]``; leading axes are kept.
    """

    features: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        act = _activation(self.activation)
        for width in self.features:
            x = act(nn.Dense(width)(x))
        return x


class DiagGaussianHead(nn.Module):
    """A diagonal Gaussian whose mean and std depend on the input.

    One fused ``Dense(2 * features)`` gives the mean and a raw scale ``r``:
    ``std_param="exp"``: log σ = r (IWAE paper); ``"softplus"``:
    σ = softplus(r) + min_std (bounded away from 0 by ``min_std``).

    Returns: ``(mean, log_std)``, both ``[..., features]``.
    """

    features: int
    std_param: str = "exp"
    min_std: float = 0.0

    @nn.compact
    def __call__(self, x):
        out = nn.Dense(2 * self.features)(x)
        mean, raw = out[..., : self.features], out[..., self.features:]
        if self.std_param == "exp":
            return mean, raw
        if self.std_param == "softplus":
            return mean, jnp.log(jax.nn.softplus(raw) + self.min_std)
        raise ValueError(f"std_param must be one of {STD_PARAMS}, got {self.std_param!r}")


class HomoscedasticGaussianHead(nn.Module):
    """A diagonal Gaussian whose mean depends on the input and whose std does not.

    ``fixed_std=None``: log σ is a learned vector ``[features]`` (initialised
    to 0, σ = 1), shared by every input; a float fixes σ to that value.  A
    shared std avoids the variance collapse of input-dependent stds on data
    with constant pixels (MNIST borders).

    Returns: ``(mean [..., features], log_std [features])`` (broadcastable).
    """

    features: int
    fixed_std: Optional[float] = None

    @nn.compact
    def __call__(self, x):
        mean = nn.Dense(self.features)(x)
        if self.fixed_std is None:
            log_std = self.param("log_std", nn.initializers.zeros, (self.features,), jnp.float32)
        else:
            log_std = jnp.full((self.features,), math.log(self.fixed_std), jnp.float32)
        return mean, log_std


class BernoulliHead(nn.Module):
    """Factorial Bernoulli logits ``Dense(features)``: ``[..., d_in] -> [..., features]``."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features)(x)


class _Layer(nn.Module):
    """One conditional of p or q: an :class:`MLP` followed by a head.

    Leading axes ([K, B] or [B]) are flattened into one before the matmuls:
    XLA then emits plain 2-D GEMMs for the forward and the backward pass
    (measured ~8% fewer bytes moved than batched dot_generals on [K, B, d]).
    """

    hidden: tuple
    head: nn.Module
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        lead = x.shape[:-1]
        out = self.head(MLP(self.hidden, self.activation)(x.reshape((-1, x.shape[-1]))))
        # per-input outputs are [M, f]; a shared std ([f], HomoscedasticGaussianHead) is left as is
        return jax.tree_util.tree_map(lambda a: a.reshape(lead + a.shape[1:]) if a.ndim == 2 else a, out)


# --------------------------------------------------------------------------
# Adapter


class VAESpec(NamedTuple):
    """A VAE / DLGM with its inference model, as sajax protocols.

    Attributes:
      model: :class:`sajax.core.LatentVariableModel` for p_θ(x, h) (Eq. 3 / 4);
        ``model.observation`` is ``likelihood``.
      guide: :class:`sajax.core.ConditionalSampler` for q_φ(h|x), reparameterized.
      init: ``key -> {"model": θ, "guide": φ}``.
      x_dim: D.
      latent_dims: ``(d_1, ..., d_L)``, top layer last.
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      model_layer: ``(θ, l, parent) -> head output``: ``l = 0`` gives p(x|h_1)
        (logits for Bernoulli, ``(mean, log_std)`` for Gaussian) with
        ``parent = h_1``; ``0 < l < L`` gives ``(mean, log_std)`` of
        p(h_l | h_{l+1}) with ``parent = h_{l+1}``.
      guide_layer: ``(φ, l, parent) -> (mean, log_std)`` of q(h_{l+1}|parent),
        ``parent = x`` for ``l = 0`` and ``h_l`` above.
    """

    model: LatentVariableModel
    guide: ConditionalSampler
    init: Callable
    x_dim: int
    latent_dims: tuple
    likelihood: str
    model_layer: Callable
    guide_layer: Callable


def _layers(h) -> tuple:
    return tuple(h) if isinstance(h, (tuple, list)) else (h,)


def _normalize_hidden(hidden, num_layers: int) -> tuple:
    """``hidden`` as a tuple of ``num_layers`` width tuples.

    A flat sequence of ints (``(200, 200)``, or ``()``) is used for every layer.
    """
    if isinstance(hidden, int) and not isinstance(hidden, bool):
        hidden = (hidden,)
    hidden = tuple(hidden)
    if all(isinstance(w, int) and not isinstance(w, bool) for w in hidden):
        hidden = (hidden,) * num_layers
    if len(hidden) != num_layers:
        raise ValueError(f"hidden must give one tuple of widths per stochastic layer "
                         f"({num_layers}), got {len(hidden)}: {hidden!r}")
    return tuple(tuple(check_positive_int("hidden width", w) for w in block) for block in hidden)


def _check_vae_args(x_dim, latent_dims, hidden, likelihood, activation, obs_std, std_param):
    """Validated ``(x_dim, latent_dims, hidden)`` of :func:`vae`; ValueError/TypeError naming the argument."""
    x_dim = check_positive_int("x_dim", x_dim)
    if isinstance(latent_dims, int) and not isinstance(latent_dims, bool):
        latent_dims = (latent_dims,)
    latent_dims = tuple(check_positive_int("latent_dims", d) for d in latent_dims)
    if not latent_dims:
        raise ValueError("latent_dims must name at least one stochastic layer, e.g. (50,)")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    _activation(activation)
    if std_param not in STD_PARAMS:
        raise ValueError(f"std_param must be one of {STD_PARAMS}, got {std_param!r}")
    if obs_std is not None:
        if likelihood != "gaussian":
            raise ValueError("obs_std applies only to likelihood='gaussian'")
        if not (isinstance(obs_std, (int, float)) and obs_std > 0 and math.isfinite(obs_std)):
            raise ValueError(f"obs_std must be a positive finite float or None, got {obs_std!r}")
    return x_dim, latent_dims, _normalize_hidden(hidden, len(latent_dims))


class _VAENets(NamedTuple):
    """The static part of a VAE / DLGM: sizes and the Flax modules of p and q.

    ``model_mods[l]`` maps h_{l+1} to x (l = 0) or to h_l through ``hidden[l]``
    mirrored; ``guide_mods[l]`` maps x (l = 0) or h_l to h_{l+1}.
    """

    x_dim: int
    latent_dims: tuple
    likelihood: Optional[str]
    model_mods: tuple
    guide_mods: tuple
    # adapters (guide_from_module, model_from_modules): a group's params are one
    # user module's params (not {"layer0": ...}), leading axes flattened around it
    whole_group: bool = False

    @property
    def num_layers(self) -> int:
        return len(self.latent_dims)

    @property
    def bernoulli(self) -> bool:
        return self.likelihood == "bernoulli"

    def init(self, key):
        L = self.num_layers
        guide_in = (self.x_dim,) + self.latent_dims[:-1]
        keys = jax.random.split(key, 2 * L)
        theta, phi = {}, {}
        for l in range(L):
            theta[f"layer{l}"] = self.model_mods[l].init(keys[l], jnp.zeros((1, self.latent_dims[l])))["params"]
            phi[f"layer{l}"] = self.guide_mods[l].init(keys[L + l], jnp.zeros((1, guide_in[l])))["params"]
        return {MODEL: theta, GUIDE: phi}

    def model_layer(self, theta, l, parent):
        return self._apply(self.model_mods[l], theta, l, parent)

    def guide_layer(self, phi, l, parent):
        return self._apply(self.guide_mods[l], phi, l, parent)

    def _apply(self, module, group, l, parent):
        if self.whole_group:
            return _apply_flat(module, group, parent)
        return module.apply({"params": group[f"layer{l}"]}, parent)

    def check_x(self, x):
        # Traced x passes (checked where it entered); concrete x is validated here.
        return check_data(x, name="x", event_shape=(self.x_dim,), binary=self.bernoulli)

    def pack(self, hs):
        return hs[0] if self.num_layers == 1 else tuple(hs)

    def unpack(self, h):
        hs = _layers(h)
        if len(hs) != self.num_layers:
            raise ValueError(f"h must have {self.num_layers} stochastic layer(s), got {len(hs)}")
        return hs


def _vae_nets(x_dim, latent_dims, hidden, likelihood, activation, obs_std, std_param) -> _VAENets:
    """The Flax modules of p_θ (top-down, ``hidden`` mirrored) and q_φ (bottom-up)."""
    L = len(latent_dims)
    if likelihood == "bernoulli":
        obs_head = BernoulliHead(x_dim)
    else:
        obs_head = HomoscedasticGaussianHead(x_dim, None if obs_std is None else float(obs_std))
    model_mods = [_Layer(tuple(reversed(hidden[0])), obs_head, activation)]
    model_mods += [_Layer(tuple(reversed(hidden[l])), DiagGaussianHead(latent_dims[l - 1], std_param), activation)
                   for l in range(1, L)]
    guide_mods = [_Layer(hidden[l], DiagGaussianHead(latent_dims[l], std_param), activation) for l in range(L)]
    return _VAENets(x_dim, latent_dims, likelihood, tuple(model_mods), tuple(guide_mods))


def _vae_sample(nets: _VAENets, theta, key, n):
    """Ancestral sample ``(x [n, D], h)`` of p_θ: h_L ~ N(0, I), then down the layers."""
    n = check_positive_int("n", n)
    L = nets.num_layers
    keys = jax.random.split(key, L + 1)
    hs = [None] * L
    hs[L - 1] = jax.random.normal(keys[L], (n, nets.latent_dims[-1]))
    for l in range(L - 1, 0, -1):
        m, log_std = nets.model_layer(theta, l, hs[l])
        hs[l - 1] = m + jnp.exp(log_std) * jax.random.normal(keys[l], m.shape)
    out = nets.model_layer(theta, 0, hs[0])
    if nets.bernoulli:
        u = jax.random.uniform(keys[0], out.shape)
        x = (u < jax.nn.sigmoid(out)).astype(out.dtype)
    else:
        m, log_std = out
        x = m + jnp.exp(log_std) * jax.random.normal(keys[0], m.shape)
    return x, nets.pack(hs)


def _vae_model(nets: _VAENets) -> LatentVariableModel:
    """p_θ(x, h) of Eq. 3 / 4 as a :class:`LatentVariableModel`."""
    L = nets.num_layers

    def log_prior(theta, h):
        hs = nets.unpack(h)
        lp = std_normal_log_prob(hs[-1])
        for l in range(1, L):
            mean, log_std = nets.model_layer(theta, l, hs[l])
            lp = lp + diag_normal_log_prob(hs[l - 1], mean, log_std)
        return lp

    def log_likelihood(theta, x, h):
        x = nets.check_x(x)
        out = nets.model_layer(theta, 0, nets.unpack(h)[0])
        if nets.bernoulli:
            return bernoulli_log_prob(out, x)
        return diag_normal_log_prob(x, *out)

    def mean(theta, h):
        out = nets.model_layer(theta, 0, nets.unpack(h)[0])
        return jax.nn.sigmoid(out) if nets.bernoulli else out[0]

    def sample(theta, key, n):
        return _vae_sample(nets, theta, key, n)

    def prior(theta):
        d = nets.latent_dims[0]
        return distrax.MultivariateNormalDiag(jnp.zeros((d,), jnp.float32), jnp.ones((d,), jnp.float32))

    return LatentVariableModel(log_prior=log_prior, log_likelihood=log_likelihood, sample=sample,
                               prior=prior if L == 1 else None, mean=mean, observation=nets.likelihood)


def _vae_guide(nets: _VAENets) -> ConditionalSampler:
    """q_φ(h|x) = Π_l q_φ(h_{l+1}|h_l), reparameterized (Eq. 12), as a :class:`ConditionalSampler`."""
    L = nets.num_layers

    def sample_and_log_prob(phi, key, x, n):
        x = nets.check_x(x)
        keys = jax.random.split(key, L)
        parent = x
        hs, log_q = [], 0.0
        for l in range(L):
            m, log_std = nets.guide_layer(phi, l, parent)
            shape = m.shape if l > 0 else (n,) + m.shape   # encoder of x runs once, samples broadcast
            eps = jax.random.normal(keys[l], shape, m.dtype)
            hl = m + jnp.exp(log_std) * eps
            # log q from ε rather than diag_normal_log_prob(h, m, log_std): (h - m)/σ = ε
            # exactly, so value and total φ-gradient agree, and the backward pass is cheaper
            log_q = log_q + jnp.sum(-0.5 * jnp.square(eps) - log_std, axis=-1) - 0.5 * m.shape[-1] * _LOG_2PI
            hs.append(hl)
            parent = hl
        return nets.pack(hs), log_q

    def log_prob(phi, x, h):
        hs = nets.unpack(h)
        lq = 0.0
        parent = x
        for l in range(L):
            m, log_std = nets.guide_layer(phi, l, parent)
            lq = lq + diag_normal_log_prob(hs[l], m, log_std)
            parent = hs[l]
        return lq

    def dist(phi, x):
        m, log_std = nets.guide_layer(phi, 0, x)
        return distrax.MultivariateNormalDiag(m, jnp.exp(log_std))

    return ConditionalSampler(sample_and_log_prob=sample_and_log_prob, log_prob=log_prob,
                              dist=dist if L == 1 else None)


def vae(x_dim: int, latent_dims: Union[int, Sequence[int]] = (50,),
        hidden: Sequence = ((200, 200),), likelihood: str = "bernoulli",
        activation: str = "tanh", *, obs_std: Optional[float] = None,
        std_param: str = "exp") -> VAESpec:
    """Build a VAE (one stochastic layer, Eq. 4) or a DLGM (several, Eq. 3).

    Args:
      x_dim: D >= 1.
      latent_dims: Gaussian latent widths ``(d_1, ..., d_L)``, bottom layer first.
      hidden: ``hidden[l]`` are the deterministic widths between stochastic
        layer l and l+1 (x is layer 0), used bottom-up in q and mirrored
        top-down in p.  A flat tuple of ints applies to every layer.
      likelihood: ``"bernoulli"`` (binary x, logits) or ``"gaussian"``; also
        ``spec.model.observation``.
      activation: name in :data:`ACTIVATIONS`.
      obs_std: Gaussian likelihood only: ``None`` learns a per-pixel σ shared
        across inputs (:class:`HomoscedasticGaussianHead`); a float fixes σ.
      std_param: parameterization of the latent Gaussians' std, ``"exp"`` or
        ``"softplus"`` (:class:`DiagGaussianHead`).

    Returns: :class:`VAESpec`.  Raises ValueError/TypeError on bad arguments.

    Shapes (protocol): ``log_prior(θ, h) -> [..., B]``, ``log_likelihood(θ, x,
    h) -> [..., B]`` for ``x [B, D]`` and h leaves ``[..., B, d]``;
    ``guide.sample_and_log_prob(φ, key, x, n) -> (h [n, B, d], log_q [n, B])``;
    ``model.sample(θ, key, n) -> (x [n, D], h [n, d])`` with x a Bernoulli /
    Gaussian draw; ``model.mean(θ, h)`` gives Bernoulli probabilities / the
    Gaussian mean.  A concrete ``x`` passed to ``log_likelihood`` or the
    guide is validated (shape, finiteness, binary for Bernoulli).

    Example:
      >>> import jax
      >>> spec = vae(784, latent_dims=(50,), hidden=(200, 200))
      >>> params = spec.init(jax.random.PRNGKey(0))
      >>> sorted(params["model"]["layer0"])
      ['MLP_0', 'head']
      >>> spec.model.observation
      'bernoulli'
    """
    x_dim, latent_dims, hidden = _check_vae_args(x_dim, latent_dims, hidden, likelihood,
                                                 activation, obs_std, std_param)
    nets = _vae_nets(x_dim, latent_dims, hidden, likelihood, activation, obs_std, std_param)
    return VAESpec(_vae_model(nets), _vae_guide(nets), nets.init, x_dim, latent_dims, likelihood,
                   nets.model_layer, nets.guide_layer)


def iwae_one_layer(x_dim: int = 784, likelihood: str = "bernoulli") -> VAESpec:
    """The IWAE paper's one-stochastic-layer model (Burda et al. 2015, Sec. 5):
    50 Gaussian latents, two tanh layers of 200 units in q and in p."""
    return vae(x_dim, (50,), ((200, 200),), likelihood, "tanh")


def iwae_two_layer(x_dim: int = 784, likelihood: str = "bernoulli") -> VAESpec:
    """The IWAE paper's two-stochastic-layer DLGM (Burda et al. 2015, Sec. 5):
    q: x -> 200-200 tanh -> h_1 (100) -> 100-100 tanh -> h_2 (50); p mirrored."""
    return vae(x_dim, (100, 50), ((200, 200), (100, 100)), likelihood, "tanh")


# --------------------------------------------------------------------------
# Adapters: a user's Flax encoder / decoder as protocols (the densities and the
# reparameterized sampler above, one implementation)


def _apply_flat(module: nn.Module, params, x):
    """``module`` on ``x [..., d]`` with the leading axes flattened into one (as
    :class:`_Layer` does): per-input outputs ``[M, f]`` come back ``[..., f]``,
    shared ones (a ``[f]`` log-std) as they are."""
    lead, m = x.shape[:-1], math.prod(x.shape[:-1])
    out = module.apply({"params": params}, x.reshape((m, x.shape[-1])))
    return jax.tree_util.tree_map(
        lambda a: a.reshape(lead + a.shape[1:]) if a.ndim >= 2 and a.shape[0] == m else a, out)


def _module_params(module: nn.Module, key, in_dim: int, name: str):
    """``module``'s params for inputs ``[1, in_dim]``; ValueError if it has other
    (mutable) collections, which the pure protocols cannot thread."""
    variables = module.init(key, jnp.zeros((1, in_dim), jnp.float32))
    extra = sorted(set(variables) - {"params"})
    if extra:
        raise ValueError(f"{name} has mutable collections {extra} (e.g. batch statistics); the adapter "
                         f"takes modules with parameters only")
    return variables.get("params", {})


def _check_output(module: nn.Module, in_dim: int, out_dim: int, gaussian: bool, name: str) -> None:
    """Build-time check of ``module``'s output on ``[2, in_dim]`` (abstract, nothing computed):
    ``(mean [2, out_dim], log_std [2, out_dim] or [out_dim])`` or logits ``[2, out_dim]``."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name} must be a flax.linen Module, got {type(module).__name__}")
    out, _ = jax.eval_shape(lambda: module.init_with_output(jax.random.PRNGKey(0), jnp.zeros((2, in_dim))))
    shapes = jax.tree_util.tree_map(lambda a: tuple(a.shape), out)
    want = f"(mean [M, {out_dim}], log_std [M, {out_dim}] or [{out_dim}])" if gaussian else f"logits [M, {out_dim}]"
    if gaussian:
        ok = (isinstance(out, (tuple, list)) and len(out) == 2 and shapes[0] == (2, out_dim)
              and shapes[1] in ((2, out_dim), (out_dim,)))
    else:
        ok = hasattr(out, "shape") and shapes == (2, out_dim)
    if not ok:
        raise ValueError(f"{name} must map inputs [M, {in_dim}] to {want}; on inputs [2, {in_dim}] it "
                         f"returned {shapes}")


class GuideSpec(NamedTuple):
    """A user's encoder as an inference model q_φ(h|x) (:func:`guide_from_module`).

    Attributes:
      guide: :class:`sajax.core.ConditionalSampler`, reparameterized, with ``dist``.
      init: ``key -> {"guide": φ}`` (φ: the module's own params).
      x_dim, latent_dim: D and d.
    """

    guide: ConditionalSampler
    init: Callable
    x_dim: int
    latent_dim: int


class ModuleSpec(NamedTuple):
    """A user's decoder (and optionally encoder) as p_θ(x, h) (and q_φ(h|x)) (:func:`model_from_modules`).

    Attributes:
      model: :class:`sajax.core.LatentVariableModel` with h ~ N(0, I) and ``prior``.
      guide: :class:`sajax.core.ConditionalSampler` when an encoder was given, else None.
      init: ``key -> {"model": θ}`` (plus ``"guide": φ`` with an encoder); θ, φ are
        the modules' own params.
      x_dim, latent_dim: D and d.
      likelihood: ``"bernoulli"`` or ``"gaussian"`` (also ``model.observation``).
    """

    model: LatentVariableModel
    guide: Optional[ConditionalSampler]
    init: Callable
    x_dim: int
    latent_dim: int
    likelihood: str


def guide_from_module(module: nn.Module, x_dim: int, latent_dim: int, *,
                      observation: Optional[str] = None, name: Optional[str] = None) -> GuideSpec:
    """A Flax encoder ``x [M, x_dim] -> (mean, log_std)`` as a diagonal-Gaussian
    inference model q_φ(h|x) = N(mean, diag exp(2 log_std)) (Sec. 3.2.1, Eq. 4).

    Sampling is reparameterized, h = mean + exp(log_std) ⊙ ε, ε ~ N(0, I) (Eq. 12),
    so estimators differentiate through it (:func:`~sajax.estimators.reparam_elbo`,
    :func:`~sajax.estimators.iwae`, :func:`~sajax.estimators.dreg`, ...); log q is
    the diagonal-Gaussian density of the built-in :func:`vae` (one implementation),
    and ``guide.dist`` gives the closed-form KL of Eq. 8.  The encoder runs once
    per example; its K samples share it.

    Args:
      module: a ``flax.linen.Module`` mapping ``[M, x_dim]`` to a pair ``(mean
        [M, latent_dim], log_std [M, latent_dim] or [latent_dim])``, with
        parameters only (no batch statistics).  Checked at build time.
      x_dim: D; latent_dim: d.
      observation: ``"bernoulli"`` also checks that concrete x is binary; None
        checks the event shape and finiteness only.
      name: the module's name in error messages.

    Returns: :class:`GuideSpec` ``(guide, init, x_dim, latent_dim)``; ``init(key)``
    gives ``{"guide": φ}`` with φ the module's params.

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp
      >>> class Encoder(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x):
      ...         out = nn.Dense(2 * 3)(jnp.tanh(nn.Dense(16)(x)))
      ...         return out[..., :3], out[..., 3:]
      >>> spec = guide_from_module(Encoder(), x_dim=5, latent_dim=3)
      >>> phi = spec.init(jax.random.PRNGKey(0))["guide"]
      >>> h, log_q = spec.guide.sample_and_log_prob(phi, jax.random.PRNGKey(1), jnp.ones((4, 5)), 2)
      >>> h.shape, log_q.shape
      ((2, 4, 3), (2, 4))
    """
    x_dim, latent_dim = check_positive_int("x_dim", x_dim), check_positive_int("latent_dim", latent_dim)
    name = name or type(module).__name__
    _check_output(module, x_dim, latent_dim, True, f"encoder {name}")
    nets = _VAENets(x_dim, (latent_dim,), observation, (), (module,), whole_group=True)

    def init(key):
        return {GUIDE: _module_params(module, key, x_dim, f"encoder {name}")}

    return GuideSpec(_vae_guide(nets), init, x_dim, latent_dim)


def model_from_modules(decoder: nn.Module, x_dim: int, latent_dim: int, *, encoder: Optional[nn.Module] = None,
                       likelihood: str = "bernoulli", name: Optional[str] = None) -> ModuleSpec:
    """A Flax decoder as the generative model p_θ(x, h) = N(h; 0, I) p_θ(x|h) of
    a VAE (Sec. 3.1.2, Eq. 4), and optionally an encoder as its q_φ(h|x).

    ``likelihood="bernoulli"``: the decoder maps ``h [M, latent_dim]`` to logits
    ``[M, x_dim]`` and p_θ(x|h) = Π_i Bernoulli(x_i; σ(logit_i)) (binary x,
    checked on concrete data); ``"gaussian"``: it returns ``(mean [M, x_dim],
    log_std [M, x_dim] or [x_dim])``.  The log-densities, the ancestral sampler,
    ``mean`` and ``prior`` (for the analytic KL) are those of the built-in
    :func:`vae` (one implementation).  ``encoder`` (if given) goes through
    :func:`guide_from_module`.

    Args:
      decoder: ``flax.linen.Module``, parameters only; checked at build time.
      x_dim: D; latent_dim: d (the prior is N(0, I_d)).
      encoder: optional encoder module ``x -> (mean, log_std)``.
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      name: the decoder's name in error messages.

    Returns: :class:`ModuleSpec` ``(model, guide, init, x_dim, latent_dim,
    likelihood)``; ``init(key)`` gives ``{"model": θ}`` (and ``"guide": φ``).

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp
      >>> class Decoder(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, h):
      ...         return nn.Dense(5)(jnp.tanh(nn.Dense(16)(h)))
      >>> spec = model_from_modules(Decoder(), x_dim=5, latent_dim=3)
      >>> theta = spec.init(jax.random.PRNGKey(0))["model"]
      >>> x, h = spec.model.sample(theta, jax.random.PRNGKey(1), 4)
      >>> x.shape, h.shape, spec.model.log_likelihood(theta, x, h).shape
      ((4, 5), (4, 3), (4,))
    """
    x_dim, latent_dim = check_positive_int("x_dim", x_dim), check_positive_int("latent_dim", latent_dim)
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    name = name or type(decoder).__name__
    _check_output(decoder, latent_dim, x_dim, likelihood == "gaussian", f"decoder {name}")
    nets = _VAENets(x_dim, (latent_dim,), likelihood, (decoder,), (), whole_group=True)
    guide = None if encoder is None else guide_from_module(encoder, x_dim, latent_dim, observation=likelihood)

    def init(key):
        k_model, k_guide = jax.random.split(key)
        params = {MODEL: _module_params(decoder, k_model, latent_dim, f"decoder {name}")}
        return params if guide is None else {**params, **guide.init(k_guide)}

    return ModuleSpec(_vae_model(nets), None if guide is None else guide.guide, init, x_dim, latent_dim, likelihood)
