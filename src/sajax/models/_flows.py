"""Normalizing-flow inference models q_φ(h|x), amortized on x (review Sec. 3.2.1, item 4).

"More expressive inference model, going beyond factorized-Gaussian": a
change of variables through K invertible maps turns the diagonal Gaussian of
the VAE encoder (Eq. 12) into a richer q_φ(h|x)::

    ε ~ N(0, I_d),   z_0 = μ_φ(x) + σ_φ(x) ⊙ ε,   h = f_K ∘ ... ∘ f_1(z_0; c(x)),
    log q_φ(h|x) = log N(ε; 0, I) - Σ_i log σ_φ,i(x) - Σ_k log |det ∂f_k/∂z_{k-1}|,

where c(x) is the encoder's last hidden layer (the context every flow step
conditions on).  The flows, by the name ``flow=``:

* ``"planar"``: f(z) = z + û tanh(wᵀz + b) (Rezende & Mohamed 2015, Eq. 10),
  with û = u + (m(wᵀu) - wᵀu) w / ||w||², m(a) = -1 + softplus(a), so that
  wᵀû >= -1 keeps f invertible (their Appendix A.1);
* ``"radial"``: f(z) = z + β (z - z_r) / (α + ||z - z_r||), α > 0, β >= -α
  (Rezende & Mohamed 2015, Eq. 14);
* ``"nice"``: additive couplings y_B = z_B + t(z_A, c) (Dinh et al. 2014);
* ``"realnvp"``: affine couplings y_B = z_B ⊙ exp(s(z_A, c)) + t(z_A, c)
  (Dinh et al. 2017); both are ``distrax.MaskedCoupling`` with
  ``distrax.ScalarAffine`` inner bijectors, alternating masks, composed with
  ``distrax.Chain`` and inverted with ``distrax.Inverse``;
* ``"iaf"``: inverse autoregressive flow (Kingma et al. 2016, Eq. 14 and
  Algorithm 1): (m, s) = MADE(z, c), σ = sigmoid(s + 1), y = σ ⊙ z + (1 - σ) ⊙ m
  (the numerically stable LSTM-style update), log det = Σ log σ; the
  autoregressive order is reversed between steps.

``num_flows = 0`` is the diagonal Gaussian q of the VAE.  Planar and radial
flows have no closed-form inverse: their ``log_prob`` of a *given* h raises
``NotImplementedError``, so they train with :func:`~sajax.estimators.reparam_elbo`
(``kl="mc"``) and :func:`~sajax.estimators.iwae` and evaluate with
:func:`~sajax.evaluate.iw_nll` (all use ``sample_and_log_prob``), but not with
``stl_elbo`` / ``dreg`` (which evaluate log q at stopped φ).  Couplings and
IAF invert exactly (IAF in d sequential passes), so every estimator takes them.

Shapes: ``x`` ``[B, D]``, ε and h ``[..., B, d]`` (leading sample axes broadcast
against the per-example encoder output), log-densities ``[..., B]``.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sajax._densities import diag_normal_log_prob
from sajax.core import GUIDE, MODEL, ConditionalSampler, LatentVariableModel, check_data, check_positive_int
from sajax.models._vae import MLP, DiagGaussianHead, _activation, vae

__all__ = ["FLOWS", "INVERTIBLE", "iaf_inverse", "PlanarFlow", "RadialFlow", "CouplingFlow", "IAFStep", "FlowGuideSpec",
           "FlowVAESpec", "flow_guide", "flow_vae", "planar_u_hat"]

FLOWS = ("planar", "radial", "nice", "realnvp", "iaf")
INVERTIBLE = ("nice", "realnvp", "iaf")     # flows whose log_prob of a given h is exact
_COUPLINGS = ("nice", "realnvp")
_IAF_FORGET_BIAS = 1.0   # σ = sigmoid(s + 1): a fresh step keeps most of z (σ ≈ 0.73 at s = 0)
_LOG_2PI = math.log(2.0 * math.pi)


def _safe_norm_sq(w):
    """||w||² over the last axis and its reciprocal (0 where w = 0, with finite gradients)."""
    sq = jnp.sum(jnp.square(w), axis=-1, keepdims=True)
    pos = sq > 0
    return sq, jnp.where(pos, 1.0 / jnp.where(pos, sq, 1.0), 0.0)


def planar_u_hat(u, w):
    """û = u + (m(wᵀu) - wᵀu) w / ||w||², m(a) = -1 + softplus(a) (Rezende & Mohamed
    2015, Appendix A.1), so that wᵀû = m(wᵀu) > -1.  ``u, w``: ``[..., d]``."""
    wu = jnp.sum(w * u, axis=-1, keepdims=True)
    _, inv_sq = _safe_norm_sq(w)
    return u + (jax.nn.softplus(wu) - 1.0 - wu) * w * inv_sq


class PlanarFlow(nn.Module):
    """One planar step f(z) = z + û tanh(wᵀz + b) (Rezende & Mohamed 2015, Eq. 10-12).

    u, w, b come from ``Dense(2d + 1)`` of the context c(x) (amortized); û by
    :func:`planar_u_hat`.  log |det ∂f/∂z| = log(1 + (1 - tanh²(wᵀz + b)) wᵀû)
    (matrix determinant lemma).  Shapes: ``z`` ``[..., d]``, ``context``
    ``[..., c]`` broadcasting against z's leading axes; returns
    ``(y [..., d], log_det [...])``.
    """

    @nn.compact
    def __call__(self, z, context):
        d = z.shape[-1]
        out = nn.Dense(2 * d + 1, name="params_net")(context)
        u, w, b = out[..., :d], out[..., d:2 * d], out[..., 2 * d]
        u_hat = planar_u_hat(u, w)
        t = jnp.tanh(jnp.sum(w * z, axis=-1) + b)
        y = z + u_hat * t[..., None]
        log_det = jnp.log1p((1.0 - jnp.square(t)) * jnp.sum(w * u_hat, axis=-1))
        return y, log_det


class RadialFlow(nn.Module):
    """One radial step f(z) = z + β h(α, r)(z - z_r), h = 1/(α + r), r = ||z - z_r||
    (Rezende & Mohamed 2015, Eq. 14).

    z_r, α' and β' come from ``Dense(d + 2)`` of the context; α = softplus(α'),
    β = -α + softplus(β') >= -α keeps f invertible.  log |det| =
    (d - 1) log(1 + βh) + log(1 + βh - βh² r).  Shapes as :class:`PlanarFlow`.
    """

    @nn.compact
    def __call__(self, z, context):
        d = z.shape[-1]
        out = nn.Dense(d + 2, name="params_net")(context)
        center, alpha = out[..., :d], jax.nn.softplus(out[..., d])
        beta = jax.nn.softplus(out[..., d + 1]) - alpha
        diff = z - center
        r = jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1))
        h = 1.0 / (alpha + r)
        y = z + (beta * h)[..., None] * diff
        log_det = (d - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * jnp.square(h) * r)
        return y, log_det


def _with_context(z, context):
    """[z, c] on the last axis, c broadcast over z's extra leading (sample) axes."""
    c = jnp.broadcast_to(context, z.shape[:-1] + context.shape[-1:])
    return jnp.concatenate([z, c], axis=-1)


class _Conditioner(nn.Module):
    """t (and s) of a coupling from the kept half and the context: MLP of [z_A, c],
    then a zero-initialized ``Dense(d · outputs)`` (the step starts as the identity).
    Returns ``[..., d, outputs]``."""

    hidden: tuple
    outputs: int
    activation: str = "tanh"

    @nn.compact
    def __call__(self, z_masked, context):
        d = z_masked.shape[-1]
        hid = MLP(self.hidden, self.activation)(_with_context(z_masked, context))
        out = nn.Dense(d * self.outputs, kernel_init=nn.initializers.zeros)(hid)
        return out.reshape(out.shape[:-1] + (d, self.outputs))


class CouplingFlow(nn.Module):
    """One NICE (additive) or RealNVP (affine) coupling step as a ``distrax.MaskedCoupling``.

    Coordinates with ``i % 2 == parity`` are kept (z_A); the others are
    shifted, y_B = z_B + t (Dinh et al. 2014, Eq. 5), or scaled and shifted,
    y_B = z_B ⊙ exp(s) + t (Dinh et al. 2017, Eq. 4-6), with (t, s) from a
    :class:`_Conditioner` of (z_A, c(x)).  log |det| = Σ_B s (0 for NICE).

    Methods: ``__call__(z, context) -> (y, log_det)``, ``inverse(y, context) ->
    (z, log_det of the inverse)``, ``bijector(context, d)`` (the distrax object).
    """

    affine: bool
    parity: int
    hidden: tuple = ()
    activation: str = "tanh"

    def setup(self):
        self.net = _Conditioner(self.hidden, 2 if self.affine else 1, self.activation)

    def bijector(self, context, d: int) -> distrax.Bijector:
        mask = (np.arange(d) % 2) == self.parity

        def inner(params):
            if self.affine:
                return distrax.ScalarAffine(shift=params[..., 0], log_scale=params[..., 1])
            return distrax.ScalarAffine(shift=params[..., 0])

        return distrax.MaskedCoupling(mask, lambda zm: self.net(zm, context), inner)

    def __call__(self, z, context):
        return self.bijector(context, z.shape[-1]).forward_and_log_det(z)

    def inverse(self, y, context):
        return self.bijector(context, y.shape[-1]).inverse_and_log_det(y)


class IAFStep(nn.Module):
    """One IAF step (Kingma et al. 2016, Eq. 14 and Algorithm 1), conditional on c(x).

    (m, s) = MADE(z, c) (:class:`sajax.models._made.MADE`, ``order`` a
    permutation of 1..d) is autoregressive in ``order``; σ = sigmoid(s + 1);
    y = σ ⊙ z + (1 - σ) ⊙ m; log |det ∂y/∂z| = Σ log σ (triangular Jacobian).
    :func:`iaf_inverse` solves z coordinate by coordinate in d passes (exact:
    pass i fixes the i-th coordinate in ``order``).  Shapes as :class:`PlanarFlow`.
    """

    latent_dim: int
    context_dim: int
    hidden: tuple
    order: tuple
    mask_seed: Optional[int] = None
    activation: str = "tanh"

    def setup(self):
        from sajax.models._made import MADE   # written alongside; imported where used

        self.made = MADE(self.latent_dim, self.hidden, 2, self.order, self.mask_seed,
                         self.activation, self.context_dim)

    def gate(self, z, context):
        """(m, s + 1) of Eq. 14, each ``[..., d]``."""
        out = self.made(z, jnp.broadcast_to(context, z.shape[:-1] + context.shape[-1:]))
        return out[..., 0], out[..., 1] + _IAF_FORGET_BIAS

    def __call__(self, z, context):
        m, s = self.gate(z, context)
        sig = jax.nn.sigmoid(s)
        return sig * z + (1.0 - sig) * m, jnp.sum(jax.nn.log_sigmoid(s), axis=-1)


def iaf_inverse(step: IAFStep, params, y, context):
    """z = f⁻¹(y) of one :class:`IAFStep` and log |det ∂z/∂y| = -Σ log σ(z).

    Solved coordinate by coordinate: with z_<i correct, (m_i, σ_i) are exact and
    z_i = (y_i - (1 - σ_i) m_i) / σ_i, so d passes give z exactly (a pure
    ``fori_loop`` over the step's ``gate``; Flax modules stay outside the loop).
    """
    def gate(z):
        return step.apply({"params": params}, z, context, method=IAFStep.gate)

    def solve(_, z):
        m, s = gate(z)
        sig = jax.nn.sigmoid(s)
        return (y - (1.0 - sig) * m) / sig

    z = jax.lax.fori_loop(0, step.latent_dim, solve, jnp.zeros_like(y))
    return z, -jnp.sum(jax.nn.log_sigmoid(gate(z)[1]), axis=-1)


# --------------------------------------------------------------------------
# The amortized flow guide q_φ(h|x)


class _Encoder(nn.Module):
    """x -> (μ, log σ, c): the VAE encoder's MLP (its last hidden layer is the
    context c(x) of the flows; x itself when ``hidden = ()``) and a
    :class:`DiagGaussianHead`.  Shapes ``[B, D] -> ([B, d], [B, d], [B, c])``."""

    hidden: tuple
    latent_dim: int
    activation: str = "tanh"
    std_param: str = "exp"

    @nn.compact
    def __call__(self, x):
        context = MLP(self.hidden, self.activation)(x)
        mean, log_std = DiagGaussianHead(self.latent_dim, self.std_param)(context)
        return mean, log_std, context


class _FlowNets(NamedTuple):
    """Static part of a flow guide: sizes, the encoder and the K flow modules.

    φ = ``{"encoder": ..., "flow_0": ..., ..., "flow_{K-1}": ...}``.
    """

    x_dim: int
    latent_dim: int
    flow: str
    encoder: nn.Module
    steps: tuple
    binary: bool

    @property
    def invertible(self) -> bool:
        return not self.steps or self.flow in INVERTIBLE

    def init(self, key):
        keys = jax.random.split(key, len(self.steps) + 1)
        x = jnp.zeros((1, self.x_dim), jnp.float32)
        enc = self.encoder.init(keys[0], x)["params"]
        phi = {"encoder": enc}
        context = self.encoder.apply({"params": enc}, x)[2]
        z = jnp.zeros((1, self.latent_dim), jnp.float32)
        for k, step in enumerate(self.steps):
            phi[f"flow_{k}"] = step.init(keys[k + 1], z, context)["params"]
        return phi

    def check_x(self, x):
        return check_data(x, name="x", event_shape=(self.x_dim,), binary=self.binary)

    def forward(self, phi, z, context):
        """h = f_K ∘ ... ∘ f_1(z) and Σ_k log |det ∂f_k/∂z_{k-1}| ``[...]``."""
        if self.flow in _COUPLINGS and self.steps:
            return self._chain(phi, context).forward_and_log_det(z)
        log_det = jnp.zeros(z.shape[:-1], z.dtype)
        for k, step in enumerate(self.steps):
            z, ld = step.apply({"params": phi[f"flow_{k}"]}, z, context)
            log_det = log_det + ld
        return z, log_det

    def inverse(self, phi, h, context):
        """z_0 = f_1⁻¹ ∘ ... ∘ f_K⁻¹(h) and log |det ∂z_0/∂h| ``[...]``."""
        if not self.invertible:
            raise NotImplementedError(
                f"log_prob of a given h needs the inverse of the {self.flow!r} flow, which has no closed "
                f"form (Rezende & Mohamed 2015); train with reparam_elbo(kl='mc') or iwae and evaluate "
                f"with iw_nll (they use sample_and_log_prob), or use flow in {INVERTIBLE} for "
                f"stl_elbo / dreg")
        if self.flow in _COUPLINGS and self.steps:
            return distrax.Inverse(self._chain(phi, context)).forward_and_log_det(h)
        log_det = jnp.zeros(h.shape[:-1], h.dtype)
        for k in reversed(range(len(self.steps))):
            h, ld = iaf_inverse(self.steps[k], phi[f"flow_{k}"], h, context)
            log_det = log_det + ld
        return h, log_det

    def _chain(self, phi, context) -> distrax.Bijector:
        """f_K ∘ ... ∘ f_1 of the couplings as one ``distrax.Chain`` (which applies its last element first)."""
        return distrax.Chain([self.steps[k].bind({"params": phi[f"flow_{k}"]}).bijector(context, self.latent_dim)
                              for k in reversed(range(len(self.steps)))])


def _flow_steps(flow, num_flows, latent_dim, context_dim, flow_hidden, activation) -> tuple:
    """The K flow modules; couplings alternate their mask, IAF reverses its order."""
    steps = []
    for k in range(num_flows):
        if flow == "planar":
            steps.append(PlanarFlow())
        elif flow == "radial":
            steps.append(RadialFlow())
        elif flow in _COUPLINGS:
            steps.append(CouplingFlow(flow == "realnvp", k % 2, flow_hidden, activation))
        else:
            order = tuple(range(1, latent_dim + 1))
            steps.append(IAFStep(latent_dim, context_dim, flow_hidden, order[::-1] if k % 2 else order,
                                 activation=activation))
    return tuple(steps)


def _guide_protocol(nets: _FlowNets):
    """``(transform, ConditionalSampler)`` of a flow guide (module docstring's formulas)."""
    d = nets.latent_dim

    def transform(phi, x, eps):
        mean, log_std, context = nets.encoder.apply({"params": phi["encoder"]}, nets.check_x(x))
        log_q0 = jnp.sum(-0.5 * jnp.square(eps) - log_std, axis=-1) - 0.5 * d * _LOG_2PI
        h, log_det = nets.forward(phi, mean + jnp.exp(log_std) * eps, context)
        return h, log_q0, log_det

    def sample_and_log_prob(phi, key, x, n):
        n = check_positive_int("n", n)
        eps = jax.random.normal(key, (n, x.shape[0], d), jnp.float32)
        h, log_q0, log_det = transform(phi, x, eps)
        return h, log_q0 - log_det

    def log_prob(phi, x, h):
        mean, log_std, context = nets.encoder.apply({"params": phi["encoder"]}, nets.check_x(x))
        z0, log_det_inv = nets.inverse(phi, h, context)
        return diag_normal_log_prob(z0, mean, log_std) + log_det_inv

    return transform, ConditionalSampler(sample_and_log_prob=sample_and_log_prob, log_prob=log_prob)


class FlowGuideSpec(NamedTuple):
    """A flow inference model q_φ(h|x) (module docstring) for any model with d Gaussian-like latents.

    Attributes:
      guide: :class:`sajax.core.ConditionalSampler`; ``sample_and_log_prob(φ, key,
        x, n) -> (h [n, B, d], log_q [n, B])`` reparameterized; ``log_prob(φ, x,
        h) -> [..., B]`` exact for ``flow`` in :data:`INVERTIBLE` or
        ``num_flows = 0``, else raises NotImplementedError; no ``dist``.
      init: ``key -> φ``.
      transform: ``(φ, x, ε [..., B, d]) -> (h, log N(z_0; μ, σ) [..., B],
        Σ_k log |det ∂f_k| [..., B])``: the deterministic map from the noise,
        log q = second - third (quadrature over ε, tests).
      x_dim, latent_dim, flow, num_flows: as built.
      invertible: whether ``log_prob`` is available (``stl_elbo``, ``dreg``).
    """

    guide: ConditionalSampler
    init: Callable
    transform: Callable
    x_dim: int
    latent_dim: int
    flow: str
    num_flows: int
    invertible: bool


def _check_flow_args(x_dim, latent_dim, hidden, flow, num_flows, flow_hidden, activation):
    """Validated sizes of :func:`flow_guide`; ValueError/TypeError naming the argument."""
    x_dim = check_positive_int("x_dim", x_dim)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    if flow not in FLOWS:
        raise ValueError(f"flow must be one of {FLOWS}, got {flow!r}")
    num_flows = check_positive_int("num_flows", num_flows, minimum=0)
    _activation(activation)
    hidden = tuple(check_positive_int("hidden width", w) for w in _as_widths(hidden))
    flow_hidden = tuple(check_positive_int("flow_hidden width", w) for w in _as_widths(flow_hidden))
    if flow in _COUPLINGS and num_flows and latent_dim < 2:
        raise ValueError(f"flow={flow!r} splits h into two halves: latent_dim must be >= 2, got {latent_dim}")
    return x_dim, latent_dim, hidden, num_flows, flow_hidden


def _as_widths(widths) -> tuple:
    if isinstance(widths, int) and not isinstance(widths, bool):
        return (widths,)
    return tuple(widths)


def flow_guide(x_dim: int, latent_dim: int, hidden: Sequence[int] = (200, 200), flow: str = "planar",
               num_flows: int = 4, *, flow_hidden: Sequence[int] = (), activation: str = "tanh",
               std_param: str = "exp", binary: bool = False) -> FlowGuideSpec:
    """A normalizing-flow q_φ(h|x) for any model with ``latent_dim`` real latents (Sec. 3.2.1 item 4).

    Args:
      x_dim: D >= 1 of ``x`` ``[B, D]``.
      latent_dim: d >= 1 (>= 2 for the couplings).
      hidden: the encoder's tanh MLP widths; its last layer is the context c(x)
        (``()``: μ, log σ linear in x and c = x).
      flow: one of :data:`FLOWS`.
      num_flows: K >= 0 flow steps; 0 is the diagonal Gaussian q.
      flow_hidden: hidden widths of the coupling conditioners and of IAF's
        MADE (``()``: linear in [z_A, c], resp. a linear autoregressive map).
      activation, std_param: as in :func:`sajax.models.vae`.
      binary: concrete ``x`` must be binary (guides of Bernoulli models).

    Returns: :class:`FlowGuideSpec`.  Raises ValueError/TypeError on bad arguments.

    Example:
      >>> import jax
      >>> fg = flow_guide(3, 2, hidden=(), flow="realnvp", num_flows=2)
      >>> phi = fg.init(jax.random.PRNGKey(0))
      >>> x = jax.numpy.ones((4, 3))
      >>> h, log_q = fg.guide.sample_and_log_prob(phi, jax.random.PRNGKey(1), x, 5)
      >>> h.shape, log_q.shape
      ((5, 4, 2), (5, 4))
      >>> bool(jax.numpy.allclose(fg.guide.log_prob(phi, x, h), log_q, atol=1e-5))
      True
    """
    x_dim, latent_dim, hidden, num_flows, flow_hidden = _check_flow_args(
        x_dim, latent_dim, hidden, flow, num_flows, flow_hidden, activation)
    encoder = _Encoder(hidden, latent_dim, activation, std_param)
    context_dim = hidden[-1] if hidden else x_dim
    steps = _flow_steps(flow, num_flows, latent_dim, context_dim, flow_hidden, activation)
    nets = _FlowNets(x_dim, latent_dim, flow, encoder, steps, bool(binary))
    transform, guide = _guide_protocol(nets)
    return FlowGuideSpec(guide, nets.init, transform, x_dim, latent_dim, flow, num_flows, nets.invertible)


class FlowVAESpec(NamedTuple):
    """A one-layer VAE (Eq. 4) whose q_φ(h|x) is a normalizing flow.

    Attributes:
      model: the VAE's p_θ(x, h) (:func:`sajax.models.vae`), a
        :class:`sajax.core.LatentVariableModel`.
      guide: the flow's :class:`sajax.core.ConditionalSampler`.
      init: ``key -> {"model": θ, "guide": φ}``.
      x_dim, latent_dims ``(d,)``, likelihood, flow, num_flows: as built.
      flow_guide: the :class:`FlowGuideSpec` (``transform``, ``invertible``).
    """

    model: LatentVariableModel
    guide: ConditionalSampler
    init: Callable
    x_dim: int
    latent_dims: tuple
    likelihood: str
    flow: str
    num_flows: int
    flow_guide: FlowGuideSpec


def flow_vae(x_dim: int, latent_dim: int = 50, hidden: Sequence[int] = (200, 200), flow: str = "planar",
             num_flows: int = 10, likelihood: str = "bernoulli", *, flow_hidden: Sequence[int] = (),
             activation: str = "tanh") -> FlowVAESpec:
    """A VAE with a flow q (Rezende & Mohamed 2015; Kingma et al. 2016; review Sec. 3.2.1 item 4).

    p_θ(x, h) is :func:`sajax.models.vae` ``(x_dim, (latent_dim,), hidden,
    likelihood, activation)`` (the decoder mirrors ``hidden``); q_φ(h|x) is
    :func:`flow_guide` with the same encoder widths.  Defaults: the IWAE
    paper's one-layer model (784-200-200-50 tanh) with 10 planar steps.

    Args: as :func:`flow_guide` and :func:`sajax.models.vae`.
    Returns: :class:`FlowVAESpec`.

    Example:
      >>> import jax
      >>> spec = flow_vae(6, latent_dim=2, hidden=(8,), flow="planar", num_flows=3)
      >>> params = spec.init(jax.random.PRNGKey(0))
      >>> sorted(params["guide"])
      ['encoder', 'flow_0', 'flow_1', 'flow_2']
    """
    base = vae(x_dim, (latent_dim,), (tuple(_as_widths(hidden)),), likelihood, activation)
    fg = flow_guide(x_dim, latent_dim, hidden, flow, num_flows, flow_hidden=flow_hidden,
                    activation=activation, binary=likelihood == "bernoulli")

    def init(key):
        k_model, k_guide = jax.random.split(key)
        return {MODEL: base.init(k_model)[MODEL], GUIDE: fg.init(k_guide)}

    return FlowVAESpec(base.model, fg.guide, init, base.x_dim, base.latent_dims, likelihood, flow,
                       fg.num_flows, fg)
