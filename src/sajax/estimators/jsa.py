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
   call and run the MIS accept/reject tests in a ``lax.scan``; every
   ``num_proposals``-th state is a move of Algorithm 2, so ``num_moves``
   chain samples are collected per example (``num_proposals > 1`` thins the
   chain: more MIS transitions per collected sample);
3. write the last state back to the cache (z^(t));
4. ascend θ along the mean of ∇_θ log p_θ(x, h) and φ along the mean of
   ∇_φ log q_φ(h|x) over the collected samples (Algorithm 5); ``grads`` holds
   the negated (descent) directions.

The cache covers the WHOLE training set, addressed by ``Batch.index``.  It is
initialized in ``init`` with one draw h ~ q_φ(h|x) per example, so every entry
is a valid chain state from the start (no "unvisited" flag is needed; the
first MIS test of an example compares the proposal with that initial draw).
Storage (``cache="packed"``, the default): all Bernoulli leaves of an example
are concatenated and bit-packed into ceil(d/8) uint8 bytes (d = total binary
latents), categorical leaves are stored as class indices (uint8 for C <= 256),
continuous leaves as float32.  ``cache="dense"`` keeps float32 leaves as they
are (for debugging).  Indices in a batch should be distinct (the SA driver's
permutation batches are); with duplicates, which write lands is unspecified.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import (
    ConditionalSampler,
    Estimate,
    Estimator,
    LatentVariableModel,
    check_positive_int,
    check_protocols as _check_protocols,
    log_joint,
    neg,
)
from sajax.kernels import mis

__all__ = ["JSAState", "jsa", "cache_nbytes", "LATENT_KINDS", "CACHE_MODES"]

LATENT_KINDS = ("bernoulli", "categorical", "continuous")
CACHE_MODES = ("packed", "dense")
_INIT_CHUNK = 4096

_sg = jax.lax.stop_gradient


class JSAState(NamedTuple):
    """The JSA chain state z = (h_1, ..., h_n): one latent sample per training example.

    Attributes:
      cache: dict of arrays with leading axis N (number of training examples):
        ``"bits"`` ``[N, ceil(d/8)]`` uint8 packed Bernoulli latents (packed mode),
        ``"leaf<i>"`` the stored form of latent leaf i otherwise (categorical
        indices or float32 values).
    """

    cache: dict


class _Leaf(NamedTuple):
    kind: str
    shape: tuple          # per-example event shape
    dtype: Any


def cache_nbytes(state: JSAState) -> int:
    """Bytes held by the latent cache (``n * d / 8`` for d packed binary latents, d a multiple of 8)."""
    return int(sum(np.prod(a.shape) * np.dtype(a.dtype).itemsize
                   for a in jax.tree_util.tree_leaves(state.cache)))




def _batch_parts(batch):
    index = getattr(batch, "index", None)
    if index is None:
        raise ValueError(
            "JSA needs each example's row in the training set to address its latent cache: "
            "pass batch = sajax.core.Batch(x, index) with index [B] (the SA driver does this); "
            f"got {type(batch).__name__} without an index")
    return batch.x, jnp.asarray(index)


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
      Estimator over ``{"model": θ, "guide": φ}``.  ``init(key, params, data)``
      builds the cache for the training set ``data`` ``[n, ...]`` (it draws
      h ~ q_φ(h|x) for every example and checks the data through the model);
      ``estimate(params, state, key, batch)`` needs ``batch.index``.  Metrics:
      ``acceptance_rate`` (mean MIS acceptance probability), ``log_joint`` (mean
      log p_θ(x, h) over the chain samples), ``elbo`` (mean log-weight of the
      proposals, an ELBO estimate, diagnostic only).
    """
    _check_protocols(model, guide)
    n = check_positive_int("num_examples", num_examples)
    num_moves = check_positive_int("num_moves", num_moves)
    num_proposals = check_positive_int("num_proposals", num_proposals)
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {CACHE_MODES}, got {cache!r}")
    kinds_given = (latent,) if isinstance(latent, str) else tuple(latent)
    for kind in kinds_given:
        if kind not in LATENT_KINDS:
            raise ValueError(f"latent kinds must be in {LATENT_KINDS}, got {kind!r}")
    packed = cache == "packed"
    num_steps = num_moves * num_proposals

    # ---- layout of the latent pytree (static: from abstract shapes only)

    def layout(phi, x):
        h_shape, _ = jax.eval_shape(lambda p, xx: guide.sample_and_log_prob(p, jax.random.PRNGKey(0), xx, 1),
                                    phi, jax.ShapeDtypeStruct((1,) + tuple(x.shape[1:]), jnp.float32))
        leaves, treedef = jax.tree_util.tree_flatten(h_shape)
        kinds = kinds_given * len(leaves) if isinstance(latent, str) else kinds_given
        if len(kinds) != len(leaves):
            raise ValueError(f"latent names {len(kinds)} kinds but the guide's latents have "
                             f"{len(leaves)} leaves")
        specs = tuple(_Leaf(k, tuple(s.shape[2:]), s.dtype) for k, s in zip(kinds, leaves))
        for s in specs:
            if s.kind == "categorical" and not s.shape:
                raise ValueError("a categorical latent leaf needs a trailing one-hot axis")
        return specs, treedef

    def n_bits(specs):
        return sum(int(np.prod(s.shape)) for s in specs if s.kind == "bernoulli")

    def storage_dtype(s):
        if packed and s.kind == "categorical":
            c = s.shape[-1]
            return jnp.uint8 if c <= 256 else (jnp.uint16 if c <= 65536 else jnp.int32)
        return jnp.float32

    # ---- pack / unpack one batch of latents [B, ...] <-> stored rows

    def encode(h, specs):
        leaves = jax.tree_util.tree_leaves(h)
        rows, bits = {}, []
        for i, (a, s) in enumerate(zip(leaves, specs)):
            if packed and s.kind == "bernoulli":
                bits.append((a > 0.5).reshape(a.shape[0], -1).astype(jnp.uint8))
            elif packed and s.kind == "categorical":
                rows[f"leaf{i}"] = jnp.argmax(a, axis=-1).astype(storage_dtype(s))
            else:
                rows[f"leaf{i}"] = a.astype(jnp.float32)
        if bits:
            rows["bits"] = jnp.packbits(jnp.concatenate(bits, axis=1), axis=1)
        return rows

    def decode(rows, specs, treedef):
        out, offset = [], 0
        unpacked = None
        if "bits" in rows:
            unpacked = jnp.unpackbits(rows["bits"], axis=1, count=n_bits(specs)).astype(jnp.float32)
        for i, s in enumerate(specs):
            if packed and s.kind == "bernoulli":
                size = int(np.prod(s.shape))
                a = unpacked[:, offset:offset + size].reshape((-1,) + s.shape)
                offset += size
            elif packed and s.kind == "categorical":
                a = jax.nn.one_hot(rows[f"leaf{i}"], s.shape[-1], dtype=jnp.float32)
            else:
                a = rows[f"leaf{i}"]
            out.append(a.astype(s.dtype))
        return jax.tree_util.tree_unflatten(treedef, out)

    def log_weight(theta, phi, x, h):
        """log p_θ(x, h) - log q_φ(h|x) for latents with leaves [T, B, ...] -> [T, B]."""
        return log_joint(model, theta, x, h) - guide.log_prob(phi, x, h)

    # ---- init: the cache over the whole training set

    def init(key, params, data):
        x_all = getattr(data, "x", data)
        if x_all is None:
            raise ValueError("JSA's init needs the whole training set, data [num_examples, ...], "
                             "to build the per-example latent cache")
        if np.ndim(x_all) < 2 or np.shape(x_all)[0] != n:
            raise ValueError(f"data must have shape [num_examples={n}, ...]; got {np.shape(x_all)}")
        theta, phi = params["model"], params["guide"]
        specs, _ = layout(phi, x_all)
        draw = jax.jit(lambda p, k, xx: guide.sample_and_log_prob(p, k, xx, 1))
        chunks = []
        for j, start in enumerate(range(0, n, _INIT_CHUNK)):
            xc = x_all[start:start + _INIT_CHUNK]
            h, log_q = draw(phi, jax.random.fold_in(key, j), xc)
            # eager (unjitted) on the concrete data: the model checks it at this
            # boundary (e.g. binary x for a Bernoulli likelihood)
            lw = log_joint(model, theta, xc, h) - log_q
            if not isinstance(lw, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(lw))):
                raise ValueError(f"non-finite initial log-weight log p(x,h) - log q(h|x) for examples "
                                 f"in [{start}, {start + xc.shape[0]}): check the data and the models")
            chunks.append(encode(jax.tree_util.tree_map(lambda a: a[0], h), specs))
        cache_ = {k: jnp.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}
        return JSAState(cache_)

    # ---- one SA iteration

    def estimate(params, state: JSAState, key, batch):
        x, idx = _batch_parts(batch)
        theta, phi = params["model"], params["guide"]
        specs, treedef = layout(phi, x)
        h0 = decode({k: v[idx] for k, v in state.cache.items()}, specs, treedef)
        lw0 = _sg(log_weight(theta, phi, x, jax.tree_util.tree_map(lambda a: a[None], h0))[0])
        k_prop, k_acc = jax.random.split(key)
        proposals, log_q = guide.sample_and_log_prob(phi, k_prop, x, num_steps)
        proposals = _sg(proposals)
        lw_prop = _sg(log_joint(model, theta, x, proposals) - log_q)       # [T, B]

        def body(s, inputs):
            k, prop, lw = inputs
            s, info = mis.accept_reject(k, s, prop, lw)
            return s, (s.position, info.acceptance_rate)

        final, (visited, acc) = jax.lax.scan(
            body, mis.init(h0, lw0), (jax.random.split(k_acc, num_steps), proposals, lw_prop))
        samples = jax.tree_util.tree_map(lambda a: a[num_proposals - 1::num_proposals], visited)

        rows = encode(final.position, specs)
        new_cache = {k: v.at[idx].set(rows[k]) for k, v in state.cache.items()}

        def surrogate(p):
            lp = log_joint(model, p["model"], x, samples)                  # [num_moves, B]
            lq = guide.log_prob(p["guide"], x, samples)
            return jnp.mean(lp) + jnp.mean(lq), lp

        ascent, lp = jax.grad(surrogate, has_aux=True)(params)
        metrics = {"acceptance_rate": jnp.mean(acc), "log_joint": jnp.mean(lp),
                   "elbo": jnp.mean(lw_prop)}
        return Estimate(neg(ascent), JSAState(new_cache), metrics)

    return Estimator(init, estimate)
