"""An exact audit of a learned multi-agent principal (docs/exact-multiagent.md, "Audit").

A learned principal (paper Section 5, Algorithm 3), read off on every state of a small game's
exact export, is a plan ``ρ [T, S]`` (recommended joint actions; ``T = 1``: stationary, as the
learners' networks are when time is not observed) and the contracts ``b̂ [T, S, n]`` it would
pay each follower (reward units per step). The audit compares them with the exact solution:

* **welfare** of the plan when everyone follows, against the team optimum;
* **contracts** against the exact min-pay contracts of *the same plan* (:func:`.selfish_q`:
  ``b*_i = max_a Q̄_i − Q̄_i(ρ_i)``, the others following), on the steps the plan's own
  episodes visit (each ``(t, s, i)`` weighted by the probability of being at ``s`` at step
  ``t``): mean error (bias), RMSE, the share of visited steps paid less than ``b*`` (less than
  following costs, given exact pricing afterwards), and the payments per episode of both;
* **the exact best response** of each agent to ``(ρ, b̂)`` (:func:`.markov_eval.best_response`,
  the others following; both tie rules ``follow`` and ``uniform``): the follow rate, SPE and IC
  ratios and welfare that rational agents would give the learned principal
  (:func:`.markov_eval.deviation_report`, all per episode, undiscounted).

NumPy and SciPy only; every number is exact (no sampling).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from contractrl.core.markov_eval import (
    best_response,
    deviation_report,
    evaluate_profile,
    follow_policy,
)
from contractrl.core.markov_game import MarkovGame
from contractrl.core.markov_solver import _check_plan, _plan_at, selfish_q

#: Below this a learned contract counts as paying less than the exact one (reward units).
UNDERPAY_TOL = 1e-6


@dataclass(frozen=True)
class BestResponseAudit:
    """What exactly best-responding agents give the learned principal (per episode).

    Attributes:
        tie_rule: ``follow`` (the recommendation among the best actions) or ``uniform``.
        follow_rate: followed (step, agent) pairs over steps played × ``n``.
        spe_ratio: mean over agents (paper Section 5.2 metric (e)).
        ic_ratio: mean over agents (metric (f)); ``nan`` where an agent's utility following is
            not positive (e.g. an exact contract that leaves an agent at 0).
        spe_gain: mean over agents of utility deviating alone minus following (always defined).
        ic_gain: the same with the others playing their own best responses.
        welfare: the agents' rewards, everyone best-responding.
        payments: what the principal pays them.
    """

    tie_rule: str
    follow_rate: float
    spe_ratio: float
    ic_ratio: float
    spe_gain: float
    ic_gain: float
    welfare: float
    payments: float


@dataclass(frozen=True)
class ContractAudit:
    """The exact audit of a learned principal (module docstring); JSON-ready via :meth:`to_dict`.

    Attributes:
        team_welfare: the team optimum per episode.
        plan_welfare: the learned plan's welfare per episode, everyone following.
        welfare_of_optimum: ``plan_welfare / team_welfare``.
        payments_learned: ``Σ_i b̂_i`` per episode, everyone following.
        payments_exact: ``Σ_i b*_i`` per episode for the same plan, everyone following.
        contract_bias: visit-weighted mean of ``b̂ − b*`` per (step, agent).
        contract_rmse: visit-weighted root mean square of ``b̂ − b*``.
        underpaid_share: visit-weighted share of (step, agent) with ``b̂ < b* − UNDERPAY_TOL``:
            paid less than following costs *given exact pricing afterwards* (with the learned
            contracts later on, the agent's real incentive differs; the best response says what
            it does).
        contested_share: visit-weighted share with ``b* > UNDERPAY_TOL`` (following costs the
            agent something, so the contract matters).
        visited_states: states the plan's episodes reach with positive probability.
        best_response: one :class:`BestResponseAudit` per tie rule.
    """

    team_welfare: float
    plan_welfare: float
    welfare_of_optimum: float
    payments_learned: float
    payments_exact: float
    contract_bias: float
    contract_rmse: float
    underpaid_share: float
    contested_share: float
    visited_states: int
    best_response: tuple[BestResponseAudit, ...]

    def to_dict(self) -> dict:
        """A JSON-ready dict (``best_response`` keyed by tie rule)."""
        out = asdict(self)
        out["best_response"] = {b.tie_rule: asdict(b) for b in self.best_response}
        for b in out["best_response"].values():
            del b["tie_rule"]
        return out


def _profile_metrics(report) -> dict[str, float]:
    """What :class:`BestResponseAudit` and :class:`AgentsAudit` take from a deviation report."""
    return {
        "follow_rate": report.follow_rate,
        "spe_ratio": report.spe_ratio,
        "ic_ratio": report.ic_ratio,
        "spe_gain": report.spe_gain,
        "ic_gain": report.ic_gain,
        "welfare": report.welfare,
        "payments": report.payments,
    }


def _check_steps(game: MarkovGame, steps: int | None) -> None:
    if game.horizon is not None and steps not in (None, game.horizon):
        raise ValueError(
            f"steps: the game's horizon is {game.horizon}; give steps only when it is infinite"
        )


def visitation(game: MarkovGame, plan, steps: int | None = None) -> np.ndarray:
    """``[T, S]`` the probability of being at ``s`` at step ``t`` when everyone follows ``plan``.

    ``T``: the game's horizon (or ``steps`` when it is infinite). A row sums to the probability
    that the episode is still running.
    """
    plan = _check_plan(game, plan)
    steps = game.horizon if steps is None else steps
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected a positive integer (the episode length), got {steps!r}")
    states = np.arange(game.num_states)
    dist = game.initial.copy()
    out = np.zeros((steps, game.num_states))
    for t in range(steps):
        out[t] = dist
        rows = states * game.num_joint + _plan_at(plan, t)
        dist = dist @ game.transitions[rows]
    return out


def audit_principal(
    game: MarkovGame,
    plan,
    contracts,
    team_welfare: float,
    steps: int | None = None,
    tie_rules: tuple[str, ...] = ("follow", "uniform"),
) -> ContractAudit:
    """Audit a learned principal ``(plan, contracts)`` against the exact solution.

    Args:
        game: the exported game.
        plan: ``[T, S]`` or ``[1, S]`` (stationary) recommended joint actions.
        contracts: ``[T, S, n]`` or ``[1, S, n]`` the learned payments for following (``>= 0``,
            reward units per step).
        team_welfare: the team optimum per episode (:func:`.markov_eval.plan_summary`'s
            ``welfare`` of ``principal_optimum(game, 0)``), the welfare reference (finite;
            ``welfare_of_optimum`` is ``nan`` unless it is positive).
        steps: episode length when the horizon is infinite.
        tie_rules: the best-responders' tie rules (:data:`.markov_eval.TIE_RULES`).
    """
    plan = _check_plan(game, plan)
    _check_steps(game, steps)
    if not (isinstance(team_welfare, int | float | np.floating) and np.isfinite(team_welfare)):
        raise ValueError(f"team_welfare: expected a finite number, got {team_welfare!r}")
    contracts = np.asarray(contracts, np.float64)
    if contracts.shape != (plan.shape[0], game.num_states, game.num_agents):
        raise ValueError(
            f"contracts: expected shape {[plan.shape[0], game.num_states, game.num_agents]}, "
            f"got {list(contracts.shape)}"
        )
    n = game.num_agents
    visits = visitation(game, plan, steps)  # [T, S]
    exact = selfish_q(game, plan).contracts  # [H, S, n] (or [1, S, n] on an infinite horizon)
    horizon = visits.shape[0]
    learned_t = np.stack([_plan_at(contracts, t) for t in range(horizon)])
    exact_t = np.stack([_plan_at(exact, t) for t in range(horizon)])
    error = learned_t - exact_t  # [T, S, n]
    weight = np.repeat(visits[..., None], n, axis=-1)
    total = weight.sum()
    follow = [follow_policy(game, plan, i) for i in range(n)]
    followed = evaluate_profile(game, plan, contracts, follow, steps)
    exact_paid = float((weight * exact_t).sum())
    responses = []
    for rule in tie_rules:
        policies = [best_response(game, plan, contracts, i, rule).policy for i in range(n)]
        report = deviation_report(game, plan, contracts, policies, steps)
        responses.append(BestResponseAudit(rule, **_profile_metrics(report)))
    return ContractAudit(
        team_welfare=float(team_welfare),
        plan_welfare=followed.welfare,
        welfare_of_optimum=followed.welfare / team_welfare if team_welfare > 0 else float("nan"),
        payments_learned=float(followed.payments.sum()),
        payments_exact=exact_paid,
        contract_bias=float((weight * error).sum() / total),
        contract_rmse=float(np.sqrt((weight * error**2).sum() / total)),
        underpaid_share=float(weight[error < -UNDERPAY_TOL].sum() / total),
        contested_share=float(weight[exact_t > UNDERPAY_TOL].sum() / total),
        visited_states=int((visits.sum(axis=0) > 0).sum()),
        best_response=tuple(responses),
    )


@dataclass(frozen=True)
class AgentsAudit:
    """Learned agents (e.g. Algorithm 3's validation agents) facing a principal, exactly.

    Every quantity is per episode or a share of (step, agent) pairs weighted by how often the
    agents' own play reaches them (everyone playing their own policy).

    Attributes:
        follow_rate: followed pairs over steps played × ``n`` (metric (d), exact).
        spe_ratio, ic_ratio, spe_gain, ic_gain: metrics (e), (f) and their differences.
        welfare: the agents' rewards; payments: what the principal pays them.
        contested_share: pairs where the exact min-pay contract of the plan is positive
            (following costs the agent something).
        follow_rate_contested: the follow rate on those pairs.
        follow_rate_uncontested: on the others (following already serves the agent).
        neutral_share: pairs where no deviation changes the plan's welfare (each deviation's
            welfare Q within :data:`UNDERPAY_TOL` of following's, the others following and the
            plan followed afterwards).
        welfare_relevant_follow_rate: the follow rate counting a welfare-neutral deviation as
            following.
    """

    follow_rate: float
    spe_ratio: float
    ic_ratio: float
    spe_gain: float
    ic_gain: float
    welfare: float
    payments: float
    contested_share: float
    follow_rate_contested: float
    follow_rate_uncontested: float
    neutral_share: float
    welfare_relevant_follow_rate: float

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def _plan_welfare_q(game: MarkovGame, plan: np.ndarray) -> np.ndarray:
    """``[T, S, J]`` welfare Q of each joint action now, everyone following ``plan`` after."""
    states = np.arange(game.num_states)
    if game.horizon is None:  # stationary plan: V = (I - γ P_ρ)^-1 W_ρ
        import scipy.sparse as sp
        from scipy.sparse.linalg import spsolve

        rows = states * game.num_joint + plan[0]
        system = sp.identity(game.num_states, format="csc") - game.discount * game.transitions[rows]
        values = np.atleast_1d(spsolve(sp.csc_matrix(system), game.welfare[states, plan[0]]))
        return (game.welfare + game.discount * game.continuation(values[:, None])[..., 0])[None]
    q_steps, values = [], np.zeros(game.num_states)
    for t in reversed(range(game.horizon)):
        q = game.welfare + game.discount * game.continuation(values[:, None])[..., 0]
        q_steps.insert(0, q)
        values = q[states, _plan_at(plan, t)]
    return np.stack(q_steps)


def _own_visitation(game: MarkovGame, policies: list[np.ndarray], steps: int) -> np.ndarray:
    """``[T, S]`` the state distribution when every agent plays its own policy."""
    ja, dist = game.joint_actions, game.initial.copy()
    out = np.zeros((steps, game.num_states))
    for t in range(steps):
        out[t] = dist
        joint = np.ones((game.num_states, game.num_joint))
        for i, pol in enumerate(policies):
            joint *= _plan_at(pol, t)[:, ja[:, i]]
        dist = (dist[:, None] * joint).reshape(-1) @ game.transitions
    return out


def audit_agents(
    game: MarkovGame, plan, contracts, policies, steps: int | None = None
) -> AgentsAudit:
    """Learned agents' policies ``[T|1, S, A]`` against ``(plan, contracts)``, exactly.

    Args as :func:`audit_principal`; ``policies``: one per agent (action probabilities).
    """
    plan = _check_plan(game, plan)
    _check_steps(game, steps)
    report = deviation_report(game, plan, contracts, policies, steps)
    steps = game.horizon if steps is None else steps
    pols = [np.asarray(p, np.float64) for p in policies]
    n, ja = game.num_agents, game.joint_actions
    visits = _own_visitation(game, pols, steps)  # [T, S]
    exact = selfish_q(game, plan).contracts
    welfare_q = _plan_welfare_q(game, plan)
    states = np.arange(game.num_states)
    pairs = followed = contested = cont_followed = neutral = relevant = 0.0
    for t in range(steps):
        rec = _plan_at(plan, t)  # [S]
        q_w = _plan_at(welfare_q, t)  # [S, J]
        base = q_w[states, rec]
        dev = game.deviations[rec]  # [S, n, A] joint index of agent i playing a, others ρ
        for i in range(n):
            pol = _plan_at(pols[i], t)  # [S, A]
            p_follow = pol[states, ja[rec, i]]
            w = visits[t]
            is_contested = _plan_at(exact, t)[:, i] > UNDERPAY_TOL
            loss = base[:, None] - q_w[states[:, None], dev[:, i]]  # [S, A]
            harmless = np.abs(loss) <= UNDERPAY_TOL * np.maximum(1.0, np.abs(base))[:, None]
            pairs += w.sum()
            followed += w @ p_follow
            contested += w @ is_contested
            cont_followed += w @ (p_follow * is_contested)
            neutral += w @ harmless.all(axis=1)
            relevant += w @ (pol * harmless).sum(axis=1)  # following is harmless by definition
    nan = float("nan")
    return AgentsAudit(
        **_profile_metrics(report),
        contested_share=float(contested / pairs),
        follow_rate_contested=float(cont_followed / contested) if contested > 0 else nan,
        follow_rate_uncontested=(
            float((followed - cont_followed) / (pairs - contested)) if pairs > contested else nan
        ),
        neutral_share=float(neutral / pairs),
        welfare_relevant_follow_rate=float(relevant / pairs),
    )
