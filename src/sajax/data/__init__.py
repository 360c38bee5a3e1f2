"""Data: MNIST (50k/10k/10k float pickle) with dynamic/fixed binarization,
toy 2-D densities (ring of 8, 5×5 grid, Song & Ou's 32-mode four circles),
and a small text corpus generated in code by a seeded grammar
(:mod:`sajax.data.text`; ``encode``/``decode`` live there).

DESIGN.md, "Data".
"""
from sajax.data.mnist import (
    MNIST_SHA256,
    MNIST_SPLITS,
    check_probabilities,
    dynamic_binarize,
    expected_sha256,
    fixed_binarize,
    load_mnist,
    mnist_path,
)
from sajax.data import text
from sajax.data.text import TENSES, TOPICS, Vocab, grammar_words, sample_sentences, split_corpus, text_corpus
from sajax.data.toy import (
    TOY_DENSITIES,
    toy_2d,
    toy_dataset,
    toy_log_prob,
    toy_modes,
    toy_std,
)

__all__ = [
    "text",
    "TENSES",
    "TOPICS",
    "Vocab",
    "grammar_words",
    "sample_sentences",
    "split_corpus",
    "text_corpus",
    "MNIST_SHA256",
    "MNIST_SPLITS",
    "TOY_DENSITIES",
    "check_probabilities",
    "dynamic_binarize",
    "expected_sha256",
    "fixed_binarize",
    "load_mnist",
    "mnist_path",
    "toy_2d",
    "toy_dataset",
    "toy_log_prob",
    "toy_modes",
    "toy_std",
]
