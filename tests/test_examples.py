"""The runnable examples in the public docstrings (``>>>``) run and give what they show."""
import doctest
import importlib

import pytest

MODULES = [
    "sajax.core",
    "sajax.sa",
    "sajax.sa._optimizers",
    "sajax.kernels._moves",
    "sajax.models._vae",
    "sajax.models._sbn",
    "sajax.estimators._variational",
    "sajax.estimators._score_function",
    "sajax.estimators._layerwise",
    "sajax.estimators._wake_sleep",
    "sajax.estimators._jsa",
    "sajax.estimators._jsa_cache",
    "sajax.estimators._adversarial",
    "sajax.estimators._conditional_gan",
    "sajax.estimators._avb",
    "sajax.estimators._ali",
    "sajax.estimators._random_field",
    "sajax.estimators._nrf",
    "sajax.estimators._nce",
    "sajax.models._gan",
    "sajax.models._spectral",
    "sajax.models._implicit",
    "sajax.models._rbm",
    "sajax.models._energy",
    "sajax.models._trf",
    "sajax.evaluate.trf",
    "sajax.models._auxiliary",
    "sajax.kernels.langevin",
    "sajax.kernels.mala",
    "sajax.kernels.sghmc",
    "sajax.kernels.gibbs",
    "sajax.evaluate.modes",
    "sajax.evaluate.frechet",
    "sajax.evaluate.ais",
    "sajax.models._made",
    "sajax.models._autoregressive",
    "sajax.models._flows",
    "sajax.models._sequence",
    "sajax.estimators._likelihood",
    "sajax.estimators._refined_q",
    "sajax.evaluate.amortization",
    "sajax.evaluate.collapse",
    "sajax.data.text",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module, name) if t.examples]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
