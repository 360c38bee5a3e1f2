"""The contracts every sajax piece speaks (DESIGN.md in the repository root, "The four pieces").

A learning method is a stochastic-approximation (SA) root finder (review
Sec. 2, Algorithm 1): each iteration draws samples z, possibly from a Markov
kernel whose state is threaded through ``state``, and returns a noisy estimate
of the mean field.  sajax packs that estimate as a *descent* direction so that
any optax transform can apply it.

Models enter estimators through *protocols*: small NamedTuples of pure
functions.  A Flax module becomes a protocol through an adapter
(``sajax.models``); a test can hand in an analytic density instead.

Shape conventions: a batch axis first; K samples per example on a leading
sample axis ``[K, B, ...]``.  Latents ``h`` may be any pytree (one leaf per
stochastic layer), every leaf carrying the same leading axes.
Per-example log-densities reduce event axes only.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Protocol

import jax
import jax.numpy as jnp
import numpy as np

Params = Any
PRNGKey = jax.Array

# Names of the parameter groups (top-level keys of ``params``).  One place
# spells them; estimators, models and the driver import these.
MODEL = "model"          # θ of p_θ(x, h)
GUIDE = "guide"          # φ of q_φ(h|x)
BASELINE = "baseline"    # ψ of NVIL's input-dependent baseline C_ψ(x)
GENERATOR = "generator"  # θ of an implicit generator G_θ(ε) (Eq. 5)
CRITIC = "critic"        # ψ of an adversary / critic V_ψ(x)
ENCODER = "encoder"      # φ of an encoder paired with a generator (ALI, AVB)
POTENTIAL = "potential"  # θ of a potential u_θ(x) (Eq. 38)
SAMPLER = "sampler"      # φ of an auxiliary sampler q_φ(x, h) (Sec. 4.2)
REVERSE = "reverse"      # ψ of HVI's reverse model r_ψ(v_T | x, z_T) (Salimans et al. 2015)

# Every estimator reports its objective (natural sign, higher is better)
# under this key too, so the driver, the CLI and plots read one name.
OBJECTIVE = "objective"


class Estimate(NamedTuple):
    """What an estimator returns for one SA iteration.

    Attributes:
      grads: same tree as ``params``; a DESCENT direction (what optax should
        descend). Where the review says "ascend F" this holds -F.
      state: the threaded Markov-chain / baseline state (z^(t) of Algorithm 1).
      metrics: dict of scalar arrays, objectives with their natural sign
        (``elbo``, ``iw_bound``: higher is better), acceptance rates, ...
    """

    grads: Params
    state: Any
    metrics: dict


class InitFn(Protocol):
    """``Estimator.init``: the estimator's initial state.

    ``data`` is always the WHOLE training set ``[N, ...]`` exactly as given
    to :func:`sajax.sa.fit` (before any ``preprocess``); ``Batch.index``
    addresses its rows.  Per-example state (JSA's latent cache) covers all N
    rows; state fitted from data (NVIL's running moments) reads what it needs
    from it.  Stateless estimators ignore it.  Not traced: may validate data.
    """

    def __call__(self, key: PRNGKey, params: Params, data: jax.Array) -> Any:
        ...


class EstimateFn(Protocol):
    """``Estimator.estimate``: one SA iteration's noisy mean field.

    Pure: jit-able, vmap-able over ``key``, free of Python side effects.
    """

    def __call__(self, params: Params, state: Any, key: PRNGKey, batch: "Batch") -> Estimate:
        ...


class Estimator(NamedTuple):
    """A learning method as a pair of pure functions (DESIGN.md, "The four pieces").

    Attributes:
      init: :class:`InitFn` ``(key, params, data) -> state`` where ``data`` is
        the whole training set ``[N, ...]``.
      estimate: :class:`EstimateFn` ``(params, state, key, batch) -> Estimate``.

    Example (REINFORCE-free toy: the mean field of fitting a mean, as a descent direction)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.core import Batch, Estimate, Estimator, MODEL, no_state
        >>> def estimate(params, state, key, batch):
        ...     f = jnp.mean(batch.x, axis=0) - params[MODEL]["mu"]      # ascent direction F
        ...     return Estimate({MODEL: {"mu": -f}}, state, {"objective": -jnp.sum(f ** 2)})
        >>> est = Estimator(no_state, estimate)
        >>> x = jnp.ones((4, 2))
        >>> out = est.estimate({MODEL: {"mu": jnp.zeros(2)}}, est.init(None, None, x),
        ...                    jax.random.PRNGKey(0), Batch(x, jnp.arange(4)))
        >>> out.grads[MODEL]["mu"].tolist(), float(out.metrics["objective"])
        ([-1.0, -1.0], -2.0)
    """

    init: InitFn
    estimate: EstimateFn


class Batch(NamedTuple):
    """A minibatch: the data ``x`` ``[B, ...]`` and each example's row ``index`` ``[B]``
    in the training set.

    The contract: ``Estimator.estimate(params, state, key, batch)`` receives a ``Batch``;
    ``index[i]`` is the row of the ``data`` given to ``Estimator.init`` that ``x[i]``
    came from (before any ``preprocess``), and per-example state (JSA's latent cache,
    Sec. 3.2.3, Algorithm 5) is addressed by it.  :func:`sajax.sa.fit` and
    :func:`sajax.sa.run_loop` build it; by hand write ``Batch(x, jnp.arange(B))`` when
    ``x`` is the first B rows.  Stateless estimators read only ``x`` (through
    :func:`batch_data`) and, as a convenience, also accept a bare array; estimators
    with per-example state need ``index``, so library code and examples always pass a
    ``Batch``.
    """

    x: jax.Array
    index: jax.Array


class LatentVariableModel(NamedTuple):
    """Protocol for a prescribed model p_θ(x, h) = p_θ(h) p_θ(x|h) (Sec. 3.2.1).

    Attributes:
      log_prior: ``(θ, h) -> [...]`` log p_θ(h), leading axes of ``h`` kept.
      log_likelihood: ``(θ, x, h) -> [..., B]`` log p_θ(x|h); ``x`` is
        ``[B, D...]`` and ``h`` leaves are ``[..., B, d]`` (broadcast over
        extra leading sample axes).
      sample: optional ``(θ, key, n) -> (x [n, D...], h)`` ancestral sample
        (sleep phases, sample pictures).
      prior: optional ``θ -> distrax.Distribution`` over h (analytic KL).
      mean: optional ``(θ, h) -> x`` mean of p_θ(x|h) (sample pictures).
      observation: the kind of x the likelihood takes: ``"bernoulli"``
        (binary x; evaluation checks it), ``"gaussian"``, ``"categorical"``
        (integer tokens, e.g. a text decoder), or None (unknown).
    """

    log_prior: Callable
    log_likelihood: Callable
    sample: Optional[Callable] = None
    prior: Optional[Callable] = None
    mean: Optional[Callable] = None
    observation: Optional[str] = None


class TractableModel(NamedTuple):
    """Protocol for a model with an exact, normalized log-likelihood log p_θ(x):
    the fully visible autoregressive models of review Sec. 3.1.3 (NADE, MADE,
    PixelCNN), p_θ(x) = Π_i p_θ(x_i | x_<i).

    Attributes:
      log_prob: ``(θ, x) -> [B]`` exact log p_θ(x) for ``x`` ``[B, D...]``.
      sample: optional ``(θ, key, n) -> x [n, D...]`` ancestral sample.
      observation: as in :class:`LatentVariableModel`.
    """

    log_prob: Callable
    sample: Optional[Callable] = None
    observation: Optional[str] = None


class ConditionalSampler(NamedTuple):
    """Protocol for an inference model q_φ(h|x).

    Attributes:
      sample_and_log_prob: ``(φ, key, x, n) -> (h, log_q)`` with ``h`` leaves
        ``[n, B, d]`` and ``log_q`` ``[n, B]``.  For continuous latents the
        sample is reparameterized (differentiable in φ, Eq. 12); discrete
        samples carry no gradient.
      log_prob: ``(φ, x, h) -> [..., B]`` log q_φ(h|x) of given latents.
      dist: optional ``(φ, x) -> distrax.Distribution`` over a single-leaf h
        (analytic KL, Eq. 8).
    """

    sample_and_log_prob: Callable
    log_prob: Callable
    dist: Optional[Callable] = None


class DiscreteLayers(NamedTuple):
    """Protocol for layer-by-layer access to a discrete inference model
    q_φ(h|x) = Π_{l=0}^{L-1} q_φ(h_l | h_{l-1}), h_{-1} = x (Sec. 3.2.1 item 2).

    MuProp, DisARM, straight-through and Gumbel-softmax sample q one layer at
    a time; a model spec with discrete latents offers this as ``spec.layers``.

    Attributes:
      layer_logits: ``(φ, l, parent) -> logits``; ``parent`` is x ``[..., B, D]``
        for l = 0, else the (possibly relaxed) value of layer l-1.  Bernoulli
        logits are ``[..., B, d_l]``; categorical logits ``[..., B, d_l, C]``.
      num_layers: L.
      kind: "bernoulli" (h_l ∈ {0,1}^{d_l}) or "categorical" (h_l one-hot over
        the last axis).
      pack: ``[h_0, ..., h_{L-1}] -> h`` in the structure the model's
        log-densities take; None: a tuple of layers.
    """

    layer_logits: Callable
    num_layers: int
    kind: str = "bernoulli"
    pack: Optional[Callable] = None


class EnergyModel(NamedTuple):
    """Protocol for an undirected model p_θ(x) = exp(u_θ(x)) / Z(θ) (Sec. 4, Eq. 38).

    Attributes:
      potential: ``(θ, x) -> [..., B]`` the potential u_θ(x) (minus the energy).
      sample: optional ``(θ, key, n) -> x [n, D...]`` an (approximate) sampler,
        e.g. a Markov chain from :mod:`sajax.kernels` (sample pictures).
      observation: as in :class:`LatentVariableModel`.
    """

    potential: Callable
    sample: Optional[Callable] = None
    observation: Optional[str] = None


class NoiseModel(NamedTuple):
    """A trainable density q_φ(x) with a sampler: the noise of NCE/DNCE (Sec. 4.2.4) and the
    proposal/generator of TRF-SA (Sec. 4.2.3), e.g. an LSTM LM (``sajax.models.lstm_lm``).

    Attributes:
      sample: ``(φ, key, n) -> x [n, D...]``.
      log_prob: ``(φ, x) -> [B]`` log q_φ(x) of ``x`` ``[B, D...]``.
      dist: optional ``φ -> distrax.Distribution`` (the same q_φ as an object).
    """

    sample: Callable
    log_prob: Callable
    dist: Optional[Callable] = None


class ImplicitGenerator(NamedTuple):
    """Protocol for a sample-only model x = G_θ(ε), ε ~ p(ε) (Sec. 3.1, Eq. 5).

    Attributes:
      sample: ``(θ, key, n) -> x [n, D...]``; differentiable in θ (adversarial
        learning backpropagates through it).  A conditional generator
        G_θ(c, ε) (``num_classes`` set) takes the labels too:
        ``(θ, key, n, condition) -> x`` with ``condition`` int ``[n]``.
      observation: as in :class:`LatentVariableModel`.
      num_classes: K of a conditional generator; None: unconditional.
    """

    sample: Callable
    observation: Optional[str] = None
    num_classes: Optional[int] = None


class Critic(NamedTuple):
    """Protocol for an adversary V_ψ(x) (Sec. 3.2.4, Eq. 28): a discriminator,
    an f-GAN variational function or a Wasserstein critic, possibly conditional.

    Attributes:
      apply: ``(ψ, state, x) -> (v, state)`` for an unconditional critic
        (estimators never pass it a condition), ``(ψ, state, x, condition) ->
        (v, state)`` for a conditional one (``num_classes`` set; ``condition``
        is int ``[B]`` labels: concatenation or projection).  ``x`` is
        ``[B, D...]``; ``v`` is ``[B]`` (one score per example) or ``[B, C]``
        for a head with several outputs (AC-GAN: the source logit in column 0,
        the K class logits after it).  ``state`` holds
        the critic's mutable Flax collections (spectral-norm power-iteration
        vectors), ``()`` if none; the returned state is the updated one, and
        estimators thread it as their own state (DESIGN.md, "The contracts").
      init_state: ``key -> state``, the initial mutable collections (``()``
        if none).
      num_classes: K of a conditional critic; None: unconditional.

    A plain function ``(ψ, x) -> v`` (stateless, unconditional) is accepted by
    every estimator in its place (:func:`as_critic`).
    """

    apply: Callable
    init_state: Callable
    num_classes: Optional[int] = None


def as_critic(critic, name: str = "critic") -> Critic:
    """``critic`` as a :class:`Critic`: a Critic (or anything with callable
    ``apply`` and ``init_state``) as it is; a plain function ``(ψ, x) -> v`` as
    a stateless, unconditional Critic (state ``()``).  TypeError otherwise, and
    for a bare Flax module (whose ``apply`` takes variables, not ψ).

    Example:
      >>> import jax.numpy as jnp
      >>> c = as_critic(lambda psi, x: x[:, 0] * psi)
      >>> c.apply(2.0, c.init_state(None), jnp.ones((3, 1)))
      (Array([2., 2., 2.], dtype=float32), ())
    """
    if callable(getattr(critic, "apply", None)) and callable(getattr(critic, "init_state", None)):
        return critic
    if callable(getattr(critic, "apply", None)) and callable(getattr(critic, "init", None)):
        raise TypeError(f"{name} is a Flax module; pass a sajax.core.Critic, e.g. Critic(lambda psi, state, x: "
                        f"(module.apply({{'params': psi}}, x), state), lambda key: ()), or a function (psi, x) -> v")
    if callable(critic) and not isinstance(critic, type):
        return Critic(lambda psi, state, x: (critic(psi, x), state), lambda key: ())
    raise TypeError(f"{name} must be a sajax.core.Critic (apply(ψ, state, x[, condition]) -> (v, state), "
                    f"init_state(key) -> state) or a function (ψ, x) -> v; got {type(critic).__name__}")


class ImplicitSampler(NamedTuple):
    """Protocol for a sample-only conditional h ~ q_φ(h|x), h = f_φ(x, ε)
    (AVB's black-box inference model, Sec. 3.2.1 item 4; ALI/BiGAN's encoder
    and decoder, Sec. 3.2.4 item 4).  No density is needed.

    Attributes:
      sample: ``(φ, key, x, n) -> h`` with leaves ``[n, B, d]`` for ``x``
        ``[B, D...]``; reparameterized (differentiable in φ and in x).  A
        deterministic map ignores ``key`` and broadcasts over ``n``.
    """

    sample: Callable


def log_joint(model: LatentVariableModel, theta: Params, x, h) -> jax.Array:
    """log p_θ(x, h) = log p_θ(h) + log p_θ(x|h), shape ``[..., B]``.

    Both terms must hold one value per example: ``[..., B]`` with B = ``x.shape[0]``
    and the leading (sample) axes of ``h`` (a trailing 1 broadcasts).  A term of
    any other shape (typically a density that did not sum over its event axis,
    or x / h with the wrong trailing shape) raises a ValueError naming the term,
    the expected and the received shapes; shapes are static, so the check runs
    at trace time and costs nothing per step.
    """
    log_prior = model.log_prior(theta, h)
    log_lik = model.log_likelihood(theta, x, h)
    _check_joint_terms(log_prior, log_lik, x, h)
    return log_prior + log_lik


def _check_joint_terms(log_prior, log_lik, x, h) -> None:
    """ValueError unless log p(h) and log p(x|h) are ``[..., B]`` and broadcast together."""
    x_shape, b = tuple(np.shape(x)), (np.shape(x) or (None,))[0]
    h_shapes = [tuple(np.shape(a)) for a in jax.tree_util.tree_leaves(h)]
    where = (f"[..., B] with B = {b} examples, the leading axes of h (x has shape {x_shape}, "
             f"h {h_shapes[0] if len(h_shapes) == 1 else h_shapes})")
    shapes = {}
    for name, term in (("model.log_prior(θ, h)", log_prior), ("model.log_likelihood(θ, x, h)", log_lik)):
        s = tuple(np.shape(term))
        if not s or s[-1] not in (b, 1):
            raise ValueError(f"{name} must return one value per example, shape {where}; got shape {s}. "
                             f"Sum the log-density over its event axes, and check the trailing shapes of x and h.")
        shapes[name] = s
    try:
        joint = np.broadcast_shapes(*shapes.values())
    except ValueError:
        joint = None
    if joint is None or joint[-1] != b:
        raise ValueError(f"log p(h) of shape {shapes['model.log_prior(θ, h)']} and log p(x|h) of shape "
                         f"{shapes['model.log_likelihood(θ, x, h)']} do not broadcast to {where}")


def check_protocols(model, guide, *, need_sampler: bool = True) -> None:
    """TypeError unless ``model``/``guide`` speak the protocols above (build time)."""
    for name in ("log_prior", "log_likelihood"):
        if not callable(getattr(model, name, None)):
            raise TypeError(
                f"model must be a sajax.core.LatentVariableModel with a callable {name!r}; "
                f"got {type(model).__name__}")
    if need_sampler:
        for name in ("sample_and_log_prob", "log_prob"):
            if not callable(getattr(guide, name, None)):
                raise TypeError(
                    f"guide must be a sajax.core.ConditionalSampler with a callable {name!r}; "
                    f"got {type(guide).__name__}")


def no_state(key, params, data):
    """``Estimator.init`` of estimators without state: each iteration draws afresh."""
    del key, params, data
    return ()


def require_groups(params, names, who: str):
    """The groups ``names`` of ``params``, or a clear error naming what is missing.

    Estimators call this at the top of ``estimate`` (shapes are static, so the
    check runs at trace time and costs nothing per step).
    """
    if not hasattr(params, "keys"):
        raise TypeError(f"{who}: params must be a dict of parameter groups {list(names)}, "
                        f"got {type(params).__name__}")
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"{who}: params has no group(s) {missing}; it needs {list(names)} "
                         f"(has {sorted(params)})")
    return tuple(params[n] for n in names)


def check_key(key, name: str = "key") -> jax.Array:
    """A PRNG key (``jax.random.PRNGKey(seed)`` or ``jax.random.key(seed)``), or TypeError."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        raise TypeError(f"{name} must be a PRNG key, e.g. jax.random.PRNGKey({int(key)}), "
                        f"not the integer {int(key)}")
    try:
        arr = jnp.asarray(key) if not jax.dtypes.issubdtype(getattr(key, "dtype", None),
                                                            jax.dtypes.prng_key) else key
    except TypeError:
        raise TypeError(f"{name} must be a PRNG key, got {type(key).__name__}") from None
    typed = jax.dtypes.issubdtype(arr.dtype, jax.dtypes.prng_key)
    if not typed and not (arr.dtype == jnp.uint32 and arr.shape[-1:] == (2,)):
        raise TypeError(f"{name} must be a PRNG key (jax.random.PRNGKey(seed)), got an array of "
                        f"dtype {arr.dtype} and shape {arr.shape}")
    return key


def batch_data(batch):
    """The data array of a :class:`Batch` (a bare array is accepted too)."""
    return getattr(batch, "x", batch)


def log_mean_exp(log_w, axis: int = 0):
    """log (1/K) Σ_k exp(log_w[k]) over ``axis`` (the sample axis): [K, B] -> [B]."""
    return jax.nn.logsumexp(log_w, axis=axis) - np.log(log_w.shape[axis])


def neg(tree):
    """-tree: turns an ascent direction F into the descent direction optax wants."""
    return jax.tree_util.tree_map(jnp.negative, tree)


def complete_grads(params, grads) -> dict:
    """``grads`` completed to the groups of ``params``: every group the estimator
    does not move (e.g. a baseline or a critic kept by the caller) gets zeros
    shaped like its parameters, so ``Estimate.grads`` has the tree of ``params``
    (DESIGN.md, "Several players, phases and persistent chains").

    Args:
      params: dict of parameter groups.
      grads: dict ``{group: grads}`` for the groups the estimator moves.
    Returns: a new dict with every group of ``params`` (``grads``' own groups first).

    Example:
      >>> import jax.numpy as jnp
      >>> g = complete_grads({"model": jnp.ones(2), "baseline": jnp.ones(3)}, {"model": -jnp.ones(2)})
      >>> sorted(g), g["baseline"].tolist()
      (['baseline', 'model'], [0.0, 0.0, 0.0])
    """
    out = dict(grads)
    for name in params:
        if name not in out:
            out[name] = jax.tree_util.tree_map(jnp.zeros_like, params[name])
    return out


# --------------------------------------------------------------------------
# Validation at the data boundary (DESIGN.md, Conventions: bad input fails
# early and clearly, never as an XLA stack trace).


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer >= ``minimum``; else ValueError.

    Python, NumPy and concrete 0-d JAX integers are accepted (a traced value is
    not: sizes must be static).
    """
    if isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer) \
            and value.shape == () and jnp.issubdtype(value.dtype, jnp.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_data(x, *, name: str = "data", event_shape=None, binary: bool = False):
    """Validate a concrete data array: finite, right event shape, binary if asked.

    Shapes are checked always (they are static, also under ``jit``); values
    (finite, binary) only for concrete arrays.

    Args:
      x: array ``[N, *event_shape]`` (extra leading sample axes allowed).
      event_shape: expected trailing shape, or None to skip the check.
      binary: require every value in {0, 1} (Bernoulli likelihoods).
    Returns: ``x`` unchanged.
    """
    shape = tuple(np.shape(x))
    if len(shape) < 2:
        raise ValueError(f"{name} must have a batch axis first, shape [N, ...]; got shape {shape}")
    if event_shape is not None and shape[-len(event_shape):] != tuple(event_shape):
        raise ValueError(
            f"{name} has event shape {shape[1:]}, expected {tuple(event_shape)} "
            f"(full shape [N, {', '.join(map(str, event_shape))}])")
    if isinstance(x, jax.core.Tracer):
        return x  # shapes are static; values are checked where concrete data enters
    arr = np.asarray(x)
    if jnp.issubdtype(arr.dtype, jnp.floating) and not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)  # bfloat16 / float8 (ml_dtypes): check values in float32
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite values")
    if binary and not np.all((arr == 0) | (arr == 1)):
        raise ValueError(
            f"{name} must be binary (values in {{0, 1}}) for a Bernoulli likelihood; "
            f"found values in [{arr.min()}, {arr.max()}]. Binarize it first "
            f"(sajax.data.fixed_binarize) or use dynamic binarization (sajax.data.dynamic_binarize).")
    return x
