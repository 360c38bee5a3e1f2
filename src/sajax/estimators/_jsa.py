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

1. start each example's chain at its cached h (the chain state z^(t-1)) or,
   under the cache schedule (``cache_from``), at a fresh draw from q_φ(h|x);
2. draw ``num_moves * num_proposals`` proposals from q_φ(h|x) in one batched
   call, weigh the start state and every proposal under the current (θ, φ)
   (they moved since the cache was written) and run the MIS accept/reject
   tests on candidate indices as :func:`sajax.kernels.repeat_moves`; every
   ``num_proposals``-th state is a move of Algorithm 2, so ``num_moves``
   chain samples are collected per example (``num_proposals > 1`` thins the
   chain: more MIS transitions per sample);
3. write the last state back to the cache (z^(t));
4. ascend θ along the mean of ∇_θ log p_θ(x, h) and φ along the mean of
   ∇_φ log q_φ(h|x) over the collected samples (Algorithm 5), either by
   pulling back the one batched pass of step 2 with the share of samples
   each candidate is (``batched``) or by a second pass over the samples;
   ``grads`` holds the negated (descent) directions.

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

from typing import Optional, Sequence, Union

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
    fresh_state,
    layout,
)
from sajax.kernels import mis, repeat_moves

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


def _take(tree, which):
    """Per-example choice among candidates: leaves ``[C, B, ...]``, ``which`` int
    ``[..., B]`` -> leaves ``[..., B, ...]`` (candidate ``which[..., b]`` of example b)."""
    def take(a):
        w = which.reshape(which.shape + (1,) * (a.ndim - 2))
        if which.ndim == 1:
            return jnp.take_along_axis(a, w[None], axis=0)[0]
        return jnp.take_along_axis(a, w, axis=0)
    return jax.tree_util.tree_map(take, tree)


def _stack(first, rest):
    """Candidates ``[1 + T, B, ...]``: ``first`` (leaves ``[B, ...]``) then ``rest`` (``[T, B, ...]``)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[None], b], axis=0), first, rest)


def _mis_indices(key, log_weights, num_steps):
    """The MIS chain of Algorithm 2 run on candidate indices.

    Candidate 0 (log-weight ``log_weights[0]`` ``[B]``) is the chain's start;
    move t proposes candidate t (log-weight ``log_weights[t]``).  Running the
    accept/reject tests on indices instead of latents keeps the scan cheap
    and tells which candidate every chain sample is.

    Returns ``(final index [B], visited indices [T, B], MISInfo [T, B])``."""
    b = log_weights.shape[1]
    props = jnp.broadcast_to(jnp.arange(1, num_steps + 1, dtype=jnp.int32)[:, None], (num_steps, b))
    # the tests are a few elementwise ops per move: unrolled, they fuse into one kernel
    run = repeat_moves(mis.accept_reject, num_steps, unroll=True)
    start = mis.init(jnp.zeros((b,), jnp.int32), log_weights[0])
    final, (visited, infos) = run(key, start, props, log_weights[1:])
    return final.position, visited.position, infos


def _selection_weights(samples, num_candidates: int):
    """``[C, B]`` weights: the share of the ``m·B`` chain samples (``samples`` int
    ``[m, B]``) that are candidate c of example b.  Σ weights · f(candidates) is
    the mean of f over the chain samples (the gradient's cotangent)."""
    m, b = samples.shape
    counts = jnp.sum(jax.nn.one_hot(samples, num_candidates, dtype=jnp.float32), axis=0)  # [B, C]
    return counts.T / (m * b)


def _stacked_gradient(model, guide, theta, phi, x, candidates):
    """One forward pass of log p_θ(x, h) and log q_φ(h|x) over all ``1 + T``
    candidates, kept with its pullback: the batched-proposal trick (every
    log-weight of the MIS tests and the gradient at any chain sample from one
    batched call).  Returns ``(log p [C, B], log q [C, B], pullback)``."""
    def both(p):
        return log_joint(model, p[MODEL], x, candidates), guide.log_prob(p[GUIDE], x, candidates)

    (lp, lq), pullback = jax.vjp(both, {MODEL: theta, GUIDE: phi})
    return lp, lq, pullback


def _gathered_gradient(model, guide, theta, phi, x, samples):
    """Ascent direction of mean log p_θ(x, h) + mean log q_φ(h|x) over the chain
    ``samples`` (leaves ``[m, B, ...]``), by a separate pass on them only."""
    def surrogate(p):
        lp = log_joint(model, p[MODEL], x, samples)
        return jnp.mean(lp) + jnp.mean(guide.log_prob(p[GUIDE], x, samples)), lp

    return jax.grad(surrogate, has_aux=True)({MODEL: theta, GUIDE: phi})


def jsa(model: LatentVariableModel, guide: ConditionalSampler, *,
        latent: Union[str, Sequence[str]] = "bernoulli", num_moves: int = 1,
        num_proposals: int = 1, cache: str = "packed", cache_from: Optional[int] = 0,
        batched: Optional[bool] = None) -> Estimator:
    """JSA learning (Algorithm 5, Eq. 26-27; Xu & Ou 2016, Ou & Song 2020).

    Args:
      model: p_θ(x, h) as a :class:`LatentVariableModel`.
      guide: q_φ(h|x) as a :class:`ConditionalSampler` (the MIS proposal).
      latent: the kind of every latent leaf (``"bernoulli"``: float {0,1};
        ``"categorical"``: one-hot on the last axis; ``"continuous"``), one
        string for all leaves or one per leaf in ``jax.tree_util.tree_leaves``
        order.
      num_moves: chain samples per example collected for the gradient
        (Algorithm 2's multiple moves).
      num_proposals: MIS transitions per collected sample (thinning).
      cache: ``"packed"`` (compact storage) or ``"dense"`` (float32 as given).
      cache_from: the cache schedule.  From iteration ``cache_from`` on
        (counted in ``state.step``), each example's chain starts at its cached
        latent (Proposition 2's persistent chain); before it, and always when
        ``None``, it starts afresh at a draw h ~ q_φ(h|x) (the released code of
        Ou & Song 2020 switches the cache on after 60 % of training).  The
        cache is written every iteration either way.  ``0`` (default): always on.
      batched: how the gradient is formed.  True: one forward pass of
        log p_θ(x, h) and log q_φ(h|x) over the start state and all T
        proposals together, whose pullback is weighted by how often each
        candidate is a chain sample (every log-weight and the gradient from
        one batched call).  False: weigh the candidates without gradients,
        then a separate forward and backward pass over the m chain samples.
        Both give the same gradient; None (default) picks the cheaper by
        counting passes (a backward ≈ two forwards): batched iff
        3m > 2(T + 1), with m = ``num_moves`` and T = ``num_moves *
        num_proposals``.

    Returns:
      Estimator over ``{MODEL: θ, GUIDE: φ}``; state :class:`JSAState`.
      ``init(key, params, data)`` builds the cache for the whole training set
      ``data`` ``[n, ...]``, sized by it (one row per example: it draws
      h ~ q_φ(h|x) for every example and checks the data through the model);
      ``estimate(params, state, key, batch)`` needs ``batch.index`` (rows of
      that training set).  Metrics: ``acceptance_rate`` (mean MIS
      acceptance probability), ``changed`` (share of the batch whose stored
      latent changed), ``cache_age`` (mean iterations since the batch's rows
      were written; ``init`` counts as the iteration before the first),
      ``cache_in_use`` (1 when the chains started at the cache), ``log_joint``
      (mean log p_θ(x, h) over the chain samples), ``elbo`` (mean log-weight
      of the T proposals, an ELBO estimate) and ``iw_bound`` = ``objective``:
      the batch mean of log (1/T) Σ_t w_t over the same proposals, the IW-LB
      I_T of Eq. 19 (= ``elbo`` when T = 1).

    Example:
      >>> import jax, sajax
      >>> from sajax.core import Batch
      >>> spec = sajax.models.sbn(8, (4,))
      >>> train = jax.numpy.ones((10, 8))              # the whole training set
      >>> est = sajax.estimators.jsa(spec.model, spec.guide, num_moves=2)
      >>> params = spec.init(jax.random.PRNGKey(0))
      >>> state = est.init(jax.random.PRNGKey(1), params, train)
      >>> state.cache["bits"].shape                    # 4 latent bits per example, packed
      (10, 1)
      >>> rows = jax.numpy.arange(3, 7)
      >>> out = jax.jit(est.estimate)(params, state, jax.random.PRNGKey(2), Batch(train[rows], rows))
      >>> 0.0 <= float(out.metrics["acceptance_rate"]) <= 1.0, int(out.state.step)
      (True, 1)
    """
    check_protocols(model, guide)
    num_moves = check_positive_int("num_moves", num_moves)
    num_proposals = check_positive_int("num_proposals", num_proposals)
    fmt = check_format(latent, cache)
    if cache_from is not None:
        cache_from = check_positive_int("cache_from", cache_from, minimum=0)
    if batched is not None and not isinstance(batched, (bool, np.bool_)):
        raise TypeError(f"batched must be True, False or None (automatic), got {batched!r}")
    num_steps = num_moves * num_proposals
    stacked = 3 * num_moves > 2 * (num_steps + 1) if batched is None else bool(batched)
    return Estimator(_jsa_init(model, guide, fmt),
                     _jsa_estimate(model, guide, fmt, num_moves, num_proposals, cache_from, stacked))


def _jsa_init(model, guide, fmt):
    """``Estimator.init`` of JSA: one draw h ~ q_φ(h|x) per training example."""

    def init(key, params, data):
        """The cache over the whole training set ``data`` [N, ...], one row per example."""
        if data is None:
            raise ValueError("JSA's init needs the whole training set, data [N, ...], "
                             "to build the per-example latent cache (one row per example)")
        data = getattr(data, "x", data)
        if np.ndim(data) < 2 or np.shape(data)[0] < 1:
            raise ValueError(f"data must be the whole training set, shape [N, ...] with N >= 1; "
                             f"got {np.shape(data)}")
        specs, _ = layout(guide, model_guide(params, "jsa init")[1], data, fmt)
        return fresh_state(_initial_cache(model, guide, params, data, key, specs, fmt.packed))

    return init


def _cache_rows(state) -> int:
    """N, the rows of the latent cache (``init`` sized it by the training set; static)."""
    written = getattr(state, "written", None)
    if written is None or np.ndim(written) != 1:
        raise ValueError(f"JSA's state must be a JSAState (from init or jsa_state), got {type(state).__name__}")
    return int(np.shape(written)[0])


def _chain_start(step, cache_from, cached, fresh):
    """Each chain's start h0 under the cache schedule, and whether the cache is in use."""
    if cache_from is None:
        return fresh, jnp.float32(0.0)
    if cache_from == 0:
        return cached, jnp.float32(1.0)
    on = step >= cache_from
    return jax.tree_util.tree_map(lambda a, b: jnp.where(on, a, b), cached, fresh), on.astype(jnp.float32)


def _candidate_log_weights(model, guide, theta, phi, x, candidates, log_q_proposals):
    """log w = log p_θ(x, h) - log q_φ(h|x) ``[1 + T, B]`` of the start state and
    the T proposals (whose log q came with the draws), without gradients."""
    h0 = jax.tree_util.tree_map(lambda a: a[:1], candidates)
    log_q = jnp.concatenate([guide.log_prob(phi, x, h0), log_q_proposals], axis=0)
    return _sg(log_joint(model, theta, x, candidates) - log_q)


def _written(state: JSAState, idx, rows) -> JSAState:
    """The state after writing ``rows`` at ``idx`` during iteration ``state.step``."""
    cache = {k: v.at[idx].set(rows[k]) for k, v in state.cache.items()}
    return JSAState(cache, state.step + 1, state.written.at[idx].set(state.step + 1))


def _jsa_metrics(state, idx, old_rows, rows, infos, lw, log_joint_mean, cache_on):
    """The estimate's diagnostics (see :func:`jsa`); ``lw`` ``[1 + T, B]``."""
    changed = jnp.zeros(idx.shape, bool)
    for k in rows:
        changed = changed | jnp.any((rows[k] != old_rows[k]).reshape(idx.shape[0], -1), axis=1)
    age = state.step + 1 - state.written[idx]
    return with_objective({
        "acceptance_rate": jnp.mean(infos.acceptance_rate), "changed": jnp.mean(changed),
        "cache_age": jnp.mean(age.astype(jnp.float32)), "cache_in_use": cache_on,
        "log_joint": log_joint_mean, "elbo": jnp.mean(lw[1:]),
        "iw_bound": jnp.mean(log_mean_exp(lw[1:]))}, "iw_bound")


def _jsa_estimate(model, guide, fmt, num_moves: int, num_proposals: int, cache_from, stacked: bool):
    """``Estimator.estimate`` of JSA: MIS moves from each chain's start (the
    cached state, or a fresh draw under the cache schedule), the cache written
    back, θ and φ ascending log p and log q at the chain samples."""
    num_steps = num_moves * num_proposals
    extra = 0 if cache_from == 0 else 1        # a fresh start draw, used while the cache is off

    def estimate(params, state: JSAState, key, batch):
        theta, phi = model_guide(params, "jsa")
        x, idx = _batch_parts(batch)
        specs, treedef = layout(guide, phi, x, fmt)
        check_state(state, specs, fmt.packed, _cache_rows(state))
        old_rows = {k: v[idx] for k, v in state.cache.items()}
        k_prop, k_acc = jax.random.split(key)
        draws, log_q = _sg(guide.sample_and_log_prob(phi, k_prop, x, num_steps + extra))
        proposals = jax.tree_util.tree_map(lambda a: a[extra:], draws)
        h0, cache_on = _chain_start(state.step, cache_from, decode(old_rows, specs, treedef, fmt.packed),
                                    jax.tree_util.tree_map(lambda a: a[0], draws))
        candidates = _stack(h0, proposals)                                  # [1 + T, B, ...]
        if stacked:
            lp, lq, pullback = _stacked_gradient(model, guide, theta, phi, x, candidates)
            lw = _sg(lp - lq)
        else:
            lw = _candidate_log_weights(model, guide, theta, phi, x, candidates, log_q[extra:])
        final, visited, infos = _mis_indices(k_acc, lw, num_steps)
        chain = visited[num_proposals - 1::num_proposals]                   # [num_moves, B]
        if stacked:
            weights = _selection_weights(chain, num_steps + 1)
            (ascent,) = pullback((weights, weights))
            log_joint_mean = jnp.sum(weights * _sg(lp))
        else:
            ascent, lp_chain = _gathered_gradient(model, guide, theta, phi, x, _take(candidates, chain))
            log_joint_mean = jnp.mean(lp_chain)
        rows = encode(_take(candidates, final), specs, fmt.packed)
        metrics = _jsa_metrics(state, idx, old_rows, rows, infos, lw, log_joint_mean, cache_on)
        return Estimate(descent(params, ascent), _written(state, idx, rows), metrics)

    return estimate
