"""Exact evaluation tools (docs/model.md §3): policy evaluation, the agent's best response, audits.

Policies are tables with ``K`` rows (``K = 1`` stationary, ``K = H`` time-indexed); see
:mod:`contractrl.core.sweep` for how rows map to time steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.solution import PrincipalPolicy, SPESolution
from contractrl.core.stages import truncated_q
from contractrl.core.sweep import Schedule, make_schedule, run_backward

#: Two agent payoffs within ``TIE_TOL * (1 + |payoff|)`` are a tie, broken toward the
#: recommendation (the principal's favour, paper Lemma B.12).
TIE_TOL = 1e-9


@dataclass(frozen=True)
class AgentResponse:
    """The agent's exact best response to a principal policy.

    Attributes:
        action: ``[K, S]`` the agent's action (the recommendation whenever it is optimal
            within the tie tolerance).
        q_truncated: ``[K, S, A]`` truncated Q ``Q̄(s, a | ρ)``, without the current payment.
        value: ``[K, S]`` the agent's optimal value (the max over actions: the tie rule picks
            the reported action only, it never changes the values backed up).
        converged: infinite horizon: whether value iteration met its tolerance (always
            ``True`` for finite horizons).
    """

    action: np.ndarray
    q_truncated: np.ndarray
    value: np.ndarray
    converged: bool = True


@dataclass(frozen=True)
class PolicyValues:
    """Exact values of a (principal policy, agent policy) pair.

    Attributes:
        agent: ``[K, S]`` the agent's value (rewards plus payments).
        principal: ``[K, S]`` the principal's value (rewards minus payments).
        payment: ``[K, S]`` expected discounted payments from ``(t, s)`` on.
    """

    agent: np.ndarray
    principal: np.ndarray
    payment: np.ndarray


@dataclass(frozen=True)
class AuditReport:
    """Checks of a solution's contracts and values (docs/model.md §3).

    Attributes:
        max_ic_violation: largest ``max_a (Q̄[a] + P[a]·b) + ξ - (Q̄[a*] + P[a*]·b)`` over
            ``(t, s)`` and ``a != a*``, under the agent's exact values; ``<= tol`` means the
            recommendation is a best response everywhere (with margin ``ξ``).
        min_payment: smallest payment of any contract (limited liability: ``>= 0``).
        max_value_error: largest gap between the solution's values and an exact evaluation.
        violations: up to 20 ``(row, state, reason)`` entries.
        tol: the tolerance used.
    """

    max_ic_violation: float
    min_payment: float
    max_value_error: float
    violations: tuple[tuple[int, int, str], ...]
    tol: float

    @property
    def ok(self) -> bool:
        """Whether IC, limited liability and the values all check out within ``tol``."""
        return not self.violations


def check_policy(game: PrincipalAgentMDP, policy: PrincipalPolicy) -> None:
    """Raise ``ValueError`` naming the field if ``policy`` does not fit ``game``."""
    action, contract = np.asarray(policy.action), np.asarray(policy.contract)
    rows = action.shape[0] if action.ndim == 2 else -1
    if action.ndim != 2 or action.shape[1] != game.num_states:
        raise ValueError(f"policy.action: expected [K, {game.num_states}], got {action.shape}")
    allowed = (1,) if game.horizon is None else (1, game.horizon)
    if rows not in allowed:
        raise ValueError(f"policy.action: K must be one of {allowed}, got {rows}")
    if contract.shape != (rows, game.num_states, game.num_outcomes):
        raise ValueError(
            f"policy.contract: expected {[rows, game.num_states, game.num_outcomes]}, "
            f"got {list(contract.shape)}"
        )
    if ((action < -1) | (action >= game.num_actions)).any():
        raise ValueError(f"policy.action: entries must lie in [-1, {game.num_actions})")
    if not np.isfinite(contract).all() or (contract < 0).any():
        raise ValueError("policy.contract: payments must be finite and >= 0")


def _schedule_for(game, sweep, *tables) -> Schedule:
    return make_schedule(game, sweep, stationary_inputs=all(t.shape[0] == 1 for t in tables))


def _row(table: np.ndarray, k: int) -> np.ndarray:
    return table[min(k, table.shape[0] - 1)]


@dataclass(frozen=True)
class ResponseStep:
    """The agent's best response at a batch of ``n`` states.

    Attributes:
        action: ``[n]`` the reported action (the recommendation when optimal within the tie
            tolerance, else the lowest optimal action).
        q_truncated: ``[n, A]`` truncated Q, without the current payment.
    """

    action: np.ndarray
    q_truncated: np.ndarray


@dataclass(frozen=True)
class BestResponseStage:
    """The agent's Bellman operator under a principal policy.

    One value (the agent's optimal value); record :class:`ResponseStep`.

    Attributes:
        game: the game.
        policy: the principal's policy (contracts and recommendations).
        tie_tol: relative tolerance within which the recommendation counts as optimal.
    """

    game: PrincipalAgentMDP
    policy: PrincipalPolicy
    tie_tol: float

    def __call__(
        self, k: int, states: np.ndarray | slice, conts: list[np.ndarray]
    ) -> tuple[list[np.ndarray], ResponseStep]:
        """One backup at ``states`` (see :data:`contractrl.core.sweep.StageFn`)."""
        (agent_cont,) = conts
        game, policy = self.game, self.policy
        q_bar = truncated_q(game, states, agent_cont)
        contract = _row(policy.contract, k)[states]
        rec_action = _row(policy.action, k)[states]
        full = q_bar + np.einsum("nao,no->na", game.outcome_probs[states], contract)
        top = full.max(axis=1)
        rows = np.arange(top.size)
        optimal = full >= (top - self.tie_tol * (1.0 + np.abs(top)))[:, None]
        has_rec = rec_action >= 0
        follow = has_rec & optimal[rows, np.where(has_rec, rec_action, 0)]
        chosen = np.where(follow, rec_action, np.argmax(optimal, axis=1))  # else lowest optimal
        # Back up the max, not the chosen action's value: the tie rule only picks the reported
        # action. Backing up a near-tied recommendation made the values jitter by ~tie_tol, so
        # value iteration never met a tolerance below it.
        return [top], ResponseStep(chosen, q_bar)


def agent_best_response(
    game: PrincipalAgentMDP,
    policy: PrincipalPolicy,
    sweep: str = "auto",
    tie_tol: float = TIE_TOL,
    tol: float = 1e-12,
    max_iterations: int = 1_000_000,
) -> AgentResponse:
    """The agent's exact best response to a principal policy (docs/model.md §3).

    The agent solves its own MDP with rewards ``r(s,a) + P[s,a]·b(t,s)``; among optimal actions
    (within ``tie_tol``) it takes the recommendation.

    Args:
        game: the game.
        policy: the principal's policy (``K`` rows).
        sweep: see :func:`contractrl.core.sweep.make_schedule`.
        tie_tol: relative tolerance for ties.
        tol: infinite horizon: value-iteration tolerance.
        max_iterations: infinite horizon: value-iteration budget.

    Returns:
        An :class:`AgentResponse` with ``K`` rows (``H`` if the policy or the game needs time
        sweeps).
    """
    check_policy(game, policy)
    schedule = _schedule_for(game, sweep, policy.action)
    stage = BestResponseStage(game, policy, tie_tol)
    result = run_backward(game, schedule, stage, 1, tol, max_iterations)
    return AgentResponse(
        result.records.action, result.records.q_truncated, result.values[0], result.converged
    )


@dataclass(frozen=True)
class EvaluationStage:
    """Policy evaluation: values ``[agent, principal, payment]``, no record.

    Attributes:
        game: the game.
        policy: the principal's policy (its contracts).
        agent_action: ``[K, S]`` the agent's action at each ``(t, s)``.
    """

    game: PrincipalAgentMDP
    policy: PrincipalPolicy
    agent_action: np.ndarray

    def __call__(
        self, k: int, states: np.ndarray | slice, conts: list[np.ndarray]
    ) -> tuple[list[np.ndarray], None]:
        """One backup at ``states`` (see :data:`contractrl.core.sweep.StageFn`)."""
        agent_cont, principal_cont, pay_cont = conts
        game = self.game
        action = _row(self.agent_action, k)[states]
        contract = _row(self.policy.contract, k)[states]
        rows = np.arange(action.size)
        probs = game.outcome_probs[states][rows, action]  # [n, O]
        gamma = game.discount
        agent = game.agent_reward[states][rows, action] + np.einsum(
            "no,no->n", probs, contract + gamma * agent_cont
        )
        principal = np.einsum(
            "no,no->n", probs, game.principal_reward[states] - contract + gamma * principal_cont
        )
        payment = np.einsum("no,no->n", probs, contract + gamma * pay_cont)
        return [agent, principal, payment], None


def evaluate_policies(
    game: PrincipalAgentMDP,
    policy: PrincipalPolicy,
    agent_action: np.ndarray,
    sweep: str = "auto",
    tol: float = 1e-12,
    max_iterations: int = 1_000_000,
) -> PolicyValues:
    """Exact values of a principal policy and a deterministic agent policy.

    Args:
        game: the game.
        policy: the principal's policy (contracts; its recommendations are ignored here).
        agent_action: ``[K, S]`` the agent's action at each ``(t, s)``.
        sweep: see :func:`contractrl.core.sweep.make_schedule`.
        tol: infinite horizon: value-iteration tolerance.
        max_iterations: infinite horizon: value-iteration budget.

    Returns:
        :class:`PolicyValues`.
    """
    check_policy(game, policy)
    agent_action = np.asarray(agent_action)
    if agent_action.ndim != 2 or agent_action.shape[1] != game.num_states:
        raise ValueError(f"agent_action: expected [K, {game.num_states}], got {agent_action.shape}")
    if ((agent_action < 0) | (agent_action >= game.num_actions)).any():
        raise ValueError(f"agent_action: entries must lie in [0, {game.num_actions})")
    schedule = _schedule_for(game, sweep, policy.action, agent_action)
    stage = EvaluationStage(game, policy, agent_action)
    result = run_backward(game, schedule, stage, 3, tol, max_iterations)
    return PolicyValues(*result.values)


def audit(game: PrincipalAgentMDP, solution: SPESolution, tol: float = 1e-7) -> AuditReport:
    """Audit a solution: IC (with its margin), limited liability, and its values.

    The agent's values are recomputed exactly, assuming it follows the recommendations; by the
    one-shot deviation principle, following is then a best response everywhere iff no
    one-step deviation gains, which is what the IC check measures.

    Args:
        game: the game the solution claims to solve.
        solution: the solution.
        tol: absolute tolerance (scaled by ``1 + |value|``).

    Returns:
        An :class:`AuditReport`.
    """
    policy = solution.policy
    values = evaluate_policies(game, policy, solution.action)
    rows = solution.action.shape[0]
    if values.agent.shape[0] != rows:
        raise ValueError(
            f"solution has {rows} rows but this game needs "
            f"{values.agent.shape[0]}: it was not computed for this game"
        )
    violations: list[tuple[int, int, str]] = []
    max_ic, max_err = -np.inf, 0.0
    time_indexed = game.horizon is not None and rows == game.horizon
    for k in range(rows):
        if not time_indexed:
            nxt = values.agent[0]  # stationary: the same values one step later
        elif k + 1 < rows:
            nxt = values.agent[k + 1]
        else:
            nxt = np.zeros(game.num_states)  # after the last decision
        q_bar = truncated_q(game, slice(None), game.continuation(nxt))
        full = q_bar + np.einsum("sao,so->sa", game.outcome_probs, policy.contract[k])
        chosen = full[np.arange(game.num_states), policy.action[k]]
        others = full.copy()
        others[np.arange(game.num_states), policy.action[k]] = -np.inf
        gain = others.max(axis=1, initial=-np.inf) + solution.margin - chosen
        scale = 1.0 + np.abs(chosen)
        max_ic = max(max_ic, float(np.max(gain)))
        err = np.maximum(
            np.abs(values.agent[k] - solution.agent_value[k]),
            np.abs(values.principal[k] - solution.principal_value[k]),
        )
        max_err = max(max_err, float(err.max()))
        for s in np.flatnonzero(gain > tol * scale)[:20]:
            violations.append((k, int(s), f"IC violated by {gain[s]:.3g}"))
        for s in np.flatnonzero((policy.contract[k] < 0).any(axis=1))[:20]:
            violations.append((k, int(s), "negative payment"))
        for s in np.flatnonzero(err > tol * (1.0 + np.abs(values.agent[k])))[:20]:
            violations.append((k, int(s), f"value off by {err[s]:.3g}"))
    return AuditReport(max_ic, float(policy.contract.min()), max_err, tuple(violations[:20]), tol)
