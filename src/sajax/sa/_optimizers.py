"""Step sizes and per-group optimizers of the SA recursion (review Sec. 2).

* :func:`robbins_monro`, :func:`iwae_schedule`: learning-rate schedules γ_t.
* :func:`per_group`: one optax transform per parameter group, optionally on
  a phase schedule (players on their own steps).
* :func:`alternate`: the phase schedule "n critic steps per generator step".

Players on their own steps.  Adversarial learning (Sec. 3.2.4) and random
fields with auxiliary samplers (Sec. 4.2) move parameter groups on different
iterations.  A group that does not move at an SA iteration must keep its
parameters *and* its optimizer state bit-identical: feeding Adam a zero
gradient would still advance its count and moments and still move the
parameters.  :func:`per_group` with ``schedule=`` therefore wraps each
group's transform in a gate (:class:`GatedState`) that, when the group is
idle, returns an update of ``-0.0`` (``p + (-0.0) == p`` bit for bit, also
for ``p = -0.0``) and keeps the inner state as it was.  The phase is a pure
function of the SA step count held in the gate's state, so a resumed run
continues the cycle exactly where it stopped.  The estimator still returns
grads for every group every iteration (DESIGN.md); only the optimizer gates.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sajax.core import check_positive_int

__all__ = ["robbins_monro", "iwae_schedule", "per_group", "alternate", "GatedState", "SweepState", "sweep"]

PhaseSchedule = Callable[[jax.Array], Mapping[str, jax.Array]]


def robbins_monro(init_value: float, *, decay_start: int = 0, tau: float = 1000.0,
                  power: float = 1.0, floor: float = 0.0) -> optax.Schedule:
    """Robbins-Monro step sizes γ_t (review Sec. 2, Theorem 1).

    γ_t = init_value for t < decay_start, then
    init_value / (1 + (t - decay_start) / tau) ** power.  With 0.5 < power <= 1
    this satisfies Σγ_t = ∞, Σγ_t² < ∞ ("large early, then 1/t").  ``floor`` > 0
    gives a constant-step tail (then the conditions no longer hold; say so).
    """
    if not 0.5 < power <= 1.0:
        raise ValueError(f"power must be in (0.5, 1] for Robbins-Monro convergence, got {power}")

    def schedule(t):
        t = jnp.asarray(t, jnp.float32)
        decayed = init_value / (1.0 + jnp.maximum(t - decay_start, 0.0) / tau) ** power
        return jnp.maximum(decayed, floor)

    return schedule


def iwae_schedule(steps_per_epoch: int, *, base: float = 1e-3, stages: int = 8,
                  epoch_scale: float = 1.0) -> optax.Schedule:
    """The IWAE paper's schedule (Burda et al. 2015, Sec. 5): stage i = 0..stages-1
    lasts 3**i epochs (times ``epoch_scale``) at learning rate base·10**(-i/7).

    With the defaults that is 3,280 passes, the rate decaying from 1e-3 to 1e-4.
    """
    bounds, values, total = [], [base], 0
    for i in range(stages):
        total += int(round(3 ** i * epoch_scale * steps_per_epoch))
        if i < stages - 1:
            bounds.append(total)
            values.append(base * 10 ** (-(i + 1) / 7))
    return optax.piecewise_constant_schedule(
        base, {b: values[j + 1] / values[j] for j, b in enumerate(bounds)})


def alternate(**steps: int) -> PhaseSchedule:
    """A phase schedule where groups take turns: ``alternate(critic=5, generator=1)``
    moves the critic on steps 0-4 of every cycle of 6 and the generator on step 5
    (WGAN's n_critic = 5, Arjovsky et al. 2017).  Groups move in the order given.

    Returns ``phase(t) -> {group: bool}``, a pure function of the SA step t.
    """
    if not steps:
        raise ValueError("alternate needs at least one group=count, e.g. alternate(critic=5, generator=1)")
    counts = {g: check_positive_int(f"alternate({g}=...)", n) for g, n in steps.items()}
    cycle = sum(counts.values())
    bounds, start = {}, 0
    for g, n in counts.items():
        bounds[g] = (start, start + n)
        start += n

    def phase(t):
        r = jnp.asarray(t) % cycle
        return {g: (r >= lo) & (r < hi) for g, (lo, hi) in bounds.items()}

    phase.groups = tuple(counts)
    return phase


class GatedState(NamedTuple):
    """State of a gated group transform.

    Attributes:
      step: SA iterations seen (int32), the argument of the phase schedule.
      inner: the group's own optax state, frozen while the group is idle.
    """

    step: jax.Array
    inner: Any


def _gate(inner: optax.GradientTransformation, group: str,
          schedule: PhaseSchedule) -> optax.GradientTransformation:
    """``inner`` applied only at steps where ``schedule(step)[group]`` is true."""

    def init(params):
        return GatedState(jnp.zeros((), jnp.int32), inner.init(params))

    def update(updates, state, params=None):
        on = schedule(state.step)[group]
        new_updates, new_inner = inner.update(updates, state.inner, params)
        idle = lambda u: jnp.where(on, u, jnp.asarray(-0.0, u.dtype))  # noqa: E731  p + -0.0 == p
        keep = lambda n, o: jnp.where(on, n, o)  # noqa: E731
        return (jax.tree_util.tree_map(idle, new_updates),
                GatedState(state.step + 1, jax.tree_util.tree_map(keep, new_inner, state.inner)))

    return optax.GradientTransformation(init, update)


def per_group(transforms: Mapping[str, optax.GradientTransformation], *,
              schedule: Optional[PhaseSchedule] = None) -> optax.GradientTransformation:
    """One optax transform per parameter group (``{"model": ..., "guide": ...}``).

    Groups are the top-level keys of ``params``; every group must be named.
    Useful for TTUR (two time-scale update rules: a learning rate per group)
    and for different schedules per group.

    Args:
      transforms: ``{group: optax transform}``.
      schedule: optional phase schedule ``step -> {group: bool}`` (e.g.
        :func:`alternate`); a group moves only where it is true, and its
        parameters and optimizer state stay bit-identical elsewhere.  Groups
        the schedule does not name move every step.  None: every group moves
        every step (simultaneous updates, the default).

    Example (WGAN's five critic steps per generator step, TTUR learning rates)::

        >>> import jax.numpy as jnp, optax
        >>> from sajax import sa
        >>> tx = sa.per_group({"generator": optax.adam(1e-4), "critic": optax.adam(4e-4)},
        ...                   schedule=sa.alternate(critic=5, generator=1))
        >>> params = {"generator": jnp.ones(2), "critic": jnp.ones(3)}
        >>> state = tx.init(params)
        >>> grads = {"generator": jnp.ones(2), "critic": jnp.ones(3)}
        >>> updates, state = tx.update(grads, state, params)   # step 0: the critic's phase
        >>> bool(jnp.all(updates["generator"] == 0)), bool(jnp.all(updates["critic"] < 0))
        (True, True)
    """
    for g, tx in transforms.items():
        _check_optimizer(tx, f"transforms[{g!r}]")
    names = tuple(transforms)
    if schedule is not None:
        if not callable(schedule):
            raise TypeError(f"schedule must be a callable step -> {{group: bool}}, got {schedule!r}")
        scheduled = set(schedule(jnp.zeros((), jnp.int32)))
        unknown = scheduled - set(names)
        if unknown:
            raise ValueError(f"schedule names group(s) {sorted(unknown)} with no transform; "
                             f"transforms given for {sorted(names)}")
        transforms = {g: _gate(tx, g, schedule) if g in scheduled else tx for g, tx in transforms.items()}

    def labels(params):
        missing = set(params) - set(names)
        if missing:
            raise ValueError(f"per_group: no transform for parameter group(s) {sorted(missing)}; "
                             f"transforms given for {sorted(names)}")
        return {g: jax.tree_util.tree_map(lambda _, g=g: g, v) for g, v in params.items()}

    return optax.multi_transform(dict(transforms), labels)


def _check_optimizer(optimizer, name: str = "optimizer") -> optax.GradientTransformation:
    """TypeError unless ``optimizer`` is an optax transform (has callable init and update)."""
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        hint = " (did you pass optax.adam instead of optax.adam(1e-3)?)" if callable(optimizer) else ""
        raise TypeError(f"{name} must be an optax.GradientTransformation with init/update, "
                        f"got {type(optimizer).__name__}{hint}")
    return optimizer


class SweepState(NamedTuple):
    """State of :func:`sweep`: which of the optimizers this replica runs, and its state."""

    index: jax.Array
    inner: Any


def sweep(optimizers) -> optax.GradientTransformation:
    """One optax transform per replica, chosen by an index in the state: a sweep over
    optimizer settings (learning rates, β1, ...) as one program of ``fit(replicas=R)``.

    ``init`` gives index 0 and ``optimizers[0]``'s state; set replica r's state to
    ``SweepState(jnp.int32(v), optimizers[v].init(params))`` to make it run
    ``optimizers[v]`` (the ``sajax train --sweep`` CLI does).  Every transform must have a
    state of the same structure (the same optimizer with other constants).  Under ``vmap``
    every replica computes all V updates and keeps its own (``lax.switch`` becomes a
    select): the optimizer's cost grows V-fold, the model's does not.
    """
    optimizers = list(optimizers)
    if not optimizers or not all(callable(getattr(o, "update", None)) for o in optimizers):
        raise TypeError("sweep needs a non-empty sequence of optax GradientTransformations")

    def init(params):
        return SweepState(jnp.zeros((), jnp.int32), optimizers[0].init(params))

    def update(updates, state, params=None):
        branches = [lambda u, s, p, o=o: o.update(u, s, p) for o in optimizers]
        new_updates, inner = jax.lax.switch(state.index, branches, updates, state.inner, params)
        return new_updates, SweepState(state.index, inner)

    return optax.GradientTransformation(init, update)
