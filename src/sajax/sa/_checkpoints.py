"""Checkpoints of the SA carry (orbax), robust to interrupted and failed saves.

Layout: ``directory/step_<9 digits>/`` per saved carry.  Orbax writes into a
``*.orbax-checkpoint-tmp*`` directory and renames it when the save is
complete, so only directories named exactly ``step_<digits>`` that hold
orbax's ``_CHECKPOINT_METADATA`` count as checkpoints: a leftover temporary
directory (a kill during a save, a full disk) is skipped, never restored.
The newest ``keep`` (default 2) are kept, so a checkpoint that turns out to
be unreadable (a truncated file) falls back to the one before it
(:func:`restore_latest`).  A Ctrl-C during a save takes effect once the save is
complete.
"""
from __future__ import annotations

import contextlib
import logging
import re
import shutil
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CheckpointError", "save_checkpoint", "list_checkpoints", "latest_checkpoint",
           "restore_checkpoint", "restore_latest"]

_NAME = re.compile(r"^step_(\d{9})$")
_COMMITTED = "_CHECKPOINT_METADATA"


class CheckpointError(OSError):
    """A checkpoint could not be written (full disk, permissions) or none could be read."""


def _step_of(state) -> int:
    step = state.step
    if isinstance(step, jax.Array) and not step.is_fully_addressable:
        step = step.addressable_data(0)   # a replica axis sharded over processes: same step in each
    return int(np.asarray(jax.device_get(step)).reshape(-1)[0])


def _spans_processes(state) -> bool:
    """Whether the carry holds global arrays of a multi-process job (orbax then writes each
    array once for the job, every process its own shards, process 0 the metadata)."""
    return any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in jax.tree_util.tree_leaves(state))


def _barrier(name: str) -> None:
    from sajax.sa._distributed import barrier

    barrier(name)


def list_checkpoints(directory) -> list[Path]:
    """Committed checkpoints in ``directory``, oldest first (temporary directories skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir()
             if p.is_dir() and _NAME.match(p.name) and (p / _COMMITTED).exists()]
    return sorted(p.absolute() for p in found)


def latest_checkpoint(directory) -> Optional[Path]:
    """The newest committed ``step_*`` checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def _remove_partial(directory: Path) -> None:
    for p in directory.glob("step_*"):
        if p.is_dir() and not _NAME.match(p.name):
            shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def _quiet_orbax():
    """Keep orbax's own error reports (absl log records and exceptions of its
    writer threads, one per thread) off stderr: a failed save is reported once,
    by the :class:`CheckpointError` that :func:`save_checkpoint` raises."""
    absl = logging.getLogger("absl")
    saved = absl.level, threading.excepthook, sys.excepthook, sys.unraisablehook
    absl.setLevel(logging.CRITICAL)
    # tensorstore's completion callbacks report into a closed asyncio loop through
    # sys.excepthook once a write has failed; the failure itself is re-raised below
    threading.excepthook = sys.unraisablehook = lambda *args: None
    sys.excepthook = lambda *args: None
    try:
        yield
    finally:
        absl.setLevel(saved[0])
        threading.excepthook, sys.excepthook, sys.unraisablehook = saved[1:]


@contextlib.contextmanager
def _sigint_deferred():
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it: a save is never cut halfway
    (in the main thread; elsewhere signals cannot be handled and nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        signal.raise_signal(signal.SIGINT)   # now handled as it would have been (KeyboardInterrupt)


def _is_typed_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _raw_keys(state):
    """``state`` with typed PRNG keys (``jax.random.key``) as their raw uint32 key data: what orbax can write."""
    return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_typed_key(x) else x, state)


def _typed_keys(restored, like):
    """Typed PRNG keys of ``like`` wrapped back around the raw key data ``restored`` holds for them."""
    return jax.tree_util.tree_map(
        lambda r, x: jax.random.wrap_key_data(r, impl=jax.random.key_impl(x)) if _is_typed_key(x) else r,
        restored, like)


def _check_free_space(directory: Path, state) -> None:
    """CheckpointError before writing if the disk cannot hold the carry's raw bytes
    (+1 MiB of metadata): orbax's own failure mid-write is noisy and slow."""
    need = sum(np.size(x) * np.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(state)) + (1 << 20)
    free = shutil.disk_usage(directory).free
    if free < need:
        raise CheckpointError(f"not enough free space for the checkpoint of step {_step_of(state)} in {directory}: "
                              f"it needs about {need / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free")


def save_checkpoint(directory, state, *, keep: int = 2) -> Path:
    """Save the carry under ``directory/step_<n>``; keep the newest ``keep`` (>= 1).

    Older checkpoints are deleted only after the new one is committed.  On a
    failed save (full disk, permissions) the partial directory is removed and
    one :class:`CheckpointError` is raised; the checkpoints already there stay.
    A carry of global arrays (a multi-process job) is saved by every process
    together, each writing its own shards into the one shared ``directory``
    (orbax's multi-process save); process 0 deletes the old ones.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    multi = _spans_processes(state)
    path = directory / f"step_{_step_of(state):09d}"
    if multi:
        _barrier(f"sajax-save-{path.name}")   # every process sees the same directory before deciding
    if path.exists() and (path / _COMMITTED).exists():
        return path
    try:
        directory.mkdir(parents=True, exist_ok=True)
        state = _raw_keys(state)
        _check_free_space(directory, state)
        with _sigint_deferred(), _quiet_orbax():
            ckptr = ocp.StandardCheckpointer()
            try:
                ckptr.save(path, state if multi else jax.device_get(state), force=True)
                ckptr.wait_until_finished()
            finally:
                ckptr.close()
    except CheckpointError:
        raise
    except Exception as err:  # orbax wraps OS errors in several types
        _remove_partial(directory)
        shutil.rmtree(path, ignore_errors=True)
        raise CheckpointError(f"could not save the checkpoint of step {_step_of(state)} to {directory}: "
                              f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    if not multi or jax.process_index() == 0:
        for old in list_checkpoints(directory)[:-max(int(keep), 1)]:
            shutil.rmtree(old, ignore_errors=True)
    if multi:
        _barrier(f"sajax-saved-{path.name}")
    return path


_ABANDONED: set = set()  # checkpoints whose failed restore left reads in flight


def _is_abandoned_read(unraisable) -> bool:
    """A tensorstore read of a failed restore completing into orbax's closed event loop."""
    tb, names = unraisable.exc_traceback, set()
    while tb is not None:
        names.add(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"
            and "call_soon_threadsafe" in names)


class _AbandonedReadsFilter(logging.Filter):
    """Drops asyncio's "exception was never retrieved" of a failed restore's reads."""

    def filter(self, record):
        message = record.getMessage()
        return not ("exception was never retrieved" in message and any(p in message for p in _ABANDONED))


def _silence_abandoned_reads(path: Path) -> None:
    """Keep the leftovers of a failed restore of ``path`` off stderr.

    Orbax reads every array concurrently in a fresh event loop; when one read fails,
    the gather raises, and orbax closes the loop while tensorstore still reads the
    others.  Each of those then reports into the closed loop (``RuntimeError: Event loop
    is closed`` through ``sys.unraisablehook``) or, once collected, as an asyncio
    future whose exception was never retrieved: a traceback per array, after the
    restore has returned.  Only those reports are dropped (for the rest of the
    process); everything else reaches the hooks and loggers as before.
    """
    _ABANDONED.add(str(path))
    if getattr(sys.unraisablehook, "_sajax_filter", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        if not _is_abandoned_read(unraisable):
            previous(unraisable)

    hook._sajax_filter = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_AbandonedReadsFilter())


def restore_checkpoint(path, like):
    """Restore the checkpoint at ``path`` into the structure of ``like`` (typed PRNG keys included)."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    ckptr = ocp.StandardCheckpointer()
    try:
        restored = ckptr.restore(path, jax.device_get(_raw_keys(like)))
    except Exception:
        _silence_abandoned_reads(path)
        raise
    finally:
        ckptr.close()
    return _typed_keys(jax.tree_util.tree_map(jnp.asarray, restored), like)


def _first_line(err, limit: int = 300) -> str:
    """``Type: first line`` of an error, without tensorstore's spec dump, at most ``limit`` characters."""
    text = str(err).splitlines()[0] if str(err) else ""
    text = text.split(" [tensorstore_spec=")[0]
    return f"{type(err).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def restore_latest(directory, like):
    """Restore the newest readable checkpoint in ``directory``.

    Tries the committed checkpoints newest first; one that fails to restore
    (truncated or corrupted files) is skipped with a warning naming it.

    Returns: ``(state, path)``, or ``(None, None)`` if ``directory`` holds none.
    Raises: :class:`CheckpointError` if there are checkpoints but none restores.
    """
    found = list_checkpoints(directory)
    errors = []
    for path in reversed(found):
        try:
            return restore_checkpoint(path, like), path
        except Exception as err:  # noqa: BLE001 - any read error means "try the previous one"
            errors.append(f"{path.name}: {_first_line(err)}")
            warnings.warn(f"checkpoint {path} could not be restored ({errors[-1]}); "
                          f"falling back to the previous one", RuntimeWarning, stacklevel=2)
    if found:
        raise CheckpointError(f"no checkpoint in {directory} could be restored: " + "; ".join(errors))
    return None, None
