"""Normalizing-flow inference models q_φ(h|x), amortized on x (review Sec. 3.2.1, item 4).

"More expressive inference model, going beyond factorized-Gaussian": a
change of variables through K invertible maps turns the diagonal Gaussian of
the VAE encoder (Eq. 12) into a richer q_φ(h|x)::

    ε ~ N(0, I_d),   z_0 = μ_φ(x) + σ_φ(x) ⊙ ε,   h = f_K ∘ ... ∘ f_1(z_0; c(x)),
    log q_φ(h|x) = log N(ε; 0, I) - Σ_i log σ_φ,i(x) - Σ_k log |det ∂f_k/∂z_{k-1}|,

where c(x) is the encoder's last hidden layer (the context every flow step
conditions on).  Every step f_k is a ``distrax.Bijector`` (``event_ndims_in = 1``)
and the K steps are one ``distrax.Chain``: a single code path for all flows,
by the name ``flow=``:

* ``"planar"``: :class:`PlanarBijector`, f(z) = z + û tanh(wᵀz + b) (Rezende &
  Mohamed 2015, Eq. 10), with û = u + (m(wᵀu) - wᵀu) w / ||w||²,
  m(a) = -1 + softplus(a), so that wᵀû >= -1 keeps f invertible (their Appendix A.1);
* ``"radial"``: :class:`RadialBijector`, f(z) = z + β (z - z_r) / (α + ||z - z_r||),
  α > 0, β >= -α (Rezende & Mohamed 2015, Eq. 14);
* ``"nice"``: additive couplings y_B = z_B + t(z_A, c) (Dinh et al. 2014);
* ``"realnvp"``: affine couplings y_B = z_B ⊙ exp(s(z_A, c)) + t(z_A, c)
  (Dinh et al. 2017); both are ``distrax.MaskedCoupling`` with
  ``distrax.ScalarAffine`` inner bijectors and alternating masks;
* ``"iaf"``: :class:`IAFBijector`, inverse autoregressive flow (Kingma et al.
  2016, Eq. 14 and Algorithm 1): (m, s) = MADE(z, c), σ = sigmoid(s + 1),
  y = σ ⊙ z + (1 - σ) ⊙ m (the numerically stable LSTM-style update),
  log det = Σ log σ; the autoregressive order is reversed between steps.

The Flax modules :class:`PlanarFlow`, :class:`RadialFlow`, :class:`CouplingFlow`
and :class:`IAFStep` hold the parameters φ_k of each step; their ``bijector(c, d)``
is the step's bijector for the context c, and :attr:`FlowGuideSpec.bijector`
the whole chain for a batch x.

``num_flows = 0`` is the diagonal Gaussian q of the VAE.  Planar and radial
flows have no closed-form inverse: their ``inverse_and_log_det`` (hence the
guide's ``log_prob`` of a *given* h) raises ``NotImplementedError``, so they
train with :func:`~sajax.estimators.reparam_elbo` (``kl="mc"``) and
:func:`~sajax.estimators.iwae` and evaluate with :func:`~sajax.evaluate.iw_nll`
(all use ``sample_and_log_prob``), but not with ``stl_elbo`` / ``dreg`` (which
evaluate log q at stopped φ).  Couplings and IAF invert exactly (IAF in d
sequential passes), so every estimator takes them.

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

__all__ = ["FLOWS", "INVERTIBLE", "PlanarBijector", "RadialBijector", "IAFBijector", "PlanarFlow", "RadialFlow",
           "CouplingFlow", "IAFStep", "FlowGuideSpec", "FlowVAESpec", "flow_guide", "flow_vae", "planar_u_hat"]

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


def _no_inverse(flow: str, formula: str) -> NotImplementedError:
    """The error of a flow step whose inverse has no closed form, with the estimators that work."""
    return NotImplementedError(
        f"the {flow!r} flow {formula}: its inverse has no closed form (Rezende & Mohamed 2015), so log_prob of "
        f"a given h is unavailable: train with reparam_elbo(kl='mc') or iwae and evaluate with iw_nll (they "
        f"use sample_and_log_prob), or use flow in {INVERTIBLE} for stl_elbo / dreg")


class PlanarBijector(distrax.Bijector):
    """One planar step f(z) = z + û tanh(wᵀz + b) (Rezende & Mohamed 2015, Eq. 10-12;
    review Sec. 3.2.1 item 4), a ``distrax.Bijector`` on vectors (``event_ndims_in = 1``).

    ``u, w`` ``[..., d]`` and ``b`` ``[...]`` broadcast against z's leading axes;
    û = :func:`planar_u_hat` (u, w), so wᵀû >= -1 and f is invertible.
    log |det ∂f/∂z| = log(1 + (1 - tanh²(wᵀz + b)) wᵀû) (matrix determinant lemma).
    The inverse has no closed form: ``inverse_and_log_det`` raises NotImplementedError.
    """

    def __init__(self, u, w, b):
        super().__init__(event_ndims_in=1)
        self.u_hat, self.w, self.b = planar_u_hat(u, w), w, b

    def forward_and_log_det(self, z):
        t = jnp.tanh(jnp.sum(self.w * z, axis=-1) + self.b)
        y = z + self.u_hat * t[..., None]
        return y, jnp.log1p((1.0 - jnp.square(t)) * jnp.sum(self.w * self.u_hat, axis=-1))

    def inverse_and_log_det(self, y):
        raise _no_inverse("planar", "f(z) = z + û tanh(wᵀz + b)")


class RadialBijector(distrax.Bijector):
    """One radial step f(z) = z + β h(α, r)(z - z_r), h = 1/(α + r), r = ||z - z_r||
    (Rezende & Mohamed 2015, Eq. 14; review Sec. 3.2.1 item 4), ``event_ndims_in = 1``.

    ``center`` ``[..., d]``, ``alpha > 0`` and ``beta >= -alpha`` ``[...]`` (invertible).
    log |det| = (d - 1) log(1 + βh) + log(1 + βh - βh² r).  The inverse has no
    closed form: ``inverse_and_log_det`` raises NotImplementedError.
    """

    def __init__(self, center, alpha, beta):
        super().__init__(event_ndims_in=1)
        self.center, self.alpha, self.beta = center, alpha, beta

    def forward_and_log_det(self, z):
        d, beta = z.shape[-1], self.beta
        diff = z - self.center
        r = jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1))
        h = 1.0 / (self.alpha + r)
        y = z + (beta * h)[..., None] * diff
        return y, (d - 1) * jnp.log1p(beta * h) + jnp.log1p(beta * h - beta * jnp.square(h) * r)

    def inverse_and_log_det(self, y):
        raise _no_inverse("radial", "f(z) = z + β (z - z_r) / (α + ||z - z_r||)")


class IAFBijector(distrax.Bijector):
    """One IAF step (Kingma et al. 2016, Eq. 14 and Algorithm 1; review Sec. 3.2.1 item 4).

    ``gate(z) -> (m, s)``, each ``[..., d]``, must be autoregressive (output i
    depends on z_j only for j before i in some order); σ = sigmoid(s);
    y = σ ⊙ z + (1 - σ) ⊙ m; log |det ∂y/∂z| = Σ log σ (triangular Jacobian).
    ``inverse_and_log_det`` is exact but sequential: with z_<i correct, (m_i, σ_i)
    are exact and z_i = (y_i - (1 - σ_i) m_i) / σ_i, so ``num_passes = d`` passes
    of a ``fori_loop`` give z; its log-det is -Σ log σ(z).
    """

    def __init__(self, gate: Callable, num_passes: int):
        super().__init__(event_ndims_in=1)
        self.gate, self.num_passes = gate, num_passes

    def forward_and_log_det(self, z):
        m, s = self.gate(z)
        sig = jax.nn.sigmoid(s)
        return sig * z + (1.0 - sig) * m, jnp.sum(jax.nn.log_sigmoid(s), axis=-1)

    def inverse_and_log_det(self, y):
        def solve(_, z):
            m, s = self.gate(z)
            sig = jax.nn.sigmoid(s)
            return (y - (1.0 - sig) * m) / sig

        z = jax.lax.fori_loop(0, self.num_passes, solve, jnp.zeros_like(y))
        return z, -jnp.sum(jax.nn.log_sigmoid(self.gate(z)[1]), axis=-1)


class _Identity(distrax.Bijector):
    """h = z with log-det 0: the chain of ``num_flows = 0`` steps (the VAE's diagonal q, Eq. 12)."""

    def __init__(self):
        super().__init__(event_ndims_in=1, is_constant_jacobian=True)

    def forward_and_log_det(self, z):
        return z, jnp.zeros(z.shape[:-1], z.dtype)

    def inverse_and_log_det(self, y):
        return self.forward_and_log_det(y)


# --------------------------------------------------------------------------
# Flax modules holding each step's parameters φ_k; ``bijector(c, d)`` builds the step


class PlanarFlow(nn.Module):
    """Parameters of one :class:`PlanarBijector` (Rezende & Mohamed 2015, Eq. 10-12).

    u, w, b come from ``Dense(2d + 1)`` of the context c(x) (amortized).
    ``bijector(context [..., c], d)`` is the step; ``__call__(z [..., d], context)
    -> (y [..., d], log_det [...])`` its ``forward_and_log_det``.
    """

    @nn.compact
    def bijector(self, context, d: int) -> PlanarBijector:
        out = nn.Dense(2 * d + 1, name="params_net")(context)
        return PlanarBijector(out[..., :d], out[..., d:2 * d], out[..., 2 * d])

    def __call__(self, z, context):
        return self.bijector(context, z.shape[-1]).forward_and_log_det(z)


class RadialFlow(nn.Module):
    """Parameters of one :class:`RadialBijector` (Rezende & Mohamed 2015, Eq. 14).

    z_r, α' and β' come from ``Dense(d + 2)`` of the context; α = softplus(α'),
    β = -α + softplus(β') >= -α keeps f invertible.  Methods as :class:`PlanarFlow`.
    """

    @nn.compact
    def bijector(self, context, d: int) -> RadialBijector:
        out = nn.Dense(d + 2, name="params_net")(context)
        alpha = jax.nn.softplus(out[..., d])
        return RadialBijector(out[..., :d], alpha, jax.nn.softplus(out[..., d + 1]) - alpha)

    def __call__(self, z, context):
        return self.bijector(context, z.shape[-1]).forward_and_log_det(z)


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
    :class:`_Conditioner` of (z_A, c(x)).  log |det| = Σ_B s (0 for NICE); the
    inverse is exact.  Review Sec. 3.2.1 item 4.  Methods as :class:`PlanarFlow`.
    """

    affine: bool
    parity: int
    hidden: tuple = ()
    activation: str = "tanh"

    def setup(self):
        self.net = _Conditioner(self.hidden, 2 if self.affine else 1, self.activation)

    def bijector(self, context, d: int) -> distrax.MaskedCoupling:
        mask = (np.arange(d) % 2) == self.parity

        def inner(params):
            if self.affine:
                return distrax.ScalarAffine(shift=params[..., 0], log_scale=params[..., 1])
            return distrax.ScalarAffine(shift=params[..., 0])

        return distrax.MaskedCoupling(mask, lambda zm: self.net(zm, context), inner)

    def __call__(self, z, context):
        return self.bijector(context, z.shape[-1]).forward_and_log_det(z)


class IAFStep(nn.Module):
    """Parameters of one :class:`IAFBijector` (Kingma et al. 2016, Eq. 14 and Algorithm 1),
    conditional on c(x).

    (m, s) = MADE(z, c) (:class:`sajax.models._made.MADE`, ``order`` a
    permutation of 1..d) is autoregressive in ``order``; the bijector's gate is
    (m, s + 1).  Methods as :class:`PlanarFlow`; the bijector inverts exactly in
    d passes.
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

    def bijector(self, context, d: int) -> IAFBijector:
        return IAFBijector(lambda z: self.gate(z, context), d)

    def __call__(self, z, context):
        return self.bijector(context, z.shape[-1]).forward_and_log_det(z)


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

    def bijector(self, phi, context) -> distrax.Bijector:
        """f_K ∘ ... ∘ f_1 for the context c(x) as one ``distrax.Chain`` (which applies its last
        element first): the single code path of every flow, forward and inverse."""
        steps = [self.steps[k].bind({"params": phi[f"flow_{k}"]}).bijector(context, self.latent_dim)
                 for k in reversed(range(len(self.steps)))]
        return distrax.Chain(steps or [_Identity()])


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
    """``(transform, bijector, ConditionalSampler)`` of a flow guide (module docstring's formulas);
    every flow goes through the one chain of :meth:`_FlowNets.bijector`."""
    d = nets.latent_dim

    def encode(phi, x):
        return nets.encoder.apply({"params": phi["encoder"]}, nets.check_x(x))

    def bijector(phi, x):
        return nets.bijector(phi, encode(phi, x)[2])

    def transform(phi, x, eps):
        mean, log_std, context = encode(phi, x)
        log_q0 = jnp.sum(-0.5 * jnp.square(eps) - log_std, axis=-1) - 0.5 * d * _LOG_2PI
        h, log_det = nets.bijector(phi, context).forward_and_log_det(mean + jnp.exp(log_std) * eps)
        return h, log_q0, log_det

    def sample_and_log_prob(phi, key, x, n):
        n = check_positive_int("n", n)
        eps = jax.random.normal(key, (n, x.shape[0], d), jnp.float32)
        h, log_q0, log_det = transform(phi, x, eps)
        return h, log_q0 - log_det

    def log_prob(phi, x, h):
        mean, log_std, context = encode(phi, x)
        z0, log_det_inv = nets.bijector(phi, context).inverse_and_log_det(h)
        return diag_normal_log_prob(z0, mean, log_std) + log_det_inv

    return transform, bijector, ConditionalSampler(sample_and_log_prob=sample_and_log_prob, log_prob=log_prob)


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
      bijector: ``(φ, x [B, D]) -> distrax.Chain``: f_K ∘ ... ∘ f_1 conditioned on
        c(x), every step a ``distrax.Bijector`` (an identity for ``num_flows = 0``);
        acts on z ``[..., B, d]``.
    """

    guide: ConditionalSampler
    init: Callable
    transform: Callable
    x_dim: int
    latent_dim: int
    flow: str
    num_flows: int
    invertible: bool
    bijector: Callable


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
      >>> chain = fg.bijector(phi, x)        # every flow: a distrax.Chain of distrax.Bijector steps
      >>> type(chain).__name__, [type(b).__name__ for b in chain.bijectors]
      ('Chain', ['MaskedCoupling', 'MaskedCoupling'])
    """
    x_dim, latent_dim, hidden, num_flows, flow_hidden = _check_flow_args(
        x_dim, latent_dim, hidden, flow, num_flows, flow_hidden, activation)
    encoder = _Encoder(hidden, latent_dim, activation, std_param)
    context_dim = hidden[-1] if hidden else x_dim
    steps = _flow_steps(flow, num_flows, latent_dim, context_dim, flow_hidden, activation)
    nets = _FlowNets(x_dim, latent_dim, flow, encoder, steps, bool(binary))
    transform, bijector, guide = _guide_protocol(nets)
    return FlowGuideSpec(guide, nets.init, transform, x_dim, latent_dim, flow, num_flows, nets.invertible,
                         bijector)


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
