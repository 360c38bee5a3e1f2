"""Markov transition kernels in BlackJAX's shape (DESIGN.md, "The four pieces").

``init(...) -> State``, ``build_kernel(...) -> step``,
``step(key, state) -> (State, Info)``; k moves are a ``lax.scan``
(:func:`multiple_moves`, Algorithm 2).
"""
from sajax.kernels import mis
from sajax.kernels._moves import multiple_moves
from sajax.kernels.mis import MISInfo, MISState

__all__ = ["mis", "multiple_moves", "MISState", "MISInfo"]
