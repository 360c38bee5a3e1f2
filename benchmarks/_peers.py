"""Reference training loops for the throughput benchmark (benchmarks/throughput.py).

The same model in every implementation: the IWAE paper's one-stochastic-layer
VAE (Burda, Grosse & Salakhutdinov 2015) on dynamically binarized MNIST,

    q_φ(h|x):  784 -> 200 tanh -> 200 tanh -> (μ, log σ) of N(h; μ, σ²), h ∈ R^50
    p_θ(x|h):  50 -> 200 tanh -> 200 tanh -> logits of a factorial Bernoulli over 784 pixels
    p(h) = N(0, I),

trained by Adam (lr 1e-3) on the K-sample importance-weighted bound
Î_K = log (1/K) Σ_k p(x, h_k)/q(h_k|x) with reparameterized h_k (review Eq. 19;
K = 1 is the Monte Carlo ELBO of Eq. 7 / 13).

Loops (each returns a :class:`RunResult`):

* :func:`run_torch`: an ordinary PyTorch eager loop (``torch.nn`` modules,
  ``torch.optim.Adam``, tensor indexing instead of a DataLoader, ``loss.item()``
  per step as in pytorch/examples/vae).
* :func:`run_numpyro`: NumPyro SVI, ``Trace_ELBO`` for K = 1 and
  ``RenyiELBO(alpha=0, num_particles=K)`` (the IW bound) otherwise, plain jnp
  parameters declared with ``numpyro.param``.  ``mode="step"``: a Python loop
  calling ``jax.jit(svi.update)`` once per minibatch, batches made on the host
  (what most users write); ``mode="epoch"``: the epoch as one jitted
  ``lax.fori_loop`` over ``svi.update`` with on-device batching, the pattern of
  numpyro/examples/vae.py.
* :func:`run_fused`: the floor: pure jnp networks and optax Adam, the whole
  epoch as one jitted, carry-donating ``lax.scan`` with on-device shuffling and
  binarization.
* :func:`run_sajax`: ``sajax.sa.fit`` with ``reparam_elbo`` (K = 1) or
  ``iwae`` (K > 1), optionally R replicas in one program.

Every loop starts from the same weights (:func:`canonical_init`) and returns
its final weights in the same canonical layout, so that :func:`eval_bound` can
score all of them with one function (the check that they optimize the same
objective).  torch and numpyro are imported lazily, inside their loops; sajax
never imports this file.
"""
from __future__ import annotations

import math
import time
from typing import List, NamedTuple, Optional

import numpy as np

X_DIM, HIDDEN, LATENT = 784, 200, 50
ENC_SHAPES = ((X_DIM, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2 * LATENT))   # last layer: [μ | log σ]
DEC_SHAPES = ((LATENT, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, X_DIM))
_LOG_2PI = math.log(2.0 * math.pi)


class RunResult(NamedTuple):
    """Timings and outcome of one training loop.

    Attributes:
      epoch_seconds: wall-clock seconds of every epoch, the warm-up epoch first
        (it includes tracing/compilation for the JAX loops).
      train_bound: mean training bound (Î_K per example, nats, higher is better)
        over each epoch.
      canon: final weights in the canonical layout (None for replicas).
      note: how the loop was run (mode, device).
    """

    epoch_seconds: List[float]
    train_bound: List[float]
    canon: Optional[dict]
    note: str


# --------------------------------------------------------------------------
# Canonical weights: {"enc": [(W [in, out], b [out]) x 3], "dec": [...]}, numpy float32


def canonical_init(seed: int = 0) -> dict:
    """LeCun-normal weights (std 1/√fan_in, as flax's Dense default) and zero biases."""
    rng = np.random.default_rng(seed)

    def layers(shapes):
        return [(rng.normal(0.0, 1.0 / math.sqrt(i), (i, o)).astype(np.float32), np.zeros((o,), np.float32))
                for i, o in shapes]

    return {"enc": layers(ENC_SHAPES), "dec": layers(DEC_SHAPES)}


def _dense_leaves(group) -> list:
    """(kernel, bias) pairs of a flax parameter group, in layer order.

    Flax names the iwae_one_layer layers ``MLP_0/Dense_0``, ``MLP_0/Dense_1``,
    ``head/Dense_0``; sorting the key paths gives that order, bias before kernel.
    """
    import jax

    leaves = sorted(jax.tree_util.tree_flatten_with_path(group)[0], key=lambda kv: jax.tree_util.keystr(kv[0]))
    arrays = [np.asarray(v) for _, v in leaves]
    if len(arrays) % 2:
        raise ValueError(f"expected (bias, kernel) pairs, got {len(arrays)} leaves")
    return [(arrays[i + 1], arrays[i]) for i in range(0, len(arrays), 2)]


def _check_shapes(pairs, shapes, what):
    got = [tuple(w.shape) for w, _ in pairs]
    if got != list(shapes):
        raise ValueError(f"{what}: kernel shapes {got} do not match the benchmark model {list(shapes)}")


def to_sajax(canon: dict, template: dict) -> dict:
    """Canonical weights as a sajax ``iwae_one_layer`` parameter tree shaped like ``template``."""
    import jax

    out = {}
    for group, name, shapes in (("guide", "enc", ENC_SHAPES), ("model", "dec", DEC_SHAPES)):
        leaves, treedef = jax.tree_util.tree_flatten_with_path(template[group])
        order = sorted(range(len(leaves)), key=lambda i: jax.tree_util.keystr(leaves[i][0]))
        _check_shapes(_dense_leaves(template[group]), shapes, f"sajax {group}")
        flat = [None] * len(leaves)
        for j, (w, b) in enumerate(canon[name]):
            flat[order[2 * j]], flat[order[2 * j + 1]] = b, w
        out[group] = jax.tree_util.tree_unflatten(treedef, [np.asarray(a) for a in flat])
    return out


def from_sajax(params: dict) -> dict:
    """A sajax ``iwae_one_layer`` parameter tree in the canonical layout."""
    enc, dec = _dense_leaves(params["guide"]), _dense_leaves(params["model"])
    _check_shapes(enc, ENC_SHAPES, "sajax guide")
    _check_shapes(dec, DEC_SHAPES, "sajax model")
    return {"enc": enc, "dec": dec}


# --------------------------------------------------------------------------
# Pure jnp objective (used by the fused loop and by eval_bound)


def iw_bound_jnp(params, key, x, k: int):
    """Per-example Î_K = log (1/K) Σ_k p(x, h_k)/q(h_k|x), shape [B] (Eq. 19; K=1: ELBO).

    ``params`` is the canonical layout with jnp arrays; ``x`` is binary [B, 784].
    The encoder runs once per example and its output is broadcast over K.
    """
    import jax
    import jax.numpy as jnp

    h = x
    for w, b in params["enc"][:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = params["enc"][-1]
    out = h @ w + b
    mu, log_std = out[:, :LATENT], out[:, LATENT:]
    eps = jax.random.normal(key, (k,) + mu.shape, mu.dtype)
    z = mu + jnp.exp(log_std) * eps                                            # [K, B, 50]
    log_q = jnp.sum(-0.5 * eps ** 2 - log_std, -1) - 0.5 * LATENT * _LOG_2PI
    log_prior = -0.5 * jnp.sum(z ** 2, -1) - 0.5 * LATENT * _LOG_2PI
    g = z
    for w, b in params["dec"][:-1]:
        g = jnp.tanh(g @ w + b)
    w, b = params["dec"][-1]
    logits = g @ w + b
    log_lik = jnp.sum(x * logits - jax.nn.softplus(logits), -1)
    log_w = log_lik + log_prior - log_q
    return jax.nn.logsumexp(log_w, axis=0) - math.log(k)


def eval_bound(canon: dict, x_binary: np.ndarray, k: int, seed: int = 0, batch: int = 500) -> float:
    """Mean Î_K over ``x_binary`` for canonical weights: one scorer for every implementation."""
    import jax
    import jax.numpy as jnp

    params = {g: [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers] for g, layers in canon.items()}
    fn = jax.jit(iw_bound_jnp, static_argnums=3)
    key = jax.random.key(seed)
    vals = [fn(params, jax.random.fold_in(key, i), jnp.asarray(x_binary[s:s + batch]), k)
            for i, s in enumerate(range(0, len(x_binary), batch))]
    return float(np.mean(np.concatenate([np.asarray(v) for v in vals])))


# --------------------------------------------------------------------------
# (d) hand-fused JAX


def run_fused(canon: dict, data: np.ndarray, *, k: int, steps: int, epochs: int,
              batch_size: int = 100, lr: float = 1e-3, seed: int = 0) -> RunResult:
    """The floor: one jitted ``lax.scan`` per epoch; shuffling, dynamic binarization,
    forward, backward and Adam all on the device; the carry is donated."""
    import jax
    import jax.numpy as jnp
    import optax

    opt = optax.adam(lr)
    n = data.shape[0]
    loss = lambda p, key, x: -jnp.mean(iw_bound_jnp(p, key, x, k))

    def epoch(params, opt_state, key, data):
        k_perm, k_steps = jax.random.split(key)
        perm = jax.random.permutation(k_perm, n)[: steps * batch_size].reshape(steps, batch_size)

        def body(carry, inp):
            params, opt_state = carry
            idx, kk = inp
            k_bin, k_eps = jax.random.split(kk)
            xb = data[idx]
            xb = (jax.random.uniform(k_bin, xb.shape) < xb).astype(jnp.float32)
            value, grads = jax.value_and_grad(loss)(params, k_eps, xb)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), -value

        (params, opt_state), bounds = jax.lax.scan(body, (params, opt_state),
                                                   (perm, jax.random.split(k_steps, steps)))
        return params, opt_state, jnp.mean(bounds)

    epoch = jax.jit(epoch, donate_argnums=(0, 1))
    params = {g: [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers] for g, layers in canon.items()}
    opt_state = opt.init(params)
    data = jnp.asarray(data)
    key = jax.random.key(seed)
    seconds, bounds = [], []
    for e in range(epochs):
        tic = time.perf_counter()
        params, opt_state, b = epoch(params, opt_state, jax.random.fold_in(key, e), data)
        bounds.append(float(b))   # blocks until the epoch is done
        seconds.append(time.perf_counter() - tic)
    out = {g: [(np.asarray(w), np.asarray(b)) for w, b in layers] for g, layers in params.items()}
    return RunResult(seconds, bounds, out, f"jax {jax.default_backend()}, one jitted lax.scan per epoch")


# --------------------------------------------------------------------------
# (a) sajax


def run_sajax(canon: Optional[dict], data: np.ndarray, *, k: int, epochs: int, steps: Optional[int] = None,
              batch_size: int = 100, lr: float = 1e-3, seed: int = 0,
              replicas: Optional[int] = None) -> RunResult:
    """``sajax.sa.fit`` (one chunk = one epoch) with ``reparam_elbo`` (K=1, MC KL)
    or ``iwae`` (K>1) on ``iwae_one_layer``; ``replicas=R`` trains R independently
    initialized copies in one program (``fit(..., replicas=R)``)."""
    import jax
    import optax

    from sajax import sa
    from sajax.data import dynamic_binarize
    from sajax.estimators import iwae, reparam_elbo
    from sajax.models import iwae_one_layer

    if steps is not None and steps != len(data) // batch_size:
        raise ValueError(f"fit runs len(data) // batch_size = {len(data) // batch_size} steps an epoch, "
                         f"not steps={steps}; pass data[:steps * batch_size]")
    spec = iwae_one_layer(X_DIM)
    est = (reparam_elbo(spec.model, spec.guide, num_samples=1, kl="mc") if k == 1
           else iwae(spec.model, spec.guide, num_samples=k))
    metric = "elbo" if k == 1 else "iw_bound"
    if replicas is None:
        params = to_sajax(canon, spec.init(jax.random.key(seed)))
    else:
        params = jax.vmap(spec.init)(jax.random.split(jax.random.key(seed), replicas))
    res = sa.fit(est, optax.adam(lr), params, data, key=jax.random.key(seed + 1), batch_size=batch_size,
                 epochs=epochs, preprocess=dynamic_binarize, progress=False, replicas=replicas)
    seconds = [r["seconds"] for r in res.history]
    bounds = [float(np.mean(r[metric])) for r in res.history]
    canon_out = from_sajax(jax.device_get(res.state.params)) if replicas is None else None
    note = f"sajax.sa.fit, jax {jax.default_backend()}" + (f", replicas={replicas}" if replicas else "")
    return RunResult(seconds, bounds, canon_out, note)


# --------------------------------------------------------------------------
# (b) PyTorch eager


def _torch_device(device: Optional[str]):
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _torch_model():
    import torch
    from torch import nn

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(X_DIM, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(),
                                         nn.Linear(HIDDEN, 2 * LATENT))
            self.decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, HIDDEN), nn.Tanh(),
                                         nn.Linear(HIDDEN, X_DIM))

        def forward(self, x, k: int):
            """Per-example Î_K [B]."""
            mu, log_std = self.encoder(x).chunk(2, dim=-1)
            eps = torch.randn((k,) + mu.shape, device=x.device)
            z = mu + log_std.exp() * eps
            log_q = (-0.5 * eps.pow(2) - log_std).sum(-1) - 0.5 * LATENT * _LOG_2PI
            log_prior = -0.5 * z.pow(2).sum(-1) - 0.5 * LATENT * _LOG_2PI
            logits = self.decoder(z)
            log_lik = -nn.functional.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none").sum(-1)
            log_w = log_lik + log_prior - log_q
            return torch.logsumexp(log_w, 0) - math.log(k)

    return VAE()


def run_torch(canon: dict, data: np.ndarray, *, k: int, steps: int, epochs: int, batch_size: int = 100,
              lr: float = 1e-3, seed: int = 0, device: Optional[str] = None,
              num_threads: Optional[int] = None) -> RunResult:
    """An ordinary PyTorch training loop (eager).

    ``num_threads=None`` keeps torch's default intra-op thread count (what a
    user gets); an int calls ``torch.set_num_threads`` for this run only.
    """
    import torch

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _torch_loop(canon, data, k=k, steps=steps, epochs=epochs, batch_size=batch_size, lr=lr,
                           seed=seed, device=device)
    finally:
        torch.set_num_threads(old_threads)


def _torch_loop(canon, data, *, k, steps, epochs, batch_size, lr, seed, device) -> RunResult:
    import torch

    torch.manual_seed(seed)
    dev = _torch_device(device)
    model = _torch_model()
    with torch.no_grad():
        linears = [m for m in model.encoder if isinstance(m, torch.nn.Linear)] + \
                  [m for m in model.decoder if isinstance(m, torch.nn.Linear)]
        for lin, (w, b) in zip(linears, canon["enc"] + canon["dec"]):
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x_all = torch.tensor(np.asarray(data, np.float32), device=dev)
    seconds, bounds = [], []
    for _ in range(epochs):
        tic = time.perf_counter()
        perm = torch.randperm(x_all.shape[0], device=dev)
        total = 0.0
        for i in range(steps):
            xb = torch.bernoulli(x_all[perm[i * batch_size:(i + 1) * batch_size]])
            loss = -model(xb, k).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - tic)
        bounds.append(-total / steps)
    lin_np = [(l.weight.detach().cpu().numpy().T.copy(), l.bias.detach().cpu().numpy().copy()) for l in linears]
    threads = torch.get_num_threads()
    return RunResult(seconds, bounds, {"enc": lin_np[:3], "dec": lin_np[3:]},
                     f"torch {torch.__version__} eager on {dev.type}, {threads} intra-op threads")


# --------------------------------------------------------------------------
# (c) NumPyro SVI


def _numpyro_model_guide(canon: dict):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    def mlp(prefix, layers, h, act_last=False):
        for i, (w0, b0) in enumerate(layers):
            w = numpyro.param(f"{prefix}_w{i}", jnp.asarray(w0))
            b = numpyro.param(f"{prefix}_b{i}", jnp.asarray(b0))
            h = h @ w + b
            if i < len(layers) - 1:
                h = jnp.tanh(h)
        return h

    def model(x):
        with numpyro.plate("batch", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
            logits = mlp("dec", canon["dec"], z)
            numpyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(x):
        out = mlp("enc", canon["enc"], x)
        mu, log_std = out[..., :LATENT], out[..., LATENT:]
        with numpyro.plate("batch", x.shape[0]):
            numpyro.sample("z", dist.Normal(mu, jnp.exp(log_std)).to_event(1))

    return model, guide


def run_numpyro(canon: dict, data: np.ndarray, *, k: int, steps: int, epochs: int, batch_size: int = 100,
                lr: float = 1e-3, seed: int = 0, mode: str = "step") -> RunResult:
    """NumPyro SVI: Trace_ELBO (K=1) or RenyiELBO(alpha=0, num_particles=K).

    ``mode="step"``: ``jax.jit(svi.update)`` called from a Python loop once per
    minibatch; minibatches shuffled and binarized with numpy on the host.
    ``mode="epoch"``: one jitted ``lax.fori_loop`` per epoch over
    ``svi.update`` with on-device batching (numpyro/examples/vae.py).
    The SVI loss is the negative bound summed over the batch; Adam is
    invariant to that constant scale (up to its ε).
    """
    import jax
    import jax.numpy as jnp
    import numpyro
    from numpyro.infer import SVI, RenyiELBO, Trace_ELBO

    if mode not in ("step", "epoch"):
        raise ValueError(f"mode must be 'step' or 'epoch', got {mode!r}")
    model, guide = _numpyro_model_guide(canon)
    loss = Trace_ELBO() if k == 1 else RenyiELBO(alpha=0.0, num_particles=k)
    svi = SVI(model, guide, numpyro.optim.Adam(step_size=lr), loss)
    rng = np.random.default_rng(seed)
    data_np = np.asarray(data, np.float32)
    n = data_np.shape[0]
    svi_state = svi.init(jax.random.key(seed), (data_np[:batch_size] > 0.5).astype(np.float32))
    seconds, bounds = [], []

    if mode == "step":
        update = jax.jit(svi.update)
        for _ in range(epochs):
            tic = time.perf_counter()
            perm = rng.permutation(n)
            losses = []
            for i in range(steps):
                xb = data_np[perm[i * batch_size:(i + 1) * batch_size]]
                xb = (rng.random(xb.shape, dtype=np.float32) < xb).astype(np.float32)
                svi_state, l = update(svi_state, xb)
                losses.append(l)
            total = float(jnp.sum(jnp.stack(losses)))   # blocks until the last step is done
            seconds.append(time.perf_counter() - tic)
            bounds.append(-total / (steps * batch_size))
    else:
        data_dev = jnp.asarray(data_np)

        @jax.jit
        def epoch_train(svi_state, key):
            k_perm, k_bin = jax.random.split(key)
            perm = jax.random.permutation(k_perm, n)

            def body_fn(i, val):
                loss_sum, svi_state = val
                idx = jax.lax.dynamic_slice(perm, (i * batch_size,), (batch_size,))
                xb = data_dev[idx]
                xb = (jax.random.uniform(jax.random.fold_in(k_bin, i), xb.shape) < xb).astype(jnp.float32)
                svi_state, l = svi.update(svi_state, xb)
                return loss_sum + l, svi_state

            return jax.lax.fori_loop(0, steps, body_fn, (0.0, svi_state))

        key = jax.random.key(seed + 1)
        for e in range(epochs):
            tic = time.perf_counter()
            total, svi_state = epoch_train(svi_state, jax.random.fold_in(key, e))
            total = float(total)
            seconds.append(time.perf_counter() - tic)
            bounds.append(-total / (steps * batch_size))
    p = svi.get_params(svi_state)
    out = {g: [(np.asarray(p[f"{g}_w{i}"]), np.asarray(p[f"{g}_b{i}"])) for i in range(3)] for g in ("enc", "dec")}
    name = "Trace_ELBO" if k == 1 else f"RenyiELBO(alpha=0, num_particles={k})"
    how = "jit(svi.update) per step from Python" if mode == "step" else "epoch as one jitted fori_loop over svi.update"
    return RunResult(seconds, bounds, out, f"numpyro {numpyro.__version__} SVI {name}, {how}, jax {jax.default_backend()}")


def _torch_1t(canon, data, **kw):
    return run_torch(canon, data, num_threads=1, **kw)


def _numpyro_epoch(canon, data, **kw):
    return run_numpyro(canon, data, mode="epoch", **kw)


# name -> runner; every runner takes (canon, data, *, k, steps, epochs, ...)
RUNNERS: dict = {
    "sajax": run_sajax,
    "fused": run_fused,
    "torch": run_torch,
    "torch_1t": _torch_1t,
    "numpyro": run_numpyro,
    "numpyro_epoch": _numpyro_epoch,
}
RUNNERS_DOC = {
    "sajax": "sajax.sa.fit (one jitted lax.scan per epoch)",
    "fused": "hand-fused JAX: pure jnp + optax, one jitted lax.scan per epoch (the floor)",
    "torch": "PyTorch eager loop, default intra-op threads",
    "torch_1t": "PyTorch eager loop, torch.set_num_threads(1)",
    "numpyro": "NumPyro SVI, jit(svi.update) called per step from Python",
    "numpyro_epoch": "NumPyro SVI, epoch as one jitted fori_loop over svi.update (numpyro/examples/vae.py)",
}
