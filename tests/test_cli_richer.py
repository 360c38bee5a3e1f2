"""The recipes of issue 11 run end to end through the CLI at tiny sizes: fully
visible autoregressive models report an exact test NLL (reproduced by ``sajax
eval``), flow and semi-amortized VAEs an IW-NLL, text VAEs the collapse
metrics and sampled sentences.

The flow, SA-VAE and text runs compile recurrent / autoregressive networks for
about a minute each on 2 cores: they are marked slow and left out of CI; the
benchmarks ``flow_vae_mnist.py``, ``amortization_gap.py`` and ``text_vae.py``
train the same pieces with ``sajax.sa.fit``."""
import json
import math

import numpy as np
import pytest
from test_cli_families import _train, fake_mnist  # noqa: F401  (fake_mnist is a fixture)

from sajax import cli

pytestmark = pytest.mark.usefixtures("fake_mnist")


@pytest.mark.parametrize("recipe, sets", [("nade-mnist", ["hidden=8"]),
                                          ("made-mnist", ["hidden=16", "num_masks=2"])])
def test_autoregressive_recipes_report_exact_nll(tmp_path, capsys, recipe, sets):
    run = tmp_path / recipe
    s = _train(recipe, run, ["epochs=1", "batch_size=20", "eval_n=30", "eval_batch=10"] + sets, capsys)
    assert s["eval_n"] == 30 and 0 < s["test_nll"] < 784 * math.log(2) * 1.5 and s["test_nll_se"] > 0
    assert cli.main(["eval", str(run)]) == 0
    assert json.loads(capsys.readouterr().out)["test_nll"] == s["test_nll"]   # exact: no sampling


def test_early_stopping_tests_the_best_validation_parameters(tmp_path, capsys):
    """made-mnist with patience: the exact validation NLL every epoch, the best parameters
    kept beside the checkpoints, tested at the end and by ``sajax eval``."""
    run = tmp_path / "made"
    s = _train("made-mnist", run, ["epochs=4", "batch_size=20", "eval_n=30", "eval_batch=10", "hidden=16",
                                   "num_masks=2", "eval_every=1", "patience=1", "lr=0.05"], capsys)
    curve = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [r["eval/valid_nll"] for r in curve]
    assert s["best_valid_nll"] == pytest.approx(min(valid), abs=1e-3)
    assert s["best_step"] == curve[int(np.argmin(valid))]["step"]
    assert s["stopped_early"] == (len(curve) < 4) and (run / "best_params.npz").exists()
    assert cli.main(["eval", str(run)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_nll"] == s["test_nll"] and again["checkpoint"].endswith("best_params.npz")


@pytest.mark.slow
@pytest.mark.parametrize("recipe, sets", [("vae-iaf-mnist", ["num_flows=1"]), ("savae-mnist", ["refine_steps=2"])])
def test_richer_q_recipes_report_an_iw_nll(tmp_path, capsys, recipe, sets):
    s = _train(recipe, tmp_path / recipe, ["epochs=1", "batch_size=20", "eval_k=5", "eval_n=20"] + sets, capsys,
               picture=False)
    assert np.isfinite(s["test_nll"]) and s["test_nll"] > 0


@pytest.mark.slow
def test_text_jsa_recipe_reports_collapse_metrics_and_sentences(tmp_path, capsys):
    run = tmp_path / "text"
    s = _train("text-jsa", run, ["num_sentences=200", "epochs=1", "batch_size=20", "latent_dim=4", "eval_k=5",
                                 "eval_n=20"], capsys, picture=False)
    assert 0 <= s["active_units"] <= 4 and s["kl"] >= 0 and s["perplexity"] > 1
    lines = (run / "samples.txt").read_text().splitlines()
    assert len(lines) == 10 and all(isinstance(w, str) for w in lines)
