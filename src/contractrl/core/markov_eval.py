"""Exact evaluation of agents' policies against a multi-agent principal: metrics (d)–(f).

A principal is a plan ``[T, S]`` (recommended joint actions) with contracts ``[T, S, n]``;
agent ``i`` is paid ``b_i(t, s)`` at a step where it plays its recommendation. A policy of agent
``i`` is ``[T, S, A]`` action probabilities (``T = H``, or 1: stationary); agents draw
independently. Everything is computed exactly by a forward pass over the state distribution
from ``d0``, with the same definitions as the learners' evaluation
(:mod:`contractrl.multiagent.evaluation`, docs/outputs.md):

(d) follow rate — expected followed (step, agent) pairs over expected steps played × ``n``;
(e) SPE ratio — agent ``i``'s utility (rewards + payments per episode) playing its own policy
    while the others follow, over its utility following too; mean over agents;
(f) IC ratio — its utility playing its own policy while the others play theirs, over following
    while the others play theirs; mean over agents.

Ratios are ``nan`` where the denominator is not positive; the gains (numerator minus
denominator, above 0: deviating pays) are always defined. Per-episode totals are undiscounted
by default (``discount=1``), as the learners report them.

Tie rules of :func:`best_response` (actions within :data:`~.markov_solver.TIE_TOL` of the best):
``follow`` — the recommendation if it is among them (the principal-favourable rule of
docs/model.md §1), else the lowest; ``uniform`` — uniformly at random among them (an
indifferent agent that breaks ties at random); ``first`` — the lowest index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contractrl.core.markov_game import MarkovGame
from contractrl.core.markov_solver import (
    _check_plan,
    _iterate,
    _own_q,
    _plan_at,
    first_max,
    near_max,
)

TIE_RULES = ("follow", "uniform", "first")


@dataclass(frozen=True)
class BestResponse:
    """Agent ``i``'s exact best response to the principal, the others following.

    Attributes:
        agent: ``i``.
        q: ``[T, S, A]`` its Q-values including the payment for following.
        values: ``[T+1, S]`` its optimal values.
        policy: ``[T, S, A]`` action probabilities under the tie rule.
        tie_rule: one of :data:`TIE_RULES`.
    """

    agent: int
    q: np.ndarray
    values: np.ndarray
    policy: np.ndarray
    tie_rule: str


@dataclass(frozen=True)
class ProfileTotals:
    """Expected per-episode totals of a policy profile.

    Attributes:
        rewards: ``[n]`` environment rewards per agent.
        payments: ``[n]`` payments received per agent.
        follows: ``[n]`` expected steps on which each agent followed.
        steps: expected steps played (the episode may end early).
    """

    rewards: np.ndarray
    payments: np.ndarray
    follows: np.ndarray
    steps: float

    @property
    def utility(self) -> np.ndarray:
        """``[n]`` rewards + payments."""
        return self.rewards + self.payments

    @property
    def welfare(self) -> float:
        """``Σ_i`` rewards (payments are transfers)."""
        return float(self.rewards.sum())

    @property
    def follow_rate(self) -> float:
        """Followed (step, agent) pairs over steps played × ``n``."""
        return float(self.follows.sum() / (self.steps * len(self.follows)))


@dataclass(frozen=True)
class DeviationReport:
    """Metrics (a), (c), (d), (e), (f) of a profile, exactly (module docstring).

    Attributes:
        welfare: per episode, every agent playing its own policy.
        payments: per episode, the same profile.
        follow_rate: the same profile.
        spe_ratio: mean over agents.
        ic_ratio: mean over agents.
        spe_gain: mean over agents (utility deviating − following, others following).
        ic_gain: mean over agents (the others playing their own policies).
        own: totals of the all-own profile.
        follow: totals of the all-follow profile.
    """

    welfare: float
    payments: float
    follow_rate: float
    spe_ratio: float
    ic_ratio: float
    spe_gain: float
    ic_gain: float
    own: ProfileTotals
    follow: ProfileTotals


def follow_policy(game: MarkovGame, plan, agent: int) -> np.ndarray:
    """``[T, S, A]`` agent ``agent`` plays its recommendation (one-hot)."""
    plan = _check_plan(game, plan)
    actions = game.joint_actions[plan, agent]  # [T, S]
    return np.eye(game.num_actions)[actions]


def _check_contracts(game: MarkovGame, plan: np.ndarray, contracts) -> np.ndarray:
    contracts = np.asarray(contracts, np.float64)
    expected = (plan.shape[0], game.num_states, game.num_agents)
    if contracts.shape != expected:
        raise ValueError(f"contracts: expected shape {list(expected)}, got {list(contracts.shape)}")
    if not np.all(np.isfinite(contracts)) or np.any(contracts < 0):
        raise ValueError("contracts: must be finite and >= 0 (limited liability)")
    return contracts


def _tie_policy(q: np.ndarray, recs: np.ndarray, tie_rule: str) -> np.ndarray:
    """``[S, A]`` probabilities over the near-maxima of ``q [S, A]``."""
    ties = near_max(q)
    num_actions = q.shape[-1]
    if tie_rule == "uniform":
        return ties / ties.sum(axis=-1, keepdims=True)
    pick = first_max(q)
    if tie_rule == "follow":
        pick = np.where(ties[np.arange(len(recs)), recs], recs, pick)
    return np.eye(num_actions)[pick]


def best_response(
    game: MarkovGame, plan, contracts, agent: int, tie_rule: str = "follow"
) -> BestResponse:
    """Agent ``agent``'s exact best response to ``(plan, contracts)``, the others following.

    ``Q_i(t, s, a) = r_i(s, (a, ρ_{-i})) + b_i(t, s)·[a = ρ_i] + γ E V_i(t+1, s')``,
    ``V_i = max_a Q_i`` (backward induction; stationary principals on an infinite horizon are
    iterated to a fixed point). Policies of ``T`` steps, as the plan.

    Args:
        game: the game.
        plan: ``[T, S]`` recommended joint actions.
        contracts: ``[T, S, n]`` payments for following (``>= 0``).
        agent: ``i`` in ``[0, n)``.
        tie_rule: one of :data:`TIE_RULES`.
    """
    plan = _check_plan(game, plan)
    contracts = _check_contracts(game, plan, contracts)
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule: expected one of {TIE_RULES}, got {tie_rule!r}")
    if not (isinstance(agent, int | np.integer) and 0 <= agent < game.num_agents):
        raise ValueError(f"agent: expected an index in [0, {game.num_agents}), got {agent!r}")
    onehot = np.eye(game.num_actions)

    def step(t, carried):
        values = np.zeros((game.num_states, game.num_agents))
        values[:, agent] = carried[0]
        q_all = game.rewards + game.discount * game.continuation(values)
        joint = _plan_at(plan, t)
        recs = game.joint_actions[joint, agent]
        q = (
            _own_q(game, q_all, joint)[:, agent]
            + _plan_at(contracts, t)[:, agent, None] * (onehot[recs])
        )
        return (q.max(axis=-1),), (q, _tie_policy(q, recs, tie_rule))

    carried, rec, _, _ = _iterate(game, step, (np.zeros(game.num_states),))
    return BestResponse(
        agent=int(agent),
        q=np.stack([r[0] for r in rec]),
        values=np.stack([c[0] for c in carried]),
        policy=np.stack([r[1] for r in rec]),
        tie_rule=tie_rule,
    )


def evaluate_profile(
    game: MarkovGame,
    plan,
    contracts,
    policies: Sequence[np.ndarray],
    steps: int | None = None,
    discount: float = 1.0,
) -> ProfileTotals:
    """Expected per-episode totals when agent ``i`` plays ``policies[i]`` (forward pass).

    Args:
        game: the game.
        plan: ``[T, S]`` recommended joint actions.
        contracts: ``[T, S, n]`` payments for following.
        policies: ``n`` arrays ``[T, S, A]`` (or ``[1, S, A]``: stationary).
        steps: episode length (default: the game's horizon; needed when it is infinite).
        discount: weight ``discount**t`` of step ``t`` (default 1: per-episode totals).
    """
    plan = _check_plan(game, plan)
    contracts = _check_contracts(game, plan, contracts)
    steps = game.horizon if steps is None else steps
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer (the episode length), got {steps!r}")
    pols = _check_policies(game, policies)
    n, ja = game.num_agents, game.joint_actions
    dist = game.initial.copy()
    rewards, payments, follows, played = np.zeros(n), np.zeros(n), np.zeros(n), 0.0
    for t in range(steps):
        weight = discount**t
        joint_probs = np.ones((game.num_states, game.num_joint))
        for i in range(n):
            joint_probs *= _plan_at(pols[i], t)[:, ja[:, i]]
        rec = ja[_plan_at(plan, t)]  # [S, n]
        p_follow = np.stack(
            [_plan_at(pols[i], t)[np.arange(game.num_states), rec[:, i]] for i in range(n)], 1
        )
        rewards += weight * np.einsum("s,sj,sji->i", dist, joint_probs, game.rewards)
        payments += weight * dist @ (p_follow * _plan_at(contracts, t))
        follows += dist @ p_follow
        played += dist.sum()
        dist = (dist[:, None] * joint_probs).reshape(-1) @ game.transitions
    return ProfileTotals(rewards, payments, follows, float(played))


def _check_policies(game: MarkovGame, policies) -> list[np.ndarray]:
    if len(policies) != game.num_agents:
        raise ValueError(f"policies: expected {game.num_agents} policies, got {len(policies)}")
    out = []
    for i, pol in enumerate(policies):
        pol = np.asarray(pol, np.float64)
        if pol.ndim != 3 or pol.shape[1:] != (game.num_states, game.num_actions):
            raise ValueError(
                f"policies[{i}]: expected shape [T, {game.num_states}, {game.num_actions}], "
                f"got {list(pol.shape)}"
            )
        if np.any(pol < 0) or np.any(np.abs(pol.sum(axis=-1) - 1) > 1e-9):
            raise ValueError(f"policies[{i}]: rows must be probability distributions")
        out.append(pol)
    return out


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def deviation_report(
    game: MarkovGame,
    plan,
    contracts,
    policies: Sequence[np.ndarray],
    steps: int | None = None,
    discount: float = 1.0,
) -> DeviationReport:
    """Welfare, payments, follow rate, SPE and IC ratios of ``policies`` (module docstring).

    The same profiles as the learners' evaluation: everyone own, everyone following, and per
    agent ``i``: ``i`` alone own (SPE), ``i`` alone following (IC). Arguments as
    :func:`evaluate_profile`.
    """
    plan = _check_plan(game, plan)
    n = game.num_agents
    follow = [follow_policy(game, plan, i) for i in range(n)]
    own = list(policies)

    def totals(mask):
        chosen = [own[i] if mask[i] else follow[i] for i in range(n)]
        return evaluate_profile(game, plan, contracts, chosen, steps, discount)

    all_own, all_follow = totals([True] * n), totals([False] * n)
    spe, ic, spe_gain, ic_gain = [], [], [], []
    for i in range(n):
        alone = totals([j == i for j in range(n)]).utility[i]
        follows = totals([j != i for j in range(n)]).utility[i]
        spe.append(_ratio(alone, all_follow.utility[i]))
        ic.append(_ratio(all_own.utility[i], follows))
        spe_gain.append(alone - all_follow.utility[i])
        ic_gain.append(all_own.utility[i] - follows)
    return DeviationReport(
        welfare=all_own.welfare,
        payments=float(all_own.payments.sum()),
        follow_rate=all_own.follow_rate,
        spe_ratio=float(np.mean(spe)),
        ic_ratio=float(np.mean(ic)),
        spe_gain=float(np.mean(spe_gain)),
        ic_gain=float(np.mean(ic_gain)),
        own=all_own,
        follow=all_follow,
    )


def plan_summary(game: MarkovGame, solution) -> dict:
    """Per-episode exact references of a principal's plan and contracts (a JSON-ready dict).

    ``solution`` has ``plan``, ``contracts``, ``welfare_values`` and ``payment_values`` (a
    :class:`~.markov_solver.PrincipalSolution`). Keys: ``welfare``, ``payments``,
    ``payment_share`` (everyone following), the follow rate and SPE/IC ratios of agents that
    best-respond exactly and break ties uniformly at random (``*_random_ties``; ``_alone``:
    the others following), and the discounted welfare and payments from ``d0``.
    """
    n = game.num_agents
    plan, contracts = solution.plan, solution.contracts
    follow = [follow_policy(game, plan, i) for i in range(n)]
    totals = evaluate_profile(game, plan, contracts, follow)
    uniform = [best_response(game, plan, contracts, i, "uniform").policy for i in range(n)]
    both = deviation_report(game, plan, contracts, uniform)
    alone = [
        evaluate_profile(
            game, plan, contracts, [uniform[j] if j == i else follow[j] for j in range(n)]
        )
        for i in range(n)
    ]
    return {
        "welfare": totals.welfare,
        "payments": float(totals.payments.sum()),
        "payment_share": _ratio(float(totals.payments.sum()), totals.welfare),
        "follow_rate_random_ties": both.follow_rate,
        "follow_rate_alone": float(
            sum(a.follows[i] for i, a in enumerate(alone)) / (n * totals.steps)
        ),
        "spe_ratio_random_ties": both.spe_ratio,
        "ic_ratio_random_ties": both.ic_ratio,
        "welfare_random_ties": both.welfare,
        "discounted_welfare": float(game.initial @ solution.welfare_values[0]),
        "discounted_payments": float(game.initial @ solution.payment_values[0]),
    }
