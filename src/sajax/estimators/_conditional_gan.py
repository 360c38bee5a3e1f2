"""Conditional adversarial learning: cGAN (concatenation or projection critic) and AC-GAN
(review Sec. 3.2.4, item 7 "Conditional generation").

A conditional generator x = G_θ(c, ε) (:class:`sajax.core.ImplicitGenerator`
with ``num_classes`` K, ``sample(θ, key, n, condition)``) plays against a
critic.  The training labels ``labels`` int ``[N]`` are a closure constant
looked up by ``batch.index`` (the rows of the training set, DESIGN.md), so the
data stay ``[N, D...]`` as every estimator takes them.  Fake labels are drawn
c ~ p0(c) as the review writes it, i.e. uniformly among the training labels
(``fake_labels="data"``, the empirical label marginal), or uniformly over the
K classes (``fake_labels="uniform"``).

* :func:`cgan` (Mirza & Osindero 2014): F_cGAN = E_{p0(c,x)} log D_ψ(c, x) +
  E_{p0(c)p(ε)} log(1 - D_ψ(c, G_θ(c, ε))), the GAN objective of Eq. 28 per
  class (it minimizes E_{p0(c)} D_GAN[p0(x|c) || pθ(x|c)]), or the hinge loss.
  Any conditional critic works: concatenation or the projection
  discriminator of Miyato & Koyama (2018); the estimator only passes labels.
* :func:`acgan` (Odena et al. 2017): the critic takes x alone and outputs
  ``[B, K+1]``: column 0 the source logit (D(K+1, x) of the review is
  σ(column 0)), columns 1..K the class logits.  With
  F_S = E_real log D_S + E_fake log(1 - D_S) and
  F_C = E_real log D(c|x) + E_fake log D(c|G(c, ε)), the critic maximizes
  F_S + w·F_C and the generator maximizes -F_S + w·F_C (the review's form; w
  = ``class_weight``, 1 in the paper).

The losses are those of :mod:`sajax.estimators._adversarial` (one formula,
one implementation): F_S and F_cGAN are its ``vdm_objective`` with the "gan"
f-function, the hinge loss its ``hinge_losses``; the SA iteration (both
players' grads from one draw, the critic's mutable state threaded, players
alternated by ``sajax.sa.per_group(..., schedule=sajax.sa.alternate(...))``)
is its ``adversarial_estimator``.  Metrics as there (``objective``,
``critic_loss``, ``generator_loss``, ``d_real``, ``d_fake``), plus
``source_value`` (F_S) and ``class_log_lik`` (F_C) for AC-GAN.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from sajax.core import Batch, Critic, ImplicitGenerator
  >>> gen = ImplicitGenerator(lambda th, key, n, c: th + c[:, None] + jax.random.normal(key, (n, 1)),
  ...                         num_classes=3)
  >>> crit = Critic(lambda ps, st, x, c: (ps * x[:, 0] * (c - 1.0), st), lambda key: (), num_classes=3)
  >>> est = cgan(gen, crit, jnp.array([0, 1, 2, 1]))
  >>> params = {"generator": jnp.zeros(()), "critic": jnp.ones(())}
  >>> out = jax.jit(est.estimate)(params, (), jax.random.PRNGKey(0), Batch(jnp.ones((2, 1)), jnp.array([0, 2])))
  >>> sorted(out.metrics)
  ['critic_loss', 'd_fake', 'd_real', 'gan_value', 'generator_loss', 'objective']
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sajax.core import Critic, Estimator, ImplicitGenerator
from sajax.estimators._adversarial import (
    Draw,
    Losses,
    adversarial_estimator,
    check_activation,
    check_generator_loss,
    check_players,
    hinge_losses,
    vdm_generator_loss,
    vdm_losses,
    vdm_objective,
)

__all__ = ["cgan", "acgan"]

_FAKE_LABELS = ("data", "uniform")
_GAN = check_activation("gan", "principled")     # D = σ(V): T = log σ(V) (Sec. 3.2.4)


def check_labels(labels, num_classes: int, who: str) -> jax.Array:
    """Training labels as int32 ``[N]`` in [0, K), else ValueError/TypeError (build time)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{who}: labels must be the training labels, int shape [N]; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{who}: labels must be integers in [0, {num_classes}), got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{who}: labels must lie in [0, {num_classes}) (num_classes={num_classes}); "
                         f"found values in [{arr.min()}, {arr.max()}]")
    return jnp.asarray(arr, jnp.int32)


def check_conditional_players(generator, critic, who: str, *, critic_conditional: bool) -> int:
    """K = generator.num_classes; the critic's num_classes must be K (cGAN) or
    None/K (AC-GAN, whose critic classifies instead of taking c)."""
    check_players(generator, critic, who)
    k = getattr(generator, "num_classes", None)
    if k is None:
        raise ValueError(f"{who} needs a conditional generator (ImplicitGenerator with num_classes=K)")
    kc = getattr(critic, "num_classes", None)
    if (critic_conditional and kc != k) or (not critic_conditional and kc not in (None, k)):
        raise ValueError(f"{who}: critic.num_classes={kc} does not match generator.num_classes={k}"
                         + ("" if critic_conditional else " (an AC-GAN critic takes no condition: None)"))
    return int(k)


def label_draw(labels, num_classes: int, fake_labels: str, who: str):
    """``draw(key, batch) -> Draw``: real labels ``labels[batch.index]``; fake
    labels from the training labels (c ~ p0(c)) or uniform over K."""
    if fake_labels not in _FAKE_LABELS:
        raise ValueError(f"{who}: fake_labels must be one of {list(_FAKE_LABELS)}, got {fake_labels!r}")

    def draw(key, batch):
        if not hasattr(batch, "index"):
            raise TypeError(f"{who} looks labels up by batch.index: pass a sajax.core.Batch(x, index)")
        k_c, k_g = jax.random.split(key)
        n = batch.x.shape[0]
        if fake_labels == "data":
            c_fake = labels[jax.random.randint(k_c, (n,), 0, labels.shape[0])]
        else:
            c_fake = jax.random.randint(k_c, (n,), 0, num_classes)
        return Draw(batch.x, labels[batch.index], c_fake, k_g)

    return draw


def with_label_check(est: Estimator, labels, who: str) -> Estimator:
    """``init`` also checks that ``labels`` has one entry per training example."""

    def init(key, params, data):
        n = np.shape(data)[0] if data is not None else labels.shape[0]
        if n != labels.shape[0]:
            raise ValueError(f"{who}: labels has shape {tuple(labels.shape)} but the training set has "
                             f"N={n} rows; labels must be [N]")
        return est.init(key, params, data)

    return Estimator(init, est.estimate)


_CGAN_LOSSES = ("non-saturating", "minimax", "hinge")


def cgan(generator: ImplicitGenerator, critic: Critic, labels, *, loss: str = "non-saturating",
         fake_labels: str = "data") -> Estimator:
    """Conditional GAN (review Sec. 3.2.4 item 7, F_cGAN; Mirza & Osindero 2014).

    The critic V_ψ(x, c) (concatenation or projection, ``num_classes`` K) scores
    (x, labels[index]) for real rows and (G_θ(c, ε), c) for fakes.  ``loss``:
    ``"non-saturating"`` / ``"minimax"`` (Eq. 28 per class, the generator's
    two losses as :func:`~sajax.estimators.gan`) or ``"hinge"``.

    Args:
      generator: conditional :class:`ImplicitGenerator` (``num_classes`` K).
      critic: conditional :class:`Critic` (``num_classes`` K) returning ``[B]``.
      labels: int ``[N]``, the label of each training row (``batch.index``).
      fake_labels: ``"data"`` (c ~ p0(c), the review) or ``"uniform"``.

    Returns: Estimator over ``{GENERATOR: θ, CRITIC: ψ}``; batches must be
    :class:`~sajax.core.Batch` (the index is needed); metrics ``objective`` (F_cGAN,
    also ``gan_value``; for hinge 2 - critic loss), losses, ``d_real``, ``d_fake``.
    """
    who = "cgan"
    k = check_conditional_players(generator, critic, who, critic_conditional=True)
    labels = check_labels(labels, k, who)
    if loss not in _CGAN_LOSSES:
        raise ValueError(f"{who}: loss must be one of {list(_CGAN_LOSSES)}, got {loss!r}")
    draw = label_draw(labels, k, fake_labels, who)

    def loss_fn(v_real, v_fake, d):
        means = {"d_real": jnp.mean(v_real), "d_fake": jnp.mean(v_fake)}
        if loss == "hinge":
            return hinge_losses(v_real, v_fake), means
        losses = vdm_losses("gan", _GAN, loss, v_real, v_fake)
        return losses, {"gan_value": losses.objective, **means}

    return with_label_check(adversarial_estimator(who, generator, critic, loss_fn, draw=draw), labels, who)


def class_log_likelihood(class_logits, labels):
    """mean_i log softmax(class_logits_i)[labels_i]: ``[B, K]``, int ``[B]`` -> scalar."""
    log_p = jax.nn.log_softmax(class_logits, axis=-1)
    return jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))


def acgan_losses(v_real, v_fake, c_real, c_fake, class_weight: float, source_loss: str):
    """AC-GAN (Odena et al. 2017, the review's F_S and F_C): critic descends
    -(F_S + w F_C), generator descends F_S's θ-part - w F_C (``"minimax"``) or
    -E_fake log D_S - w F_C (``"non-saturating"``).  v: ``[B, K+1]``."""
    f_s = vdm_objective("gan", _GAN, v_real[:, 0], v_fake[:, 0])
    f_c = class_log_likelihood(v_real[:, 1:], c_real) + class_log_likelihood(v_fake[:, 1:], c_fake)
    generator = vdm_generator_loss("gan", _GAN, v_fake[:, 0], source_loss) - class_weight * f_c
    value = f_s + class_weight * f_c
    return Losses(-value, generator, value), {"source_value": f_s, "class_log_lik": f_c}


def acgan(generator: ImplicitGenerator, critic: Critic, labels, *, class_weight: float = 1.0,
          source_loss: str = "non-saturating", fake_labels: str = "data") -> Estimator:
    """AC-GAN (review Sec. 3.2.4 item 7; Odena et al. 2017).

    The critic sees x only and returns ``[B, K+1]`` (column 0: source logit;
    1..K: class logits; checked at trace time).  It maximizes F_S + w·F_C; the
    generator uses the logD trick for its F_S part (``source_loss="non-saturating"``,
    the default of every adversarial estimator) or maximizes -F_S + w·F_C
    (``"minimax"``, the review's form).

    Args:
      generator: conditional :class:`ImplicitGenerator` (``num_classes`` K).
      critic: :class:`Critic` with ``num_classes`` None (takes no condition) or K
        (then it is also passed the labels).
      labels: int ``[N]`` training labels, looked up by ``batch.index``.
      class_weight: w >= 0 on F_C.
      source_loss: ``"non-saturating"`` (default) or ``"minimax"``.

    Returns: Estimator over ``{GENERATOR: θ, CRITIC: ψ}``; metrics
    ``objective`` = F_S + w F_C, ``source_value`` (F_S), ``class_log_lik``
    (F_C), the losses, ``d_real``/``d_fake`` (mean source logits).
    """
    who = "acgan"
    k = check_conditional_players(generator, critic, who, critic_conditional=False)
    labels = check_labels(labels, k, who)
    w = float(class_weight)
    if not np.isfinite(w) or w < 0:
        raise ValueError(f"{who}: class_weight must be finite and >= 0, got {class_weight!r}")
    kind = check_generator_loss(source_loss, who)
    draw = label_draw(labels, k, fake_labels, who)

    def loss_fn(v_real, v_fake, d):
        losses, metrics = acgan_losses(v_real, v_fake, d.c_real, d.c_fake, w, kind)
        return losses, {**metrics, "d_real": jnp.mean(v_real[:, 0]), "d_fake": jnp.mean(v_fake[:, 0])}

    def scores(v, n):
        if v.shape != (n, k + 1):
            raise ValueError(f"{who}: the AC-GAN critic must output [B, K+1] = [{n}, {k + 1}] (column 0 the "
                             f"source logit, 1..K the class logits); got {v.shape}")
        return v

    est = adversarial_estimator(who, generator, critic, loss_fn, draw=draw, scores=scores,
                                condition_critic=critic.num_classes is not None)
    return with_label_check(est, labels, who)
