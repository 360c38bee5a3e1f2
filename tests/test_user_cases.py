"""What a user writes to bring their own models (issue 17's three notebook cases, which
took 85 lines, 16 of them hand-written protocol adapters, before the public adapters):
a Flax VAE trained by IWAE and DReG, a Flax potential trained by PCD with Langevin
chains, and an estimator stepped by hand in a jitted optax loop.  Each case is the code
between its ``# --- case`` markers; ``test_the_cases_stay_short`` counts those lines."""
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import sajax
from sajax.estimators import dreg, iwae, pcd
from sajax.models import energy_from_module, model_from_modules

X = (np.random.default_rng(0).uniform(size=(64, 8)) < 0.3).astype(np.float32)


def test_own_flax_vae_by_iwae_and_dreg_in_a_hand_stepped_optax_loop():
    # --- case: a Flax VAE, IWAE and DReG, a hand-stepped optax loop
    class Encoder(nn.Module):
        @nn.compact
        def __call__(self, x):
            out = nn.Dense(2 * 2)(jnp.tanh(nn.Dense(16)(x)))
            return out[..., :2], out[..., 2:]

    class Decoder(nn.Module):
        @nn.compact
        def __call__(self, h):
            return nn.Dense(8)(jnp.tanh(nn.Dense(16)(h)))

    spec = model_from_modules(Decoder(), x_dim=8, latent_dim=2, encoder=Encoder())
    bounds = {}
    for make in (iwae, dreg):
        est, opt = make(spec.model, spec.guide, num_samples=5), optax.adam(1e-2)
        params = spec.init(jax.random.PRNGKey(0))
        opt_state, batch = opt.init(params), sajax.Batch(jnp.asarray(X), jnp.arange(len(X)))

        @jax.jit
        def step(params, opt_state, key):
            out = est.estimate(params, (), key, batch)
            updates, opt_state = opt.update(out.grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, out.metrics[sajax.OBJECTIVE]

        start = float(step(params, opt_state, jax.random.PRNGKey(1))[2])   # the I_5 bound at init
        for key in jax.random.split(jax.random.PRNGKey(2), 150):
            params, opt_state, _ = step(params, opt_state, key)
        bounds[make.__name__] = (start, float(sajax.iw_log_likelihood(
            spec.model, spec.guide, params, jax.random.PRNGKey(3), X, num_samples=100).mean()))
    # --- end
    for name, (start, end) in bounds.items():   # the I_5 bound at init vs the I_100 estimate after training
        assert end > start + 0.5, (name, start, end)


def test_own_flax_potential_by_pcd_with_langevin_chains():
    # --- case: a Flax potential, PCD with persistent Langevin chains, through fit
    class Potential(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))

    spec = energy_from_module(Potential(), x_dim=2)
    data = np.random.default_rng(1).normal(size=(256, 2)).astype(np.float32) * 0.5 + 1.0
    est = pcd(spec, kernel="langevin", num_chains=32, num_moves=5, step_size=0.01, noise_scale=0.1)
    res = sajax.fit(est, optax.adam(1e-2), spec.init(jax.random.PRNGKey(0)), data, key=jax.random.PRNGKey(1),
                    batch_size=32, epochs=4, progress=False)
    # --- end
    assert res.state.step == 32 and np.isfinite(res.history[-1][sajax.OBJECTIVE])
    chains = res.state.est_state
    assert jax.tree_util.tree_leaves(chains)[0].shape[0] == 32


def test_the_cases_stay_short():
    """The three cases in fewer lines than the 85 they took before, none of them adapters."""
    counts = []
    for fn in (test_own_flax_vae_by_iwae_and_dreg_in_a_hand_stepped_optax_loop,
               test_own_flax_potential_by_pcd_with_langevin_chains):
        src = inspect.getsource(fn)
        body = src[src.index("# --- case"):src.index("# --- end")].splitlines()[1:]
        counts.append(sum(1 for line in body if line.strip()))
    assert sum(counts) < 85 // 2, counts
