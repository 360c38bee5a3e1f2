"""The adversarial and random-field recipes run end to end through the CLI (tiny sizes):
train writes the run directory, the family's evaluation reports its metrics and pictures,
and ``sajax eval`` on the checkpoint reproduces them."""
import json

import numpy as np
import pytest
from fake_mnist import fake_mnist_dir

from sajax import cli


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    with fake_mnist_dir(tmp_path_factory.mktemp("data"), sizes=(200, 40, 60), seed=0) as data_dir:
        yield data_dir


def _train(recipe, run, sets, capsys, picture: bool = True):
    """Train ``recipe`` into ``run`` with ``--set`` overrides; the run's summary
    (it must have completed and, with ``picture``, written samples.png)."""
    args = ["train", recipe, "--out", str(run), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert cli.main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ended"] == "completed"
    if picture:
        assert (run / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return summary


def test_gan_recipe_reports_pacgan_metrics_and_eval_reproduces_them(tmp_path, capsys):
    run = tmp_path / "gan"
    s = _train("pacgan-grid", run, ["num_train=400", "epochs=2", "eval_samples=300"], capsys)
    assert s["steps"] == 8 and s["num_modes"] == 25 and 0 <= s["modes"] <= 25
    assert 0.0 <= s["high_quality"] <= 1.0 and s["eval_samples"] == 300
    assert cli.main(["eval", str(run)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["modes"], again["high_quality"]) == (s["modes"], s["high_quality"])


def test_inclusive_nrf_recipe_reports_raw_and_revised_coverage(tmp_path, capsys):
    run = tmp_path / "nrf"
    s = _train("nrf-inclusive-circles", run, ["num_train=320", "epochs=1", "moves=2", "eval_samples=1000"], capsys)
    assert s["num_modes"] == 32 and (run / "density.png").exists()
    for label in ("raw", "revised", "langevin"):
        assert 0.0 <= s[f"covered_modes_{label}"] <= 32 and 0.0 <= s[f"realistic_ratio_{label}"] <= 1.0


@pytest.mark.runtime_bound
def test_rbm_recipe_reports_an_ais_log_likelihood(fake_mnist, tmp_path, capsys):
    run = tmp_path / "rbm"
    s = _train("rbm-cd-mnist", run, ["epochs=1", "batch_size=20", "hidden=8", "ais_temps=50", "ais_runs=8",
                                     "eval_n=30", "eval_every=1", "train_split=train"], capsys)
    # CD-25 ramped over the first 5 of 10 steps: moves 1, 5, 10, 15, 20, then 25 (mean 17.6)
    assert s["steps"] == 10 and s["eval_n"] == 30 and s["moves"] == pytest.approx(17.6)
    assert np.isfinite(s["eval/test_ll_ais1000"]) and s["eval/test_ll_ais1000"] < 0
    assert np.isfinite(s["test_log_likelihood"]) and s["test_log_likelihood"] < 0 and s["log_z_se"] >= 0


def test_rbm_training_protocol_momentum_weight_decay_and_step_size():
    """rbm_optimizer: momentum 0.5 for 5 epochs then `momentum`; weight decay on W only;
    the harmonic step lr → lr/10 over the run; visible biases at the data's base rates."""
    import jax
    import jax.numpy as jnp

    from sajax._recipe_build import base_rate_init, rbm_optimizer
    from sajax.core import POTENTIAL
    from sajax.recipes import config_for

    cfg = config_for("rbm-pcd-mnist", {"epochs": 10, "batch_size": 10, "lr": 0.1, "weight_decay": 0.5})
    opt = rbm_optimizer(cfg, num_examples=100)                    # 10 steps an epoch, 100 in all
    params = {POTENTIAL: {"W": jnp.ones((3, 2)), "b": jnp.ones(3), "c": jnp.ones(2)}}
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = opt.init(params)
    upd, state = opt.update(zero, state, params)
    np.testing.assert_allclose(upd[POTENTIAL]["W"], -0.1 * 0.5)   # the decay's gradient, lr 0.1 at step 0
    assert float(jnp.abs(upd[POTENTIAL]["b"]).max()) == 0.0 and float(jnp.abs(upd[POTENTIAL]["c"]).max()) == 0.0
    hyper = lambda s: s[1].hyperparams  # noqa: E731
    assert float(hyper(state)["momentum"]) == 0.5
    for _ in range(100):
        _, state = opt.update(zero, state, params)
    assert float(hyper(state)["momentum"]) == pytest.approx(0.9)
    assert float(hyper(state)["learning_rate"]) == pytest.approx(0.1 / (1 + 9 * 100 / 100), rel=1e-5)
    train = np.array([[1.0, 0.0, 0.5], [1.0, 0.0, 0.5]])
    b = np.asarray(base_rate_init(params, train)[POTENTIAL]["b"])
    np.testing.assert_allclose(b, [np.log(0.999 / 0.001), np.log(0.001 / 0.999), 0.0], rtol=1e-5, atol=1e-6)
