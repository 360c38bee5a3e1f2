"""A small text corpus generated in code, its vocabulary and token encoding
(review Sec. 3.2.1 item 3, discrete observations; the text-VAE setting of
Bowman et al. 2016).

No download: sentences come from a probabilistic grammar, deterministic given
a seed.  The grammar has latent structure a latent code can capture: each
sentence first draws

* a **topic** (``animals``, ``food``, ``travel``, ``work``; uniform): it
  selects the nouns, verbs, adjectives and places of the sentence;
* a **tense** (``past``, ``present``, ``future``; uniform): it selects the
  verb forms (``ate`` / ``eats`` / ``will eat``; future verbs are two tokens);
* a **template** (uniform):

  1. ``SUBJ VERB OBJ .``
  2. ``SUBJ VERB OBJ ADVERB .``
  3. ``SUBJ VERB OBJ and VERB OBJ .``
  4. ``SUBJ VERB OBJ PREP PLACE .``

  where a noun phrase is ``DET ADJ{0,1,2} NOUN`` (0 / 1 / 2 adjectives with
  probabilities 0.5 / 0.35 / 0.15), every word uniform within its topic's list.

Sentences have 6 to 15 tokens (``"."`` counts; 10 on average); longer
draws are redrawn.  The vocabulary of the grammar (:func:`grammar_words`)
has 125 words; with the four special tokens a :class:`Vocab` over it has
129 ids.

Token ids: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3 in every
:class:`Vocab`, then the words.  :func:`encode` writes each sentence as its
word ids, one ``<eos>``, then ``<pad>`` to ``max_len``: ``int32 [N, T]``
(``<bos>`` is never stored; decoders feed it as their first input).

Example:
  >>> sents = text_corpus(3, seed=0)
  >>> sents == text_corpus(3, seed=0)
  True
  >>> vocab = Vocab.from_sentences(text_corpus(200, seed=1))
  >>> x = encode(["the cat eats the fish ."], vocab, max_len=8)
  >>> x.shape, x.dtype.name, int(x[0, 6]), int(x[0, 7])
  ((1, 8), 'int32', 2, 0)
  >>> decode(x, vocab)
  ['the cat eats the fish .']
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np

from sajax.core import check_positive_int

__all__ = [
    "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "SPECIALS", "TOPICS", "TENSES",
    "TextSample", "Vocab", "sample_sentences", "text_corpus", "grammar_words",
    "encode", "decode", "num_tokens", "split_corpus",
]

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
TENSES = ("past", "present", "future")
MIN_TOKENS, MAX_TOKENS = 6, 15

# topic -> (nouns, verbs as (past, present, future), adjectives, places)
_LEXICON = {
    "animals": (("cat", "dog", "bird", "horse", "fish", "mouse", "rabbit"),
                (("chased", "chases", "will chase"), ("watched", "watches", "will watch"),
                 ("fed", "feeds", "will feed"), ("bit", "bites", "will bite")),
                ("small", "wild", "furry", "hungry", "quiet"),
                ("farm", "forest", "barn", "river")),
    "food": (("bread", "soup", "apple", "cheese", "cake", "rice", "cook"),
             (("ate", "eats", "will eat"), ("cooked", "cooks", "will cook"),
              ("tasted", "tastes", "will taste"), ("bought", "buys", "will buy")),
             ("fresh", "sweet", "warm", "spicy", "salty"),
             ("kitchen", "market", "bakery", "table")),
    "travel": (("train", "plane", "car", "ticket", "map", "driver", "tourist"),
               (("took", "takes", "will take"), ("missed", "misses", "will miss"),
                ("found", "finds", "will find"), ("booked", "books", "will book")),
               ("fast", "late", "crowded", "cheap", "long"),
               ("station", "airport", "city", "harbor")),
    "work": (("report", "meeting", "email", "manager", "team", "project", "client"),
             (("wrote", "writes", "will write"), ("sent", "sends", "will send"),
              ("read", "reads", "will read"), ("signed", "signs", "will sign")),
             ("urgent", "short", "new", "boring", "final"),
             ("office", "desk", "lab", "factory")),
}
TOPICS = tuple(_LEXICON)
_DETS = ("the", "a", "every", "that")
_ADVERBS = ("again", "today", "quickly", "slowly", "often")
_PREPS = ("at", "near", "in")
_FUNCTION_WORDS = ("and", ".")


class TextSample(NamedTuple):
    """Sentences with the latent choices that generated them.

    Attributes:
      sentences: ``list[str]``, words separated by single spaces.
      topic: int ``[N]`` index into :data:`TOPICS`.
      tense: int ``[N]`` index into :data:`TENSES`.
      template: int ``[N]`` in 0..3 (module docstring).
    """

    sentences: list
    topic: np.ndarray
    tense: np.ndarray
    template: np.ndarray


def _noun_phrase(rng, nouns, adjectives) -> list:
    """DET ADJ{0,1,2} NOUN with 0/1/2 distinct adjectives w.p. 0.5/0.35/0.15."""
    n_adj = rng.choice(3, p=(0.5, 0.35, 0.15))
    adj = [adjectives[i] for i in rng.choice(len(adjectives), size=n_adj, replace=False)]
    return [_DETS[rng.integers(len(_DETS))]] + adj + [nouns[rng.integers(len(nouns))]]


def _verb(rng, verbs, tense: int) -> list:
    return verbs[rng.integers(len(verbs))][tense].split()


def _sentence(rng, topic: int, tense: int, template: int) -> list:
    """One sentence's tokens for the given latent choices (module docstring)."""
    nouns, verbs, adjectives, places = _LEXICON[TOPICS[topic]]
    words = _noun_phrase(rng, nouns, adjectives) + _verb(rng, verbs, tense)
    words += _noun_phrase(rng, nouns, adjectives)
    if template == 1:
        words.append(_ADVERBS[rng.integers(len(_ADVERBS))])
    elif template == 2:
        words += ["and"] + _verb(rng, verbs, tense) + _noun_phrase(rng, nouns, adjectives)
    elif template == 3:
        words += [_PREPS[rng.integers(len(_PREPS))]] + _noun_phrase(rng, places, adjectives)
    return words + ["."]


def sample_sentences(n: int, seed: int = 0) -> TextSample:
    """``n`` sentences of the grammar with their topic, tense and template.

    Deterministic in ``seed`` (NumPy's PCG64); every sentence has 6-15 tokens.
    """
    n = check_positive_int("n", n)
    rng = np.random.default_rng(seed)
    topic = rng.integers(len(TOPICS), size=n)
    tense = rng.integers(len(TENSES), size=n)
    template = rng.integers(4, size=n)
    sentences = []
    for i in range(n):
        words = _sentence(rng, topic[i], tense[i], template[i])
        while len(words) > MAX_TOKENS:
            words = _sentence(rng, topic[i], tense[i], template[i])
        sentences.append(" ".join(words))
    return TextSample(sentences, topic, tense, template)


def text_corpus(n: int, seed: int = 0) -> list:
    """``n`` sentences (``list[str]``) of the grammar of the module docstring."""
    return sample_sentences(n, seed).sentences


def grammar_words() -> tuple:
    """Every word the grammar can produce, sorted (125 words)."""
    words = set(_DETS) | set(_ADVERBS) | set(_PREPS) | set(_FUNCTION_WORDS)
    for nouns, verbs, adjectives, places in _LEXICON.values():
        words |= set(nouns) | set(adjectives) | set(places)
        words |= {w for forms in verbs for form in forms for w in form.split()}
    return tuple(sorted(words))


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Word <-> id map; ids 0-3 are ``<pad>, <bos>, <eos>, <unk>``, then the words.

    Attributes:
      itos: every id's string, specials first (``itos[i]`` is id i).
      stoi: string -> id (derived from ``itos``).

    Build it with :meth:`from_words` or :meth:`from_sentences`.
    """

    itos: tuple
    stoi: dict = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        itos = tuple(self.itos)
        if itos[:len(SPECIALS)] != SPECIALS or len(set(itos)) != len(itos):
            raise ValueError(f"itos must start with {SPECIALS} and hold no duplicates")
        object.__setattr__(self, "itos", itos)
        object.__setattr__(self, "stoi", {w: i for i, w in enumerate(itos)})

    @classmethod
    def from_words(cls, words: Sequence[str]) -> "Vocab":
        """A vocabulary of the specials followed by ``words`` (duplicates dropped, order kept)."""
        seen = [w for w in dict.fromkeys(words) if w not in SPECIALS]
        bad = [w for w in seen if not isinstance(w, str) or not w or " " in w]
        if bad:
            raise ValueError(f"words must be non-empty strings without spaces, got {bad[:3]}")
        return cls(SPECIALS + tuple(seen))

    @classmethod
    def from_sentences(cls, sentences: Sequence[str], min_count: int = 1) -> "Vocab":
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        min_count = check_positive_int("min_count", min_count)
        counts = {}
        for s in _check_sentences(sentences):
            for w in s.split():
                counts[w] = counts.get(w, 0) + 1
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls.from_words(kept)

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def size(self) -> int:
        """Number of ids (specials included): the model's ``vocab_size``."""
        return len(self.itos)

    def ids(self, words: Sequence[str]) -> list:
        """Ids of ``words``; unknown words map to ``<unk>``."""
        return [self.stoi.get(w, UNK_ID) for w in words]


def _check_sentences(sentences) -> list:
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a sequence of strings (words separated by spaces)")
    return list(sentences)


def encode(sentences: Sequence[str], vocab: Vocab, max_len: int) -> np.ndarray:
    """Token ids ``int32 [N, max_len]``: word ids, ``<eos>``, then ``<pad>``.

    Raises ValueError if a sentence has ``max_len`` words or more (its
    ``<eos>`` would not fit).
    """
    max_len = check_positive_int("max_len", max_len, minimum=2)
    sentences = _check_sentences(sentences)
    out = np.full((len(sentences), max_len), PAD_ID, np.int32)
    for i, s in enumerate(sentences):
        ids = vocab.ids(s.split()) + [EOS_ID]
        if len(ids) > max_len:
            raise ValueError(f"sentence {i} has {len(ids) - 1} words; max_len={max_len} holds at most "
                             f"{max_len - 1} words plus <eos>: raise max_len")
        out[i, :len(ids)] = ids
    return out


def decode(x, vocab: Vocab) -> list:
    """Sentences of the id array ``x`` ``[N, T]``: words up to the first ``<eos>``."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must be token ids [N, T], got shape {x.shape}")
    out = []
    for row in x.astype(np.int64):
        words = []
        for t in row:
            if t in (EOS_ID, PAD_ID):
                break
            words.append(vocab.itos[t] if 0 <= t < len(vocab.itos) else SPECIALS[UNK_ID])
        out.append(" ".join(words))
    return out


def num_tokens(x) -> np.ndarray:
    """Tokens each sentence is scored on: its words plus ``<eos>`` (the non-pad ids), ``[N]``."""
    return np.sum(np.asarray(x) != PAD_ID, axis=-1)


def split_corpus(x, fractions=(0.8, 0.1, 0.1), seed: int = 0):
    """``(train, valid, test)`` rows of ``x`` ``[N, ...]``: a seeded permutation cut by ``fractions``.

    ``fractions`` are three non-negative numbers summing to 1; the test part
    takes the rounding remainder.
    """
    f = np.asarray(fractions, np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    x = np.asarray(x)
    n = x.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    a, b = int(round(f[0] * n)), int(round((f[0] + f[1]) * n))
    return x[perm[:a]], x[perm[a:b]], x[perm[b:]]
