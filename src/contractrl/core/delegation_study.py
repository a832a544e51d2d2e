"""Studies on the delegation game: the value of sequential contracts, mis-specified beliefs.

* :func:`sequential_value`: the exact SPE (state-dependent, sequential contracts; paper
  Section 3) against the best one-shot contract classes of
  :mod:`contractrl.core.simple_contracts` as the task gets more stages.
* :func:`misspecification`: the principal computes the exact SPE contracts of a *wrong* model
  of the outcome probabilities and plays them against the true agent, who best-responds
  exactly (ties toward the recommendation, paper Lemma B.12); optionally with a nudge margin
  ``ξ`` (paper App. B.9.2, Eqs. 20-22; docs/model.md §2).

Example:
    >>> rows = sequential_value(stage_counts=(1, 2), deadline_slack=None)
    >>> [round(r.spe / r.stationary, 6) for r in rows][0]  # one stage: the same contract
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contractrl.core.delegation import DEFAULT_OUTCOME_PROBS, delegation_game, on_time_states
from contractrl.core.evaluate import agent_best_response, evaluate_policies
from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.simple_contracts import compare_contracts
from contractrl.core.solver import solve_spe


@dataclass(frozen=True)
class SequentialValueRow:
    """Principal utilities (from the initial state) for one number of stages.

    Attributes:
        num_stages: ``K``.
        deadline: the game's deadline (``None``: retry until accepted).
        spe: the exact SPE (NaN when the solver finds none, see ``spe_status``).
        stationary: the best stationary outcome contract.
        best_one_parameter: the best of fixed price, bonus on the top outcome, linear.
        first_best: the largest welfare.
        stationary_method: how the stationary class was solved.
        spe_status: the exact solver's status (``converged``; ``stalled`` or ``cycle`` when
            an infinite-horizon game has no stationary SPE the iteration can find).
    """

    num_stages: int
    deadline: int | None
    spe: float
    stationary: float
    best_one_parameter: float
    first_best: float
    stationary_method: str
    spe_status: str


def sequential_value(
    stage_counts: Sequence[int] = (1, 2, 3, 4, 5, 6),
    deadline_slack: int | None = 2,
    **game_kwargs,
) -> list[SequentialValueRow]:
    """The value of sequential, state-dependent contracts as the task gets more stages.

    Args:
        stage_counts: the numbers of stages ``K`` to build.
        deadline_slack: attempts beyond ``K`` (deadline ``K + slack``), or ``None`` for the
            retry-until-accepted variant.
        **game_kwargs: other :func:`delegation_game` parameters (not ``stages``/``deadline``).

    Returns:
        One :class:`SequentialValueRow` per entry of ``stage_counts``.
    """
    rows = []
    for k in stage_counts:
        deadline = None if deadline_slack is None else k + deadline_slack
        game = delegation_game(stages=k, deadline=deadline, **game_kwargs)
        cmp = compare_contracts(game, require_spe=False)
        has_spe = any(r.name == "spe" for r in cmp.rows)
        rows.append(
            SequentialValueRow(
                k,
                deadline,
                cmp.row("spe").principal_utility if has_spe else float("nan"),
                cmp.row("stationary").principal_utility,
                max(
                    cmp.row(n).principal_utility for n in ("fixed_price", "pay_for_pass", "linear")
                ),
                cmp.row("first_best").principal_utility,
                cmp.row("stationary").method,
                "converged" if has_spe else solve_spe(game).status,
            )
        )
    return rows


@dataclass(frozen=True)
class MisspecifiedPlay:
    """The exact SPE contracts of a believed game, played against the true one.

    Attributes:
        shift: the belief's error (see :func:`shifted_probs`).
        margin: the nudge ``ξ`` the principal's contracts carry.
        principal_utility: the principal's true utility from the initial state.
        agent_utility: the agent's true utility.
        spe_principal_utility: the true game's exact SPE value (the principal's best).
        believed_principal_utility: what the principal expected (the believed game's value).
        followed: ``[K']`` whether the agent takes the recommended tier at each on-time stage.
        action: ``[S]`` the tier the agent takes in each state.
        believed_status: the believed game's solve (``converged``, or why it has no
            stationary SPE: then the other fields hold the solver's last iterate and mean
            nothing; :attr:`ok` is false).
    """

    shift: float
    margin: float
    principal_utility: float
    agent_utility: float
    spe_principal_utility: float
    believed_principal_utility: float
    followed: np.ndarray
    action: np.ndarray
    believed_status: str = "converged"

    @property
    def ok(self) -> bool:
        """Whether the believed game had an SPE to play (its solve converged)."""
        return self.believed_status == "converged"

    @property
    def share_of_spe(self) -> float:
        """True principal utility over the true SPE value."""
        return self.principal_utility / self.spe_principal_utility


def play_believed(
    true_game: PrincipalAgentMDP, believed_game: PrincipalAgentMDP, margin: float = 0.0
):
    """Play the believed game's SPE policy against the true game's best-responding agent.

    Args:
        true_game: the game the agent really plays.
        believed_game: the principal's model (same states, actions and outcomes).
        margin: nudge ``ξ >= 0`` of the principal's min-pay contracts.

    Returns:
        ``(believed SPE solution, agent response, true values)``: an
        :class:`~contractrl.core.solution.SPESolution`,
        :class:`~contractrl.core.evaluate.AgentResponse` and
        :class:`~contractrl.core.evaluate.PolicyValues` (the latter two on the true game).
    """
    believed = solve_spe(believed_game, margin=margin)
    response = agent_best_response(true_game, believed.policy)
    values = evaluate_policies(true_game, believed.policy, response.action)
    return believed, response, values


def shifted_probs(probs: np.ndarray, shift: float) -> np.ndarray:
    """``[A, O]`` probabilities with ``shift`` moved from the worst to the best outcome.

    Every tier but the cheapest (tier 0) is shifted, scaled by its rank ``a / (A - 1)``: a
    positive ``shift`` over-estimates how much the expensive tiers help, a negative one
    under-estimates it. Entries are clipped to stay a distribution.
    """
    probs = np.array(probs, dtype=np.float64)
    num_a = probs.shape[0]
    for a in range(1, num_a):
        move = shift * a / (num_a - 1)
        move = float(np.clip(move, -probs[a, -1], probs[a, 0]))
        probs[a, 0] -= move
        probs[a, -1] += move
    return probs


def misspecification(
    shifts: Sequence[float] = (-0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1),
    margins: Sequence[float] = (0.0, 0.01),
    outcome_probs=DEFAULT_OUTCOME_PROBS,
    **game_kwargs,
) -> list[MisspecifiedPlay]:
    """Robustness of the exact contracts to mis-specified outcome probabilities.

    The true game has ``outcome_probs``; the principal believes :func:`shifted_probs` of them.

    Args:
        shifts: the belief errors.
        margins: nudges ``ξ`` to try with each.
        outcome_probs: ``[A, O]`` the true probabilities (every stage).
        **game_kwargs: other :func:`delegation_game` parameters.

    Returns:
        One :class:`MisspecifiedPlay` per ``(shift, margin)``.
    """
    true_game = delegation_game(outcome_probs=outcome_probs, **game_kwargs)
    spe_value = solve_spe(true_game).initial_principal_value
    num_stages = true_game.num_states // (true_game.horizon or 1)
    path = on_time_states(true_game, num_stages)
    s0 = true_game.initial_state
    plays = []
    for shift in shifts:
        believed_game = delegation_game(
            outcome_probs=shifted_probs(outcome_probs, shift), **game_kwargs
        )
        for margin in margins:
            believed, response, values = play_believed(true_game, believed_game, margin)
            action = response.action[0]
            plays.append(
                MisspecifiedPlay(
                    float(shift),
                    float(margin),
                    float(values.principal[0, s0]),
                    float(values.agent[0, s0]),
                    float(spe_value),
                    float(believed.initial_principal_value),
                    action[path] == believed.action[0][path],
                    action,
                    believed.status,
                )
            )
    return plays
