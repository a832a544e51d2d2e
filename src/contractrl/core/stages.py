r"""One-step operators shared by the exact solvers (docs/model.md §3), as small frozen dataclasses.

A stage is a callable ``(k, states, continuations) -> (values, record)`` (see
:data:`contractrl.core.sweep.StageFn`); its parameters are the fields of a frozen dataclass
and its per-state results a frozen record dataclass of ``[n, ...]`` arrays. This module sits
below :mod:`.solver`, :mod:`.meta` and :mod:`.evaluate` (it imports none of them), so the
solvers import each other in one direction only: ``solver → meta → evaluate → stages``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contractrl.core.contracts import ContractTable, min_pay_contracts
from contractrl.core.lp import ContractSolverError
from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.sweep import Schedule


@dataclass(frozen=True)
class PrincipalChoice:
    """The principal's best recommendation and min-pay contract at a batch of ``n`` states.

    Attributes:
        action: ``[n]`` recommended action (argmax of ``principal_q``; ties: lowest index).
        contract: ``[n, O]`` its min-pay contract.
        expected_payment: ``[n]`` its expected payment (0 where nothing is implementable).
        principal_value: ``[n]`` (``-inf`` where nothing is implementable).
        principal_q: ``[n, A]`` contractual Q (``-inf``: not implementable).
        agent_value: ``[n]`` the agent's value of following under the contract; where nothing
            is implementable, the value of its own best action, unpaid.
    """

    action: np.ndarray
    contract: np.ndarray
    expected_payment: np.ndarray
    principal_value: np.ndarray
    principal_q: np.ndarray
    agent_value: np.ndarray


@dataclass(frozen=True)
class SPEStep(PrincipalChoice):
    """A :class:`PrincipalChoice` with the agent's truncated Q it answered.

    Attributes:
        agent_q: ``[n, A]`` the agent's truncated Q ``Q̄(s, a)`` (without the current payment).
    """

    agent_q: np.ndarray


def truncated_q(
    game: PrincipalAgentMDP, states: np.ndarray | slice, agent_cont: np.ndarray
) -> np.ndarray:
    """``[n, A]`` agent's truncated Q from continuation ``agent_cont [n, O]`` (docs/model.md §1)."""
    probs = game.outcome_probs[states]
    return game.agent_reward[states] + game.discount * np.einsum("nao,no->na", probs, agent_cont)


def principal_choice(
    probs: np.ndarray,
    principal_reward: np.ndarray,
    principal_cont: np.ndarray,
    agent_q: np.ndarray,
    discount: float,
    margin: float,
    contract_method: str,
    table: ContractTable | None = None,
) -> PrincipalChoice:
    """The principal's best recommendation and min-pay contract at a batch of states.

    Args:
        probs: ``[n, A, O]`` outcome distributions.
        principal_reward: ``[n, O]``.
        principal_cont: ``[n, O]`` principal's expected next value after each outcome.
        agent_q: ``[n, A]`` the agent's truncated Q (it answers any contract with it).
        discount: ``γ``.
        margin: nudge ``ξ``.
        contract_method: see :func:`contractrl.core.contracts.min_pay_contracts`.
        table: the min-pay contracts for ``agent_q``, when already computed.

    Returns:
        A :class:`PrincipalChoice`.
    """
    if table is None:
        table = min_pay_contracts(agent_q, probs, margin, contract_method)
    gross = np.einsum("nao,no->na", probs, principal_reward + discount * principal_cont)
    q = np.where(table.implementable, gross - table.expected_payment, -np.inf)
    best = np.argmax(q, axis=1)
    rows = np.arange(best.size)
    payment = table.expected_payment[rows, best]
    # Where no action is implementable (only with a nudge ξ > 0), the principal's value is -inf
    # (the solution's status says so) and the agent keeps its free choice, unpaid, so that
    # earlier states still see finite agent values.
    none = ~table.implementable.any(axis=1)
    agent_value = np.where(
        none, agent_q.max(axis=1), agent_q[rows, best] + np.where(none, 0, payment)
    )
    return PrincipalChoice(
        action=best,
        contract=table.contract[rows, best],
        expected_payment=np.where(none, 0.0, payment),
        principal_value=q[rows, best],
        principal_q=q,
        agent_value=agent_value,
    )


@dataclass(frozen=True)
class SPEStage:
    """The backward-induction operator: values ``[agent, principal]``, record :class:`SPEStep`.

    Attributes:
        game: the game.
        margin: nudge ``ξ``.
        contract_method: min-pay method.
    """

    game: PrincipalAgentMDP
    margin: float
    contract_method: str

    def __call__(
        self, k: int, states: np.ndarray | slice, conts: list[np.ndarray]
    ) -> tuple[list[np.ndarray], SPEStep]:
        """One backup at ``states`` (see :data:`contractrl.core.sweep.StageFn`)."""
        agent_cont, principal_cont = conts
        game = self.game
        agent_q = truncated_q(game, states, agent_cont)
        choice = principal_choice(
            game.outcome_probs[states],
            game.principal_reward[states],
            principal_cont,
            agent_q,
            game.discount,
            self.margin,
            self.contract_method,
        )
        step = SPEStep(**vars(choice), agent_q=agent_q)
        return [step.agent_value, step.principal_value], step


def implementability_status(status: str, principal_value: np.ndarray) -> str:
    """``not_implementable`` when some ``(t, s)`` has no implementable action, else ``status``.

    With a nudge ``ξ > 0`` an action must beat every other by ``ξ``; where outcome
    distributions cannot separate the actions (identical rows, one outcome) no action can, the
    principal's value there is ``-inf`` and the tables are no equilibrium.
    """
    if status == "converged" and not np.isfinite(principal_value).all():
        return "not_implementable"
    return status


class ShortHorizonRows:
    """The decisions a stationary finite-horizon solution does not store, computed on demand.

    An acyclic game solved in one level sweep stores one row, exact at every ``(t, s)`` with
    ``t + heights[s] <= H``. At the other pairs fewer steps remain (``r = H - t``) than the
    longest path from ``s`` needs, so the truncation matters. The game is time-homogeneous, so
    the decision there is the one with ``r`` steps left: ``V_r = stage(V_{r-1})`` on the states
    with ``heights > r``, while ``V_r = V`` (the stored row) on the others and ``V_0 = 0``.
    The first request computes every such ``(r, s)`` in one pass over ``r = 1 ... max(heights)
    - 1``, each step over the states still too high: ``Σ_s (heights[s] - 1)`` state updates
    (about ``S`` for a binary tree), never ``H`` full rows.

    Args:
        game: the game solved.
        heights: ``[S]`` the schedule's heights.
        margin: nudge ``ξ``.
        contract_method: min-pay method.
        agent_value: ``[S]`` the stored (stationary) agent values.
        principal_value: ``[S]`` the stored (stationary) principal values.
    """

    def __init__(
        self,
        game: PrincipalAgentMDP,
        heights: np.ndarray,
        margin: float,
        contract_method: str,
        agent_value: np.ndarray,
        principal_value: np.ndarray,
    ) -> None:
        self._stage = SPEStage(game, margin, contract_method)
        self._heights = heights
        self._values = (agent_value, principal_value)
        self._rows: dict[int, tuple[int, SPEStep]] | None = None
        self._position: np.ndarray | None = None

    def lookup(self, remaining: int) -> tuple[np.ndarray, SPEStep] | None:
        """The decisions with ``remaining`` steps left that the stored row does not hold.

        Returns:
            ``(states, step)``: ``step``'s ``[n, ...]`` arrays describe ``states`` (those with
            ``heights > remaining``); ``None`` when the stored row covers every state.
        """
        rows = self._compute()
        if remaining not in rows:
            return None
        start, step = rows[remaining]
        return self._order[start:], step

    def position(self, remaining: int, s: int) -> tuple[SPEStep, int] | None:
        """The record holding ``(remaining, s)`` and the index of ``s`` in it, or ``None``."""
        rows = self._compute()
        if remaining not in rows or self._heights[s] <= remaining:
            return None
        start, step = rows[remaining]
        return step, int(self._position[s]) - start

    def _compute(self) -> dict[int, tuple[int, SPEStep]]:
        if self._rows is not None:
            return self._rows
        game, heights = self._stage.game, self._heights
        order = np.argsort(heights, kind="stable")
        sorted_heights = heights[order]
        position = np.empty_like(order)
        position[order] = np.arange(order.size)
        agent, principal = np.zeros(game.num_states), np.zeros(game.num_states)  # V_0
        rows: dict[int, tuple[int, SPEStep]] = {}
        try:
            with np.errstate(over="raise", invalid="raise"):  # as in solve_spe
                for r in range(1, int(heights.max(initial=0))):
                    start = int(np.searchsorted(sorted_heights, r, side="right"))
                    states = order[start:]
                    conts = [
                        game.continuation(agent, states),
                        game.continuation(principal, states),
                    ]
                    _, step = self._stage(0, states, conts)
                    rows[r] = (start, step)
                    exact = order[np.searchsorted(sorted_heights, r) : start]  # heights == r
                    agent[exact] = self._values[0][exact]
                    principal[exact] = self._values[1][exact]
                    agent[states], principal[states] = step.agent_value, step.principal_value
        except FloatingPointError as exc:
            raise ContractSolverError(
                f"float64 {exc.args[0] if exc.args else 'overflow'} while solving the short "
                "horizons: rescale the rewards"
            ) from None
        self._order, self._position, self._rows = order, position, rows
        return rows


def short_horizon_rows(
    game: PrincipalAgentMDP,
    schedule: Schedule,
    margin: float,
    contract_method: str,
    values: list[np.ndarray],
) -> ShortHorizonRows | None:
    """The lazy completion of a stationary finite-horizon solution (``None`` for any other).

    ``values``: ``[agent [1, S], principal [1, S]]``, the stored row's values (an SPE's).
    """
    if schedule.kind != "levels" or schedule.horizon is None:
        return None
    return ShortHorizonRows(
        game, schedule.heights, float(margin), contract_method, values[0][0], values[1][0]
    )
