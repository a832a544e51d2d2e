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
    game: PrincipalAgentMDP, policy: PrincipalPolicy, spe: SPESolution | None
) -> OracleEvaluation:
    """Couple ``policy`` with the exact best-responding agent and compare with ``spe``.

    ``spe`` ``None`` (no equilibrium to compare with): ``accuracy`` is NaN.
    """
    response = agent_best_response(game, policy)
    values = evaluate_policies(game, policy, response.action)
    s0 = game.initial_state
    follow = float(
        np.mean(response.action == np.broadcast_to(policy.action, response.action.shape))
    )
    if spe is None:
        return OracleEvaluation(
            float(values.principal[0, s0]), float(values.agent[0, s0]), float("nan"), follow
        )
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


def _row_time(game: PrincipalAgentMDP, rows: int) -> list[tuple[int, int, int]]:
    """``(row k, time t, state s)`` of a policy's decisions (``t``: when the row is used).

    A stationary row is reported at each state's earliest arrival (0 if never reached).
    """
    from contractrl.core.report import first_arrival

    if rows > 1:
        return [(k, k, s) for k in range(rows) for s in range(game.num_states)]
    arrival = first_arrival(game)
    return [(0, int(max(arrival[s], 0)), s) for s in range(game.num_states)]


def policy_table(
    game: PrincipalAgentMDP, policy: PrincipalPolicy, spe: SPESolution | None = None
) -> list[dict]:
    """Per decision ``(t, s)``: the learned principal beside the SPE, with the oracle's answer.

    Each row: ``t``, ``state``; the learned ``action`` (recommendation), ``contract``
    (outcome name -> payment) and ``expected_payment`` (under the recommended action); the
    oracle agent's response ``oracle_action`` (its exact best response to the whole learned
    policy, ties toward the recommendation: paper Section 2) and whether it ``follows``;
    ``reached`` (the state occurs with positive probability under the learned policy and the
    oracle); and, when ``spe`` is given, ``spe_action``, ``spe_contract`` and
    ``spe_expected_payment`` (the exact SPE's decision at the same ``(t, s)``).
    """
    state_names = game.state_names or [f"s{s}" for s in range(game.num_states)]
    action_names = game.action_names or [f"a{a}" for a in range(game.num_actions)]
    outcome_names = game.outcome_names or [f"o{o}" for o in range(game.num_outcomes)]
    response = agent_best_response(game, policy)
    oracle = np.broadcast_to(response.action, (max(response.action.shape[0], 1), game.num_states))
    reached = _reached(game, policy, response.action)
    rows = []
    for k, t, s in _row_time(game, policy.action.shape[0]):
        a = int(policy.action[k, s])
        b = np.asarray(policy.contract[k, s], np.float64)
        o_act = int(oracle[min(k, oracle.shape[0] - 1), s])
        row = {
            "t": t,
            "state": state_names[s],
            "action": action_names[a] if a >= 0 else None,
            "contract": {outcome_names[o]: float(b[o]) for o in range(game.num_outcomes)},
            "expected_payment": float(game.outcome_probs[s, max(a, 0)] @ b),
            "oracle_action": action_names[o_act],
            "follows": o_act == a,
            "reached": bool(reached[min(k, reached.shape[0] - 1), s]),
        }
        if spe is not None:
            d = spe.decision(min(t, (game.horizon or t + 1) - 1), s)
            row.update(
                spe_action=action_names[d.action],
                spe_contract={
                    outcome_names[o]: float(d.contract[o]) for o in range(game.num_outcomes)
                },
                spe_expected_payment=float(d.expected_payment),
            )
        rows.append(row)
    return rows


def _reached(game: PrincipalAgentMDP, policy: PrincipalPolicy, agent_action) -> np.ndarray:
    """``[K, S]`` whether ``(t, s)`` occurs with positive probability under the pair."""
    agent_action = np.asarray(agent_action)
    rows = agent_action.shape[0]
    trans = game.transitions  # CSR [S*O, S]
    num_s, num_o = game.num_states, game.num_outcomes

    def successors(states: np.ndarray, k: int) -> np.ndarray:
        out = np.zeros(num_s, bool)
        for s in np.flatnonzero(states):
            for o in np.flatnonzero(game.outcome_probs[s, agent_action[k, s]] > 0):
                lo, hi = trans.indptr[s * num_o + o], trans.indptr[s * num_o + o + 1]
                out[trans.indices[lo:hi][trans.data[lo:hi] > 0]] = True
        return out

    reach = np.zeros((rows, num_s), bool)
    start = np.zeros(num_s, bool)
    start[game.initial_state] = True
    if rows > 1:
        reach[0] = start
        for k in range(rows - 1):
            reach[k + 1] = successors(reach[k], k)
        return reach
    seen, frontier = start.copy(), start
    while frontier.any():
        nxt = successors(frontier, 0) & ~seen
        seen |= nxt
        frontier = nxt
    reach[0] = seen
    return reach


def format_policy_table(rows: list[dict]) -> str:
    """``rows`` of :func:`policy_table` as a text table (``contractrl inspect``)."""

    def contract(c: dict) -> str:
        return ", ".join(f"{o}={v:.4g}" for o, v in c.items())

    has_spe = bool(rows) and "spe_action" in rows[0]
    head = ["t", "state", "learned", "contract", "E[pay]", "oracle", "reached"]
    if has_spe:
        head += ["SPE", "SPE contract", "SPE E[pay]"]
    table = [head]
    for r in rows:
        line = [
            str(r["t"]),
            r["state"],
            str(r["action"]),
            contract(r["contract"]),
            f"{r['expected_payment']:.4f}",
            r["oracle_action"] + ("" if r["follows"] else " (ignores)"),
            "yes" if r["reached"] else "no",
        ]
        if has_spe:
            line += [
                r["spe_action"],
                contract(r["spe_contract"]),
                f"{r['spe_expected_payment']:.4f}",
            ]
        table.append(line)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def monte_carlo_principal_value(
    game: PrincipalAgentMDP,
    policy: PrincipalPolicy,
    agent_action: np.ndarray,
    episodes: int = 20_000,
    seed: int = 0,
    tail: float = 1e-6,
) -> tuple[float, float]:
    """The principal's discounted return from ``s0`` by simulation: ``(mean, standard error)``.

    An independent check of the exact evaluation (:func:`evaluate_with_oracle`): ``episodes``
    episodes of the pair (``policy``, the agent's ``agent_action [K, S]``). An infinite horizon
    is cut where ``γ^T`` falls below ``tail`` (the bias is at most ``tail`` times the largest
    per-step return over ``1 - γ``).
    """
    rng = np.random.default_rng(seed)
    gamma = game.discount
    steps = game.horizon or int(np.ceil(np.log(tail) / np.log(gamma)))
    num_o = game.num_outcomes
    trans = game.transitions
    agent_action = np.asarray(agent_action)
    state = np.full(episodes, game.initial_state)
    alive = np.ones(episodes, bool)
    total = np.zeros(episodes)
    for t in range(steps):
        k = min(t, policy.action.shape[0] - 1)
        ka = min(t, agent_action.shape[0] - 1)
        a = agent_action[ka, state]
        probs = game.outcome_probs[state, a]
        o = (rng.random(episodes)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
        o = np.minimum(o, num_o - 1)
        paid = policy.contract[k, state, o]
        total += alive * gamma**t * (game.principal_reward[state, o] - paid)
        rows = trans[state * num_o + o].toarray()  # [N, S]
        ends = rows.sum(axis=1) <= 0
        cum = np.cumsum(rows, axis=1)
        nxt = (rng.random(episodes)[:, None] > cum).sum(axis=1)
        state = np.where(ends, state, np.minimum(nxt, game.num_states - 1))
        alive &= ~ends
        if not alive.any():
            break
    return float(total.mean()), float(total.std(ddof=1) / np.sqrt(episodes))


def principal_deviation_gain(game: PrincipalAgentMDP, policy: PrincipalPolicy) -> float:
    """How much the principal would gain by deviating once from ``policy`` (0: none).

    With the oracle agent's exact response to ``policy`` (its truncated Q and the values of
    the pair), the principal's best one-step deviation at ``(t, s)`` is
    ``max_a P[s, a]·(r^p(s, ·) - b_a + γ V^p_next)`` over implementable ``a`` (``b_a`` the
    min-pay contract against that Q, paper Eq. 3), compared with the policy's own value.
    A positive gain means the policy is not subgame-perfect: the principal would not carry
    it out in some subgame. Its value can then exceed the SPE's — the value of committing to
    the whole policy, which the SPE (a principal who re-optimises in every subgame, paper
    Section 2) cannot have; with exact evaluation this is the only way a ratio exceeds 1.
    """
    response = agent_best_response(game, policy)
    values = evaluate_policies(game, policy, response.action).principal  # [K, S]
    rows = response.q_truncated.shape[0]
    gain = 0.0
    for k in range(rows):
        if game.horizon is not None and rows > 1:
            nxt = values[k + 1] if k + 1 < rows else np.zeros(game.num_states)
        else:
            nxt = values[0]
        cont = game.continuation(nxt)  # [S, O]
        table = min_pay_contracts(response.q_truncated[k], game.outcome_probs, 0.0)
        net = game.principal_reward[:, None, :] - table.contract + game.discount * cont[:, None]
        q = np.einsum("sao,sao->sa", game.outcome_probs, net)
        best = np.max(np.where(table.implementable, q, -np.inf), axis=1)
        gain = max(gain, float(np.max(best - values[k])))
    return gain
