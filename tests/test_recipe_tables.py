"""The recipe tables are data: every name an entry uses resolves, every model and
every estimator builds through its entry alone, and a factory receives exactly
the settings its entry maps (``sajax.recipes.Entry``, ``sajax._recipe_build``)."""
import numpy as np
import pytest

from sajax import _recipe_build, estimators, models, recipes
from sajax.core import Estimator

rng = np.random.default_rng(0)
FAKE = {"train": rng.uniform(size=(60, 784)).astype(np.float32) ** 3,
        "valid": rng.uniform(size=(20, 784)).astype(np.float32) ** 3,
        "test": rng.uniform(size=(20, 784)).astype(np.float32) ** 3}
SMALL = {"num_train": 200, "num_sentences": 200, "hidden": 8, "num_masks": 2, "channels": 4, "layers": "8",
         "num_chains": 4, "batch_size": 10, "embed": 4, "noise_epochs": 0.0}


def _config(model: str, estimator: str) -> dict:
    sets = {"model": model, "estimator": estimator, "binarization": "fixed", "k": 2,
            **{k: v for k, v in SMALL.items() if k in recipes.relevant_keys(model, estimator)}}
    return recipes.config_for("vae-mnist", sets, strict=False)


def _pairs():
    """One compatible model for every estimator, and every model with its first estimator."""
    pairs = {}
    for est in recipes.ESTIMATORS:
        model = next(m for m in recipes.MODELS if est in recipes.estimators_for(m))
        pairs[(model, est)] = None
    for model in recipes.MODELS:
        pairs[(model, recipes.estimators_for(model)[0])] = None
    return list(pairs)


def _labelled(split, with_labels=False):
    return (FAKE[split], np.zeros(len(FAKE[split]), np.int32)) if with_labels else FAKE[split]


@pytest.mark.parametrize("model,estimator", _pairs(), ids=lambda v: v)
def test_every_entry_builds_from_the_tables(model, estimator, monkeypatch):
    import sajax.data as D

    monkeypatch.setattr(D, "load_mnist", _labelled)
    pieces = _recipe_build.build(_config(model, estimator), load_data=lambda split: FAKE[split])
    assert isinstance(pieces.estimator, Estimator)
    assert set(pieces.params) >= set(recipes.ESTIMATORS[estimator].groups)
    assert pieces.family == recipes.MODELS[model].family


def test_a_factory_gets_exactly_the_settings_its_entry_maps(monkeypatch):
    """``gumbel``'s entry: num_samples ← k, temperature ← temperature, hard=True; nothing else."""
    seen = {}

    def spy(model, layers, **kwargs):
        seen.update(kwargs)
        return Estimator(None, None)

    monkeypatch.setattr(estimators, "gumbel_softmax", spy)
    cfg = recipes.config_for("sbn-vimco", {"estimator": "gumbel", "k": 3, "temperature": 0.7})
    ctx = _recipe_build.Context(cfg, _recipe_build.Data(FAKE["train"], FAKE["test"]))
    _recipe_build.build_model(ctx)
    _recipe_build.build_estimator(ctx)
    assert seen == {"num_samples": 3, "temperature": 0.7, "hard": True}


def test_every_name_in_the_tables_resolves():
    """Each name an entry maps is a setting, a derived value or a part a family builder sets."""
    parts = {"model", "guide", "layers", "spec", "critic", "generator", "labels", "decoder_sampler",
             "encoder_sampler", "latent_dim", "chain_kernel", "chain_options", "random_mask_log_prob", "aux_key",
             "params"}
    known = set(recipes.SETTINGS) | set(_recipe_build.DERIVED) | parts | \
        {name for names in _recipe_build.FAMILY_DERIVED.values() for name in names}
    for table in (recipes.ESTIMATORS, recipes.MODELS):
        for name, e in table.items():
            used = set(e.inputs) | set(e.args.values()) | set(e.options) | set(e.groups.values()) | \
                set(e.transforms.values()) | ({e.draws} if e.draws else set())
            assert used <= known, f"{name}: {sorted(used - known)}"
            if e.factory:
                module = estimators if table is recipes.ESTIMATORS else models
                assert callable(getattr(module, e.factory)), name
    for names in [_recipe_build.DERIVED, *_recipe_build.FAMILY_DERIVED.values()]:
        assert not set(names) & set(recipes.SETTINGS), "a derived value hides a setting"
    assert set(_recipe_build.FAMILY_DERIVED) <= set(recipes.FAMILIES)


def test_an_unknown_name_is_a_clear_error():
    cfg = recipes.config_for("vae-mnist")
    ctx = _recipe_build.Context(cfg, _recipe_build.Data(FAKE["train"], FAKE["test"]))
    with pytest.raises(KeyError, match="'no_such_thing' is neither a part of iwae1"):
        ctx["no_such_thing"]
