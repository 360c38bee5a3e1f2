"""The SA driver: fused scan == Python loop, resume == uninterrupted,
4 forced CPU devices == 1, replicas, non-finite stop, schedules."""
import json
import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sajax.core import Batch, Estimate, Estimator, neg
from sajax import sa


def _toy_estimator(noise=0.1):
    """Noisy mean-field for fitting a Gaussian mean: F = mean(x) - μ + noise.

    Its root is the data mean.  The state counts the examples seen per row
    (exercises per-example state addressed by Batch.index).
    """

    def init(key, params, data):
        return {"seen": jnp.zeros((data.shape[0],), jnp.int32)}

    def estimate(params, state, key, batch):
        mu = params["model"]["mu"]
        f = jnp.mean(batch.x, axis=0) - mu + noise * jax.random.normal(key, mu.shape)
        seen = state["seen"].at[batch.index].add(1)
        return Estimate(neg({"model": {"mu": f}}), {"seen": seen},
                        {"loss": jnp.mean((batch.x - mu) ** 2)})

    return Estimator(init, estimate)


DATA = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (64, 3)) + 2.0, np.float32)
PARAMS = {"model": {"mu": jnp.zeros(3)}}


def test_fit_converges_to_root_and_visits_every_example():
    res = sa.fit(_toy_estimator(noise=0.0), optax.sgd(sa.robbins_monro(0.5, tau=4.0)), PARAMS, DATA,
                 key=jax.random.PRNGKey(1),
                 batch_size=16, epochs=30, progress=False)
    np.testing.assert_allclose(res.state.params["model"]["mu"], DATA.mean(0), atol=0.03)
    # 4 steps an epoch x 16 = 64: every example seen exactly once per epoch
    np.testing.assert_array_equal(np.asarray(res.state.est_state["seen"]), 30)
    assert int(res.state.step) == 120 and len(res.history) == 30


def test_fused_scan_equals_python_loop():
    est, opt, key = _toy_estimator(), optax.adam(0.1), jax.random.PRNGKey(3)
    pre = lambda k, x: x + 0.01 * jax.random.normal(k, x.shape)
    res = sa.fit(est, opt, PARAMS, DATA, key=key, batch_size=16, num_steps=10, chunk_steps=2,
                 preprocess=pre, progress=False)
    carry = sa.init_train_state(est, opt, key, PARAMS, jnp.asarray(DATA))
    step = jax.jit(sa.make_step(est, opt, pre))
    losses = []
    for t in range(10):
        idx = sa.batch_indices(carry.key, DATA.shape[0], 16, t)
        carry, metrics = step(carry, Batch(jnp.asarray(DATA)[idx], idx))
        losses.append(float(metrics["loss"]))
    np.testing.assert_allclose(res.state.params["model"]["mu"], carry.params["model"]["mu"], rtol=1e-6)
    np.testing.assert_array_equal(res.state.est_state["seen"], carry.est_state["seen"])
    np.testing.assert_allclose([r["loss"] for r in res.history],
                               np.asarray(losses).reshape(5, 2).mean(1), rtol=1e-5)


@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key], ids=["raw key", "typed key"])
def test_resume_equals_uninterrupted(tmp_path, make_key):
    est, opt, key = _toy_estimator(), optax.adam(0.05), make_key(4)
    full = sa.fit(est, opt, PARAMS, DATA, key=key, batch_size=16, epochs=6, progress=False)
    ck = tmp_path / "ckpt"
    sa.fit(est, opt, PARAMS, DATA, key=key, batch_size=16, epochs=2.5, chunk_steps=2,
           checkpoint_dir=ck, progress=False)
    assert sa.latest_checkpoint(ck).name == "step_000000010"
    resumed = sa.fit(est, opt, PARAMS, DATA, key=key, batch_size=16, epochs=6, checkpoint_dir=ck,
                     log_path=tmp_path / "m.jsonl", progress=False)
    np.testing.assert_array_equal(resumed.state.params["model"]["mu"], full.state.params["model"]["mu"])
    np.testing.assert_array_equal(resumed.state.est_state["seen"], full.state.est_state["seen"])
    records = [json.loads(l) for l in open(tmp_path / "m.jsonl")]
    assert [r["step"] for r in records] == [12, 16, 20, 24]


def test_nonfinite_loss_stops_naming_step_and_keeps_last_good_checkpoint(tmp_path):
    def init(key, params, data):
        return ()

    def estimate(params, state, key, batch):
        mu = params["model"]["mu"]
        # blows up once mu passes 1.0: log of a negative number
        loss = jnp.log(1.0 - mu[0])
        return Estimate(neg({"model": {"mu": jnp.ones_like(mu)}}), (), {"loss": loss})

    ck = tmp_path / "ck"
    with pytest.raises(sa.NonFiniteError, match=r"non-finite loss at step 11 .*last good checkpoint: .*step_000000008"):
        sa.fit(Estimator(init, estimate), optax.sgd(0.1), PARAMS, DATA, key=jax.random.PRNGKey(0),
               batch_size=16, num_steps=40, chunk_steps=4, checkpoint_dir=ck, progress=False)
    assert sa.latest_checkpoint(ck).name == "step_000000008"


def test_replicas_equal_independent_runs():
    est = _toy_estimator()
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)
    key = jax.random.PRNGKey(7)
    lrs = jnp.array([0.05, 0.2])
    params = jax.tree_util.tree_map(lambda a: jnp.stack([a, a + 1.0]), PARAMS)
    res = sa.fit(est, opt, params, DATA, key=key, batch_size=16, epochs=3, replicas=2,
                 replica_hyperparams={"learning_rate": lrs}, progress=False)
    for r in range(2):
        single = sa.fit(est, optax.sgd(float(lrs[r])), jax.tree_util.tree_map(lambda a: a[r], params), DATA,
                        key=jax.random.fold_in(key, r), batch_size=16, epochs=3, progress=False)
        np.testing.assert_allclose(res.state.params["model"]["mu"][r], single.state.params["model"]["mu"],
                                   rtol=1e-5, atol=1e-6)
    assert len(res.history[0]["loss"]) == 2


def test_bad_arguments_raise_clear_errors():
    est, opt = _toy_estimator(), optax.sgd(0.1)
    kw = dict(key=jax.random.PRNGKey(0), progress=False)
    with pytest.raises(ValueError, match="exactly one of epochs or num_steps"):
        sa.fit(est, opt, PARAMS, DATA, batch_size=16, **kw)
    with pytest.raises(ValueError, match="chunk_steps=3 must divide"):
        sa.fit(est, opt, PARAMS, DATA, batch_size=16, epochs=1, chunk_steps=3, **kw)
    with pytest.raises(ValueError, match="NaN"):
        sa.fit(est, opt, PARAMS, np.where(DATA > 3, np.nan, DATA), batch_size=16, epochs=1, **kw)
    with pytest.raises(ValueError, match="binary"):
        sa.fit(est, opt, PARAMS, DATA, batch_size=16, epochs=1, require_binary=True, **kw)
    with pytest.raises(ValueError, match="batch axis"):
        sa.fit(est, opt, PARAMS, DATA[0], batch_size=1, epochs=1, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        sa.fit(est, opt, PARAMS, DATA, batch_size=0, epochs=1, **kw)


def test_multiple_moves_averages_k_draws_and_threads_state():
    est = sa.multiple_moves(_toy_estimator(noise=1.0), 4)
    state = est.init(None, PARAMS, jnp.asarray(DATA))
    batch = Batch(jnp.asarray(DATA[:8]), jnp.arange(8))
    out = est.estimate(PARAMS, state, jax.random.PRNGKey(0), batch)
    np.testing.assert_array_equal(out.state["seen"][:8], 4)
    # the average of 4 independent N(0, 1) noises has variance 1/4
    outs = jax.vmap(lambda k: est.estimate(PARAMS, state, k, batch).grads["model"]["mu"])(
        jax.random.split(jax.random.PRNGKey(1), 4000))
    var = float(jnp.mean(jnp.var(outs, axis=0)))
    assert abs(var - 0.25) < 5 * 0.25 * np.sqrt(2 / (3 * 4000))


def test_schedules():
    rm = sa.robbins_monro(1.0, decay_start=10, tau=10.0)
    assert float(rm(5)) == 1.0 and float(rm(20)) == pytest.approx(0.5) and float(rm(110)) == pytest.approx(1 / 11)
    with pytest.raises(ValueError, match="power"):
        sa.robbins_monro(1.0, power=2.0)
    sched = sa.iwae_schedule(10)
    assert float(sched(0)) == pytest.approx(1e-3)
    assert float(sched(10 * 3280 - 1)) == pytest.approx(1e-4, rel=1e-4)
    assert float(sched(10)) == pytest.approx(1e-3 * 10 ** (-1 / 7), rel=1e-5)


def test_per_group_applies_one_transform_per_group():
    params = {"model": {"w": jnp.ones(2)}, "guide": {"v": jnp.ones(3)}}
    tx = sa.per_group({"model": optax.sgd(1.0), "guide": optax.sgd(0.0)})
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    upd, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(upd["model"]["w"], -1.0)
    np.testing.assert_allclose(upd["guide"]["v"], 0.0)
    with pytest.raises(ValueError, match="no transform for parameter group"):
        sa.per_group({"model": optax.sgd(1.0)}).init(params)


SHARDED = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np, optax
    sys.path.insert(0, sys.argv[1])
    from test_sa import _toy_estimator, DATA, PARAMS
    from sajax import sa
    assert jax.device_count() == 4, jax.devices()
    mesh = jax.make_mesh((4,), ("data",))
    kw = dict(key=jax.random.PRNGKey(5), batch_size=16, epochs=3, progress=False)
    one = sa.fit(_toy_estimator(), optax.adam(0.1), PARAMS, DATA, **kw)
    four = sa.fit(_toy_estimator(), optax.adam(0.1), PARAMS, DATA, mesh=mesh, **kw)
    np.testing.assert_allclose(four.state.params["model"]["mu"], one.state.params["model"]["mu"], rtol=1e-5)
    np.testing.assert_array_equal(four.state.est_state["seen"], one.state.est_state["seen"])
    print("SHARDED_OK", four.state.params["model"]["mu"].sharding)
""")


def test_four_cpu_devices_equal_one_device():
    out = subprocess.run([sys.executable, "-c", SHARDED, os.path.dirname(__file__)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "SHARDED_OK" in out.stdout


def test_fit_rejects_data_the_model_cannot_take():
    """Wrong event shape and non-binary data for a Bernoulli likelihood fail before
    compiling, with the model's own message (the eager first-step probe)."""
    from sajax.estimators import iwae
    from sajax.models import vae

    spec = vae(784, latent_dims=(3,), hidden=((8,),))
    est, params = iwae(spec.model, spec.guide, num_samples=2), spec.init(jax.random.PRNGKey(0))
    kw = dict(key=jax.random.PRNGKey(0), batch_size=10, epochs=1, progress=False)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"event shape \(100,\), expected \(784,\)"):
        sa.fit(est, optax.adam(1e-3), params, (rng.uniform(size=(40, 100)) > 0.5).astype(np.float32), **kw)
    grey = rng.uniform(size=(40, 784)).astype(np.float32)
    with pytest.raises(ValueError, match="must be binary"):
        sa.fit(est, optax.adam(1e-3), params, grey, **kw)
    from sajax.data import dynamic_binarize

    res = sa.fit(est, optax.adam(1e-3), params, grey, preprocess=dynamic_binarize, **kw)
    assert int(res.state.step) == 4


def test_run_loop_runs_any_pure_step_with_hooks():
    """The loop knows nothing of estimators: a carry with step and key, a pure step."""

    class Carry(NamedTuple):
        total: jax.Array
        step: jax.Array
        key: jax.Array

    def step(c, batch):
        return c._replace(total=c.total + jnp.sum(batch.x), step=c.step + 1), {"batch_sum": jnp.sum(batch.x)}

    class Recorder(sa.Hook):
        def __init__(self):
            self.events = []

        def on_start(self, carry):
            self.events.append(("start", int(carry.step)))

        def on_chunk(self, carry, record, metrics):
            self.events.append(("chunk", record["step"], np.asarray(metrics["batch_sum"]).shape))

        def on_end(self, carry, error):
            self.events.append(("end", error))

    rec = Recorder()
    data = jnp.arange(32.0).reshape(16, 2)
    carry = Carry(jnp.zeros(()), jnp.zeros((), jnp.int32), jax.random.PRNGKey(0))
    out, history = sa.run_loop(step, carry, data, batch_size=4, num_steps=8, chunk_steps=2, hooks=[rec])
    # two epochs of 4 batches: every row seen twice
    assert float(out.total) == 2 * float(jnp.sum(data)) and int(out.step) == 8
    assert rec.events == [("start", 0)] + [("chunk", s, (2,)) for s in (2, 4, 6, 8)] + [("end", None)]
    assert [h["step"] for h in history] == [2, 4, 6, 8]


class _ConvCarry(NamedTuple):
    params: dict
    step: jax.Array
    key: jax.Array


def _conv_step(conv: bool):
    """A least-squares SGD step on 6x6 one-channel images through a 3x3 convolution (or a dense map)."""
    def predict(w, x):
        x = x.reshape(-1, 6, 6, 1)
        if conv:
            y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        else:
            y = x * w[1, 1]
        return jnp.tanh(y).reshape(x.shape[0], -1)

    def step(c, batch):
        loss, g = jax.value_and_grad(lambda w: jnp.mean((predict(w, batch.x) - 0.5 * batch.x) ** 2))(c.params["w"])
        return c._replace(params={"w": c.params["w"] - 0.5 * g}, step=c.step + 1), \
            {"loss": loss, "rows": jnp.sum(batch.index)}

    return step


def test_chunks_as_a_step_loop_give_the_scans_steps():
    """``form="loop"`` runs the same steps on the same minibatches as the scan (same rows, same
    losses and parameters up to float round-off); ``"auto"`` picks the loop on CPU exactly for
    steps with convolutions, which XLA:CPU runs 4-36x slower inside a while loop."""
    data = jax.random.uniform(jax.random.PRNGKey(1), (32, 36))
    carry = _ConvCarry({"w": 0.3 * jax.random.normal(jax.random.PRNGKey(2), (3, 3, 1, 1))},
                       jnp.zeros((), jnp.int32), jax.random.PRNGKey(0))
    kw = dict(batch_size=8, num_steps=12, chunk_steps=4)
    runs = {form: sa.run_loop(_conv_step(True), jax.tree_util.tree_map(jnp.copy, carry), data, form=form, **kw)
            for form in ("scan", "loop")}
    (c_scan, h_scan), (c_loop, h_loop) = runs["scan"], runs["loop"]
    assert [h["rows"] for h in h_scan] == [h["rows"] for h in h_loop] and int(c_loop.step) == 12
    np.testing.assert_allclose([h["loss"] for h in h_loop], [h["loss"] for h in h_scan], rtol=1e-5)
    np.testing.assert_allclose(c_loop.params["w"], c_scan.params["w"], rtol=1e-5, atol=1e-7)
    assert not np.allclose(c_loop.params["w"], carry.params["w"])          # it did learn
    from sajax.sa._loop import chunk_fn, prefers_step_loop

    for conv in (True, False):
        lowered = jax.jit(chunk_fn(_conv_step(conv), 8, 32, 4)).lower(carry, data)
        assert prefers_step_loop(lowered) == (conv and jax.default_backend() == "cpu")
    with pytest.raises(ValueError, match="form must be"):
        sa.run_loop(_conv_step(True), carry, data, form="unrolled", **kw)


@pytest.mark.parametrize("kw, err, match", [
    (dict(epochs=0), ValueError, "epochs must be a finite number > 0"),
    (dict(epochs=-1), ValueError, "epochs must be a finite number > 0"),
    (dict(epochs=float("nan")), ValueError, "epochs must be a finite number > 0"),
    (dict(epochs=float("inf")), ValueError, "epochs must be a finite number > 0"),
    (dict(epochs=0.01), ValueError, "less than one step"),
    (dict(num_steps=0), ValueError, "num_steps"),
    (dict(epochs=1, key=0), TypeError, r"PRNG key, e.g. jax.random.PRNGKey\(0\)"),
    (dict(epochs=1, optimizer=optax.adam), TypeError, "optax.GradientTransformation.*optax.adam\\(1e-3\\)"),
    (dict(epochs=1, estimator=lambda *a: None), TypeError, "sajax.Estimator"),
    (dict(epochs=1, eval_fn=3), TypeError, "eval_fn"),
])
def test_fit_validates_its_arguments_before_compiling(kw, err, match):
    args = dict(estimator=_toy_estimator(), optimizer=optax.sgd(0.1), key=jax.random.PRNGKey(0))
    args.update(kw)
    with pytest.raises(err, match=match):
        sa.fit(args.pop("estimator"), args.pop("optimizer"), PARAMS, DATA, batch_size=16, progress=False, **args)


def test_early_stopping_keeps_the_best_parameters_and_ends_after_patience():
    """A scripted validation curve: best at chunk 3, then `patience` = 2 worse values
    end the run after chunk 5, and the kept parameters are those of chunk 3."""
    curve = iter([5.0, 4.0, 3.0, 3.5, 3.2, 1.0, 0.5])
    seen = {}

    def eval_fn(params, step):
        seen[step] = np.asarray(params["model"]["mu"]).copy()
        return {"valid_nll": next(curve)}

    stopper = sa.EarlyStopping("valid_nll", patience=2)
    res = sa.fit(_toy_estimator(), optax.sgd(0.1), PARAMS, DATA, key=jax.random.PRNGKey(1), batch_size=16,
                 epochs=7, eval_fn=eval_fn, progress=False, hooks=[stopper])
    assert len(res.history) == 5 and int(res.state.step) == 20 and stopper.should_stop()
    assert stopper.best == 3.0 and stopper.best_step == 12
    np.testing.assert_array_equal(stopper.best_params["model"]["mu"], seen[12])
    assert res.history[-1]["eval/valid_nll_best"] == 3.0
    with pytest.raises(ValueError, match="patience"):
        sa.EarlyStopping("valid_nll", patience=0)
