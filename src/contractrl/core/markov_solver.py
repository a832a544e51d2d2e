"""Exact solutions of a small :class:`~.markov_game.MarkovGame` with the paper's team principal.

Paper Section 5.1: the principal recommends a joint action ``a = ρ(t, s)`` and pays agent ``i``
the amount ``b_i(t, s)`` only if it plays its recommendation ``a_i``. The contract is the
min-pay one computed with **the others following**: with ``Q̄_i(t, s, a')`` agent ``i``'s value
of playing ``a'`` now while the others play ``a_{-i}`` (no payment now; from ``t+1`` on the
principal's contracts as they are),

    b_i(t, s) = max_{a'} Q̄_i(t, s, a') − Q̄_i(t, s, a_i)                 (Section 5.1, ``b_i``)

— the gap between the best deviation and following. Following then earns
``V_i(t, s) = max_{a'} Q̄_i(t, s, a')``: exactly agent ``i``'s **selfish** optimum against the
plan (the others following), whatever the contracts are made of; payments only top following
up to it. Ties are broken in the principal's favour: an indifferent agent follows (docs/model.md
§1). Everything here is backward induction over ``t = H−1 … 0`` (finite horizon, tables
``[H, ...]``), or the same one-step operator iterated to a fixed point (infinite horizon:
stationary tables ``[1, ...]``, :data:`VALUE_TOL`). Cost ``O(T · nnz(T) · n)``; dense in
``J = A**n``, so small games only. Values are discounted with the game's ``γ``.

* :func:`team_optimum` — value iteration on welfare ``Σ_i r_i``;
* :func:`selfish_q` — each agent's ``Q̄_i`` and the exact contracts ``b_i`` for a given plan;
* :func:`principal_optimum` — the subgame-perfect principal for ``Σ_i r_i − α Σ_i b_i`` (the
  paper's ``r^p = Σ_i r_i / α − Σ_i b_i``, scaled by ``α``); ``α = 0`` is its limit:
  welfare first, payments second (docs/exact-multiagent.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from contractrl.core.markov_game import MarkovGame

#: Two values closer than ``TIE_TOL · max(1, |value|)`` are a tie (argmax sets, tie rules).
TIE_TOL = 1e-9
#: Infinite horizon: stop when no value moves by more than this (sup norm).
VALUE_TOL = 1e-10
#: Infinite horizon: at most this many applications of the one-step operator.
MAX_ITERATIONS = 100_000


@dataclass(frozen=True)
class TeamSolution:
    """The team optimum: the plan that maximises discounted welfare ``Σ_t γ^t Σ_i r_i``.

    Attributes:
        plan: ``[T, S]`` joint action per step and state (``T = H``, or 1 when stationary);
            among tied joint actions the lowest index.
        q: ``[T, S, J]`` welfare Q-values under the optimal continuation.
        values: ``[T+1, S]`` optimal welfare values (``values[T] = 0`` when finite).
        value: ``d0 · values[0]``, the optimum from the initial distribution.
        iterations: applications of the one-step operator.
        converged: always true for a finite horizon.
    """

    plan: np.ndarray
    q: np.ndarray
    values: np.ndarray
    value: float
    iterations: int
    converged: bool


@dataclass(frozen=True)
class SelfishQ:
    """Each agent's selfish Q-values against a plan, the others following it.

    Attributes:
        q: ``[T, S, n, A]`` ``Q̄_i(t, s, a)``: agent ``i`` plays ``a`` now, the others the plan;
            no payment now; from ``t+1`` on agent ``i`` best-responds (and, under the exact
            contracts, is paid up to this value for following).
        values: ``[T+1, S, n]`` ``V_i(t, s) = max_a Q̄_i(t, s, a)``.
        contracts: ``[T, S, n]`` the exact min-pay contracts ``b_i = max_a Q̄_i − Q̄_i(a_i)``
            (reward units per step, ``>= 0``).
        iterations: applications of the one-step operator.
        converged: always true for a finite horizon.
    """

    q: np.ndarray
    values: np.ndarray
    contracts: np.ndarray
    iterations: int
    converged: bool


@dataclass(frozen=True)
class PrincipalSolution:
    """The subgame-perfect principal's plan, its exact contracts and the values they give.

    Attributes:
        alpha: weight of payments (``0``: welfare first, payments second).
        plan: ``[T, S]`` recommended joint action.
        contracts: ``[T, S, n]`` min-pay contracts of the plan (paid to followers).
        agent_values: ``[T+1, S, n]`` each agent's value (rewards + payments) following.
        welfare_values: ``[T+1, S]`` discounted welfare of the plan.
        payment_values: ``[T+1, S]`` discounted payments ``Σ_i b_i`` of the plan.
        value: ``d0 · (welfare_values[0] − α payment_values[0])``.
        iterations: applications of the one-step operator.
        converged: always true for a finite horizon.
    """

    alpha: float
    plan: np.ndarray
    contracts: np.ndarray
    agent_values: np.ndarray
    welfare_values: np.ndarray
    payment_values: np.ndarray
    value: float
    iterations: int
    converged: bool


def near_max(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Boolean mask of the entries within :data:`TIE_TOL` of the maximum along ``axis``."""
    best = np.max(values, axis=axis, keepdims=True)
    return values >= best - TIE_TOL * np.maximum(1.0, np.abs(best))


def first_max(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Lowest index along the last axis among the near-maxima (``mask`` restricts the set)."""
    if mask is not None:
        values = np.where(mask, values, -np.inf)
    return np.argmax(near_max(values), axis=-1)


def _iterate(game: MarkovGame, step: Callable, terminal) -> tuple[list, list, int, bool]:
    """Backward induction (``H`` steps) or fixed-point iteration of ``step``.

    ``step(t, carried) -> (carried, recorded)``; returns the carried values per step
    ``[T+1]`` (time order), the recorded tables ``[T]``, the iterations and convergence.
    """
    if game.horizon is not None:
        carried, recorded = [terminal], []
        for t in reversed(range(game.horizon)):
            new, rec = step(t, carried[0])
            carried.insert(0, new)
            recorded.insert(0, rec)
        return carried, recorded, game.horizon, True
    current = terminal
    for k in range(1, MAX_ITERATIONS + 1):
        new, rec = step(0, current)
        moved = max(
            float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(new, current, strict=True)
        )
        current = new
        if moved <= VALUE_TOL:
            return [new, new], [rec], k, True
    return [current, current], [rec], MAX_ITERATIONS, False


def team_optimum(game: MarkovGame) -> TeamSolution:
    """Value iteration on the welfare ``Σ_i r_i`` (the cooperative optimum of paper Section 5.2).

    ``Q(t, s, j) = W(s, j) + γ Σ_s' T(s'|s, j) V(t+1, s')``, ``V(t, s) = max_j Q(t, s, j)``.
    """
    welfare = game.welfare

    def step(t, carried):
        q = welfare + game.discount * game.continuation(carried[0])
        return (q.max(axis=1),), (q, first_max(q))

    carried, rec, iterations, converged = _iterate(game, step, (np.zeros(game.num_states),))
    values = np.stack([c[0] for c in carried])
    return TeamSolution(
        plan=np.stack([r[1] for r in rec]),
        q=np.stack([r[0] for r in rec]),
        values=values,
        value=float(game.initial @ values[0]),
        iterations=iterations,
        converged=converged,
    )


def _plan_at(plan: np.ndarray, t: int) -> np.ndarray:
    return plan[t] if plan.shape[0] > 1 else plan[0]


def _check_plan(game: MarkovGame, plan) -> np.ndarray:
    plan = np.asarray(plan)
    steps = 1 if game.horizon is None else game.horizon
    if plan.ndim != 2 or plan.shape[1] != game.num_states or plan.shape[0] not in (1, steps):
        raise ValueError(
            f"plan: expected shape [{steps}, {game.num_states}] (or [1, S]: stationary), "
            f"got {list(plan.shape)}"
        )
    if not np.issubdtype(plan.dtype, np.integer) or plan.min() < 0 or plan.max() >= game.num_joint:
        raise ValueError(f"plan: expected joint-action indices in [0, {game.num_joint})")
    return plan


def _own_q(game: MarkovGame, q_all: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """``[S, n, A]`` agent ``i``'s ``q_all [S, J, n]`` of each own action, the others at ``joint``.

    ``joint`` is ``[S]`` (one joint action per state) or ``[S, J]`` (then ``[S, J, n, A]``).
    """
    dev = game.deviations[joint]  # [..., n, A]
    agents = np.arange(game.num_agents)[:, None]
    lead = np.arange(game.num_states).reshape((-1,) + (1,) * (dev.ndim - 1))
    return q_all[lead, dev, agents]


def selfish_q(game: MarkovGame, plan) -> SelfishQ:
    """Each agent's selfish ``Q̄_i`` against ``plan`` (the others following) and its contracts.

    ``Q̄_i(t, s, a) = r_i(s, (a, ρ_{-i})) + γ Σ_s' T(s'|s, (a, ρ_{-i})) V_i(t+1, s')`` with
    ``V_i = max_a Q̄_i``; ``b_i = V_i − Q̄_i(ρ_i)`` (paper Section 5.1).

    Args:
        game: the game.
        plan: ``[H, S]`` (or ``[1, S]``, stationary) recommended joint actions (int).
    """
    plan = _check_plan(game, plan)
    rec = game.joint_actions  # [J, n]
    states = np.arange(game.num_states)

    def step(t, carried):
        q_all = game.rewards + game.discount * game.continuation(carried[0])  # [S, J, n]
        joint = _plan_at(plan, t)
        q = _own_q(game, q_all, joint)  # [S, n, A]
        values = q.max(axis=-1)
        chosen = q[states[:, None], np.arange(game.num_agents), rec[joint]]
        return (values,), (q, np.maximum(values - chosen, 0.0))

    zeros = np.zeros((game.num_states, game.num_agents))
    carried, rec_tables, iterations, converged = _iterate(game, step, (zeros,))
    return SelfishQ(
        q=np.stack([r[0] for r in rec_tables]),
        values=np.stack([c[0] for c in carried]),
        contracts=np.stack([r[1] for r in rec_tables]),
        iterations=iterations,
        converged=converged,
    )


def principal_optimum(game: MarkovGame, alpha: float = 0.1) -> PrincipalSolution:
    r"""The subgame-perfect principal of paper Section 5 by backward induction.

    At every ``(t, s)``, for every joint action ``j``, the exact contracts ``b_i(t, s, j)``
    (the others following ``j``, the continuation the plan already chosen for ``t+1 …``) give

    .. math::
        q^p(t, s, j) = W(s, j) − α \sum_i b_i(t, s, j) + γ \sum_{s'} T(s'|s, j) V^p(t+1, s'),

    the multi-agent contractual Q-function (paper Section 5.1; Section 3's ``q`` with the
    principal's reward ``r^p = W/α − Σ_i b_i`` scaled by ``α``). The principal plays the
    maximiser (ties: lowest ``j``). With ``α = 0``, the limit ``α → 0``: only joint actions
    within :data:`TIE_TOL` of the team optimum's ``Q`` are allowed and among them the
    principal minimises discounted payments ``Σ_i b_i + γ E P(t+1, s')`` — the
    payment-minimising welfare-optimal plan.

    This is the principal's **subgame-perfect** optimum: each ``(t, s)`` is optimised given the
    plan after it, so no fixed point over whole plans is needed (the plan at ``t`` cannot
    change the contracts after ``t``). It is not the commitment optimum over all plans: a plan
    at ``t+1`` that lowers an agent's deviation value would lower the contracts at ``t``, but
    the principal could not credibly keep it (docs/exact-multiagent.md). An infinite horizon
    iterates the one-step operator; ``converged`` reports whether the plan settled.

    Args:
        game: the game.
        alpha: weight of payments ``α >= 0`` (paper: 0.1).
    """
    if not (isinstance(alpha, int | float) and np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha: expected a finite number >= 0, got {alpha!r}")
    alpha = float(alpha)
    team = team_optimum(game) if alpha == 0 else None
    welfare = game.welfare
    joint_all = np.broadcast_to(np.arange(game.num_joint), (game.num_states, game.num_joint))
    states = np.arange(game.num_states)

    def step(t, carried):
        agent_v, welfare_v, payment_v = carried
        q_all = game.rewards + game.discount * game.continuation(agent_v)  # [S, J, n]
        best = _own_q(game, q_all, joint_all).max(axis=-1)  # [S, J, n]
        contracts = np.maximum(best - q_all, 0.0)  # b_i for every candidate j
        q_welfare = welfare + game.discount * game.continuation(welfare_v)
        q_payment = contracts.sum(axis=2) + game.discount * game.continuation(payment_v)
        if team is None:
            choice = first_max(q_welfare - alpha * q_payment)
        else:
            allowed = near_max(team.q[t if team.q.shape[0] > 1 else 0])
            choice = first_max(-q_payment, allowed)
        new = (best[states, choice], q_welfare[states, choice], q_payment[states, choice])
        return new, (choice, contracts[states, choice])

    zeros = np.zeros(game.num_states)
    start = (np.zeros((game.num_states, game.num_agents)), zeros, zeros)
    carried, rec_tables, iterations, converged = _iterate(game, step, start)
    welfare_values = np.stack([c[1] for c in carried])
    payment_values = np.stack([c[2] for c in carried])
    return PrincipalSolution(
        alpha=alpha,
        plan=np.stack([r[0] for r in rec_tables]),
        contracts=np.stack([r[1] for r in rec_tables]),
        agent_values=np.stack([c[0] for c in carried]),
        welfare_values=welfare_values,
        payment_values=payment_values,
        value=float(game.initial @ (welfare_values[0] - alpha * payment_values[0])),
        iterations=iterations,
        converged=converged,
    )
