"""Markov transition kernels (DESIGN.md, "The contracts", Kernels).

Every kernel module has the same three functions, and states and infos are
NamedTuples:

* ``init(position, log_target) -> State``: start C independent chains, batched
  in the state (leaves ``[C, ...]``, ``log_target`` returns ``[C]``), and
  evaluate what the state carries (``log_density``, ``grad``);
* ``build_kernel(log_target, ...settings) -> step``: bind the target and the
  settings (step size, noise scale, friction), checked once, by name;
* ``step(key, state) -> (State, Info)``: one move, pure and jit-able.

The MIS and Gibbs kernels name their target by what defines it:
``mis.init(position, log_weight)``, ``mis.build_kernel(log_target,
proposal_sample_and_log_prob)``; ``gibbs.init(key, visible, sample_hidden)``,
``gibbs.build_kernel(sample_hidden, sample_visible)``.  k moves are one
``lax.scan``, :func:`repeat_moves` (the inner loop of Algorithm 2).

Unlike BlackJAX, whose kernels take ``logdensity_fn`` and ``step_size`` on
every call, the target and the settings are bound when the step is built.  In
SA learning the target moves with θ every iteration, so an estimator rebuilds
the step from θ inside ``estimate`` (a cheap closure); every step then has the
one signature ``(key, state)`` that :func:`repeat_moves` scans, whatever the
kernel.  The state fields are ``position, log_density, grad`` (BlackJAX:
``position, logdensity, logdensity_grad``), and they belong to the target they
were computed under: after the target changes, ``init(state.position,
log_target)`` recomputes them.

* :mod:`~sajax.kernels.mis`: Metropolis independence sampler (JSA, Sec. 3.2.3);
* :mod:`~sajax.kernels.langevin`: unadjusted Langevin / SGLD with separate step
  size and noise scale (Sec. 4.2.3's revision);
* :mod:`~sajax.kernels.mala`: Metropolis-adjusted Langevin (state
  :class:`LangevinState`);
* :mod:`~sajax.kernels.sghmc`: stochastic-gradient HMC (Chen et al. 2014);
* :mod:`~sajax.kernels.gibbs`: block Gibbs for two-layer fields such as RBMs,
  given the pair of exact conditional samplers.

The package is a leaf: it imports only JAX, :mod:`sajax.core` and the private
leaf modules ``sajax._numeric`` and ``sajax._densities``, never models,
estimators or the driver (``tests/test_style.py`` holds it to that).
"""
from sajax.kernels import gibbs, langevin, mala, mis, sghmc
from sajax.kernels._moves import repeat_moves
from sajax.kernels.gibbs import GibbsInfo, GibbsState
from sajax.kernels.langevin import LangevinInfo, LangevinState
from sajax.kernels.mala import MALAInfo
from sajax.kernels.mis import MISInfo, MISState
from sajax.kernels.sghmc import SGHMCInfo, SGHMCState

__all__ = ["mis", "langevin", "mala", "sghmc", "gibbs", "repeat_moves", "MISState", "MISInfo",
           "LangevinState", "LangevinInfo", "MALAInfo", "SGHMCState", "SGHMCInfo",
           "GibbsState", "GibbsInfo"]
