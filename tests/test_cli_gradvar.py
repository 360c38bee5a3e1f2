"""`sajax gradvar`: gradient variance, SNR and cosine to a reference, at a tiny size."""
import json

import numpy as np
import pytest
from fake_mnist import fake_mnist_dir

from sajax import cli


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    with fake_mnist_dir(tmp_path_factory.mktemp("data"), sizes=(60, 10, 20), seed=1) as data_dir:
        yield data_dir


def test_gradvar_on_a_tiny_sbn_with_an_exact_reference(fake_mnist, tmp_path, capsys):
    """4 binary latents: the reference is exact. Unbiased estimators' mean θ-gradients
    point along ∇log p's neighbours (VIMCO's follows ∇I_K) with many keys."""
    out = tmp_path / "gv"
    assert cli.main(["gradvar", "sbn-vimco", "--estimators", "vimco,rloo,jsa,nvil,disarm", "--keys", "400",
                     "--batch", "8", "--set", "layers=4", "--set", "k=4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reference: exact" in text and "cos elbo" in text and "cos log_p" in text
    report = json.loads((out / "gradvar.json").read_text())
    assert (out / "gradvar.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["estimator"]: r for r in report["rows"]}
    assert list(rows) == ["vimco", "rloo", "jsa", "nvil", "disarm"]
    assert "baseline" in rows["nvil"]
    for r in rows.values():
        for g in ("model", "guide"):
            assert r[g]["total_variance"] > 0 and 0 < r[g]["snr"] < np.inf
            assert all(-1 <= c <= 1 for c in r[g]["cosine"].values())
    # unbiased for the ELBO's φ-gradient: RLOO and DisARM's means align with the exact one
    assert rows["rloo"]["guide"]["cosine"]["elbo"] > 0.5 and rows["disarm"]["guide"]["cosine"]["elbo"] > 0.5
    assert rows["vimco"]["model"]["cosine"]["log_p"] > 0.7     # ∇I_4, not ∇log p: close, not equal


def test_gradvar_at_a_checkpoint_with_a_high_k_reference(fake_mnist, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "vae-mnist", "--out", str(run), "--no-progress", "--set", "epochs=1",
                     "--set", "batch_size=20", "--set", "eval_k=2", "--set", "eval_n=4"]) == 0
    capsys.readouterr()
    assert cli.main(["gradvar", "vae-mnist", "--run", str(run), "--estimators", "reparam,iwae,reinforce",
                     "--keys", "8", "--batch", "4", "--ref-k", "8", "--ref-keys", "2"]) == 0
    text = capsys.readouterr().out
    assert "high-K estimate (K=8" in text and "checkpoint" in text
    report = json.loads((run / "gradvar.json").read_text())
    assert [r["estimator"] for r in report["rows"]] == ["reparam", "iwae", "reinforce"]
    assert (run / "gradvar.png").exists()


@pytest.mark.parametrize("args,msg", [
    (["--estimators", "reparam"], "needs continuous latents"),
    (["--estimators", "vimco", "--set", "temperature=0.3"], "temperature does not apply"),
    (["--estimators", "vimco", "--keys", "1"], "--keys must be >= 2"),
    (["--estimators", "nope"], "unknown estimator"),
    (["--estimators", "jsa", "--burnin", "-1"], "--burnin must be >= 0"),
])
def test_gradvar_errors_are_one_line(tmp_path, capsys, args, msg):
    assert cli.main(["gradvar", "sbn-vimco", "--out", str(tmp_path / "g")] + args) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1, err


def test_gradvar_says_a_recipe_is_unsupported_before_asking_for_estimators(capsys):
    assert cli.main(["gradvar", "wgan-gp-grid"]) == 2
    err = capsys.readouterr().err
    assert "latent-variable models" in err and "adversarial" in err and err.count("\n") == 1, err
    assert cli.main(["gradvar", "sbn-vimco"]) == 2
    err = capsys.readouterr().err
    assert "--estimators" in err and "e.g." in err and err.count("\n") == 1, err
