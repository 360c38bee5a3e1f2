"""The `sajax` command: list, train into a run directory, eval, and clear errors."""
import gzip
import json
import pickle

import numpy as np
import pytest

from sajax import cli, recipes


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A small stand-in for the MNIST pickle in $SAJAX_DATA_DIR (no network in tests)."""
    rng = np.random.default_rng(0)
    split = lambda n: (rng.uniform(size=(n, 784)).astype(np.float32) ** 3, rng.integers(0, 10, n))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with gzip.open(data_dir / "mnist.pkl.gz", "wb") as f:
        pickle.dump((split(200), split(40), split(60)), f)
    monkeypatch.setenv("SAJAX_DATA_DIR", str(data_dir))
    return data_dir


def test_list_shows_every_recipe_estimator_model_and_kernel(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for table in (recipes.RECIPES, recipes.ESTIMATORS, recipes.MODELS, recipes.KERNELS):
        for name, entry in table.items():
            assert name in out and entry.section in out
    for name in ("vae-mnist", "iwae-mnist", "iwae2-mnist", "iwae", "dreg", "stl", "reinforce"):
        assert name in out


def test_unknown_recipe_and_set_key_fail_clearly(capsys, tmp_path):
    assert cli.main(["train", "no-such-recipe", "--out", str(tmp_path / "r")]) == 2
    assert "unknown recipe 'no-such-recipe'" in capsys.readouterr().err
    assert cli.main(["train", "vae-mnist", "--set", "epoch=3", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown --set key 'epoch'" in err and "epochs" in err
    assert cli.main(["train", "iwae-mnist", "--set", "k=0", "--out", str(tmp_path / "r")]) == 2
    assert "k must be >= 1" in capsys.readouterr().err
    assert cli.main(["train", "vae-mnist", "--set", "batch_size=ten", "--out", str(tmp_path / "r")]) == 2
    assert "expected a int" in capsys.readouterr().err


@pytest.mark.parametrize("recipe,sets", [("vae-mnist", []), ("iwae2-mnist", ["k=3"]), ("sbn-jsa", ["layers=8"]),
                                         ("sbn-nvil", ["layers=8,4"])])
def test_train_writes_run_directory_and_eval_reproduces_nll(fake_mnist, tmp_path, capsys, recipe, sets):
    run = tmp_path / "run"
    args = ["train", recipe, "--out", str(run), "--no-progress", "--set", "epochs=2", "--set", "batch_size=20",
            "--set", "eval_k=20", "--set", "eval_n=30", "--set", "eval_batch=10"]
    for s in sets:
        args += ["--set", s]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "test NLL (K=20, 30 test images)" in out
    for name in ("config.json", "metrics.jsonl", "samples.png", "summary.json"):
        assert (run / name).exists(), name
    assert (run / "checkpoint").is_dir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20 and np.isfinite(summary["test_nll"])
    records = [json.loads(l) for l in open(run / "metrics.jsonl")]
    assert [r["step"] for r in records] == [10, 20]
    assert (run / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert cli.main(["eval", str(run)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_nll"] == pytest.approx(summary["test_nll"], rel=1e-5)


def test_eval_rejects_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
