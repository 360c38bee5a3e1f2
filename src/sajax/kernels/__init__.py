"""Markov transition kernels in BlackJAX's shape (DESIGN.md, "Kernels").

``init(...) -> State``, ``build_kernel(...) -> step``,
``step(key, state) -> (State, Info)``; k moves are a ``lax.scan``.
"""
from sajax.kernels import mis
from sajax.kernels.mis import MISInfo, MISState

__all__ = ["mis", "MISState", "MISInfo"]
