"""Markov transition kernels in BlackJAX's shape (DESIGN.md, "The contracts").

``init(...) -> State``, ``build_kernel(...) -> step``,
``step(key, state) -> (State, Info)``; k moves are a ``lax.scan``
(:func:`multiple_moves`, Algorithm 2).

* :mod:`~sajax.kernels.mis`: Metropolis independence sampler (JSA, Sec. 3.2.3);
* :mod:`~sajax.kernels.langevin`: unadjusted Langevin / SGLD with separate step
  size and noise scale (Sec. 4.2.3's revision);
* :mod:`~sajax.kernels.mala`: Metropolis-adjusted Langevin;
* :mod:`~sajax.kernels.sghmc`: stochastic-gradient HMC (Chen et al. 2014);
* :mod:`~sajax.kernels.gibbs`: block Gibbs for RBMs.
"""
from sajax.kernels import gibbs, langevin, mala, mis, sghmc
from sajax.kernels._moves import multiple_moves
from sajax.kernels.gibbs import GibbsInfo, GibbsState
from sajax.kernels.langevin import LangevinInfo, LangevinState
from sajax.kernels.mala import MALAInfo, MALAState
from sajax.kernels.mis import MISInfo, MISState
from sajax.kernels.sghmc import SGHMCInfo, SGHMCState

__all__ = ["mis", "langevin", "mala", "sghmc", "gibbs", "multiple_moves", "MISState", "MISInfo",
           "LangevinState", "LangevinInfo", "MALAState", "MALAInfo", "SGHMCState", "SGHMCInfo",
           "GibbsState", "GibbsInfo"]
