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
    s = _train("nrf-inclusive-circles", run, ["num_train=320", "epochs=1", "moves=2"], capsys)
    assert s["num_modes"] == 32 and (run / "density.png").exists()
    for label in ("raw", "revised", "langevin"):
        assert 0.0 <= s[f"covered_modes_{label}"] <= 32 and 0.0 <= s[f"realistic_ratio_{label}"] <= 1.0


def test_rbm_recipe_reports_an_ais_log_likelihood(fake_mnist, tmp_path, capsys):
    run = tmp_path / "rbm"
    s = _train("rbm-cd-mnist", run, ["epochs=1", "batch_size=20", "hidden=8", "ais_temps=50", "ais_runs=8",
                                     "eval_n=30"], capsys)
    assert s["steps"] == 10 and s["eval_n"] == 30
    assert np.isfinite(s["test_log_likelihood"]) and s["test_log_likelihood"] < 0 and s["log_z_se"] >= 0
