"""The meta-algorithm (paper Algorithm 1, SPEC §3): alternate exact best responses.

Start from a principal policy ``ρ_0`` (default: pay nothing). Repeat: (1) the agent
best-responds to ``ρ_k``, giving its truncated Q ``Q̄(·|ρ_k)``; (2) the principal best-responds
to that agent: in the principal's MDP every contract is answered according to the fixed
``Q̄(·|ρ_k)``, so the best contract for each target is the min-pay LP; this gives
``ρ_{k+1}``. Stop when ``ρ`` stops changing.

Paper Theorem 3.3: with a finite horizon ``H`` it stops after at most ``H + 1`` iterations
(iteration ``k`` fixes the last ``k`` steps) at an SPE. Theorem 3.4: with an infinite horizon
one iteration contracts the principal's contractual Q by ``γ``. :attr:`SPESolution.trace`
records each iteration so both claims can be checked.

Example (paper Figure 1: converges in 2 iterations, ``<= H + 1 = 3``):
    >>> from contractrl.games import figure1
    >>> sol = meta_algorithm(figure1())
    >>> sol.iterations, round(sol.initial_principal_value, 9), round(sol.initial_agent_value, 9)
    (2, 1.0, 0.2)
"""

from __future__ import annotations

import functools
import time

import numpy as np

from contractrl.contracts import min_pay_contracts
from contractrl.evaluate import agent_best_response, check_policy
from contractrl.model import PrincipalAgentMDP
from contractrl.solution import IterationRecord, PrincipalPolicy, SPESolution, tables_equal
from contractrl.solver import principal_choice
from contractrl.sweep import make_schedule, run_backward


def _principal_stage(game, agent_q, margin, contract_method, memo, k, states, conts):
    (principal_cont,) = conts
    q_bar = agent_q[min(k, agent_q.shape[0] - 1)][states]
    if memo is not None:  # fixed point: Q̄ is fixed, so are the contracts; solve them once
        if k not in memo:
            memo[k] = min_pay_contracts(q_bar, game.outcome_probs[states], margin, contract_method)
        table = memo[k]
    else:
        table = None
    rec = principal_choice(
        game.outcome_probs[states],
        game.principal_reward[states],
        principal_cont,
        q_bar,
        game.discount,
        margin,
        contract_method,
        table,
    )
    return [rec["principal_value"]], rec


def meta_algorithm(
    game: PrincipalAgentMDP,
    initial_policy: PrincipalPolicy | None = None,
    margin: float = 0.0,
    contract_method: str = "auto",
    sweep: str = "auto",
    tol: float = 1e-10,
    max_iterations: int = 1000,
    keep_iterates: bool = False,
) -> SPESolution:
    """Run the meta-algorithm (paper Algorithm 1) to a fixed point.

    Args:
        game: the game.
        initial_policy: ``ρ_0`` (default: pay nothing, no recommendation).
        margin: nudge ``ξ >= 0`` for the principal's contracts.
        contract_method: min-pay method (see :func:`contractrl.contracts.min_pay_contracts`).
        sweep: see :func:`contractrl.sweep.make_schedule`.
        tol: infinite horizon: tolerance of the inner value iterations.
        max_iterations: budget of outer iterations.
        keep_iterates: store each iteration's contractual Q in the trace.

    Returns:
        An :class:`SPESolution` with ``method="meta"``, its ``trace`` and ``converged``.
    """
    start = time.perf_counter()
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
    schedule = make_schedule(game, sweep)
    policy = initial_policy or PrincipalPolicy.pay_nothing(game.num_states, game.num_outcomes)
    check_policy(game, policy)
    if schedule.kind == "time" and policy.num_rows == 1:
        policy = PrincipalPolicy(
            np.repeat(policy.action, game.horizon, axis=0),
            np.repeat(policy.contract, game.horizon, axis=0),
        )
    s0 = game.initial_state
    trace: list[IterationRecord] = []
    prev_q = None
    converged = False
    for iteration in range(1, max_iterations + 1):
        response = agent_best_response(game, policy, sweep=sweep, tol=tol * 1e-2)
        memo = {} if schedule.kind == "fixed_point" else None
        stage = functools.partial(
            _principal_stage, game, response.q_truncated, margin, contract_method, memo
        )
        result = run_backward(game, schedule, stage, 1, tol)
        rec = result.records
        new_policy = PrincipalPolicy(rec["action"], rec["contract"])
        changed = int((~tables_equal(policy, new_policy)).sum())
        q = rec["principal_q"]
        trace.append(
            IterationRecord(
                iteration,
                float(result.values[0][0, s0]),
                float(response.value[0, s0]),
                changed,
                _q_change(prev_q, q),
                q.copy() if keep_iterates else None,
            )
        )
        policy, prev_q = new_policy, q
        if changed == 0:
            converged = True
            break
    return SPESolution(
        action=policy.action,
        contract=policy.contract,
        expected_payment=rec["expected_payment"],
        principal_value=result.values[0],
        agent_value=response.value,
        principal_q=rec["principal_q"],
        agent_q=response.q_truncated,
        initial_state=s0,
        horizon=game.horizon,
        method="meta",
        margin=float(margin),
        iterations=len(trace),
        converged=converged,
        solve_seconds=time.perf_counter() - start,
        heights=schedule.heights if schedule.horizon is not None else None,
        trace=tuple(trace),
    )


def _q_change(prev: np.ndarray | None, q: np.ndarray) -> float:
    if prev is None or prev.shape != q.shape:
        return float("inf")
    both = np.isfinite(prev) & np.isfinite(q)
    return float(np.max(np.abs(prev - q), where=both, initial=0.0))
