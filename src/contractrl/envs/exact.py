"""Exact tabular exports of environments (the protocol's optional ``exact_export``).

An environment small enough to solve exactly offers its rules as a
:class:`~contractrl.core.markov_game.MarkovGame` together with every exported state *as the
environment represents it* (:class:`~.protocol.ExactExport`), so that a learner's networks can
be read off on each state of the exact game and audited against the exact solution
(:mod:`contractrl.core.markov_audit`, :mod:`contractrl.multiagent.audit`). An environment
declares it with an ``exact_export(discount)`` method (Escape Room); the Coin Game's export
lives in :mod:`.coin_exact`.
"""

from __future__ import annotations

from typing import Any

from contractrl.envs.protocol import ExactExport


def has_exact_export(env: Any) -> bool:
    """Whether :func:`exact_export` can export ``env``."""
    from contractrl.envs.coin_game import CoinGame

    return callable(getattr(env, "exact_export", None)) or isinstance(env, CoinGame)


def exact_export(env: Any, discount: float = 0.99, max_states: int | None = None) -> ExactExport:
    """``env``'s exact export.

    ``max_states``: refuse (before building anything large) a game with more states.

    Raises:
        ValueError: ``env`` has none, or is too large to export (the message says which).
    """
    from contractrl.envs.coin_game import CoinGame

    if isinstance(env, CoinGame):
        from contractrl.envs.coin_exact import coin_exact_export, num_exported_states

        count = num_exported_states(env.config)
        if max_states is not None and count > max_states:
            raise ValueError(f"env: {count} states to export, more than {max_states}")
        return coin_exact_export(env.config, discount)
    method = getattr(env, "exact_export", None)
    if not callable(method):
        raise ValueError(f"env: {type(env).__name__} has no exact export")
    export = method(discount)
    if max_states is not None and export.game.num_states > max_states:
        raise ValueError(f"env: {export.game.num_states} states, more than {max_states}")
    return export
