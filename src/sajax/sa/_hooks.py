"""The host-side events of :func:`sajax.sa.fit`, as :class:`~sajax.sa.Hook` objects.

``fit`` calls them in this order after every chunk, so that a record is
checked before it is evaluated, saved before it is logged (a crash or a
failed save never leaves a logged step without its checkpoint, and a resumed
run never logs a step twice), and shown last:

1. :class:`FiniteGuard`: stop on a non-finite metric or parameter;
2. :class:`Evaluation`: ``eval_fn(params, step)`` every few chunks and at the end;
3. :class:`Checkpointing`: orbax checkpoints every few chunks and at the end;
4. :class:`JsonLog`: one JSON line per chunk;
5. :class:`ProgressBar`: tqdm, showing the latest steps' metrics.

:class:`EarlyStopping`, passed in ``fit(hooks=...)``, comes after them: it
reads the evaluation and ends the run when it stops improving.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sajax.sa._checkpoints import save_checkpoint
from sajax.sa._distributed import host_local
from sajax.sa._loop import Hook, current_step

__all__ = ["NonFiniteError", "FiniteGuard", "Evaluation", "Checkpointing", "JsonLog", "ProgressBar",
           "EarlyStopping"]


class NonFiniteError(FloatingPointError):
    """A training metric or parameter became NaN/inf.

    Attributes:
      step: the first SA step (1-based count of steps done) whose metric was non-finite.
      name: the metric (or ``"params"``).
      last_good: path of the last checkpoint saved before it, or None.
    """

    def __init__(self, message: str, *, step: int, name: str, last_good: Optional[Path]):
        super().__init__(message)
        self.step, self.name, self.last_good = step, name, last_good


def _first_nonfinite(metrics: dict):
    for name, values in metrics.items():
        bad = ~np.isfinite(np.asarray(values))
        if bad.any():
            return name, int(np.argwhere(bad)[0][-1])
    return None


@jax.jit
def _all_finite(tree) -> jax.Array:
    """One scalar on the device: are all floating leaves finite (no host copy of the params)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _finite_tree(tree) -> bool:
    return bool(_all_finite(tree))


class FiniteGuard(Hook):
    """Raise :class:`NonFiniteError` naming the step when a metric or a parameter
    is NaN/inf; ``checkpoints`` (a :class:`Checkpointing`) names the last good one."""

    def __init__(self, checkpoints: Optional["Checkpointing"] = None):
        self.checkpoints = checkpoints

    def on_chunk(self, carry, record, metrics):
        n = np.asarray(next(iter(metrics.values()))).shape[-1] if metrics else 1  # [n] or [R, n]
        start = record["step"] - n
        bad = _first_nonfinite(metrics)
        if bad is None and not _finite_tree(carry.params):
            bad = ("params", record["step"] - start - 1)
        if bad is None:
            return
        last = self.checkpoints.last_good if self.checkpoints is not None else None
        step = start + bad[1] + 1
        where = f"; last good checkpoint: {last}" if last else "; no checkpoint was saved"
        raise NonFiniteError(f"non-finite {bad[0]} at step {step} (chunk starting at step {start}){where}",
                             step=step, name=bad[0], last_good=last)


class Evaluation(Hook):
    """``record["eval/<name>"] = eval_fn(params, step)[name]`` every ``every`` chunks
    and after the last step (``total``).  In a multi-process job every process calls
    ``eval_fn`` on a host copy of the parameters (numpy arrays)."""

    def __init__(self, eval_fn: Callable, every: int, total: int):
        self.eval_fn, self.every, self.total, self.count = eval_fn, every, total, 0

    def on_chunk(self, carry, record, metrics):
        self.count += 1
        if self.count % self.every == 0 or record["step"] >= self.total:
            params = host_local(carry.params)  # a multi-process job's global arrays as host copies
            record.update({f"eval/{k}": v for k, v in self.eval_fn(params, record["step"]).items()})


class Checkpointing(Hook):
    """Save the carry every ``every`` chunks and after the last step; keep ``keep``."""

    def __init__(self, directory, every: int, total: int, keep: int = 2):
        self.directory, self.every, self.total, self.keep = Path(directory), every, total, keep
        self.count, self.last_good = 0, None

    def on_start(self, carry):
        from sajax.sa._checkpoints import latest_checkpoint

        self.last_good = latest_checkpoint(self.directory)

    def on_chunk(self, carry, record, metrics):
        self.count += 1
        if self.count % self.every == 0 or record["step"] >= self.total:
            self.last_good = save_checkpoint(self.directory, carry, keep=self.keep)


class JsonLog(Hook):
    """Append each chunk's record to a JSON-lines file.

    On start, records of steps beyond the carry's step (written by a run that
    stopped before its checkpoint) are dropped, so a resumed run's log holds
    every step once.
    """

    def __init__(self, path):
        self.path, self.file = Path(path), None

    def on_start(self, carry):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        s = current_step(carry)
        if self.path.exists():
            lines = self.path.read_text().splitlines()
            kept = [ln for ln in lines if ln.strip() and _record_step(ln) <= s]
            if len(kept) != len(lines):
                self.path.write_text("".join(ln + "\n" for ln in kept))
        self.file = open(self.path, "a")

    def on_chunk(self, carry, record, metrics):
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def on_end(self, carry, error):
        if self.file is not None:
            self.file.close()


def _record_step(line: str) -> float:
    try:
        return float(json.loads(line).get("step", np.inf))
    except (ValueError, AttributeError):
        return np.inf  # a torn last line (killed mid-write) is dropped


def _fmt(v):
    if isinstance(v, list):
        return f"{np.mean(v):.4g}±{np.std(v):.2g}"
    return f"{v:.4g}" if isinstance(v, float) else v


class ProgressBar(Hook):
    """A tqdm bar over steps; its postfix shows the mean of each metric over the
    chunk's last ``recent`` steps (the current value, not the chunk's or the
    epoch's mean) and the latest evaluation results."""

    def __init__(self, total: int, recent: int = 10):
        self.total, self.recent, self.bar = total, recent, None

    def on_start(self, carry):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=min(current_step(carry), self.total), unit="step",
                        dynamic_ncols=True)

    def on_chunk(self, carry, record, metrics):
        shown = {k: _fmt(float(np.mean(np.asarray(v)[..., -self.recent:]))) for k, v in metrics.items()}
        shown.update({k: _fmt(v) for k, v in record.items() if k.startswith("eval/")})
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(record["step"] - self.bar.n)

    def on_end(self, carry, error):
        if self.bar is not None:
            self.bar.close()


class EarlyStopping(Hook):
    """Early stopping on an evaluation: ``record["eval/<name>"]`` (lower is better,
    e.g. a validation NLL) is watched; the parameters at its best value are kept
    (a host copy, ``best_params``, with ``best_step`` and ``best``), and the run ends
    after ``patience`` evaluations without improvement.  Put it after the standard
    hooks (``fit(hooks=[...])`` does), so that it sees the chunk's evaluation; the
    last chunk is checkpointed and logged before the run ends.  A resumed run starts
    its watch afresh at the restored parameters.
    """

    def __init__(self, name: str, patience: int):
        if not (isinstance(patience, int) and patience >= 1):
            raise ValueError(f"patience must be an int >= 1 (evaluations without improvement), got {patience!r}")
        self.key, self.patience = f"eval/{name}", patience
        self.best, self.best_step, self.best_params, self.waited = float("inf"), None, None, 0

    def on_chunk(self, carry, record, metrics):
        if self.key not in record:
            return
        value = float(record[self.key])
        if value < self.best:
            self.best, self.best_step, self.waited = value, record["step"], 0
            self.best_params = jax.device_get(host_local(carry.params))
        else:
            self.waited += 1
        record[f"{self.key}_best"] = self.best

    def should_stop(self) -> bool:
        return self.waited >= self.patience
