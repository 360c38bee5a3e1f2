"""Training curves: the objective and every evaluation against SA steps, from ``metrics.jsonl``.

The SA driver (:func:`sajax.sa.fit`) writes one JSON record per chunk with
``step``, ``epoch``, ``seconds``, the chunk mean of every metric (the common
``objective``, natural sign: higher is better) and ``eval/<name>`` for the
results of its ``eval_fn``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from sajax.core import OBJECTIVE

__all__ = ["plot_curves", "read_metrics"]

# logs written before every estimator reported "objective"
_LEGACY_OBJECTIVES = ("elbo", "iw_bound", "log_joint")


def read_metrics(path) -> list[dict]:
    """The records of a metrics log, one per step (a later record of the same
    step, e.g. after a resume, replaces the earlier one), sorted by step.
    A truncated last line (a killed run) is skipped."""
    by_step = {}
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            by_step[int(rec["step"])] = rec
    return [by_step[s] for s in sorted(by_step)]


def _value(v) -> float:
    """A scalar of a record: lists (one value per replica) are averaged."""
    if isinstance(v, list):
        return float(np.mean(v)) if v else math.nan
    return float(v) if isinstance(v, (int, float)) else math.nan


def _series(records, name):
    pts = [(r["step"], _value(r[name])) for r in records if name in r]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def plot_curves(metrics_path, out_path, *, title: Optional[str] = None) -> Optional[Path]:
    """Plot the objective and every ``eval/<name>`` of a metrics log against steps.

    Args:
      metrics_path: a ``metrics.jsonl`` written by :func:`sajax.sa.fit`.
      out_path: where the PNG goes.
      title: figure title.
    Returns: ``out_path``, or None (nothing written) when the log holds no
    record with a plottable metric.
    """
    records = read_metrics(metrics_path)
    names = []
    objective = next((k for k in (OBJECTIVE,) + _LEGACY_OBJECTIVES if any(k in r for r in records)), None)
    if objective is not None:
        names.append(objective)
    names += sorted({k for r in records for k in r if k.startswith("eval/")})
    if not names:
        return None
    from matplotlib.figure import Figure   # no pyplot: headless, leaves the global backend alone

    fig = Figure(figsize=(6.4, 2.4 * len(names) + 0.6))
    axes = fig.subplots(len(names), 1, squeeze=False, sharex=True)
    for ax, name in zip(axes[:, 0], names):
        steps, values = _series(records, name)
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3)
        label = f"{name} (training, higher is better)" if name == objective else name
        ax.set_ylabel(name.split("/")[-1], fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("SA step")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    return out_path
