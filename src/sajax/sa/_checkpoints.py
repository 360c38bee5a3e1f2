"""Checkpoints of the SA carry (orbax), robust to interrupted and failed saves.

Layout: ``directory/step_<9 digits>/`` per saved carry.  Orbax writes into a
``*.orbax-checkpoint-tmp*`` directory and renames it when the save is
complete, so only directories named exactly ``step_<digits>`` that hold
orbax's ``_CHECKPOINT_METADATA`` count as checkpoints: a leftover temporary
directory (a kill during a save, a full disk) is skipped, never restored.
The newest ``keep`` (default 2) are kept, so a checkpoint that turns out to
be unreadable (a truncated file) falls back to the one before it
(:func:`restore_latest`).
"""
from __future__ import annotations

import contextlib
import logging
import re
import shutil
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
    step = np.asarray(jax.device_get(state.step))
    return int(step.reshape(-1)[0])


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
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    path = directory / f"step_{_step_of(state):09d}"
    if path.exists() and (path / _COMMITTED).exists():
        return path
    try:
        directory.mkdir(parents=True, exist_ok=True)
        state = _raw_keys(state)
        _check_free_space(directory, state)
        with _quiet_orbax():
            ckptr = ocp.StandardCheckpointer()
            try:
                ckptr.save(path, jax.device_get(state), force=True)
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
    for old in list_checkpoints(directory)[:-max(int(keep), 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def restore_checkpoint(path, like):
    """Restore the checkpoint at ``path`` into the structure of ``like`` (typed PRNG keys included)."""
    import orbax.checkpoint as ocp

    restored = ocp.StandardCheckpointer().restore(Path(path).absolute(), jax.device_get(_raw_keys(like)))
    return _typed_keys(jax.tree_util.tree_map(jnp.asarray, restored), like)


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
            errors.append(f"{path.name}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            warnings.warn(f"checkpoint {path} could not be restored ({errors[-1]}); "
                          f"falling back to the previous one", RuntimeWarning, stacklevel=2)
    if found:
        raise CheckpointError(f"no checkpoint in {directory} could be restored: " + "; ".join(errors))
    return None, None
