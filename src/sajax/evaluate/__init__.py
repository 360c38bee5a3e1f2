"""Evaluation: importance-weighted log-likelihood (review Eq. 17 / 19), sample
pictures and training curves; PacGAN's mode metrics and Song & Ou's coverage
(:mod:`~sajax.evaluate.modes`), a classifier-feature Fréchet distance for MNIST
(:mod:`~sajax.evaluate.frechet`, not the Inception FID), annealed importance
sampling for log Z (:mod:`~sajax.evaluate.ais`), the amortization-gap split
(:mod:`~sajax.evaluate.amortization`) and the text-VAE collapse metrics
(:mod:`~sajax.evaluate.collapse`), and a TRF's log Z_l by importance sampling
(:mod:`~sajax.evaluate.trf`).

What applies depends on what the model offers (DESIGN.md, "Several players"):
IW-NLL needs a prescribed model with a guide (:func:`supports_iw_nll`),
pictures need a sampler (:func:`can_sample`).
"""
from sajax.evaluate import ais, amortization, collapse, frechet, modes, trf
from sajax.evaluate.amortization import AmortizationGap, amortization_gap
from sajax.evaluate.collapse import (
    ActiveUnits,
    TokenNLL,
    active_units,
    collapse_metrics,
    mean_kl,
    posterior_means,
    reconstruction,
    token_nll,
    token_perplexity,
)
from sajax.evaluate.ais import AISResult, ais_log_likelihood, annealed_importance_sampling, rbm_ais
from sajax.evaluate.curves import plot_curves, read_metrics
from sajax.evaluate.frechet import (
    MnistClassifier,
    class_accuracy,
    classifier_features,
    feature_frechet_distance,
    frechet_distance,
    load_or_train_mnist_classifier,
    train_classifier,
)
from sajax.evaluate.modes import (
    ModeCoverage,
    covered_modes,
    mean_stderr,
    mode_coverage,
    plot_density_2d,
    plot_samples_2d,
    plot_samples_grid,
    realistic_ratio,
)
from sajax.evaluate.nll import LIVE_ACTIVATIONS, iw_log_likelihood, iw_nll, k_chunk_for_budget, supports_iw_nll
from sajax.evaluate.trf import LogNormalizers, trf_log_normalizers, trf_log_prob, trf_resample
from sajax.evaluate.pictures import can_sample, frame_for, image_grid, outside_count, sample_grid, save_image_grid

__all__ = [
    "amortization",
    "collapse",
    "AmortizationGap",
    "amortization_gap",
    "ActiveUnits",
    "TokenNLL",
    "active_units",
    "collapse_metrics",
    "mean_kl",
    "posterior_means",
    "reconstruction",
    "token_nll",
    "token_perplexity",
    "trf",
    "LogNormalizers",
    "trf_log_normalizers",
    "trf_log_prob",
    "trf_resample",
    "ais",
    "frechet",
    "modes",
    "AISResult",
    "ais_log_likelihood",
    "annealed_importance_sampling",
    "rbm_ais",
    "MnistClassifier",
    "class_accuracy",
    "classifier_features",
    "feature_frechet_distance",
    "frechet_distance",
    "load_or_train_mnist_classifier",
    "train_classifier",
    "ModeCoverage",
    "covered_modes",
    "mean_stderr",
    "mode_coverage",
    "plot_density_2d",
    "plot_samples_2d",
    "plot_samples_grid",
    "realistic_ratio",
    "LIVE_ACTIVATIONS",
    "can_sample",
    "frame_for",
    "image_grid",
    "iw_log_likelihood",
    "iw_nll",
    "k_chunk_for_budget",
    "outside_count",
    "plot_curves",
    "read_metrics",
    "sample_grid",
    "save_image_grid",
    "supports_iw_nll",
]
