"""Trans-dimensional random fields (TRF) over sentences (review Sec. 4.1, Eq. 38; Wang & Ou
2017, 2018a,b; Wang, Ou & Tan 2018).

A TRF language model is a random field over the pair (l, x) of a sentence length l and a
sentence x = (x_1, ..., x_l) of that length, one field per length sharing the potential
u_θ (Eq. 38 applied per length):

    p(l, x; θ̂) = π_l · exp(u_θ(x)) / Z_l(θ),     Z_l(θ) = Σ_{x of length l} exp(u_θ(x)),

with π_l a fixed length prior (the empirical length frequencies of the training sentences,
:func:`trf_length_prior`).  As in Wang & Ou, the log normalizers are parameters
ζ_l ≈ log Z_l(θ) learned with θ (by NCE / DNCE, Sec. 4.2.4, or by SA, Sec. 4.2.3), so the
potential of the :class:`sajax.core.EnergyModel` is the *normalized* log density once
ζ_l = log Z_l:

    potential(θ̂, x) = log π_l + u_θ(x) - ζ_l,     θ̂ = {"zeta": ζ [L], **θ}.

Sentences are rows of :mod:`sajax.data.text`: l ∈ 1..L = max_len - 1 ids in
[<unk>=3, V) (<unk> and the words), one <eos>, then <pad>
(:func:`sajax.models.check_sentences` validates concrete rows).  ζ starts at
l · log(V - 3) = log Z_l of u ≡ 0.

**π_l = 0.**  A length never seen in training gets log π_l = :data:`LOG_PRIOR_FLOOR`
(-1000), not -inf: exp of it underflows to exactly 0 in float32 and float64 (so such
sentences have probability 0 in every sum), while the potential, its gradient and
differences of two such potentials (MIS ratios, NCE logits of a noise sentence of an
unseen length) stay finite; -inf would give -inf - (-inf) = NaN there.

Potentials u_θ (``potential=``), each a Flax module ``(tokens [B, T], mask [B, T]) -> [B]``
with ``mask`` true at the l word positions:

* ``"cnn"`` (Wang & Ou 2018a): embedding, a bank of 1-D convolutions of widths ``widths``,
  max-pooling over time (width 3, stride 1), residual width-3 convolutions, a dense
  read-out per position summed over the sentence;
* ``"bilstm"`` (Wang & Ou 2018b): embedding and a bidirectional LSTM; position i is scored
  by a dense read-out over V of the forward state before x_i and the backward state after
  x_i, picked at x_i and summed over the sentence;
* ``"bigram"``: u(x) = Σ_i w[x_i] + Σ_i b[x_i, x_{i+1}], a table small enough for exact tests;
* any Flax module of that signature.

Exact tools for tiny vocabularies (DESIGN.md, "How to know an estimator is right"):
:func:`enumerate_sentences`, :func:`trf_log_partition` (exact log Z_l),
:func:`trf_exact_log_prob` (log p(l, x) with the exact log Z_l), :func:`trf_exact_sample`.

Example:
  >>> import jax, jax.numpy as jnp, numpy as np
  >>> spec = trf(vocab_size=5, max_len=4, length_prior=[0.5, 0.3, 0.2], potential="bigram")
  >>> theta = spec.init(jax.random.PRNGKey(0))["potential"]
  >>> x = enumerate_sentences(5, 4)                          # all 2 + 4 + 8 sentences
  >>> exact = {**theta, "zeta": trf_log_partition(spec, theta)}
  >>> round(float(jnp.sum(jnp.exp(spec.model.potential(exact, x)))), 5)
  1.0
  >>> spec.lengths(x[:3]).tolist()
  [1, 1, 2]
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import POTENTIAL, EnergyModel, check_key, check_positive_int
from sajax.data.text import EOS_ID, PAD_ID, SPECIALS, UNK_ID
from sajax.models._sequence import check_sentences

__all__ = ["TRFSpec", "trf", "trf_length_prior", "CNNPotential", "BiLSTMPotential", "BigramPotential",
           "POTENTIALS", "ZETA", "LOG_PRIOR_FLOOR", "enumerate_sentences", "trf_log_partition",
           "trf_exact_log_prob", "trf_exact_sample"]

POTENTIALS = ("cnn", "bilstm", "bigram")
ZETA = "zeta"                 # the key of ζ [L] in θ̂
LOG_PRIOR_FLOOR = -1000.0     # log π_l where π_l = 0 (module docstring)


class TRFSpec(NamedTuple):
    """A TRF language model as a protocol (module docstring).

    Attributes:
      model: :class:`sajax.core.EnergyModel`, ``observation="categorical"``, ``sample`` None;
        ``potential(θ̂, x int [..., B, T]) -> [..., B]`` = log π_l + u_θ(x) - ζ_l.
      init: ``key -> {"potential": θ̂}``, θ̂ = ``{"zeta": float32 [L], **network params}``,
        ζ_l = l · log(V - 3).
      energy: ``(θ̂, x) -> [..., B]`` u_θ(x) alone (no π, no ζ; ``"zeta"`` may be present or not).
      lengths: ``x -> int32 [..., B]``, l = the number of tokens before <eos> (1..L).
      log_length_prior: float32 ``[L]`` log π_l (index l - 1), :data:`LOG_PRIOR_FLOOR` where π_l = 0.
      length_prior: float64 numpy ``[L]`` π_l, as given (normalized to sum 1).
      vocab_size, max_len: V and T (L = T - 1).
      num_values: V - 3, the values a position takes ([<unk>, V)).
      potential_name: ``"cnn"``, ``"bilstm"``, ``"bigram"`` or the module's class name.
      module: the Flax module ``(tokens [B, T], mask [B, T]) -> [B]`` of u_θ.
    """

    model: EnergyModel
    init: Callable
    energy: Callable
    lengths: Callable
    log_length_prior: jax.Array
    length_prior: np.ndarray
    vocab_size: int
    max_len: int
    num_values: int
    potential_name: str
    module: nn.Module


# --------------------------------------------------------------------------
# Potential networks u_θ: (tokens [B, T], mask [B, T]) -> [B]


class CNNPotential(nn.Module):
    """Wang & Ou's (2018a) CNN features: embedding, a convolution bank (``widths``), max-pooling
    over time (width 3, stride 1), ``depth`` residual width-3 convolutions, a dense read-out
    per position summed over the l words.  Positions outside the sentence are zeroed at
    every layer, so u depends on the words (and their number) only."""

    vocab_size: int
    embed: int = 32
    hidden: int = 64
    widths: Sequence[int] = (1, 2, 3)
    depth: int = 2

    @nn.compact
    def __call__(self, tokens, mask):
        m = mask[..., None].astype(jnp.float32)
        e = nn.Embed(self.vocab_size, self.embed)(tokens) * m
        bank = jnp.concatenate([nn.relu(nn.Conv(self.hidden, (w,), padding="SAME")(e)) for w in self.widths], -1)
        h = nn.max_pool(bank * m, (3,), strides=(1,), padding="SAME") * m
        h = nn.Dense(self.hidden)(h) * m
        for _ in range(self.depth):
            h = h + nn.relu(nn.Conv(self.hidden, (3,), padding="SAME")(h)) * m
        return jnp.sum(nn.Dense(1)(h)[..., 0] * mask, axis=-1)


class BiLSTMPotential(nn.Module):
    """Wang & Ou's (2018b) bidirectional-LSTM potential: u(x) = Σ_i [W (f_{i-1} ⊕ b_{i+1}) + c]_{x_i},
    f_{i-1} the forward LSTM state after x_<i (0 at i = 1), b_{i+1} the backward state after
    x_>i (0 at i = l), both run over the l words only."""

    vocab_size: int
    embed: int = 32
    hidden: int = 64

    @nn.compact
    def __call__(self, tokens, mask):
        lengths = jnp.sum(mask, axis=-1)
        e = nn.Embed(self.vocab_size, self.embed)(tokens)
        fwd = nn.RNN(nn.LSTMCell(self.hidden))(e, seq_lengths=lengths)
        bwd = nn.RNN(nn.LSTMCell(self.hidden), reverse=True, keep_order=True)(e, seq_lengths=lengths)
        zero = jnp.zeros_like(fwd[:, :1])
        before = jnp.concatenate([zero, fwd[:, :-1]], axis=1)
        after = jnp.concatenate([bwd[:, 1:], zero], axis=1)
        after = after * jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)[..., None]
        logits = nn.Dense(self.vocab_size)(jnp.concatenate([before, after], axis=-1))
        picked = jnp.take_along_axis(logits, tokens[..., None], axis=-1)[..., 0]
        return jnp.sum(jnp.where(mask, picked, 0.0), axis=-1)


class BigramPotential(nn.Module):
    """u(x) = Σ_{i≤l} w[x_i] + Σ_{i<l} b[x_i, x_{i+1}]; ``w [V]``, ``b [V, V]`` initialized
    N(0, ``scale``²).  Small enough for exact tests."""

    vocab_size: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, tokens, mask):
        init = nn.initializers.normal(self.scale)
        w = self.param("unigram", init, (self.vocab_size,))
        b = self.param("bigram", init, (self.vocab_size, self.vocab_size))
        uni = jnp.sum(jnp.where(mask, w[tokens], 0.0), axis=-1)
        bi = jnp.sum(jnp.where(mask[:, 1:], b[tokens[:, :-1], tokens[:, 1:]], 0.0), axis=-1)
        return uni + bi


# --------------------------------------------------------------------------
# The spec


def _row_lengths(x, max_len: int):
    """l of each row ``[..., T]``: the index of its first <eos> (clipped to 1..L for traced rows)."""
    return jnp.clip(jnp.argmax(x == EOS_ID, axis=-1), 1, max_len - 1).astype(jnp.int32)


def _network_params(theta, who: str):
    if not hasattr(theta, "keys"):
        raise TypeError(f"{who}: θ̂ must be a dict {{'zeta': ζ [L], **network params}} (spec.init(key)"
                        f"['potential']), got {type(theta).__name__}")
    return {k: v for k, v in theta.items() if k != ZETA}


def _make_energy(module: nn.Module, vocab_size: int, max_len: int, name: str):
    """``(θ̂, x [..., B, T]) -> u_θ(x) [..., B]``, concrete x validated (:func:`check_sentences`)."""

    def energy(theta, x):
        x = check_sentences(x, vocab_size, max_len)
        lead = x.shape[:-1]
        xf = x.reshape((math.prod(lead), max_len))
        mask = jnp.arange(max_len) < _row_lengths(xf, max_len)[:, None]
        u = module.apply({"params": _network_params(theta, "energy")}, xf, mask)
        if jnp.ndim(u) == 2 and jnp.shape(u)[-1] == 1:
            u = u[:, 0]
        if jnp.shape(u) != (xf.shape[0],):
            raise ValueError(f"potential {name} must return one scalar per sentence, shape [{xf.shape[0]}] for "
                             f"tokens of shape {xf.shape}; got shape {jnp.shape(u)}")
        return u.reshape(lead)

    return energy


def _check_zeta(theta, num_lengths: int):
    if not hasattr(theta, "keys") or ZETA not in theta:
        raise ValueError(f"potential: θ̂ has no {ZETA!r} (ζ_l ≈ log Z_l, one per length l = 1..{num_lengths}); "
                         f"build it with spec.init(key)['potential']")
    zeta = theta[ZETA]
    if jnp.shape(zeta) != (num_lengths,):
        raise ValueError(f"potential: θ̂[{ZETA!r}] must have shape [L={num_lengths}], got {jnp.shape(zeta)}")
    return zeta


def _check_length_prior(length_prior, num_lengths: int) -> np.ndarray:
    """π as float64 ``[L]``, nonnegative, summing to 1 (renormalized exactly); else ValueError."""
    try:
        pi = np.asarray(length_prior, np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"length_prior must be an array of L = max_len - 1 = {num_lengths} probabilities, "
                        f"got {type(length_prior).__name__}") from None
    if pi.shape != (num_lengths,):
        raise ValueError(f"length_prior must hold π_l for l = 1..L = max_len - 1 = {num_lengths}: shape "
                         f"[{num_lengths}], got shape {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi < 0):
        raise ValueError(f"length_prior must be nonnegative and finite, got {pi.tolist()}")
    if abs(pi.sum() - 1.0) > 1e-4:
        raise ValueError(f"length_prior must sum to 1 (a distribution over lengths 1..{num_lengths}), "
                         f"it sums to {pi.sum():.6g}; use sajax.models.trf_length_prior(train, max_len)")
    return pi / pi.sum()


def _potential_module(potential, vocab_size: int, embed: int, hidden: int, widths):
    """The Flax module of ``potential`` (a name of :data:`POTENTIALS` or a module) and its name."""
    if isinstance(potential, nn.Module):
        return potential, type(potential).__name__
    if isinstance(potential, str) and potential in POTENTIALS:
        embed, hidden = check_positive_int("embed", embed), check_positive_int("hidden", hidden)
        widths = tuple(check_positive_int("widths", w) for w in widths)
        return {"cnn": lambda: CNNPotential(vocab_size, embed, hidden, widths),
                "bilstm": lambda: BiLSTMPotential(vocab_size, embed, hidden),
                "bigram": lambda: BigramPotential(vocab_size)}[potential](), potential
    if isinstance(potential, str):
        raise ValueError(f"potential must be one of {POTENTIALS} or a Flax module (tokens, mask) -> [B], "
                         f"got {potential!r}")
    raise TypeError(f"potential must be one of {POTENTIALS} or a flax.linen.Module (tokens [B, T], mask [B, T]) "
                    f"-> [B], got {type(potential).__name__}")


def trf(vocab_size: int, max_len: int, *, length_prior, potential="cnn", embed: int = 32, hidden: int = 64,
        widths: Sequence[int] = (1, 2, 3)) -> TRFSpec:
    """A trans-dimensional random field over sentences (module docstring; review Sec. 4.1,
    Eq. 38 per length; Wang & Ou 2017, 2018a,b; Wang, Ou & Tan 2018).

    Args:
      vocab_size: V (specials included, ``Vocab.size``); >= 4.
      max_len: T, ids per row (sentences of 1..L = T - 1 words, then <eos>, then <pad>); >= 2.
      length_prior: π ``[L]``, π_l for l = 1..L, nonnegative, summing to 1 (e.g.
        :func:`trf_length_prior` of the training rows); π_l = 0 is allowed (module docstring).
      potential: ``"cnn"``, ``"bilstm"``, ``"bigram"`` or a Flax module
        ``(tokens int32 [B, T], mask bool [B, T]) -> [B]`` (``[B, 1]`` is squeezed).
      embed, hidden: embedding and feature widths (``"cnn"``, ``"bilstm"``).
      widths: the CNN bank's filter widths.

    Returns: :class:`TRFSpec`.  Raises ValueError/TypeError naming a bad argument.
    """
    vocab_size = check_positive_int("vocab_size", vocab_size, minimum=len(SPECIALS))
    max_len = check_positive_int("max_len", max_len, minimum=2)
    num_lengths = max_len - 1
    pi = _check_length_prior(length_prior, num_lengths)
    module, name = _potential_module(potential, vocab_size, embed, hidden, widths)
    log_pi = jnp.asarray(np.where(pi > 0, np.log(np.where(pi > 0, pi, 1.0)), LOG_PRIOR_FLOOR), jnp.float32)
    energy = _make_energy(module, vocab_size, max_len, name)
    lengths = lambda x: _row_lengths(check_sentences(x, vocab_size, max_len), max_len)  # noqa: E731

    def log_density(theta, x):
        zeta = _check_zeta(theta, num_lengths)
        x = check_sentences(x, vocab_size, max_len)
        idx = _row_lengths(x, max_len) - 1
        return log_pi[idx] + energy(theta, x) - zeta[idx]

    num_values = vocab_size - UNK_ID
    zeta0 = jnp.arange(1, max_len, dtype=jnp.float32) * math.log(num_values)

    def init(key):
        row = jnp.full((1, max_len), PAD_ID, jnp.int32).at[0, 0].set(UNK_ID).at[0, 1].set(EOS_ID)
        net = module.init(check_key(key), row, jnp.arange(max_len)[None] < 1)["params"]
        if ZETA in net:
            raise ValueError(f"the potential module has a parameter named {ZETA!r}, the key of ζ in θ̂; rename it")
        return {POTENTIAL: {ZETA: zeta0, **net}}

    return TRFSpec(EnergyModel(log_density, None, "categorical"), init, energy, lengths, log_pi, pi,
                   vocab_size, max_len, num_values, name, module)


def trf_length_prior(x, max_len: int) -> np.ndarray:
    """π ``float64 [L]`` (L = max_len - 1): the empirical frequencies of the sentence lengths of
    the encoded rows ``x`` ``[N, max_len]`` (:func:`check_sentences` validates them)."""
    max_len = check_positive_int("max_len", max_len, minimum=2)
    x = np.asarray(check_sentences(x, np.iinfo(np.int32).max, max_len))
    if x.shape[0] == 0:
        raise ValueError("trf_length_prior: x has no rows")
    counts = np.bincount(np.argmax(x == EOS_ID, axis=-1).ravel(), minlength=max_len)[1:]
    return counts / counts.sum()


# --------------------------------------------------------------------------
# Exact tools by enumeration (tiny vocabularies)


def enumerate_sentences(vocab_size: int, max_len: int, *, max_sentences: int = 200_000) -> np.ndarray:
    """Every sentence of lengths 1..L = max_len - 1 over the ids [<unk>=3, vocab_size), encoded
    as rows ``int32 [S, max_len]`` (S = Σ_l (V - 3)^l), by length, then lexicographically.

    Raises ValueError when S > ``max_sentences``.
    """
    vocab_size = check_positive_int("vocab_size", vocab_size, minimum=len(SPECIALS))
    max_len = check_positive_int("max_len", max_len, minimum=2)
    values = range(UNK_ID, vocab_size)
    total = sum(len(values) ** l for l in range(1, max_len))
    if total > max_sentences:
        raise ValueError(f"enumerate_sentences: {total} sentences of lengths 1..{max_len - 1} over {len(values)} "
                         f"values; at most max_sentences={max_sentences}")
    out = np.full((total, max_len), PAD_ID, np.int32)
    i = 0
    for l in range(1, max_len):
        for words in itertools.product(values, repeat=l):
            out[i, :l], out[i, l] = words, EOS_ID
            i += 1
    return out


def trf_log_partition(spec: TRFSpec, theta, *, max_sentences: int = 200_000) -> jax.Array:
    """Exact log Z_l(θ) = log Σ_{x of length l} exp(u_θ(x)) ``[L]`` by enumeration
    (:func:`enumerate_sentences`; ζ in θ̂ is ignored)."""
    x = enumerate_sentences(spec.vocab_size, spec.max_len, max_sentences=max_sentences)
    u = spec.energy(theta, x)
    by_length = jax.nn.one_hot(spec.lengths(x) - 1, spec.max_len - 1, dtype=bool)         # [S, L]
    return jax.nn.logsumexp(jnp.where(by_length, u[:, None], -jnp.inf), axis=0)


def trf_exact_log_prob(spec: TRFSpec, theta, x, *, log_z: Optional[jax.Array] = None) -> jax.Array:
    """log p(l, x; θ) = log π_l + u_θ(x) - log Z_l(θ) ``[..., B]`` with the exact log Z_l
    (:func:`trf_log_partition`, or ``log_z`` if given) in place of ζ."""
    log_z = trf_log_partition(spec, theta) if log_z is None else log_z
    return spec.model.potential({**theta, ZETA: jnp.asarray(log_z, jnp.float32)}, x)


def trf_exact_sample(spec: TRFSpec, theta, key, n: int) -> jax.Array:
    """``n`` exact draws ``int32 [n, T]`` of p(l, x; θ) (categorical over every enumerated sentence)."""
    n = check_positive_int("n", n)
    x = jnp.asarray(enumerate_sentences(spec.vocab_size, spec.max_len))
    idx = jax.random.categorical(check_key(key), trf_exact_log_prob(spec, theta, x), shape=(n,))
    return x[idx]
