r"""Exact subgame-perfect contracts for tabular games (docs/model.md §3): backward induction.

Scope: tabular games, finite horizon (backward induction) or infinite horizon with
``γ < 1`` (the fixed point of the same operator). At each ``(t, s)`` the operator computes the
agent's truncated Q from its continuation values,

.. math:: \bar Q(s,a) = r(s,a) + γ \sum_o P[s,a,o] \sum_{s'} T(s,o)(s') V(s'),

the min-pay contract ``b*_a`` for every target ``a`` (paper Eq. 3), the principal's contractual
Q ``q(s,a) = Σ_o P[s,a,o] (r^p(s,o) - b*_a(o) + γ Σ_s' T(s,o)(s') V^p(s'))`` and recommends its
argmax (ties: lowest index). The agent, indifferent at the min-pay contract, follows (ties are
broken in the principal's favour, paper Lemma B.12).

Cost: ``O(H · (S·A·O + edges))`` for ``H`` time sweeps, or one sweep ``O(S·A·O + edges)`` for
acyclic games (trees), plus the min-pay solves (closed form or batched vertex enumeration).

Example (paper Figure 1):
    >>> from contractrl.core.games import figure1
    >>> sol = solve_spe(figure1())
    >>> round(sol.initial_principal_value, 9), round(sol.initial_agent_value, 9)
    (1.0, 0.2)
"""

from __future__ import annotations

import time

import numpy as np

from contractrl.core.lp import ContractSolverError
from contractrl.core.meta import meta_algorithm
from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.solution import GameNames, SPESolution

# principal_choice, truncated_q: re-exported, defined here before
from contractrl.core.stages import (
    PrincipalChoice,
    SPEStage,
    implementability_status,
    principal_choice,
    short_horizon_rows,
    truncated_q,
)
from contractrl.core.sweep import make_schedule, run_backward

__all__ = [
    "METHODS",
    "PrincipalChoice",
    "backward_induction",
    "implementability_status",
    "principal_choice",
    "solve_spe",
    "truncated_q",
]

METHODS = ("backward", "meta")


def solve_spe(
    game: PrincipalAgentMDP,
    method: str = "backward",
    margin: float = 0.0,
    contract_method: str = "auto",
    sweep: str = "auto",
    tol: float = 1e-10,
    max_iterations: int = 100_000,
) -> SPESolution:
    """Solve a game for its subgame-perfect equilibrium.

    Args:
        game: the game.
        method: ``backward`` (backward induction; its fixed point for infinite horizons) or
            ``meta`` (paper Algorithm 1, :func:`contractrl.core.meta.meta_algorithm`).
        margin: nudge ``ξ >= 0`` added to every IC constraint (0: exact SPE).
        contract_method: min-pay method (``auto``, ``closed_form``, ``vertex``, ``lp``).
        sweep: ``auto``, ``levels`` or ``time`` (see :func:`contractrl.core.sweep.make_schedule`).
        tol: infinite horizon: stop when values change by at most ``tol``.
        max_iterations: infinite horizon (and meta) iteration budget.

    Returns:
        An :class:`~contractrl.core.solution.SPESolution`. With an infinite horizon check its
        ``converged``: a game may have no stationary SPE (``docs/theory-checks.md``); the
        iteration then stops early (``status`` ``stalled`` or ``cycle``) or at its budget.

    Raises:
        ValueError: a bad option, or one that cannot apply to this game.
        ContractSolverError: a solver limit: the LP failed, or float64 overflowed.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin (nudge) must be a finite number >= 0, got {margin!r}")
    # Float64 overflow (rewards near 1e308, payments of nearly identical outcome distributions)
    # must never pass silently as inf/nan in an answer: it is a solver limit (docs/model.md §2).
    try:
        with np.errstate(over="raise", invalid="raise"):
            if method == "meta":
                return meta_algorithm(
                    game,
                    margin=margin,
                    contract_method=contract_method,
                    sweep=sweep,
                    tol=tol,
                    max_iterations=max_iterations,
                )
            return backward_induction(game, margin, contract_method, sweep, tol, max_iterations)
    except FloatingPointError as exc:
        raise ContractSolverError(
            f"float64 {exc.args[0] if exc.args else 'overflow'} while solving: the game's "
            "magnitudes (rewards, Q-value gaps over outcome-distribution gaps) are too large; "
            "rescale the rewards"
        ) from None


def backward_induction(
    game: PrincipalAgentMDP,
    margin: float = 0.0,
    contract_method: str = "auto",
    sweep: str = "auto",
    tol: float = 1e-10,
    max_iterations: int = 100_000,
) -> SPESolution:
    """Backward induction (finite horizon) or its fixed point (infinite horizon).

    See :func:`solve_spe` for the arguments. Policies cover every ``(t, s)``, on and off the
    equilibrium path: a stationary finite-horizon solution computes the pairs its row does not
    cover when asked (:meth:`SPESolution.decision`, :meth:`SPESolution.at`).
    """
    start = time.perf_counter()
    schedule = make_schedule(game, sweep)
    stage = SPEStage(game, float(margin), contract_method)
    result = run_backward(game, schedule, stage, 2, tol, max_iterations)
    rec = result.records
    return SPESolution(
        action=rec.action,
        contract=rec.contract,
        expected_payment=rec.expected_payment,
        principal_value=result.values[1],
        agent_value=result.values[0],
        principal_q=rec.principal_q,
        agent_q=rec.agent_q,
        initial_state=game.initial_state,
        horizon=game.horizon,
        names=GameNames.of(game),
        method="fixed_point" if schedule.kind == "fixed_point" else "backward",
        margin=float(margin),
        iterations=result.iterations,
        converged=result.converged,
        solve_seconds=time.perf_counter() - start,
        heights=schedule.heights if schedule.horizon is not None else None,
        residuals=result.residuals,
        status=implementability_status(result.status, result.values[1]),
        short_rows=short_horizon_rows(game, schedule, margin, contract_method, result.values),
    )
