"""Joint stochastic approximation (JSA) learning (review Sec. 3.2.3, Algorithm 5, Eq. 26-27).

JSA (Xu & Ou 2016; Ou & Song 2020) fits p_θ(x, h) by maximum likelihood and,
jointly, an inference model q_φ(h|x) by the inclusive KL, Eq. 26:

    min_θ KL[p̃(x) || p_θ(x)],    min_φ KL[p̃(x) p_θ(h|x) || p̃(x) q_φ(h|x)],

whose stationarity conditions (Eq. 27) are expectations under the posterior:

    E_{p̃(x) p_θ(h|x)} ∇_θ log p_θ(x, h) = 0,   E_{p̃(x) p_θ(h|x)} ∇_φ log q_φ(h|x) = 0.

The SA iterate z = (h_1, ..., h_n) holds one latent sample per training
example (Proposition 2), moved by a Metropolis independence sampler with
proposal q_φ(h_k|x_k) (:mod:`sajax.kernels.mis`; the ratio of weights
w = p_θ(x_k, h)/q_φ(h|x_k) cancels p_θ(x_k), footnote 14).  One estimate,
for a minibatch with training-set indices ``batch.index``:

1. read each example's cached h from the latent cache (the chain state z^(t-1)),
   and recompute its log-weight under the current (θ, φ) (they moved since
   it was stored);
2. draw ``num_moves * num_proposals`` proposals from q_φ(h|x) in one batched
   call and run the MIS accept/reject tests as
   :func:`sajax.kernels.multiple_moves` with the proposals and their
   log-weights as per-move inputs; every ``num_proposals``-th state is a move
   of Algorithm 2, so ``num_moves`` chain samples are collected per example
   (``num_proposals > 1`` thins the chain: more MIS transitions per sample);
3. write the last state back to the cache (z^(t));
4. ascend θ along the mean of ∇_θ log p_θ(x, h) and φ along the mean of
   ∇_φ log q_φ(h|x) over the collected samples (Algorithm 5); ``grads`` holds
   the negated (descent) directions.

The cache covers the WHOLE training set, addressed by ``Batch.index``.
``init(key, params, data)`` takes that training set ``data`` ``[n, ...]``
(exactly as given to :func:`sajax.sa.fit`) and stores one draw
h ~ q_φ(h|x) per example, so every entry is a valid chain state from the
start (the first MIS test of an example compares the proposal with that
draw).  :func:`~sajax.estimators.jsa_state` builds a state from given latents
instead.  Storage: see :mod:`sajax.estimators._jsa_cache`.  Indices in a batch
should be distinct (the SA driver's permutation batches are); with
duplicates, which write lands is unspecified.
"""
from __future__ import annotations

from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import (
    GUIDE,
    MODEL,
    ConditionalSampler,
    Estimate,
    Estimator,
    LatentVariableModel,
    check_positive_int,
    check_protocols,
    log_joint,
    log_mean_exp,
)
from sajax.estimators._common import _sg, descent, model_guide, with_objective
from sajax.estimators._jsa_cache import (
    JSAState,
    check_format,
    check_state,
    decode,
    encode,
    layout,
)
from sajax.kernels import mis, multiple_moves

__all__ = ["jsa"]

_INIT_CHUNK = 4096


def _batch_parts(batch):
    index = getattr(batch, "index", None)
    if index is None:
        raise ValueError(
            "JSA needs each example's row in the training set to address its latent cache: "
            "pass batch = sajax.core.Batch(x, index) with index [B] (the SA driver does this); "
            f"got {type(batch).__name__} without an index")
    return batch.x, jnp.asarray(index)


def _initial_cache(model, guide, params, data, key, specs, packed):
    """Rows {name: [n, ...]} of one draw h ~ q_φ(h|x) per example, in chunks."""
    theta, phi = model_guide(params, "jsa init")
    draw = jax.jit(lambda p, k, xx: guide.sample_and_log_prob(p, k, xx, 1))
    chunks = []
    for j, start in enumerate(range(0, np.shape(data)[0], _INIT_CHUNK)):
        xc = data[start:start + _INIT_CHUNK]
        h, log_q = draw(phi, jax.random.fold_in(key, j), xc)
        # eager (unjitted) on the concrete data: the model checks it at this
        # boundary (e.g. binary x for a Bernoulli likelihood)
        lw = log_joint(model, theta, xc, h) - log_q
        if not isinstance(lw, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(lw))):
            raise ValueError(f"non-finite initial log-weight log p(x,h) - log q(h|x) for examples "
                             f"in [{start}, {start + xc.shape[0]}): check the data and the models")
        chunks.append(encode(jax.tree_util.tree_map(lambda a: a[0], h), specs, packed))
    return {k: jnp.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}


def _mis_moves(model, guide, theta, phi, x, h0, key, num_steps):
    """``num_steps`` MIS transitions per example from the chain states h0 [B, ...].

    Returns (final MISState, visited states [T, B, ...], infos [T, B], proposal
    log-weights [T, B])."""
    h0_1 = jax.tree_util.tree_map(lambda a: a[None], h0)                # [1, B, ...]
    lw0 = (log_joint(model, theta, x, h0_1) - guide.log_prob(phi, x, h0_1))[0]
    k_prop, k_acc = jax.random.split(key)
    proposals, log_q = guide.sample_and_log_prob(phi, k_prop, x, num_steps)
    proposals = _sg(proposals)
    lw_prop = _sg(log_joint(model, theta, x, proposals) - log_q)       # [T, B]
    run = multiple_moves(mis.accept_reject, num_steps)
    final, (visited, infos) = run(k_acc, mis.init(h0, _sg(lw0)), proposals, lw_prop)
    return final, visited, infos, lw_prop


def jsa(model: LatentVariableModel, guide: ConditionalSampler, *, num_examples: int,
        latent: Union[str, Sequence[str]] = "bernoulli", num_moves: int = 1,
        num_proposals: int = 1, cache: str = "packed") -> Estimator:
    """JSA learning (Algorithm 5, Eq. 26-27; Xu & Ou 2016, Ou & Song 2020).

    Args:
      model: p_θ(x, h) as a :class:`LatentVariableModel`.
      guide: q_φ(h|x) as a :class:`ConditionalSampler` (the MIS proposal).
      num_examples: n, the size of the training set the cache covers.
      latent: the kind of every latent leaf (``"bernoulli"``: float {0,1};
        ``"categorical"``: one-hot on the last axis; ``"continuous"``), one
        string for all leaves or one per leaf in ``jax.tree_util.tree_leaves``
        order.
      num_moves: chain samples per example collected for the gradient
        (Algorithm 2's multiple moves).
      num_proposals: MIS transitions per collected sample (thinning).
      cache: ``"packed"`` (compact storage) or ``"dense"`` (float32 as given).

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state :class:`JSAState`.
      ``init(key, params, data)`` builds the cache for the whole training set
      ``data`` ``[n, ...]`` (it draws h ~ q_φ(h|x) for every example and
      checks the data through the model); ``estimate(params, state, key,
      batch)`` needs ``batch.index``.  Metrics: ``acceptance_rate`` (mean MIS
      acceptance probability), ``log_joint`` (mean log p_θ(x, h) over the
      chain samples), ``elbo`` (mean log-weight of the T = num_moves ·
      num_proposals proposals, an ELBO estimate) and ``iw_bound`` =
      ``objective``: the batch mean of log (1/T) Σ_t w_t over the same
      proposals, the IW-LB I_T of Eq. 19, the tightest lower bound on the
      log-likelihood (JSA's objective) these draws give for free (= ``elbo``
      when T = 1).

    Example:
      >>> import jax, sajax
      >>> from sajax.core import Batch
      >>> spec = sajax.models.sbn(8, (4,))
      >>> train = jax.numpy.ones((10, 8))              # the whole training set
      >>> est = sajax.estimators.jsa(spec.model, spec.guide, num_examples=10, num_moves=2)
      >>> params = spec.init(jax.random.PRNGKey(0))
      >>> state = est.init(jax.random.PRNGKey(1), params, train)
      >>> state.cache["bits"].shape                    # 4 latent bits per example, packed
      (10, 1)
      >>> rows = jax.numpy.arange(3, 7)
      >>> out = est.estimate(params, state, jax.random.PRNGKey(2), Batch(train[rows], rows))
      >>> 0.0 <= float(out.metrics["acceptance_rate"]) <= 1.0
      True
    """
    check_protocols(model, guide)
    n = check_positive_int("num_examples", num_examples)
    num_moves = check_positive_int("num_moves", num_moves)
    num_proposals = check_positive_int("num_proposals", num_proposals)
    fmt = check_format(latent, cache)
    return Estimator(_jsa_init(model, guide, n, fmt),
                     _jsa_estimate(model, guide, n, fmt, num_moves, num_proposals))


def _jsa_init(model, guide, n: int, fmt):
    """``Estimator.init`` of JSA: one draw h ~ q_φ(h|x) per training example."""

    def init(key, params, data):
        """The cache over the whole training set ``data`` [num_examples, ...]."""
        if data is None:
            raise ValueError("JSA's init needs the whole training set, data [num_examples, ...], "
                             "to build the per-example latent cache")
        data = getattr(data, "x", data)
        if np.ndim(data) < 2 or np.shape(data)[0] != n:
            raise ValueError(f"data must be the whole training set, shape [num_examples={n}, ...]; "
                             f"got {np.shape(data)}")
        specs, _ = layout(guide, model_guide(params, "jsa init")[1], data, fmt)
        return JSAState(_initial_cache(model, guide, params, data, key, specs, fmt.packed))

    return init


def _jsa_estimate(model, guide, n: int, fmt, num_moves: int, num_proposals: int):
    """``Estimator.estimate`` of JSA: MIS moves from the cached states, the cache
    written back, θ and φ ascending log p and log q at the chain samples."""
    num_steps = num_moves * num_proposals

    def estimate(params, state: JSAState, key, batch):
        theta, phi = model_guide(params, "jsa")
        x, idx = _batch_parts(batch)
        specs, treedef = layout(guide, phi, x, fmt)
        check_state(state, specs, fmt.packed, n)
        h0 = decode({k: v[idx] for k, v in state.cache.items()}, specs, treedef, fmt.packed)
        final, visited, infos, lw_prop = _mis_moves(model, guide, theta, phi, x, h0, key, num_steps)
        samples = jax.tree_util.tree_map(lambda a: a[num_proposals - 1::num_proposals],
                                         visited.position)
        rows = encode(final.position, specs, fmt.packed)
        new_cache = {k: v.at[idx].set(rows[k]) for k, v in state.cache.items()}

        def surrogate(p):
            lp = log_joint(model, p[MODEL], x, samples)                  # [num_moves, B]
            lq = guide.log_prob(p[GUIDE], x, samples)
            return jnp.mean(lp) + jnp.mean(lq), lp

        ascent, lp = jax.grad(surrogate, has_aux=True)({MODEL: theta, GUIDE: phi})
        metrics = {"acceptance_rate": jnp.mean(infos.acceptance_rate), "log_joint": jnp.mean(lp),
                   "elbo": jnp.mean(lw_prop), "iw_bound": jnp.mean(log_mean_exp(lw_prop))}
        return Estimate(descent(params, ascent), JSAState(new_cache),
                        with_objective(metrics, "iw_bound"))

    return estimate
