"""A text VAE: latent h, recurrent decoder over tokens (review Sec. 3.2.1
item 3, discrete observations; Bowman et al. 2016).

Generative model over token sequences x = (x_1, ..., x_T) (``max_len`` = T)::

    p_θ(x, h) = p(h) Π_t p_θ(x_t | x_<t, h),
    p_θ(x_t | x_<t, h) = Cat(x_t | softmax(W_o s_t + b_o)),
    s_t = cell(s_{t-1}, [e(x_{t-1}), h]),   x_0 = <bos>,   s_0 = tanh(W_h h + b_h),

with a GRU or LSTM ``cell`` (``flax.linen.GRUCell`` / ``LSTMCell``, the LSTM's
memory starting at 0), token embeddings e, teacher forcing in the
likelihood, and h fed as the initial state and (``feed_latent=True``) at every
step.  The output distribution puts no mass on ``<pad>`` and ``<bos>``; once
``<eos>`` is emitted the rest of the row is ``<pad>`` with probability one,
so p_θ(·|h) is a normalized distribution over the id arrays of
:func:`sajax.data.text.encode` (rows that reach T tokens without ``<eos>``
are truncated sentences, and are outcomes too).  Padding is masked out of
the log-likelihood.  Token ids follow :mod:`sajax.data.text`: ``<pad>`` 0,
``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3, words from 4.

Two latent kinds (``latent=``):

* ``"gaussian"``: p(h) = N(0, I); q_φ(h|x) = N(μ_φ(x), diag σ_φ(x)²) from a
  GRU encoder's last state (reparameterized, Eq. 12; ``guide.dist`` and
  ``model.prior`` give the analytic KL of Eq. 8): for ``reparam_elbo``,
  ``iwae``, ``stl_elbo``, ``dreg``.
* ``"bernoulli"``: p_θ(h) = FB[σ(c)] with learnable logits c;
  q_φ(h|x) = FB[σ(T_φ(x))] from the same kind of encoder (samples carry no
  gradient): for ``jsa`` (MIS with q as proposal, Algorithm 5), ``rws``,
  ``vimco``, ``nvil``; ``spec.layers`` gives the layer-wise estimators
  (MuProp, DisARM, ...) their :class:`sajax.core.DiscreteLayers`.

Shapes: ``x`` ``[B, T]`` int token ids (integer-valued floats, as
``sajax.evaluate.iw_log_likelihood`` passes them, are accepted); latents
``[..., B, d]``; ``log_likelihood(θ, x, h) -> [..., B]``;
``guide.sample_and_log_prob(φ, key, x, n) -> (h [n, B, d], log_q [n, B])``;
``model.sample(θ, key, n) -> (x int32 [n, T], h [n, d])``.  A concrete ``x``
is validated (ids in range, no ``<bos>``, ``<pad>`` exactly after the first
``<eos>``) with a ValueError/TypeError naming it.

Parameters: θ = ``{"embed", "init", "cell", "out"}`` (+ ``"prior": {"logits":
[d]}`` for Bernoulli latents); φ = ``{"embed", "cell", "head"}``; Flax layouts.

Example:
  >>> import jax, jax.numpy as jnp
  >>> spec = text_vae(vocab_size=10, max_len=6, latent="bernoulli", latent_dim=4, embed=8, hidden=16)
  >>> params = spec.init(jax.random.PRNGKey(0))
  >>> x, h = spec.model.sample(params["model"], jax.random.PRNGKey(1), 3)
  >>> x.shape, x.dtype.name, h.shape
  ((3, 6), 'int32', (3, 4))
  >>> spec.model.log_likelihood(params["model"], x, h).shape
  (3,)
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sajax._densities import bernoulli_log_prob, diag_normal_log_prob, std_normal_log_prob
from sajax.core import (
    GUIDE,
    MODEL,
    ConditionalSampler,
    DiscreteLayers,
    LatentVariableModel,
    NoiseModel,
    TractableModel,
    check_positive_int,
)
from sajax.data.text import BOS_ID, EOS_ID, PAD_ID, SPECIALS, UNK_ID
from sajax.models._common import _bernoulli_sample
from sajax.models._vae import BernoulliHead, DiagGaussianHead

__all__ = ["TextVAESpec", "text_vae", "check_tokens", "check_sentences", "LMSpec", "lstm_lm", "LATENT_KINDS", "CELLS"]

LATENT_KINDS = ("gaussian", "bernoulli")
CELLS = ("gru", "lstm")
_NEG = -1e9                      # logit of the ids a decoder never emits (<pad>, <bos>)
_LOG_2PI = math.log(2.0 * math.pi)


class TextVAESpec(NamedTuple):
    """A text VAE with its inference model, as sajax protocols (module docstring).

    Attributes:
      model: :class:`LatentVariableModel`, ``observation="categorical"``.
      guide: :class:`ConditionalSampler` q_φ(h|x), with ``dist``.
      init: ``key -> {"model": θ, "guide": φ}``.
      vocab_size, max_len, latent, latent_dim, cell: the sizes and kinds.
      token_log_probs: ``(θ, x, h) -> [..., B, T]`` log p_θ(x_t | x_<t, h),
        0 at padding (their sum over t is ``log_likelihood``).
      sample_tokens: ``(θ, key, h, temperature=1.0) -> int32 [..., T]``,
        x ~ p_θ(x|h) ancestrally (``lax.scan``) for latents ``h`` ``[..., d]``;
        ``temperature`` divides the logits (1: the model itself).
      encoder: ``(φ, x) -> head output`` for ``x`` ``[..., T]``:
        ``(mean, log_std)`` (Gaussian) or logits (Bernoulli), ``[..., d]``.
      layers: :class:`DiscreteLayers` (one Bernoulli layer) or None (Gaussian).
    """

    model: LatentVariableModel
    guide: ConditionalSampler
    init: Callable
    vocab_size: int
    max_len: int
    latent: str
    latent_dim: int
    cell: str
    token_log_probs: Callable
    sample_tokens: Callable
    encoder: Callable
    layers: Optional[DiscreteLayers]


# --------------------------------------------------------------------------
# Token validation


def _token_array(x, name: str):
    """Concrete ``x`` as int64 numpy: integer dtype, or floats holding integers."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.integer):
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise TypeError(f"{name} must hold integer token ids; its {arr.dtype} values are not all integers")
    return arr.astype(np.int64)


def _ids_in_range(x, vocab_size: int, max_len: int, name: str):
    """``x`` of shape ``[..., max_len]``: traced, cast to int32 (shapes are static); concrete,
    int64 numpy ids checked to lie in ``[0, vocab_size)``."""
    shape = tuple(np.shape(x))
    if len(shape) < 2 or shape[-1] != max_len:
        raise ValueError(f"{name} must be token ids [B, max_len={max_len}], got shape {shape}")
    if isinstance(x, jax.core.Tracer):
        return x.astype(jnp.int32)
    arr = _token_array(x, name)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"{name} has token ids in [{arr.min()}, {arr.max()}], outside [0, vocab_size={vocab_size})")
    return arr


def check_tokens(x, vocab_size: int, max_len: int, name: str = "x") -> jax.Array:
    """``x`` ``[..., max_len]`` as int32 token ids, validated when concrete.

    Checks: last axis ``max_len``; integer ids (integer-valued floats
    accepted) in ``[0, vocab_size)``; no ``<bos>``; ``<pad>`` exactly at the
    positions after a row's first ``<eos>``.  A traced ``x`` is only cast
    (shapes are static; values are checked where the data entered).
    """
    arr = _ids_in_range(x, vocab_size, max_len, name)
    if isinstance(arr, jax.core.Tracer):
        return arr
    if np.any(arr == BOS_ID):
        raise ValueError(f"{name} contains <bos> (id {BOS_ID}); rows are words, <eos>, then <pad> "
                         "(sajax.data.text.encode); decoders feed <bos> themselves")
    is_eos = arr == EOS_ID
    after_eos = (np.cumsum(is_eos, axis=-1) - is_eos) > 0
    if np.any((arr == PAD_ID) != after_eos):
        raise ValueError(f"{name}: <pad> (id {PAD_ID}) must fill exactly the positions after a row's first "
                         f"<eos> (id {EOS_ID}); build rows with sajax.data.text.encode")
    return jnp.asarray(arr, jnp.int32)


def check_sentences(x, vocab_size: int, max_len: int, name: str = "x") -> jax.Array:
    """``x`` ``[..., max_len]`` as int32 token ids of complete sentences, validated when concrete.

    The support of :func:`lstm_lm` and :func:`sajax.models.trf` (Wang & Ou 2017): each row
    is l ∈ 1..L = max_len - 1 tokens in ``[<unk>=3, vocab_size)``, then one ``<eos>``, then
    ``<pad>``.  A ValueError/TypeError names the first problem: ids out of range, a row
    without ``<eos>`` (its length would be beyond the maximum L), an empty sentence
    (``<eos>`` first), a special (``<pad>``/``<bos>``) inside a sentence, or anything but
    ``<pad>`` after the ``<eos>``.  A traced ``x`` is only cast.
    """
    arr = _ids_in_range(x, vocab_size, max_len, name)
    if isinstance(arr, jax.core.Tracer):
        return arr
    is_eos = arr == EOS_ID
    if not np.all(np.any(is_eos, axis=-1)):
        raise ValueError(f"{name}: a row has no <eos> (id {EOS_ID}): its sentence has lengths beyond the maximum "
                         f"L = max_len - 1 = {max_len - 1} words")
    first = np.argmax(is_eos, axis=-1)
    if np.any(first == 0):
        raise ValueError(f"{name}: an empty sentence (<eos> first); sentences have 1..{max_len - 1} words")
    inside = np.arange(max_len) < first[..., None]
    if np.any(inside & (arr < UNK_ID)):
        raise ValueError(f"{name}: a special token (<pad> {PAD_ID} or <bos> {BOS_ID}) inside a sentence; "
                         f"words are ids in [{UNK_ID}, {vocab_size}) before the <eos>")
    if np.any((np.arange(max_len) > first[..., None]) & (arr != PAD_ID)):
        raise ValueError(f"{name}: a token other than <pad> (id {PAD_ID}) after a row's <eos>; build rows with "
                         "sajax.data.text.encode")
    return jnp.asarray(arr, jnp.int32)


# --------------------------------------------------------------------------
# Networks


class _SeqNets(NamedTuple):
    """The static part of :func:`text_vae` and :func:`lstm_lm`: sizes and the Flax modules.

    ``d = 0`` (``latent=None``): no latent, the decoder alone is a language model
    (initial state 0).  ``sentences``: the support is complete sentences of 1..T-1
    words (:func:`check_sentences`): <eos> is banned as the first token and forced
    in the last slot; otherwise (the text VAE) rows may also be truncated at T words.
    """

    vocab_size: int
    max_len: int
    latent: str
    d: int
    embed_dim: int
    hidden: int
    cell_kind: str
    feed_latent: bool
    sentences: bool = False

    def modules(self):
        cell = nn.GRUCell(self.hidden) if self.cell_kind == "gru" else nn.LSTMCell(self.hidden)
        head = DiagGaussianHead(self.d) if self.latent == "gaussian" else BernoulliHead(self.d)
        return dict(embed=nn.Embed(self.vocab_size, self.embed_dim), init=nn.Dense(self.hidden), cell=cell,
                    out=nn.Dense(self.vocab_size), enc_cell=nn.GRUCell(self.hidden), head=head)

    def init(self, key):
        m = self.modules()
        ks = jax.random.split(key, 7)
        e, hdim = self.embed_dim, self.hidden
        dec_in = jnp.zeros((1, e + (self.d if self.feed_latent else 0)))
        theta = {"embed": m["embed"].init(ks[0], jnp.zeros((1,), jnp.int32))["params"],
                 "init": m["init"].init(ks[1], jnp.zeros((1, self.d)))["params"],
                 "cell": m["cell"].init(ks[2], self._carry0(jnp.zeros((1, hdim))), dec_in)["params"],
                 "out": m["out"].init(ks[3], jnp.zeros((1, hdim)))["params"]}
        if self.latent == "bernoulli":
            theta["prior"] = {"logits": jnp.zeros((self.d,), jnp.float32)}
        phi = {"embed": m["embed"].init(ks[4], jnp.zeros((1,), jnp.int32))["params"],
               "cell": m["enc_cell"].init(ks[5], jnp.zeros((1, hdim)), jnp.zeros((1, e)))["params"],
               "head": m["head"].init(ks[6], jnp.zeros((1, hdim)))["params"]}
        return {MODEL: theta, GUIDE: phi}

    def _carry0(self, s0):
        return s0 if self.cell_kind == "gru" else (jnp.zeros_like(s0), s0)

    def _carry_out(self, carry):
        return carry if self.cell_kind == "gru" else carry[1]

    def lm_init(self, key):
        """φ = ``{"embed", "cell", "out"}`` of the decoder without a latent (:func:`lstm_lm`)."""
        m = self.modules()
        ks = jax.random.split(key, 3)
        return {"embed": m["embed"].init(ks[0], jnp.zeros((1,), jnp.int32))["params"],
                "cell": m["cell"].init(ks[1], self._carry0(jnp.zeros((1, self.hidden))),
                                       jnp.zeros((1, self.embed_dim)))["params"],
                "out": m["out"].init(ks[2], jnp.zeros((1, self.hidden)))["params"]}

    def check(self, x, name: str = "x"):
        if self.sentences:
            return check_sentences(x, self.vocab_size, self.max_len, name)
        return check_tokens(x, self.vocab_size, self.max_len, name)

    def banned(self):
        """``bool [T, V]``: the ids the decoder never emits at each position t (its support)."""
        b = np.zeros((self.max_len, self.vocab_size), bool)
        b[:, [PAD_ID, BOS_ID]] = True
        if self.sentences:
            b[0, EOS_ID] = True                          # no empty sentence
            b[-1, :] = True
            b[-1, EOS_ID] = False                        # a row of T-1 words ends with <eos>
        return b

    def emit_logits(self, theta, s, banned):
        """Output logits ``[..., V]`` with the ``banned`` ids (``[..., V]``, see :meth:`banned`) excluded."""
        logits = self.modules()["out"].apply({"params": theta["out"]}, s)
        return jnp.where(banned, _NEG, logits)

    def initial(self, theta, h):
        if self.d == 0:
            return self._carry0(jnp.zeros(h.shape[:-1] + (self.hidden,), jnp.float32))
        return self._carry0(jnp.tanh(self.modules()["init"].apply({"params": theta["init"]}, h)))

    def step_input(self, theta, tokens, h):
        e = self.modules()["embed"].apply({"params": theta["embed"]}, tokens)
        return jnp.concatenate([e, jnp.broadcast_to(h, e.shape[:-1] + h.shape[-1:])], -1) if self.feed_latent else e

    def cell_step(self, theta, carry, inp):
        carry, _ = self.modules()["cell"].apply({"params": theta["cell"]}, carry, inp)
        return carry


def _decoder_states(nets: _SeqNets, theta, x, h):
    """Teacher-forced decoder states s_1..s_T ``[M, T, H]`` for x ``[M, T]``, h ``[M, d]``."""
    inputs = jnp.concatenate([jnp.full(x.shape[:1] + (1,), BOS_ID, jnp.int32), x[:, :-1]], axis=1)
    feed = jnp.swapaxes(nets.step_input(theta, inputs, h[:, None, :]), 0, 1)     # [T, M, E(+d)]

    def body(carry, inp):
        carry = nets.cell_step(theta, carry, inp)
        return carry, nets._carry_out(carry)

    _, states = jax.lax.scan(body, nets.initial(theta, h), feed)
    return jnp.swapaxes(states, 0, 1)


def _token_log_probs(nets: _SeqNets, theta, x, h):
    """log p_θ(x_t | x_<t, h) ``[..., B, T]`` (0 at <pad>), x ``[B, T]`` or broadcastable, h ``[..., B, d]``."""
    x = nets.check(x)
    lead = jnp.broadcast_shapes(h.shape[:-1], x.shape[:-1])
    xf = jnp.broadcast_to(x, lead + x.shape[-1:]).reshape((math.prod(lead), nets.max_len))
    hf = jnp.broadcast_to(h, lead + h.shape[-1:]).reshape((math.prod(lead), nets.d))
    logits = nets.emit_logits(theta, _decoder_states(nets, theta, xf, hf), jnp.asarray(nets.banned()))
    log_p = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_p, xf[..., None], axis=-1)[..., 0]           # [M, T]
    return jnp.where(xf != PAD_ID, picked, 0.0).reshape(lead + (nets.max_len,))


def _sample_tokens(nets: _SeqNets, theta, key, h, temperature=1.0):
    """x ~ p_θ(x|h) ancestrally: ``lax.scan`` over T; <pad> after the first <eos>. ``[..., T]`` int32."""
    lead = h.shape[:-1]
    m = math.prod(lead)
    hf = h.reshape((m, nets.d))

    def body(carry, inp):
        (state, prev, done), (k, banned) = carry, inp
        state = nets.cell_step(theta, state, nets.step_input(theta, prev, hf))
        logits = nets.emit_logits(theta, nets._carry_out(state), banned) / temperature
        tok = jnp.where(done, PAD_ID, jax.random.categorical(k, logits).astype(jnp.int32))
        return (state, tok, done | (tok == EOS_ID)), tok

    init = (nets.initial(theta, hf), jnp.full((m,), BOS_ID, jnp.int32), jnp.zeros((m,), bool))
    _, toks = jax.lax.scan(body, init, (jax.random.split(key, nets.max_len), jnp.asarray(nets.banned())))
    return jnp.swapaxes(toks, 0, 1).reshape(lead + (nets.max_len,))


def _encode(nets: _SeqNets, phi, x):
    """The encoder's head output for x ``[..., T]``: a GRU over e(x), its state frozen at <pad>."""
    x = nets.check(x)
    lead = x.shape[:-1]
    xf = x.reshape((-1, nets.max_len))
    mods = nets.modules()
    feed = jnp.swapaxes(mods["embed"].apply({"params": phi["embed"]}, xf), 0, 1)   # [T, M, E]
    keep = jnp.swapaxes(xf != PAD_ID, 0, 1)[..., None]                             # [T, M, 1]

    def body(s, inp):
        e, k = inp
        new, _ = mods["enc_cell"].apply({"params": phi["cell"]}, s, e)
        return jnp.where(k, new, s), None

    s, _ = jax.lax.scan(body, jnp.zeros((xf.shape[0], nets.hidden), feed.dtype), (feed, keep))
    out = mods["head"].apply({"params": phi["head"]}, s)
    return jax.tree_util.tree_map(lambda a: a.reshape(lead + a.shape[-1:]), out)


# --------------------------------------------------------------------------
# Protocol adapters


def _seq_model(nets: _SeqNets) -> LatentVariableModel:
    """p_θ(x, h) of the module docstring as a :class:`LatentVariableModel`."""
    gaussian = nets.latent == "gaussian"

    def log_prior(theta, h):
        return std_normal_log_prob(h) if gaussian else bernoulli_log_prob(theta["prior"]["logits"], h)

    def log_likelihood(theta, x, h):
        return jnp.sum(_token_log_probs(nets, theta, x, h), axis=-1)

    def sample(theta, key, n):
        n = check_positive_int("n", n)
        k_h, k_x = jax.random.split(key)
        if gaussian:
            h = jax.random.normal(k_h, (n, nets.d))
        else:
            h = _bernoulli_sample(k_h, jnp.broadcast_to(theta["prior"]["logits"], (n, nets.d)))
        return _sample_tokens(nets, theta, k_x, h), h

    def prior(theta):
        if gaussian:
            return distrax.MultivariateNormalDiag(jnp.zeros((nets.d,)), jnp.ones((nets.d,)))
        return distrax.Independent(distrax.Bernoulli(logits=theta["prior"]["logits"]), 1)

    return LatentVariableModel(log_prior=log_prior, log_likelihood=log_likelihood, sample=sample,
                               prior=prior, observation="categorical")


def _gaussian_guide(nets: _SeqNets) -> ConditionalSampler:
    """q_φ(h|x) = N(μ_φ(x), diag σ_φ(x)²), reparameterized (Eq. 12):
    h = μ + σ ⊙ ε with ε = ``normal(key, (n, B, d))``; log q is computed from ε."""

    def sample_and_log_prob(phi, key, x, n):
        m, log_std = _encode(nets, phi, x)
        eps = jax.random.normal(key, (n,) + m.shape, m.dtype)
        log_q = jnp.sum(-0.5 * jnp.square(eps) - log_std, axis=-1) - 0.5 * nets.d * _LOG_2PI
        return m + jnp.exp(log_std) * eps, log_q

    def log_prob(phi, x, h):
        return diag_normal_log_prob(h, *_encode(nets, phi, x))

    def dist(phi, x):
        m, log_std = _encode(nets, phi, x)
        return distrax.MultivariateNormalDiag(m, jnp.exp(log_std))

    return ConditionalSampler(sample_and_log_prob, log_prob, dist)


def _bernoulli_guide(nets: _SeqNets) -> ConditionalSampler:
    """q_φ(h|x) = FB[σ(T_φ(x))]; samples carry no gradient."""

    def sample_and_log_prob(phi, key, x, n):
        logits = _encode(nets, phi, x)
        h = _bernoulli_sample(key, jnp.broadcast_to(logits, (n,) + logits.shape))
        return h, bernoulli_log_prob(logits, h)

    def log_prob(phi, x, h):
        return bernoulli_log_prob(_encode(nets, phi, x), h)

    def dist(phi, x):
        return distrax.Independent(distrax.Bernoulli(logits=_encode(nets, phi, x)), 1)

    return ConditionalSampler(sample_and_log_prob, log_prob, dist)


def _check_text_args(vocab_size, max_len, latent, latent_dim, embed, hidden, cell):
    vocab_size = check_positive_int("vocab_size", vocab_size, minimum=len(SPECIALS) + 1)
    sizes = [check_positive_int(n, v) for n, v in
             (("max_len", max_len), ("latent_dim", latent_dim), ("embed", embed), ("hidden", hidden))]
    if latent not in LATENT_KINDS:
        raise ValueError(f"latent must be one of {LATENT_KINDS}, got {latent!r}")
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    return (vocab_size, *sizes)


def text_vae(vocab_size: int, max_len: int, latent: str = "gaussian", latent_dim: int = 16,
             embed: int = 32, hidden: int = 64, cell: str = "gru", feed_latent: bool = True) -> TextVAESpec:
    """Build a text VAE (module docstring; Bowman et al. 2016, review Sec. 3.2.1 item 3).

    Args:
      vocab_size: number of token ids V (specials included, ``Vocab.size``); >= 5.
      max_len: T, tokens per row (words + <eos> + padding).
      latent: ``"gaussian"`` or ``"bernoulli"``.
      latent_dim: d (Bernoulli: bits).
      embed, hidden: embedding width and recurrent state width (encoder and decoder).
      cell: decoder cell, ``"gru"`` or ``"lstm"`` (the encoder is a GRU).
      feed_latent: feed h at every decoder step besides the initial state.

    Returns: :class:`TextVAESpec`.  Raises ValueError/TypeError naming a bad argument.
    """
    vocab_size, max_len, latent_dim, embed, hidden = _check_text_args(
        vocab_size, max_len, latent, latent_dim, embed, hidden, cell)
    nets = _SeqNets(vocab_size, max_len, latent, latent_dim, embed, hidden, cell, bool(feed_latent))
    guide = _gaussian_guide(nets) if latent == "gaussian" else _bernoulli_guide(nets)
    layers = None
    if latent == "bernoulli":
        layers = DiscreteLayers(lambda phi, l, parent: _encode(nets, phi, parent), 1, "bernoulli", lambda hs: hs[0])
    return TextVAESpec(
        _seq_model(nets), guide, nets.init, vocab_size, max_len, latent, latent_dim, cell,
        lambda theta, x, h: _token_log_probs(nets, theta, x, h),
        lambda theta, key, h, temperature=1.0: _sample_tokens(nets, theta, key, h, temperature),
        lambda phi, x: _encode(nets, phi, x), layers)


# --------------------------------------------------------------------------
# The decoder without a latent: an LSTM / GRU language model over sentences


class LMSpec(NamedTuple):
    """A recurrent language model q_φ(x) over complete sentences (:func:`lstm_lm`).

    Attributes:
      model: :class:`sajax.core.TractableModel`: ``log_prob(φ, x [..., B, T]) -> [..., B]``,
        ``sample(φ, key, n) -> int32 [n, T]``, ``observation="categorical"``
        (trainable by :func:`sajax.estimators.maximum_likelihood` under ``{"model": φ}``).
      noise: :class:`sajax.core.NoiseModel` of the same q_φ: ``sample``,
        ``log_prob`` and ``dist(φ)``, a ``distrax.Distribution`` over one row
        (``sample(seed=, sample_shape=(n,)) -> int32 [n, T]``, ``log_prob(x) -> [n]``):
        the noise of NCE / DNCE and the proposal of the TRF's SA estimator.
      init: ``key -> φ`` (raw parameters ``{"embed", "cell", "out"}``, no group).
      token_log_probs: ``(φ, x) -> [..., B, T]`` log q_φ(x_t | x_<t) (0 at <pad>).
      sample_tokens: ``(φ, key, n, temperature=1.0) -> int32 [n, T]`` (logits divided by
        ``temperature``; 1: the model itself).
      vocab_size, max_len, cell: V, T (L = T - 1 words at most), ``"lstm"`` or ``"gru"``.
    """

    model: TractableModel
    noise: NoiseModel
    init: Callable
    token_log_probs: Callable
    sample_tokens: Callable
    vocab_size: int
    max_len: int
    cell: str


class _SentenceDistribution(distrax.Distribution):
    """q_φ of an :class:`LMSpec` as a distrax distribution over one token row ``int32 [T]``
    (``sample(seed=, sample_shape=)``; ``log_prob`` of rows ``[..., T]`` -> ``[...]``)."""

    def __init__(self, lm_sample, lm_log_prob, phi, max_len: int):
        self._lm_sample, self._lm_log_prob, self._phi, self._max_len = lm_sample, lm_log_prob, phi, max_len

    def _sample_n(self, key, n):
        return self._lm_sample(self._phi, key, n)

    def log_prob(self, value):
        value = jnp.asarray(value)
        if value.ndim == 1:
            return self._lm_log_prob(self._phi, value[None])[0]
        return self._lm_log_prob(self._phi, value)

    @property
    def event_shape(self):
        return (self._max_len,)

    @property
    def dtype(self):
        return jnp.int32


def lstm_lm(vocab_size: int, max_len: int, *, embed: int = 32, hidden: int = 64, cell: str = "lstm") -> LMSpec:
    """A recurrent language model over complete sentences: the text VAE's decoder without a
    latent (review Sec. 3.1.3, an autoregressive model; the LSTM-RNN generator / noise of the
    TRF language models of Wang & Ou 2017, 2018a,b, Sec. 4.2.3-4.2.4):

        q_φ(x) = Π_{t=1}^{l+1} q_φ(x_t | x_<t),   x_{l+1} = <eos>,   s_t = cell(s_{t-1}, e(x_{t-1})),

    with x_0 = <bos>, s_0 = 0, and the support of :func:`sajax.models.trf`: each of the l
    positions takes an id in [<unk>=3, V); <eos> is never the first token (no empty
    sentence) and is forced after L = max_len - 1 words, so q_φ is normalized over exactly
    the sentences of lengths 1..L (every row one <eos>, then <pad>; :func:`check_sentences`
    validates concrete rows).

    Args:
      vocab_size: V (specials included); >= 4.  max_len: T >= 2 (rows of L = T - 1 words at most).
      embed, hidden: embedding and state widths.  cell: ``"lstm"`` or ``"gru"``.

    Returns: :class:`LMSpec`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> lm = lstm_lm(vocab_size=6, max_len=4, embed=8, hidden=8)
      >>> phi = lm.init(jax.random.PRNGKey(0))
      >>> x = lm.model.sample(phi, jax.random.PRNGKey(1), 5)
      >>> x.shape, x.dtype.name, lm.model.log_prob(phi, x).shape
      ((5, 4), 'int32', (5,))
      >>> bool(jnp.all(lm.noise.dist(phi).log_prob(x) == lm.noise.log_prob(phi, x)))
      True
    """
    vocab_size = check_positive_int("vocab_size", vocab_size, minimum=len(SPECIALS))
    max_len = check_positive_int("max_len", max_len, minimum=2)
    embed, hidden = check_positive_int("embed", embed), check_positive_int("hidden", hidden)
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    nets = _SeqNets(vocab_size, max_len, None, 0, embed, hidden, cell, False, True)

    def token_log_probs(phi, x):
        x = nets.check(x)
        return _token_log_probs(nets, phi, x, jnp.zeros(x.shape[:-1] + (0,), jnp.float32))

    def log_prob(phi, x):
        return jnp.sum(token_log_probs(phi, x), axis=-1)

    def sample_tokens(phi, key, n, temperature=1.0):
        n = check_positive_int("n", n)
        return _sample_tokens(nets, phi, key, jnp.zeros((n, 0), jnp.float32), temperature)

    def sample(phi, key, n):
        return sample_tokens(phi, key, n)

    noise = NoiseModel(sample, log_prob, lambda phi: _SentenceDistribution(sample, log_prob, phi, max_len))
    return LMSpec(TractableModel(log_prob, sample, "categorical"), noise, nets.lm_init, token_log_probs,
                  sample_tokens, vocab_size, max_len, cell)
