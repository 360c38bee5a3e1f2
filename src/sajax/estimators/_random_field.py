"""Stochastic maximum likelihood for random fields: SML/PCD and CD (review Sec. 4.2.1, Algorithm 7, Eq. 39).

A random field p_θ(x) = exp(u_θ(x)) / Z(θ) (Eq. 38) is fitted by maximum
likelihood, whose stationarity condition is Eq. 39:

    E_{p̃(x̃)} ∇_θ u_θ(x̃) - E_{p_θ(x)} ∇_θ u_θ(x) = 0.

SML (Younes 1989), called persistent contrastive divergence (PCD) for RBMs
(Tieleman 2008), solves it by SA (Algorithm 7): every iteration draws an
empirical minibatch E and a Monte Carlo minibatch M ~ p_θ, and ascends

    (1/|E|) Σ_{x̃ ∈ E} ∇_θ u_θ(x̃)  -  (1/|M|) Σ_{x ∈ M} ∇_θ u_θ(x).

M is the state of ``num_chains`` persistent Markov chains (the SA iterate z
of Algorithm 1), moved ``num_moves`` steps per iteration by a kernel that
leaves p_θ invariant at the CURRENT θ (Algorithm 2); it is never reset to
the data.  :func:`cd` is contrastive divergence CD-k (Hinton 2002): the
chains restart at the minibatch every iteration, which is biased (its fixed
point is not the MLE) but cheap and stable.

The kernel.  ``kernel`` is a name or a *transition builder*
``θ -> ChainKernel(init, step, position)`` (:class:`ChainKernel`): a Markov
kernel on chains ``x [C, D...]`` at that θ, with ``init(key, x) -> kstate``,
``step(key, kstate) -> (kstate, info)`` and ``position(kstate) -> x``.  Each
iteration builds it at the current θ, starts it at the stored chains and runs
``num_moves`` steps (:func:`sajax.kernels.repeat_moves`); only the
positions persist, since whatever else a kernel carries (log π, ∇ log π, the
hiddens) belongs to the old θ.  Names:

* ``"gibbs"`` (default for an :class:`~sajax.models._rbm.RBMSpec`): block
  Gibbs sweeps h ~ p(h|v), v ~ p(v|h) (:mod:`sajax.kernels.gibbs`);
* ``"langevin"`` (default otherwise): ULA/SGLD moves on u_θ
  (:mod:`sajax.kernels.langevin`, ``step_size``, ``noise_scale``);
* ``"mala"``: Metropolis-adjusted Langevin (:mod:`sajax.kernels.mala`).

The gradient: ``grads[POTENTIAL]`` is the negation (descent direction) of
the Algorithm 7 ascent direction; other groups get zeros.  Metrics:
``objective`` (= ``potential_gap``) is a tractable proxy, the mean data
potential minus the mean chain potential, NOT a log-likelihood: with chains
distributed as p_θ it estimates mean log p_θ(x̃) + H(p_θ) (since
log Z = E_p u + H(p)); ``data_potential``, ``chain_potential``,
``chains_finite`` (fraction of chains with all coordinates finite), and the
mean of every field of the kernel's info (``visible_change_rate``,
``acceptance_rate``, ``drift_norm``, ...).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import (
    POTENTIAL,
    Estimate,
    EnergyModel,
    Estimator,
    batch_data,
    check_data,
    check_positive_int,
    no_state,
    require_groups,
)
from sajax.estimators._common import descent, with_objective
from sajax.kernels import gibbs, langevin, mala, repeat_moves
from sajax.models._energy import check_potential_output

__all__ = ["pcd", "cd", "cd_moves", "CDState", "PCDState", "ChainKernel", "langevin_transition", "mala_transition",
           "gibbs_transition"]

_sg = jax.lax.stop_gradient


class ChainKernel(NamedTuple):
    """A Markov kernel on chains ``x [C, D...]`` at a fixed θ (what a transition builder returns).

    Attributes:
      init: ``(key, x) -> kstate``, the kernel's state at positions x.
      step: ``(key, kstate) -> (kstate, info)``; ``info`` a NamedTuple or dict
        of arrays (their means become metrics).
      position: ``kstate -> x [C, D...]``.
    """

    init: Callable
    step: Callable
    position: Callable


class PCDState(NamedTuple):
    """The persistent state of :func:`pcd` (a pytree of arrays; checkpointed with the carry).

    Attributes:
      chains: ``[C, D...]`` the Monte Carlo minibatch M (Algorithm 7).
      noise_low, noise_high: ``[D...]`` the box restarts are drawn from
        (uniform; ignored for binary models, which restart at Bernoulli(1/2)).
    """

    chains: jax.Array
    noise_low: jax.Array
    noise_high: jax.Array


def langevin_transition(potential: Callable, step_size, noise_scale=None) -> Callable:
    """Transition builder of ULA/SGLD moves on log π = u_θ (:mod:`sajax.kernels.langevin`).

    The step size is checked now (ValueError if <= 0), by the kernel itself.
    """
    langevin.build_kernel(lambda x: jnp.zeros(jnp.shape(x)[:1]), step_size, noise_scale)

    def build(theta):
        log_target = lambda x: potential(theta, x)  # noqa: E731
        return ChainKernel(lambda key, x: langevin.init(x, log_target),
                           langevin.build_kernel(log_target, step_size, noise_scale),
                           lambda s: s.position)

    return build


def mala_transition(potential: Callable, step_size) -> Callable:
    """Transition builder of MALA moves on π ∝ exp u_θ (:mod:`sajax.kernels.mala`)."""
    mala.build_kernel(lambda x: jnp.zeros(jnp.shape(x)[:1]), step_size)

    def build(theta):
        log_target = lambda x: potential(theta, x)  # noqa: E731
        return ChainKernel(lambda key, x: mala.init(x, log_target),
                           mala.build_kernel(log_target, step_size), lambda s: s.position)

    return build


def gibbs_transition(spec) -> Callable:
    """Transition builder of block-Gibbs sweeps of an RBM (:mod:`sajax.kernels.gibbs`);
    ``spec`` has ``sample_hidden(θ, key, v)`` and ``sample_visible(θ, key, h)`` (an RBMSpec)."""
    for name in ("sample_hidden", "sample_visible"):
        if not callable(getattr(spec, name, None)):
            raise TypeError(f"kernel='gibbs' needs an RBMSpec with a callable {name!r} "
                            f"(sajax.models rbm(...)); got {type(spec).__name__}")

    def build(theta):
        sample_h = lambda key, v: spec.sample_hidden(theta, key, v)  # noqa: E731
        sample_v = lambda key, h: spec.sample_visible(theta, key, h)  # noqa: E731
        return ChainKernel(lambda key, x: gibbs.init(key, x, sample_h),
                           gibbs.build_kernel(sample_h, sample_v), lambda s: s.visible)

    return build


def _energy_model(model, who: str):
    """``(EnergyModel, spec or None)`` of an EnergyModel, an EnergySpec or an RBMSpec."""
    if isinstance(model, EnergyModel):
        return model, None
    inner = getattr(model, "model", None)
    if isinstance(inner, EnergyModel):
        return inner, model
    raise TypeError(f"{who}: model must be a sajax.core.EnergyModel or a spec holding one "
                    f"(rbm(...), mlp_potential(...)), got {type(model).__name__}")


def _transition(kernel, model, spec, step_size, noise_scale, who: str) -> Callable:
    """The transition builder named by ``kernel`` (see the module docstring)."""
    if kernel is None:
        kernel = "gibbs" if callable(getattr(spec, "sample_visible", None)) else "langevin"
    if callable(kernel):
        return kernel
    if kernel == "gibbs":
        if step_size is not None or noise_scale is not None:
            raise ValueError(f"{who}: kernel='gibbs' takes no step_size or noise_scale")
        return gibbs_transition(spec)
    if kernel in ("langevin", "mala"):
        if step_size is None:
            raise ValueError(f"{who}: kernel={kernel!r} needs a step_size > 0")
        if kernel == "mala":
            if noise_scale is not None:
                raise ValueError(f"{who}: kernel='mala' takes no noise_scale (it is sqrt(2 step_size))")
            return mala_transition(model.potential, step_size)
        return langevin_transition(model.potential, step_size, noise_scale)
    raise ValueError(f"{who}: kernel must be 'gibbs', 'langevin', 'mala' or a transition builder "
                     f"θ -> ChainKernel, got {kernel!r}")


def _info_metrics(info) -> dict:
    """The mean of every field of a kernel info stacked over moves (``[k, C]`` leaves)."""
    fields = info._asdict() if hasattr(info, "_asdict") else dict(info or {})
    return {name: jnp.mean(jnp.asarray(v, jnp.float32)) for name, v in fields.items()}


def _move_chains(transition, theta, key, chains, num_moves: int, num_active=None):
    """``num_moves`` kernel steps at θ from ``chains`` (only the first ``num_active``
    when given, a traced count): ``(chains', info metrics)``, infos averaged over the moves run."""
    kern = transition(_sg(theta))
    k_init, k_run = jax.random.split(key)
    run = repeat_moves(kern.step, num_moves, keep_states=False)
    final, (_, infos) = run(k_run, kern.init(k_init, chains), num_active=num_active)
    metrics = _info_metrics(infos)
    if num_active is not None:  # skipped moves report zeros: the mean over the moves run
        metrics = {name: v * (num_moves / num_active) for name, v in metrics.items()}
    return _sg(kern.position(final)), metrics


def _sml_ascent(potential, theta, x_data, x_model, negative: float = 1.0):
    """Algorithm 7's ascent direction, mean ∇u(x̃) - mean ∇u(x), and the two mean potentials.

    ``x_data`` ``[B, D...]`` is the empirical minibatch E, ``x_model`` ``[C, D...]``
    the Monte Carlo minibatch M (no gradient flows through it).  ``negative``
    scales the negative phase (1: Eq. 39; tests flip it to prove they catch it).
    """

    def surrogate(th):
        u_d = check_potential_output(potential(th, x_data), x_data)
        u_m = check_potential_output(potential(th, _sg(x_model)), x_model)
        return jnp.mean(u_d) - negative * jnp.mean(u_m), (jnp.mean(u_d), jnp.mean(u_m))

    g, (u_d, u_m) = jax.grad(surrogate, has_aux=True)(theta)
    return g, u_d, u_m


def _sml_estimate(potential, params, theta, x_data, chains, extra: dict):
    """The :class:`Estimate` pieces of one SML/CD iteration: (grads, metrics)."""
    g, u_d, u_m = _sml_ascent(potential, theta, x_data, chains)
    finite = jnp.all(jnp.isfinite(chains.reshape(chains.shape[0], -1)), axis=1)
    metrics = {"potential_gap": u_d - u_m, "data_potential": u_d, "chain_potential": u_m,
               "chains_finite": jnp.mean(finite.astype(jnp.float32)), **extra}
    return descent(params, {POTENTIAL: g}), with_objective(metrics, "potential_gap")


def _check_replay(replay) -> Optional[float]:
    if replay is None:
        return None
    if isinstance(replay, bool) or not isinstance(replay, (int, float, np.floating)) \
            or not 0.0 < float(replay) <= 1.0:
        raise ValueError(f"replay must be None or a fraction in (0, 1] of chains kept per "
                         f"iteration, got {replay!r}")
    return float(replay)


def _noise(key, shape, low, high, binary: bool):
    """Restart positions: Bernoulli(1/2) for binary models, else uniform on [low, high]."""
    if binary:
        return jax.random.bernoulli(key, 0.5, shape).astype(low.dtype)
    return low + (high - low) * jax.random.uniform(key, shape, jnp.result_type(low, jnp.float32))


def _initial_chains(key, data, num_chains: int, init, binary: bool, low, high):
    """``[C, D...]`` starting chains: data rows, noise, or a given array (shape-checked)."""
    shape = (num_chains,) + tuple(np.shape(data)[1:])
    if isinstance(init, str):
        if init == "data":
            n = np.shape(data)[0]
            rows = (jax.random.permutation(key, n)[:num_chains] if num_chains <= n
                    else jax.random.randint(key, (num_chains,), 0, n))
            start = data[rows]
            # probabilities (data binarized afresh per visit): the chains start at one binarization
            return jax.random.bernoulli(jax.random.fold_in(key, 1), start).astype(start.dtype) if binary else start
        if init == "noise":
            return _noise(key, shape, low, high, binary)
        raise ValueError(f"init must be 'data', 'noise' or an array {list(shape)}, got {init!r}")
    chains = jnp.asarray(init, data.dtype)
    if chains.shape != shape:
        raise ValueError(f"init chains have shape {chains.shape}; expected [num_chains, D...] = "
                         f"{shape} (num_chains={num_chains}, data event shape {shape[1:]})")
    return check_data(chains, name="init chains")


def _pcd_init(model: EnergyModel, num_chains: int, init, binary: bool, who: str):
    """``Estimator.init`` of :func:`pcd`: chains filled from the training set or noise,
    the potential's output shape checked once on concrete chains."""

    def init_fn(key, params, data):
        data = check_data(data, name="data")
        if binary and data.size and not (np.min(data) >= 0.0 and np.max(data) <= 1.0):
            raise ValueError(f"{who}: data must be binary, or probabilities in [0, 1] that fit binarizes per "
                             f"visit, for a Bernoulli model; found values in [{np.min(data)}, {np.max(data)}]")
        (theta,) = require_groups(params, (POTENTIAL,), who)
        # chains in the parameters' precision: the kernels draw in it (float64 under x64)
        leaves = jax.tree_util.tree_leaves(theta)
        data = jnp.asarray(data, jnp.promote_types(jnp.result_type(*leaves), jnp.float32) if leaves else jnp.float32)
        low, high = jnp.min(data, axis=0), jnp.max(data, axis=0)
        chains = _initial_chains(key, data, num_chains, init, binary, low, high)
        # the output shape is static: checked by abstract evaluation, nothing compiled
        probe = jax.ShapeDtypeStruct((min(num_chains, 2),) + chains.shape[1:], chains.dtype)
        check_potential_output(jax.eval_shape(model.potential, theta, probe), probe,
                               f"{who}: model.potential")
        return PCDState(chains, low, high)

    return init_fn


def _restart(key, state: PCDState, replay: Optional[float], binary: bool) -> jax.Array:
    """Each chain kept with probability ``replay``, else restarted from noise."""
    if replay is None or replay == 1.0:
        return state.chains
    k_keep, k_noise = jax.random.split(key)
    c = state.chains.shape[0]
    keep = jax.random.bernoulli(k_keep, replay, (c,)).reshape((c,) + (1,) * (state.chains.ndim - 1))
    fresh = _noise(k_noise, state.chains.shape, state.noise_low, state.noise_high, binary)
    return jnp.where(keep, state.chains, fresh.astype(state.chains.dtype))


def _checked_jit(core: Callable, binary: bool) -> Callable:
    """``estimate`` = ``core`` under one ``jit``, after a NumPy check of a concrete batch
    (finite; binary for a Bernoulli model).  Called eagerly it raises on bad data at once
    and compiles the iteration once, not primitive by primitive; the SA driver's probe
    (the first step traced on a concrete batch) raises the same errors; under
    ``jit``/``vmap`` the inner ``jit`` is simply inlined."""
    fast = jax.jit(core)

    def estimate(params, state, key, batch):
        x = check_data(batch_data(batch), name="batch", binary=binary)
        return fast(params, state, key, x)

    return estimate


def pcd(model, *, kernel: Union[str, Callable, None] = None, num_chains: int = 100,
        num_moves: int = 1, step_size=None, noise_scale=None, init: Any = "data",
        replay: Optional[float] = None) -> Estimator:
    """SML / persistent contrastive divergence (review Sec. 4.2.1, Algorithm 7, Eq. 39).

    Args:
      model: an :class:`sajax.core.EnergyModel`, or a spec holding one
        (``rbm(...)``, ``mlp_potential(...)``); params group ``"potential"``.
      kernel: ``"gibbs"`` (default for an RBMSpec), ``"langevin"`` (default
        otherwise), ``"mala"``, or a transition builder ``θ -> ChainKernel``
        (module docstring).
      num_chains: C >= 1 persistent chains (the Monte Carlo minibatch; not the batch size).
      num_moves: kernel steps per iteration (k of Algorithm 2).
      step_size, noise_scale: of the Langevin kernels (checked by the kernel, > 0).
      init: ``"data"`` (C rows of the training set, with replacement if C > N),
        ``"noise"`` (Bernoulli(1/2) for binary models, else uniform on the
        data's per-coordinate range), or an array ``[C, D...]``.
      replay: None (pure PCD), or ρ in (0, 1]: each iteration a chain continues
        with probability ρ and restarts from noise otherwise (the replay buffer
        of Du & Mordatch 2019 with ρ = 0.95).

    Returns: ``Estimator``; state :class:`PCDState`; metrics as in the module docstring.

    Example (a binary RBM; C = 16 chains moved by one Gibbs sweep)::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.core import Batch
        >>> from sajax.models._rbm import rbm
        >>> spec = rbm(6, 3)
        >>> params = spec.init(jax.random.PRNGKey(0))
        >>> data = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (40, 6)).astype(jnp.float32)
        >>> est = pcd(spec, num_chains=16)
        >>> state = est.init(jax.random.PRNGKey(2), params, data)
        >>> out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(3), Batch(data[:8], jnp.arange(8)))
        >>> out.state.chains.shape, out.grads["potential"]["W"].shape, float(out.metrics["chains_finite"])
        ((16, 6), (6, 3), 1.0)
    """
    who = "pcd"
    energy, spec = _energy_model(model, who)
    num_chains = check_positive_int("num_chains", num_chains)
    num_moves = check_positive_int("num_moves", num_moves)
    replay = _check_replay(replay)
    transition = _transition(kernel, energy, spec, step_size, noise_scale, who)
    binary = energy.observation == "bernoulli"

    def estimate(params, state: PCDState, key, x):
        k_restart, k_move = jax.random.split(key)
        (theta,) = require_groups(params, (POTENTIAL,), who)
        chains = _restart(k_restart, state, replay, binary)
        chains, info = _move_chains(transition, theta, k_move, chains, num_moves)
        grads, metrics = _sml_estimate(energy.potential, params, theta, x, chains, info)
        return Estimate(grads, state._replace(chains=chains), metrics)

    return Estimator(_pcd_init(energy, num_chains, init, binary, who), _checked_jit(estimate, binary))


class CDState(NamedTuple):
    """The state of :func:`cd` with a move ramp: the iteration count that sets the moves."""

    step: jax.Array


def cd_moves(step, num_moves: int, ramp_steps: int):
    """CD's Gibbs moves at iteration ``step`` when raised linearly from 1 to ``num_moves`` (k)
    over ``ramp_steps`` iterations (Salakhutdinov & Murray 2008 raise T of CD-T during
    training): 1 + ⌊(k - 1) · min(step, ramp_steps) / ramp_steps⌋."""
    frac = jnp.minimum(step, ramp_steps) / ramp_steps
    return 1 + jnp.floor((num_moves - 1) * frac).astype(jnp.int32)


def cd(model, *, num_moves: int = 1, kernel: Union[str, Callable, None] = None, step_size=None,
       noise_scale=None, ramp_steps: Optional[int] = None) -> Estimator:
    """Contrastive divergence CD-k (Hinton 2002; review Sec. 4.2): Algorithm 7 with
    the Monte Carlo minibatch M = the empirical minibatch moved k = ``num_moves``
    kernel steps (the same name as :func:`pcd`'s chain length, k of Algorithm 2).

    The chains restart at the data every iteration, so CD-k is biased (its fixed
    point is not the MLE of Eq. 39); state ``()``.  Arguments as in :func:`pcd`.

    ``ramp_steps`` (optional): raise the moves from 1 at iteration 0 to k at
    iteration ``ramp_steps`` (:func:`cd_moves`), as Salakhutdinov & Murray (2008)
    trained their CD-25 RBMs.  The state is then :class:`CDState`, which counts
    iterations (a resume continues the ramp exactly); move j uses the key of a
    full CD-k run (:func:`sajax.kernels.repeat_moves`), the moves not run cost
    one predicate each, and ``metrics["moves"]`` reports the count.

    Example::

        >>> import jax, jax.numpy as jnp
        >>> from sajax.core import Batch
        >>> from sajax.models._rbm import rbm
        >>> spec = rbm(6, 3)
        >>> params = spec.init(jax.random.PRNGKey(0))
        >>> x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (8, 6)).astype(jnp.float32)
        >>> out = jax.jit(cd(spec, num_moves=1).estimate)(params, (), jax.random.PRNGKey(2), Batch(x, jnp.arange(8)))
        >>> sorted(out.grads["potential"]), "objective" in out.metrics
        (['W', 'b', 'c'], True)
    """
    who = "cd"
    energy, spec = _energy_model(model, who)
    k = check_positive_int("num_moves", num_moves)
    transition = _transition(kernel, energy, spec, step_size, noise_scale, who)
    binary = energy.observation == "bernoulli"
    if ramp_steps is not None:
        return _ramped_cd(energy, transition, k, check_positive_int("ramp_steps", ramp_steps), binary)

    def estimate(params, state, key, x):
        (theta,) = require_groups(params, (POTENTIAL,), who)
        chains, info = _move_chains(transition, theta, key, x, k)
        grads, metrics = _sml_estimate(energy.potential, params, theta, x, chains, info)
        return Estimate(grads, state, metrics)

    return Estimator(no_state, _checked_jit(estimate, binary))


def _ramped_cd(energy: EnergyModel, transition, k: int, ramp_steps: int, binary: bool) -> Estimator:
    """CD with :func:`cd_moves` moves at the iteration its :class:`CDState` counts."""

    def init(key, params, data):
        del key, params, data
        return CDState(jnp.zeros((), jnp.int32))

    def estimate(params, state: CDState, key, x):
        (theta,) = require_groups(params, (POTENTIAL,), "cd")
        n = cd_moves(state.step, k, ramp_steps)
        chains, info = _move_chains(transition, theta, key, x, k, num_active=n)
        grads, metrics = _sml_estimate(energy.potential, params, theta, x, chains, info)
        return Estimate(grads, CDState(state.step + 1), {**metrics, "moves": n.astype(jnp.float32)})

    return Estimator(init, _checked_jit(estimate, binary))
