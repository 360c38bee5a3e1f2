"""Estimators side by side: gradient variance, SNR and cosine to a reference direction.

:func:`compare_estimators` runs :func:`sajax.diagnostics.gradient_stats` for
several estimators at the same parameters and batch and summarizes each
parameter group by

* total variance tr Cov[g] (sum of per-coordinate variances over keys),
* SNR: the median over coordinates of |E g| / std g (Rainforth et al. 2018's
  per-coordinate SNR; the mean over coordinates is kept as ``snr_mean``),
* noise-to-signal tr Cov[g] / ||E g||² (scale-free),
* the cosine of the mean gradient E g to reference directions (the exact
  gradient of an objective where enumeration is possible, else a high-K
  estimate, :func:`high_k_reference`).

Estimators need not follow the same objective (ELBO, I_K, inclusive KL,
log p(x)): compare SNR, N/S and cosines across estimators, variances within
one group.  A cosine below 1 mixes bias and the residual noise of the mean
over ``num_keys`` keys (its relative size is about sqrt(N/S / num_keys)).
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from sajax import estimators as E
from sajax.core import GUIDE, MODEL, batch_data, check_positive_int
from sajax.diagnostics.exact import exact_gradients
from sajax.diagnostics.gradients import gradient_stats

__all__ = ["Candidate", "burn_in", "compare_estimators", "cosine", "exact_reference", "format_table",
           "high_k_reference", "plot_comparison"]

GROUP_SYMBOLS = {MODEL: "θ", GUIDE: "φ"}


class Candidate(NamedTuple):
    """One estimator to measure: its parameters (the groups it needs) and,
    optionally, a fixed state (None: ``init`` on the data set)."""

    estimator: Any
    params: Any
    state: Any = None


def _vec(tree) -> np.ndarray:
    leaves = [np.ravel(np.asarray(a, np.float64)) for a in jax.tree_util.tree_leaves(tree)]
    return np.concatenate(leaves) if leaves else np.zeros(0)


def cosine(a, b) -> float:
    """Cosine of two trees of the same structure (NaN if either is zero)."""
    u, v = _vec(a), _vec(b)
    den = np.linalg.norm(u) * np.linalg.norm(v)
    return float(u @ v / den) if den > 0 else float("nan")


def _group_summary(stats, references: dict) -> dict:
    mean, std = _vec(stats.mean), np.sqrt(_vec(stats.variance))
    live = (std > 0) | (mean != 0)
    ratio = np.where(std[live] > 0, np.abs(mean[live]) / np.where(std[live] > 0, std[live], 1.0), np.inf)
    tv, nm = float(stats.total_variance), float(stats.norm_of_mean)
    return {"total_variance": tv, "norm_of_mean": nm,
            "noise_to_signal": tv / nm ** 2 if nm > 0 else float("inf"),
            "snr": float(np.median(ratio)) if ratio.size else float("nan"),
            "snr_mean": float(stats.snr), "constant_coordinates": int(np.sum((std == 0) & (mean != 0))),
            "coordinates": int(mean.size),
            "cosine": {name: cosine(stats.mean, ref) for name, ref in references.items()}}


def burn_in(candidate: Candidate, batch, key, *, num_steps: int, data=None):
    """The candidate's estimator state after ``num_steps`` estimates at its fixed
    parameters on ``batch`` (one ``lax.scan``): a Markov-chain state such as
    JSA's latent cache moves towards its stationary distribution, so that
    gradient statistics are taken at a chain state rather than at a fresh draw
    from ``init``.  A stateless estimator's state is returned unchanged.
    ``candidate.state`` None: ``init(key', params, data)`` first (the batch's
    data if ``data`` is None)."""
    num_steps = check_positive_int("num_steps", num_steps)
    est, params = candidate.estimator, candidate.params
    state = candidate.state
    if state is None:
        state = est.init(jax.random.fold_in(key, 0), params, batch_data(batch) if data is None else data)

    def body(s, k):
        return est.estimate(params, s, k, batch).state, None

    run = jax.jit(lambda s, ks: jax.lax.scan(body, s, ks)[0])
    return run(state, jax.random.split(jax.random.fold_in(key, 1), num_steps))


def compare_estimators(candidates: dict, batch, key, *, num_keys: int, data=None,
                       references: Optional[dict] = None, chunk: Optional[int] = None,
                       burnin: int = 0) -> list:
    """Gradient statistics of several estimators at fixed parameters on one batch.

    Args:
      candidates: ``{name: Candidate(estimator, params, state)}``.
      batch: :class:`sajax.core.Batch`, held fixed.
      key: PRNG key (every estimator gets the same draw keys).
      num_keys: gradient draws per estimator (one vmap, in chunks of ``chunk``).
      data: the training set handed to ``init`` for candidates without a state.
      references: ``{group: {ref_name: tree like that group}}`` descent
        directions to take cosines with.
      burnin: estimates run at the fixed parameters before measuring, moving
        each estimator's state (:func:`burn_in`); 0: measure at ``init``'s
        state (for JSA: a fresh draw from q_φ, so the spread includes the
        chain state's randomness only through that draw).
    Returns: one row per estimator: ``{"estimator", "seconds", group: summary}``
      for every group of its gradient (summary keys: total_variance,
      norm_of_mean, noise_to_signal, snr, snr_mean, constant_coordinates,
      coordinates, cosine).
    """
    rows = []
    for name, cand in candidates.items():
        tic = time.perf_counter()
        if burnin:
            cand = cand._replace(state=burn_in(cand, batch, jax.random.fold_in(key, 7), num_steps=burnin,
                                               data=data))
        stats = gradient_stats(cand.estimator, cand.params, batch, key, num_keys=num_keys, state=cand.state,
                               data=data, chunk=chunk)
        row = {"estimator": name}
        for group, st in stats.items():
            row[group] = _group_summary(st, (references or {}).get(group, {}))
        row["seconds"] = round(time.perf_counter() - tic, 2)
        rows.append(row)
    return rows


def high_k_reference(model, guide, params, batch, key, *, latent: str, num_samples: int,
                     num_keys: int = 20) -> tuple[dict, str]:
    """Reference directions estimated with many samples, for models too large to enumerate.

    K = ``num_samples`` (required, as for every estimator):

    * ``log_p`` (θ): the mean over ``num_keys`` keys of the importance-weighted
      θ-gradient at K (IWAE's for continuous latents, VIMCO's, the same
      estimator, for discrete ones): unbiased for ∇ I_K, which tends to
      ∇ log p(x) as K grows (Eq. 19).
    * ``elbo`` (φ): the mean of an unbiased ELBO gradient with K samples
      (reparameterized for continuous latents, RLOO for discrete ones).
    * ``inclusive`` (φ): RWS's wake-φ gradient at K, a self-normalized
      estimate of the inclusive-KL gradient (bias O(1/K), Eq. 25).

    Returns: ``({group: {name: descent direction}}, description)``.
    """
    two = {MODEL: params[MODEL], GUIDE: params[GUIDE]}
    cont, k = latent == "continuous", num_samples
    plan = {"log_p": (MODEL, (E.iwae if cont else E.vimco)(model, guide, num_samples=k)),
            "elbo": (GUIDE, (E.reparam_elbo if cont else E.rloo)(model, guide, num_samples=k)),
            "inclusive": (GUIDE, E.rws(model, guide, num_samples=k, phi_update="wake"))}
    refs = {MODEL: {}, GUIDE: {}}
    for i, (name, (group, est)) in enumerate(plan.items()):
        stats = gradient_stats(est, two, batch, jax.random.fold_in(key, i), num_keys=num_keys, chunk=1)
        refs[group][name] = stats[group].mean
    how = (f"high-K estimate (K={k}, mean over {num_keys} keys): θ vs ∇log p(x) ≈ "
           f"{'iwae' if cont else 'vimco'} θ-gradient (∇I_K); φ vs ∇ELBO = "
           f"{'reparam' if cont else 'rloo'}; φ vs inclusive KL = rws wake-φ")
    return refs, how


def exact_reference(model, guide, params, x, *, max_latents: int = 10) -> tuple[dict, str]:
    """Exact reference directions by enumeration (:func:`sajax.diagnostics.exact_gradients`)."""
    ex = exact_gradients(model, guide, params, x, max_latents=max_latents)
    refs = {MODEL: {"log_p": ex.log_p[MODEL]}, GUIDE: {"elbo": ex.elbo[GUIDE], "inclusive": ex.inclusive[GUIDE]}}
    return refs, "exact, by enumerating the binary latents: θ vs ∇log p(x); φ vs ∇ELBO and vs ∇ inclusive KL"


def format_table(rows, groups=(GUIDE, MODEL)) -> str:
    """A plain-text table: per estimator and group, variance, SNR, N/S and cosines."""
    refs = sorted({r for row in rows for g in groups if g in row for r in row[g]["cosine"]})
    head = ["estimator", "group", "total var", "SNR", "N/S"] + [f"cos {r}" for r in refs]
    body = []
    for row in rows:
        for g in groups:
            if g not in row:
                continue
            s = row[g]
            cos = [f"{s['cosine'][r]:+.3f}" if r in s["cosine"] else "" for r in refs]
            body.append([row["estimator"], f"{GROUP_SYMBOLS.get(g, g)} {g}", f"{s['total_variance']:.3g}",
                         f"{s['snr']:.3f}", f"{s['noise_to_signal']:.3g}"] + cos)
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(b) for b in body])


def plot_comparison(rows, path, *, title: str = "", groups=(GUIDE, MODEL)):
    """Bar charts per group: total variance, SNR (log scales) and cosines to the references."""
    from matplotlib.figure import Figure

    names = [r["estimator"] for r in rows]
    x = np.arange(len(names))
    fig = Figure(figsize=(4 + 1.1 * len(names), 3.2 * len(groups) + 0.6))
    axes = fig.subplots(len(groups), 3, squeeze=False)
    for gi, g in enumerate(groups):
        for ci, field in enumerate(("total_variance", "snr")):
            ax = axes[gi][ci]
            ax.bar(x, [r[g][field] if g in r else np.nan for r in rows], color=f"C{ci}")
            ax.set_yscale("log")
            ax.set_title(f"{GROUP_SYMBOLS.get(g, g)}-gradient: "
                         f"{'total variance' if ci == 0 else 'SNR (median |E g|/std g)'}", fontsize=9)
        ax = axes[gi][2]
        refs = sorted({n for r in rows if g in r for n in r[g]["cosine"]})
        for j, ref in enumerate(refs):
            ax.bar(x + (j - (len(refs) - 1) / 2) * 0.8 / max(len(refs), 1),
                   [r[g]["cosine"].get(ref, np.nan) if g in r else np.nan for r in rows],
                   width=0.8 / max(len(refs), 1), label=ref, color=f"C{j + 2}")
        ax.set_ylim(-1, 1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{GROUP_SYMBOLS.get(g, g)}: cosine of E g to reference", fontsize=9)
        if refs:
            ax.legend(fontsize=7)
        for a in axes[gi]:
            a.set_xticks(x, names, fontsize=8, rotation=30)
            a.grid(axis="y", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path

