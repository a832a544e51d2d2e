"""Evaluation of a learned principal against an exact best-responding oracle (docs/model.md §5).

The learned principal recommends ``argmax q_θ`` among implementable actions and offers the
min-pay contract computed from the learned agent network ``Q̄_φ`` (with the nudge). The oracle
agent best-responds exactly (ties toward the recommendation); the principal's utility is then
compared with the SPE value, and *accuracy* is the share of decisions where the learned
recommendation equals the SPE action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contractrl.core.contracts import min_pay_contracts
from contractrl.core.evaluate import agent_best_response, evaluate_policies
from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.solution import PrincipalPolicy, SPESolution


@dataclass(frozen=True)
class OracleEvaluation:
    """A learned principal coupled with the oracle agent.

    Attributes:
        principal_utility: principal's exact value at ``(t=0, s0)``.
        agent_utility: the oracle agent's exact value at ``(t=0, s0)``.
        accuracy: share of ``(t, s)`` decisions equal to the SPE's recommendation.
        follow_rate: share of ``(t, s)`` where the oracle follows the recommendation.
    """

    principal_utility: float
    agent_utility: float
    accuracy: float
    follow_rate: float


def learned_policy(
    game: PrincipalAgentMDP,
    agent_q: np.ndarray,
    principal_q: np.ndarray,
    nudge: float,
    time_input: bool,
) -> PrincipalPolicy:
    """The principal policy defined by the two networks' tables.

    Args:
        game: the game.
        agent_q: ``[I, A]`` learned truncated Q on every input.
        principal_q: ``[I, A]`` learned contractual Q.
        nudge: margin ``ξ`` for the contracts.
        time_input: inputs are ``t·S + s`` (then ``I = H·S``), else ``s``.
    """
    agent_q = np.asarray(agent_q, np.float64)
    principal_q = np.asarray(principal_q, np.float64)
    rows_k = game.horizon if time_input else 1
    probs = np.tile(game.outcome_probs, (rows_k, 1, 1))
    table = min_pay_contracts(agent_q, probs, max(float(nudge), 0.0))
    action = np.argmax(np.where(table.implementable, principal_q, -np.inf), axis=1)
    contract = table.contract[np.arange(action.size), action]
    shape = (rows_k, game.num_states)
    return PrincipalPolicy(action.reshape(shape), contract.reshape(*shape, game.num_outcomes))


def evaluate_with_oracle(
    game: PrincipalAgentMDP, policy: PrincipalPolicy, spe: SPESolution
) -> OracleEvaluation:
    """Couple ``policy`` with the exact best-responding agent and compare with ``spe``."""
    response = agent_best_response(game, policy)
    values = evaluate_policies(game, policy, response.action)
    s0 = game.initial_state
    rec = np.broadcast_to(policy.action, response.action.shape)
    spe_action = spe.action
    if spe_action.shape != policy.action.shape:
        rows = max(spe_action.shape[0], policy.action.shape[0])
        spe_action = np.broadcast_to(spe_action, (rows, game.num_states))
        rec = np.broadcast_to(policy.action, (rows, game.num_states))
    return OracleEvaluation(
        principal_utility=float(values.principal[0, s0]),
        agent_utility=float(values.agent[0, s0]),
        accuracy=float(np.mean(rec == spe_action)),
        follow_rate=float(
            np.mean(response.action == np.broadcast_to(policy.action, response.action.shape))
        ),
    )
