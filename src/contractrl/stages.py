r"""The one-step operators shared by the exact solvers (SPEC §3), as small frozen dataclasses.

A stage is a callable ``(k, states, continuations) -> (values, record)`` (see
:data:`contractrl.sweep.StageFn`); its parameters are the fields of a frozen dataclass and its
per-state results a frozen record dataclass of ``[n, ...]`` arrays. This module sits below
:mod:`contractrl.solver`, :mod:`contractrl.meta` and :mod:`contractrl.evaluate` (it imports
none of them), so the solvers import each other in one direction only:
``solver → meta → evaluate → stages``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contractrl.contracts import ContractTable, min_pay_contracts
from contractrl.model import PrincipalAgentMDP


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
    """``[n, A]`` agent's truncated Q from its continuation ``agent_cont [n, O]`` (SPEC §1)."""
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
        contract_method: see :func:`contractrl.contracts.min_pay_contracts`.
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
        """One backup at ``states`` (see :data:`contractrl.sweep.StageFn`)."""
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
