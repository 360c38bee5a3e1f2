"""Checkpoint faults the driver must survive (issue 7, defect 2): at least two
kept, uncommitted directories skipped, a truncated checkpoint falls back to the
previous one, a fresh start never deletes another run's checkpoints, and a
failed save raises once and leaves no logged step without its checkpoint."""
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sajax import sa
from test_sa import DATA, PARAMS, _toy_estimator

KW = dict(key=jax.random.PRNGKey(4), batch_size=16, progress=False)


def _run(ck, steps, **kw):
    return sa.fit(_toy_estimator(), optax.adam(0.05), PARAMS, DATA, num_steps=steps, chunk_steps=2,
                  checkpoint_dir=ck, **KW, **kw)


def test_keeps_the_newest_two(tmp_path):
    _run(tmp_path, 8)
    assert [p.name for p in sa.list_checkpoints(tmp_path)] == ["step_000000006", "step_000000008"]


def test_leftover_temporary_directory_is_skipped(tmp_path):
    _run(tmp_path, 4)
    good = sa.latest_checkpoint(tmp_path)
    shutil.copytree(good, tmp_path / "step_000000006.orbax-checkpoint-tmp-1234")
    (tmp_path / "step_000000006.orbax-checkpoint-tmp-1234" / "_CHECKPOINT_METADATA").unlink()
    assert sa.latest_checkpoint(tmp_path) == good
    res = _run(tmp_path, 8)
    assert res.resumed_from == good and int(res.state.step) == 8


def _truncate_largest_file(path):
    files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    big = files[-1]
    big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    full = sa.fit(_toy_estimator(), optax.adam(0.05), PARAMS, DATA, num_steps=8, **KW)
    _run(tmp_path, 6)
    newest = sa.latest_checkpoint(tmp_path)
    _truncate_largest_file(newest)
    for f in newest.rglob("*"):  # and make every data file unreadable garbage
        if f.is_file() and f.suffix == "" and f.stat().st_size > 0 and f.parent.name == "d":
            f.write_bytes(b"\0" * 7)
    with pytest.warns(RuntimeWarning, match="falling back"):
        res = _run(tmp_path, 8)
    assert res.resumed_from.name == "step_000000004"
    np.testing.assert_array_equal(res.state.params["model"]["mu"], full.state.params["model"]["mu"])


def test_fresh_start_refuses_a_directory_with_checkpoints(tmp_path):
    _run(tmp_path, 8)
    before = [p.name for p in sa.list_checkpoints(tmp_path)]
    with pytest.raises(ValueError, match="already holds checkpoints"):
        _run(tmp_path, 4, resume=False)
    assert [p.name for p in sa.list_checkpoints(tmp_path)] == before


def test_failed_save_raises_once_and_the_log_never_repeats_a_step(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    ck, log = tmp_path / "ck", tmp_path / "m.jsonl"
    _run(ck, 4, log_path=log)
    real_save = ocp.StandardCheckpointer.save

    def full_disk(self, path, *a, **k):
        if "step_000000006" in str(path):
            raise OSError(28, "No space left on device")
        return real_save(self, path, *a, **k)

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", full_disk)
    with pytest.raises(sa.CheckpointError, match="step 6.*No space left"):
        _run(ck, 8, log_path=log)
    assert sa.latest_checkpoint(ck).name == "step_000000004"
    assert not [p for p in ck.iterdir() if "tmp" in p.name or p.name == "step_000000006"]
    monkeypatch.setattr(ocp.StandardCheckpointer, "save", real_save)
    _run(ck, 8, log_path=log)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps == [2, 4, 6, 8]


def test_log_lines_past_the_checkpoint_are_dropped_on_resume(tmp_path):
    ck, log = tmp_path / "ck", tmp_path / "m.jsonl"
    _run(ck, 4, log_path=log)
    with open(log, "a") as f:  # a run killed after logging step 6 but before its checkpoint
        f.write(json.dumps({"step": 6, "loss": 0.0}) + "\n" + '{"step": 8, "lo')
    _run(ck, 8, log_path=log)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [2, 4, 6, 8]


def test_nonfinite_error_carries_step_and_last_good(tmp_path):
    from sajax.core import Estimate, Estimator, neg

    def estimate(params, state, key, batch):
        mu = params["model"]["mu"]
        return Estimate(neg({"model": {"mu": jnp.ones_like(mu)}}), (), {"loss": jnp.log(1.0 - mu[0])})

    with pytest.raises(sa.NonFiniteError) as info:
        sa.fit(Estimator(lambda k, p, d: (), estimate), optax.sgd(0.1), PARAMS, DATA, num_steps=40,
               chunk_steps=4, checkpoint_dir=tmp_path, **KW)
    assert info.value.step == 11 and info.value.name == "loss"
    assert info.value.last_good.name == "step_000000008"


def test_a_full_disk_is_refused_before_writing(tmp_path, monkeypatch):
    """Free space below the carry's size: one clear error, nothing half-written, the
    older checkpoints intact (a real full disk, tried on a 300 KiB tmpfs, gives
    this one line where orbax alone printed some 300 lines of thread errors)."""
    import shutil as sh
    from collections import namedtuple

    _run(tmp_path, 4)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage(10 ** 6, 10 ** 6 - 1000, 1000))
    with pytest.raises(sa.CheckpointError, match=r"not enough free space .* step 6 .*MiB are free"):
        _run(tmp_path, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000002", "step_000000004"]


def test_ctrl_c_during_a_save_takes_effect_once_the_checkpoint_is_committed(tmp_path, monkeypatch):
    """SIGINT arriving inside orbax's save is held until the save is complete: the run stops
    (KeyboardInterrupt) with the chunk's checkpoint committed, never half-written."""
    import signal

    import orbax.checkpoint as ocp

    real_save = ocp.StandardCheckpointer.save

    def interrupted_save(self, path, *a, **k):
        if "step_000000004" in str(path):
            # raise() delivers to this (the main) thread at once; kill(getpid()) may pick any of the
            # process's threads (orbax's, XLA's), and under load the handler then ran late
            signal.raise_signal(signal.SIGINT)
        return real_save(self, path, *a, **k)

    monkeypatch.setattr(ocp.StandardCheckpointer, "save", interrupted_save)
    # Python's own Ctrl-C handler, whatever this process inherited: a shell without job control
    # starts background jobs (`cmd &`) with SIGINT ignored, and Python then keeps it ignored
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, 8)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert [p.name for p in sa.list_checkpoints(tmp_path)] == ["step_000000002", "step_000000004"]
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]
