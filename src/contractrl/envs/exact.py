"""Environments with an exact tabular export: the optional ``exact_export`` capability.

An environment small enough to solve exactly may define ``exact_export(discount) ->
ExactExport``: its rules as a :class:`~contractrl.core.markov_game.MarkovGame` together with
every exported state *as the environment represents it* (a protocol state batch and the agents'
observations of it), so that a learner's networks can be read off on each state of the exact
game and audited against the exact solution (:mod:`contractrl.core.markov_audit`,
:func:`contractrl.multiagent.audit.audit_learned_principal`). Built in: the Coin Game on small
grids (:mod:`.coin_exact`) and Escape Room (:mod:`.escape_room`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax

from contractrl.core.markov_game import MarkovGame


@dataclass(frozen=True, eq=False)
class ExactExport:
    """An environment's exact game and its states as the environment holds them.

    Attributes:
        game: the tabular Markov game (``S`` states); time is the solver's step index.
        obs: ``[S, n, *observation_shape]`` every agent's observation of state ``s``.
        states: the protocol state of ``s`` (a pytree, leading axis ``S``; step ``t = 0``,
            which the observations do not show).
    """

    game: MarkovGame
    obs: jax.Array
    states: Any


def has_exact_export(env: Any) -> bool:
    """Whether ``env`` declares the capability (module docstring)."""
    return callable(getattr(env, "exact_export", None))
