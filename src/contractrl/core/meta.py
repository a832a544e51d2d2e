"""The meta-algorithm (paper Algorithm 1, docs/model.md §3): alternate exact best responses.

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
    >>> from contractrl.core.games import figure1
    >>> sol = meta_algorithm(figure1())
    >>> sol.iterations, round(sol.initial_principal_value, 9), round(sol.initial_agent_value, 9)
    (2, 1.0, 0.2)
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from contractrl.core.contracts import ContractTable, min_pay_contracts
from contractrl.core.evaluate import agent_best_response, check_policy, evaluate_policies
from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.solution import (
    GameNames,
    IterationRecord,
    PrincipalPolicy,
    SPESolution,
    tables_equal,
)
from contractrl.core.stages import (
    PrincipalChoice,
    implementability_status,
    principal_choice,
    short_horizon_rows,
)
from contractrl.core.sweep import make_schedule, run_backward, stall_window


@dataclass(frozen=True)
class PrincipalStage:
    """The principal's best response to a fixed agent (Algorithm 1, step 2).

    One value (the principal's); record :class:`~contractrl.core.stages.PrincipalChoice`.

    Attributes:
        game: the game.
        agent_q: ``[K, S, A]`` the agent's truncated Q ``Q̄(·|ρ_k)`` it answers contracts with.
        margin: nudge ``ξ``.
        contract_method: min-pay method.
        table: min-pay contracts for every state when ``agent_q`` is stationary and every call
            covers all states (fixed point: solved once, not once per iteration).
    """

    game: PrincipalAgentMDP
    agent_q: np.ndarray
    margin: float
    contract_method: str
    table: ContractTable | None = None

    def __call__(
        self, k: int, states: np.ndarray | slice, conts: list[np.ndarray]
    ) -> tuple[list[np.ndarray], PrincipalChoice]:
        """One backup at ``states`` (see :data:`contractrl.core.sweep.StageFn`)."""
        (principal_cont,) = conts
        game = self.game
        q_bar = self.agent_q[min(k, self.agent_q.shape[0] - 1)][states]
        choice = principal_choice(
            game.outcome_probs[states],
            game.principal_reward[states],
            principal_cont,
            q_bar,
            game.discount,
            self.margin,
            self.contract_method,
            self.table,
        )
        return [choice.principal_value], choice


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
        contract_method: min-pay method (see :func:`contractrl.core.contracts.min_pay_contracts`).
        sweep: see :func:`contractrl.core.sweep.make_schedule`.
        tol: infinite horizon: tolerance of the inner value iterations.
        max_iterations: budget of outer iterations.
        keep_iterates: store each iteration's contractual Q in the trace.

    Returns:
        An :class:`SPESolution` with ``method="meta"``, its ``trace`` and ``converged``. With
        an infinite horizon the iteration need not converge: a game may have no stationary SPE
        (``docs/theory-checks.md``). It stops early when a policy repeats (``status="cycle"``)
        or the contractual Q's change stops shrinking (``"stalled"``), else at
        ``max_iterations`` (``"budget"``). Without convergence the tables hold one consistent
        iterate: the last policy, the agent's exact best response to it and both players'
        exact values under that pair.
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
    seen = {_digest(policy)}  # digests of every policy so far (a few bytes each)
    window = stall_window(game.discount) if schedule.kind == "fixed_point" else max_iterations
    best_change, best_at = np.inf, 0
    prev_q = None
    status = "budget"
    for iteration in range(1, max_iterations + 1):
        response = agent_best_response(game, policy, sweep=sweep, tol=tol * 1e-2)
        table = None
        if schedule.kind == "fixed_point":  # Q̄ is fixed, so are the contracts: solve them once
            table = min_pay_contracts(
                response.q_truncated[0], game.outcome_probs, margin, contract_method
            )
        stage = PrincipalStage(game, response.q_truncated, float(margin), contract_method, table)
        result = run_backward(game, schedule, stage, 1, tol)
        rec = result.records
        new_policy = PrincipalPolicy(rec.action, rec.contract)
        changed = int((~tables_equal(policy, new_policy)).sum())
        q = rec.principal_q
        q_change = _q_change(prev_q, q)
        trace.append(
            IterationRecord(
                iteration,
                float(result.values[0][0, s0]),
                float(response.value[0, s0]),
                changed,
                q_change,
                q.copy() if keep_iterates else None,
            )
        )
        if changed == 0:
            status = "converged"
            break
        digest = _digest(new_policy)
        if digest in seen:
            status = "cycle"  # back at an earlier policy: the iteration is periodic
            break
        seen.add(digest)
        if q_change < 0.5 * best_change:
            best_change, best_at = q_change, iteration
        elif iteration - best_at >= window:
            status = "stalled"
            break
        policy, prev_q = new_policy, q
    if status == "converged":
        return SPESolution(
            action=policy.action,
            contract=policy.contract,
            expected_payment=rec.expected_payment,
            principal_value=result.values[0],
            agent_value=response.value,
            principal_q=rec.principal_q,
            agent_q=response.q_truncated,
            initial_state=s0,
            horizon=game.horizon,
            names=GameNames.of(game),
            method="meta",
            margin=float(margin),
            iterations=len(trace),
            converged=True,
            solve_seconds=time.perf_counter() - start,
            heights=schedule.heights if schedule.horizon is not None else None,
            trace=tuple(trace),
            status=implementability_status("converged", result.values[0]),
            # converged: the stored row is the SPE's, so the short horizons complete it
            short_rows=short_horizon_rows(
                game, schedule, margin, contract_method, [response.value, result.values[0]]
            ),
        )
    # Not converged: report one consistent iterate, the last policy ρ = new_policy, with the
    # agent's exact best response to it and both players' exact values under that pair (the
    # agent may then not follow every recommendation: ρ is not an equilibrium).
    response = agent_best_response(game, new_policy, sweep=sweep, tol=tol * 1e-2)
    values = evaluate_policies(game, new_policy, response.action, sweep=sweep, tol=tol * 1e-2)
    return SPESolution(
        action=new_policy.action,
        contract=new_policy.contract,
        expected_payment=rec.expected_payment,
        principal_value=values.principal,
        agent_value=values.agent,
        principal_q=rec.principal_q,
        agent_q=response.q_truncated,
        initial_state=s0,
        horizon=game.horizon,
        names=GameNames.of(game),
        method="meta",
        margin=float(margin),
        iterations=len(trace),
        converged=False,
        solve_seconds=time.perf_counter() - start,
        heights=schedule.heights if schedule.horizon is not None else None,
        trace=tuple(trace),
        status=status,
    )


def _digest(policy: PrincipalPolicy) -> bytes:
    """A short fingerprint of a policy's exact bytes (actions and contracts).

    The iteration is a deterministic map of the policy, so meeting a bit-identical earlier
    policy proves it periodic: it will never converge. (Exact repeats are what games without a
    stationary SPE produce; a cycle through policies that differ by rounding is left to the
    stall test.)
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.ascontiguousarray(policy.action, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(policy.contract, dtype=np.float64).tobytes())
    return digest.digest()


def _q_change(prev: np.ndarray | None, q: np.ndarray) -> float:
    if prev is None or prev.shape != q.shape:
        return float("inf")
    both = np.isfinite(prev) & np.isfinite(q)
    # Subtract only where both are finite: -inf - -inf would warn (and is no change).
    diff = np.abs(np.subtract(prev, q, out=np.zeros_like(q), where=both))
    return float(diff.max(initial=0.0))
