"""Players on their own steps: sa.per_group(..., schedule=sa.alternate(...)).

A group that does not move in a phase keeps its parameters AND its optimizer
state bit-identical (Adam fed zero gradients would still move both); each
group's Adam count equals its own number of steps; resume mid-cycle is exact.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sajax import sa
from sajax.core import CRITIC, GENERATOR, Estimate, Estimator

DATA = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (48, 2)), np.float32)
PARAMS = {GENERATOR: {"w": jnp.array([1.0, -0.0, 2.0])}, CRITIC: {"v": jnp.array([0.5, -1.5])}}


def _two_player():
    """Both groups get a non-zero, noisy gradient every step (as a GAN estimator would)."""

    def estimate(params, state, key, batch):
        kg, kc = jax.random.split(key)
        g = {GENERATOR: {"w": params[GENERATOR]["w"] + jax.random.normal(kg, (3,)) + 1.0},
             CRITIC: {"v": params[CRITIC]["v"] - jnp.mean(batch.x, 0) + jax.random.normal(kc, (2,))}}
        return Estimate(g, state, {"objective": jnp.sum(params[CRITIC]["v"])})

    return Estimator(lambda key, params, data: (), estimate)


def _adam_count(opt_state, group):
    """The ScaleByAdamState.count inside group's gated transform."""
    inner = opt_state.inner_states[group].inner_state.inner
    return int(inner[0].count)


def _fit(opt, **kw):
    return sa.fit(_two_player(), opt, PARAMS, DATA, key=jax.random.PRNGKey(1), batch_size=8,
                  progress=False, **kw)


def test_alternate_schedule_is_a_pure_function_of_the_step():
    phase = sa.alternate(critic=3, generator=1)
    got = [(bool(phase(t)["critic"]), bool(phase(t)["generator"])) for t in range(8)]
    assert got == [(True, False)] * 3 + [(False, True)] + [(True, False)] * 3 + [(False, True)]
    with pytest.raises(ValueError, match="alternate"):
        sa.alternate(critic=0, generator=1)


def test_each_group_counts_its_own_adam_steps_and_idle_groups_stay_bit_identical():
    opt = sa.per_group({GENERATOR: optax.adam(0.1), CRITIC: optax.adam(0.1)},
                       schedule=sa.alternate(critic=5, generator=1))
    est, key = _two_player(), jax.random.PRNGKey(2)
    carry = sa.init_train_state(est, opt, key, PARAMS, jnp.asarray(DATA))
    step = jax.jit(sa.make_step(est, opt))
    phase = sa.alternate(critic=5, generator=1)
    for t in range(14):
        idx = sa.batch_indices(carry.key, DATA.shape[0], 8, t)
        before = carry
        carry, _ = step(carry, sa_batch(idx))
        for group in (GENERATOR, CRITIC):
            moved = bool(phase(t)[group])
            old = jax.tree_util.tree_leaves(before.params[group])
            new = jax.tree_util.tree_leaves(carry.params[group])
            same_params = all(a.tobytes() == b.tobytes() for a, b in zip(map(np.asarray, old), map(np.asarray, new)))
            old_s = jax.tree_util.tree_leaves(before.opt_state.inner_states[group].inner_state.inner)
            new_s = jax.tree_util.tree_leaves(carry.opt_state.inner_states[group].inner_state.inner)
            same_state = all(np.asarray(a).tobytes() == np.asarray(b).tobytes() for a, b in zip(old_s, new_s))
            assert same_params != moved and same_state != moved, (t, group)
        if t == 4:  # the generator has been idle for 5 steps: its -0.0 keeps its sign bit
            assert np.signbit(np.asarray(carry.params[GENERATOR]["w"])[1])
    # 14 steps of a 6-cycle (5 critic + 1 generator): critic 5+5+2 = 12, generator 2
    assert _adam_count(carry.opt_state, CRITIC) == 12
    assert _adam_count(carry.opt_state, GENERATOR) == 2


def sa_batch(idx):
    from sajax.core import Batch

    return Batch(jnp.asarray(DATA)[idx], idx)


def test_ungated_adam_would_move_an_idle_group():
    """The reason for the gate: Adam with a zero gradient still moves (a broken
    gate that only zeroes gradients fails the identity test above)."""
    tx = optax.adam(0.1)
    p = {"w": jnp.ones(2)}
    state = tx.init(p)
    u, state = tx.update({"w": jnp.ones(2)}, state, p)
    p = optax.apply_updates(p, u)
    u, state = tx.update({"w": jnp.zeros(2)}, state, p)
    assert not np.array_equal(np.asarray(optax.apply_updates(p, u)["w"]), np.asarray(p["w"]))
    assert int(state[0].count) == 2


def test_resume_mid_cycle_is_bit_exact(tmp_path):
    opt = sa.per_group({GENERATOR: optax.adam(0.1), CRITIC: optax.adam(0.05)},
                       schedule=sa.alternate(critic=4, generator=1))
    full = _fit(opt, num_steps=18)
    ck = tmp_path / "ck"
    _fit(opt, num_steps=7, chunk_steps=1, checkpoint_dir=ck)   # stops inside the second cycle
    resumed = _fit(opt, num_steps=18, checkpoint_dir=ck)
    for a, b in zip(jax.tree_util.tree_leaves(full.state), jax.tree_util.tree_leaves(resumed.state)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert resumed.resumed_from.name == "step_000000007"


def test_schedule_must_name_known_groups():
    with pytest.raises(ValueError, match="no transform"):
        sa.per_group({GENERATOR: optax.adam(0.1)}, schedule=sa.alternate(critic=1, generator=1))
    with pytest.raises(TypeError, match="optax"):
        sa.per_group({GENERATOR: optax.adam})
