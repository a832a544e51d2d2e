"""The exact multi-agent solver against brute force, closed forms and adversarial cases."""

import itertools
import re

import numpy as np
import pytest

from contractrl.core.markov_eval import (
    best_response,
    deviation_report,
    evaluate_profile,
    follow_policy,
)
from contractrl.core.markov_game import MarkovGame
from contractrl.core.markov_solver import principal_optimum, selfish_q, team_optimum

# ------------------------------------------------------------------ games


def matrix_game(payoff, horizon=1, discount=1.0, end=()):
    """A repeated 2-agent matrix game: ``payoff[a0][a1] = (r0, r1)``; joint actions in ``end``
    end the episode."""
    num_actions = len(payoff)
    rewards = np.array([[payoff[a][b] for a in range(num_actions) for b in range(num_actions)]])
    trans = np.ones((1, num_actions**2, 1))
    for a, b in end:
        trans[0, a * num_actions + b] = 0.0
    return MarkovGame(rewards, trans, [1.0], 2, num_actions, discount, horizon)


def torus_game(seed=0, horizon=3, discount=0.9, slip=0.2):
    """Two agents on a 2×2 torus: moves right/down, each fails (stays) with ``slip``;
    seeded random rewards ``[S, J, 2]``; states ``(cell_0, cell_1)``."""
    rng = np.random.default_rng(seed)
    cells, num_states = 4, 16
    moves = [(0, 1), (1, 0)]
    trans = np.zeros((num_states, 4, num_states))
    for s, (a0, a1) in itertools.product(range(num_states), itertools.product(range(2), repeat=2)):
        c = divmod(s, cells)
        outcomes = []
        for i, a in enumerate((a0, a1)):
            r, col = divmod(c[i], 2)
            moved = ((r + moves[a][0]) % 2) * 2 + (col + moves[a][1]) % 2
            outcomes.append({moved: 1 - slip, c[i]: slip} if moved != c[i] else {moved: 1.0})
        for (n0, p0), (n1, p1) in itertools.product(outcomes[0].items(), outcomes[1].items()):
            trans[s, a0 * 2 + a1, n0 * cells + n1] += p0 * p1
    rewards = rng.uniform(-1, 1, (num_states, 4, 2))
    initial = rng.dirichlet(np.ones(num_states))
    return MarkovGame(rewards, trans, initial, 2, 2, discount, horizon)


# ------------------------------------------------------------------ brute force


def _dense(game):
    return game.transitions.toarray().reshape(game.num_states, game.num_joint, game.num_states)


def _j(a0, a1, num_actions=2):
    return a0 * num_actions + a1


def recursive_team(game):
    """Team value by recursion over (t, s) with scalar loops."""
    trans, horizon, g = _dense(game), game.horizon, game.discount

    def value(t, s):
        if t == horizon:
            return 0.0
        return max(
            game.rewards[s, j].sum()
            + g * sum(trans[s, j, s2] * value(t + 1, s2) for s2 in range(game.num_states))
            for j in range(game.num_joint)
        )

    return sum(game.initial[s] * value(0, s) for s in range(game.num_states))


def recursive_selfish(game, plan, agent):
    """``V_i(t, s)`` of agent ``agent`` choosing freely against ``plan`` (others following)."""
    trans, horizon, g, num_actions = _dense(game), game.horizon, game.discount, game.num_actions
    memo = {}

    def q(t, s, a):
        rec = list(divmod(int(plan[t, s]), num_actions))
        rec[agent] = a
        j = _j(*rec, num_actions)
        return game.rewards[s, j, agent] + g * sum(
            trans[s, j, s2] * value(t + 1, s2) for s2 in range(game.num_states)
        )

    def value(t, s):
        if t == horizon:
            return 0.0
        if (t, s) not in memo:
            memo[t, s] = max(q(t, s, a) for a in range(num_actions))
        return memo[t, s]

    return q, value


def recursive_principal(game, alpha):
    """The subgame-perfect principal by recursion: per subgame the best joint action given
    the subgames' plans; returns ``V^p`` from ``d0``."""
    trans, horizon, g, na = _dense(game), game.horizon, game.discount, game.num_actions
    memo = {}

    def solve(t, s):  # -> (principal value, agent values [2])
        if t == horizon:
            return 0.0, (0.0, 0.0)
        if (t, s) in memo:
            return memo[t, s]
        succ = {s2: solve(t + 1, s2) for s2 in range(game.num_states)}

        def q_agent(i, j):
            return game.rewards[s, j, i] + g * sum(trans[s, j, s2] * succ[s2][1][i] for s2 in succ)

        best = None
        for j in range(game.num_joint):
            acts = divmod(j, na)
            pay, vals = 0.0, []
            for i in range(2):
                devs = []
                for a in range(na):
                    alt = list(acts)
                    alt[i] = a
                    devs.append(q_agent(i, _j(*alt, na)))
                pay += max(devs) - q_agent(i, j)
                vals.append(max(devs))
            vp = game.rewards[s, j].sum() - alpha * pay
            vp += g * sum(trans[s, j, s2] * succ[s2][0] for s2 in succ)
            if best is None or vp > best[0] + 1e-12:
                best = (vp, tuple(vals))
        memo[t, s] = best
        return best

    return sum(game.initial[s] * solve(0, s)[0] for s in range(game.num_states))


# ------------------------------------------------------------------ brute force: repeated 2x2


GAMES_2X2 = {
    "dilemma": [[(3, 3), (0, 5)], [(5, 0), (1, 1)]],
    "chicken": [[(0, 0), (-1, 1)], [(1, -1), (-5, -5)]],
    "coordination": [[(2, 2), (0, 0)], [(0, 0), (1, 1)]],
}


@pytest.mark.parametrize("name", sorted(GAMES_2X2))
@pytest.mark.parametrize("alpha", [0.0, 0.1, 1.0])
def test_repeated_matrix_game_matches_enumeration_of_all_plans(name, alpha):
    horizon, gamma = 3, 0.9
    game = matrix_game(GAMES_2X2[name], horizon, gamma)
    payoff = np.array(GAMES_2X2[name], float)  # [A, A, 2]
    best_welfare, best_objective = -np.inf, -np.inf
    for plan in itertools.product(range(4), repeat=horizon):
        acts = [divmod(j, 2) for j in plan]
        # the state never changes: agent i's contract at t is its one-shot deviation gain
        welfare = sum(gamma**t * payoff[a][b].sum() for t, (a, b) in enumerate(acts))
        pay = 0.0
        for t, (a, b) in enumerate(acts):
            pay += gamma**t * (payoff[:, b, 0].max() - payoff[a, b, 0])
            pay += gamma**t * (payoff[a, :, 1].max() - payoff[a, b, 1])
        best_welfare = max(best_welfare, welfare)
        best_objective = max(best_objective, welfare - alpha * pay)
    team = team_optimum(game)
    assert team.value == pytest.approx(best_welfare)
    solution = principal_optimum(game, alpha)
    if alpha > 0:
        assert solution.value == pytest.approx(best_objective)
    else:  # welfare first, then the least payment among welfare-optimal plans
        least = min(
            sum(
                gamma**t
                * (
                    payoff[:, b, 0].max()
                    - payoff[a, b, 0]
                    + payoff[a, :, 1].max()
                    - payoff[a, b, 1]
                )
                for t, (a, b) in enumerate(divmod(j, 2) for j in plan)
            )
            for plan in itertools.product(range(4), repeat=horizon)
            if np.isclose(
                sum(gamma**t * payoff[divmod(j, 2)].sum() for t, j in enumerate(plan)),
                best_welfare,
            )
        )
        assert solution.value == pytest.approx(best_welfare)
        assert game.initial @ solution.payment_values[0] == pytest.approx(least)


# ------------------------------------------------------------------ brute force: 2x2 torus


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torus_team_optimum_matches_recursion(seed):
    game = torus_game(seed)
    assert team_optimum(game).value == pytest.approx(recursive_team(game))


@pytest.mark.parametrize("seed", [0, 1])
def test_torus_selfish_q_and_contracts_match_recursion(seed):
    game = torus_game(seed)
    plan = np.random.default_rng(seed + 10).integers(0, 4, (game.horizon, game.num_states))
    result = selfish_q(game, plan)
    for agent in range(2):
        q, value = recursive_selfish(game, plan, agent)
        for t, s in itertools.product(range(game.horizon), range(game.num_states)):
            ref = [q(t, s, a) for a in range(2)]
            np.testing.assert_allclose(result.q[t, s, agent], ref, atol=1e-12)
            rec = divmod(int(plan[t, s]), 2)[agent]
            assert result.contracts[t, s, agent] == pytest.approx(max(ref) - ref[rec], abs=1e-12)
            assert result.values[t, s, agent] == pytest.approx(value(t, s))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("alpha", [0.1, 1.0])
def test_torus_principal_matches_recursion(seed, alpha):
    game = torus_game(seed)
    solution = principal_optimum(game, alpha)
    assert solution.value == pytest.approx(recursive_principal(game, alpha))
    # its contracts are the plan's exact min-pay contracts, and following earns the selfish value
    exact = selfish_q(game, solution.plan)
    np.testing.assert_allclose(solution.contracts, exact.contracts, atol=1e-12)
    np.testing.assert_allclose(solution.agent_values, exact.values, atol=1e-12)


def test_torus_payments_are_agent_values_minus_welfare():
    """Payments are transfers: discounted payments = Σ_i agent values − welfare, everywhere."""
    solution = principal_optimum(torus_game(3), 0.1)
    np.testing.assert_allclose(
        solution.payment_values,
        solution.agent_values.sum(axis=-1) - solution.welfare_values,
        atol=1e-12,
    )


def test_torus_profile_evaluation_matches_recursion():
    game = torus_game(4)
    rng = np.random.default_rng(4)
    plan = rng.integers(0, 4, (game.horizon, game.num_states))
    contracts = rng.uniform(0, 1, (game.horizon, game.num_states, 2))
    policies = [rng.dirichlet(np.ones(2), (game.horizon, game.num_states)) for _ in range(2)]
    trans = _dense(game)

    def totals(t, s):  # -> (utility [2], follows [2]) undiscounted
        if t == game.horizon:
            return np.zeros(2), np.zeros(2)
        util, foll = np.zeros(2), np.zeros(2)
        rec = divmod(int(plan[t, s]), 2)
        for a0, a1 in itertools.product(range(2), repeat=2):
            p = policies[0][t, s, a0] * policies[1][t, s, a1]
            j = _j(a0, a1)
            followed = np.array([a0 == rec[0], a1 == rec[1]], float)
            util += p * (game.rewards[s, j] + followed * contracts[t, s])
            foll += p * followed
            for s2 in np.flatnonzero(trans[s, j]):
                u2, f2 = totals(t + 1, s2)
                util += p * trans[s, j, s2] * u2
                foll += p * trans[s, j, s2] * f2
        return util, foll

    ref_util = sum(game.initial[s] * totals(0, s)[0] for s in range(16))
    ref_foll = sum(game.initial[s] * totals(0, s)[1] for s in range(16))
    result = evaluate_profile(game, plan, contracts, policies)
    np.testing.assert_allclose(result.utility, ref_util, atol=1e-12)
    np.testing.assert_allclose(result.follows, ref_foll, atol=1e-12)
    assert result.steps == pytest.approx(game.horizon)


# ------------------------------------------------------------------ closed forms


def test_one_shot_dilemma_contract_is_temptation_minus_reward():
    game = matrix_game(GAMES_2X2["dilemma"])
    team = team_optimum(game)
    assert team.plan.tolist() == [[0]] and team.value == 6.0  # both cooperate
    np.testing.assert_allclose(selfish_q(game, team.plan).contracts, [[[2.0, 2.0]]])
    solution = principal_optimum(game, 0.1)  # 6 − 0.1·4 beats every other joint action
    assert solution.plan.tolist() == [[0]] and solution.value == pytest.approx(5.6)


@pytest.mark.parametrize("gamma", [1.0, 0.9, 0.5])
def test_iterated_dilemma_contract_closed_form(gamma):
    """envs/dilemma.py: mutual defection ends the episode; with the other cooperating,
    defecting changes nothing later, so b = temptation − reward = 2 per step, any γ."""
    horizon = 10
    game = matrix_game(GAMES_2X2["dilemma"], horizon, gamma, end=[(1, 1)])
    team = team_optimum(game)
    assert np.all(team.plan == 0)
    contracts = selfish_q(game, team.plan).contracts
    np.testing.assert_allclose(contracts, 2.0, atol=1e-12)
    follow = [follow_policy(game, team.plan, i) for i in range(2)]
    totals = evaluate_profile(game, team.plan, contracts, follow)
    assert totals.welfare == pytest.approx(60.0) and totals.payments.sum() == pytest.approx(40.0)
    assert totals.follow_rate == 1.0


def test_infinite_horizon_repeated_game_is_geometric():
    game = matrix_game(GAMES_2X2["dilemma"], None, 0.5)
    team = team_optimum(game)
    assert team.converged and team.plan.shape == (1, 1)
    assert team.value == pytest.approx(6.0 / (1 - 0.5))
    solution = principal_optimum(game, 0.1)
    assert solution.converged
    assert solution.value == pytest.approx(5.6 / (1 - 0.5))
    np.testing.assert_allclose(solution.contracts, 2.0)


# ------------------------------------------------------------------ follow rates and ratios


def test_exact_best_responders_have_spe_ratio_one_and_uniform_ties_follow_half():
    """Exact min-pay contracts leave each agent indifferent between cooperating and
    defecting: an agent breaking ties at random follows half the time; following is
    principal-favourable."""
    game = matrix_game(GAMES_2X2["dilemma"], 4, 0.9)
    solution = principal_optimum(game, 0.1)
    uniform = [best_response(game, solution.plan, solution.contracts, i, "uniform") for i in (0, 1)]
    np.testing.assert_allclose(uniform[0].policy, 0.5)
    report = deviation_report(game, solution.plan, solution.contracts, [b.policy for b in uniform])
    assert report.follow_rate == pytest.approx(0.5)
    assert report.spe_ratio == pytest.approx(1.0) and report.spe_gain == pytest.approx(0.0)
    follow = [best_response(game, solution.plan, solution.contracts, i, "follow") for i in (0, 1)]
    report = deviation_report(game, solution.plan, solution.contracts, [b.policy for b in follow])
    assert report.follow_rate == 1.0 and report.ic_ratio == pytest.approx(1.0)


def test_uniform_ties_split_over_the_tied_actions_only():
    """Three actions: the recommended one and one deviation tie under the contract, the third is
    strictly worse: an indifferent agent follows with probability 1/2."""
    # agent 0's rewards (agent 1 has one useful action: always 0 for it)
    payoff = [[(1.0, 0.0)] * 3, [(3.0, 0.0)] * 3, [(0.0, 0.0)] * 3]
    game = matrix_game(payoff)
    plan = np.array([[0]])  # recommend (0, 0)
    contracts = selfish_q(game, plan).contracts
    np.testing.assert_allclose(contracts, [[[2.0, 0.0]]])
    response = best_response(game, plan, contracts, 0, "uniform")
    np.testing.assert_allclose(response.policy[0, 0], [0.5, 0.5, 0.0])
    response = best_response(game, plan, contracts, 1, "uniform")  # agent 1 indifferent among 3
    np.testing.assert_allclose(response.policy[0, 0], [1 / 3] * 3)
    assert best_response(game, plan, contracts, 0, "first").policy[0, 0].tolist() == [1, 0, 0]


# ------------------------------------------------------------------ adversarial


def test_near_tie_is_paid_exactly_and_strict_without_pay():
    gap = 1e-7  # above the tie tolerance: a strict preference, paid to the cent
    payoff = [[(1.0, 1.0), (1.0, 1.0 + gap)], [(1.0 + gap, 1.0), (0.0, 0.0)]]
    game = matrix_game(payoff)
    plan = np.array([[0]])
    contracts = selfish_q(game, plan).contracts
    np.testing.assert_allclose(contracts, [[[gap, gap]]], rtol=1e-6)
    unpaid = best_response(game, plan, np.zeros((1, 1, 2)), 0, "uniform")
    np.testing.assert_allclose(unpaid.policy[0, 0], [0.0, 1.0])
    tiny = 1e-13  # below it: a tie
    payoff = [[(1.0, 1.0), (1.0, 1.0)], [(1.0 + tiny, 1.0), (0.0, 0.0)]]
    unpaid = best_response(matrix_game(payoff), plan, np.zeros((1, 1, 2)), 0, "uniform")
    np.testing.assert_allclose(unpaid.policy[0, 0], [0.5, 0.5])


def test_zero_rewards_give_zero_contracts_and_undefined_ratios():
    game = torus_game(0)
    game = MarkovGame(
        np.zeros_like(game.rewards), game.transitions, game.initial, 2, 2, 0.9, game.horizon
    )
    solution = principal_optimum(game, 0.1)
    assert solution.value == 0.0 and np.all(solution.contracts == 0)
    uniform = [best_response(game, solution.plan, solution.contracts, i, "uniform") for i in (0, 1)]
    report = deviation_report(game, solution.plan, solution.contracts, [b.policy for b in uniform])
    assert report.follow_rate == pytest.approx(0.5)  # every move ties: 1/A
    assert np.isnan(report.spe_ratio) and np.isnan(report.ic_ratio)
    assert report.spe_gain == 0.0 and report.welfare == 0.0


def test_following_already_optimal_needs_no_contract():
    """Each agent's dominant action is also the team's: contracts zero, everyone follows."""
    payoff = [[(2.0, 2.0), (2.0, 0.0)], [(0.0, 2.0), (0.0, 0.0)]]
    game = matrix_game(payoff, 5, 0.9)
    solution = principal_optimum(game, 0.1)
    assert np.all(solution.plan == 0) and np.all(solution.contracts == 0)
    assert solution.value == pytest.approx(team_optimum(game).value)
    uniform = [best_response(game, solution.plan, solution.contracts, i, "uniform") for i in (0, 1)]
    report = deviation_report(game, solution.plan, solution.contracts, [b.policy for b in uniform])
    assert report.follow_rate == 1.0 and report.payments == 0.0
    assert report.spe_ratio == pytest.approx(1.0) and report.ic_ratio == pytest.approx(1.0)


def test_welfare_first_picks_the_cheaper_of_tied_plans():
    """Two welfare-optimal joint actions: (0, 0) needs a contract of 1, (1, 1) none; α = 0
    keeps welfare and picks the cheap one, the team optimum (lowest index) does not."""
    payoff = [[(2.0, 2.0), (0.0, 3.0)], [(0.0, 0.0), (2.0, 2.0)]]
    game = matrix_game(payoff)
    assert team_optimum(game).plan.tolist() == [[0]]
    np.testing.assert_allclose(selfish_q(game, [[0]]).contracts, [[[0.0, 1.0]]])
    solution = principal_optimum(game, 0.0)
    assert solution.plan.tolist() == [[3]] and solution.value == pytest.approx(4.0)
    assert solution.payment_values[0, 0] == 0.0


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rewards": np.zeros((1, 3, 2))}, "rewards"),
        ({"rewards": np.full((1, 4, 2), np.nan)}, "rewards"),
        ({"transitions": np.full((1, 4, 1), 0.5)}, "transitions[0][0]"),
        ({"transitions": -np.ones((1, 4, 1))}, "transitions[0][0]"),
        ({"transitions": np.ones((1, 4, 2))}, "transitions"),
        ({"initial": [0.5]}, "initial"),
        ({"initial": [1.0, 0.0]}, "initial"),
        ({"discount": 0.0}, "discount"),
        ({"discount": 1.0, "horizon": None}, "discount"),
        ({"horizon": 0}, "horizon"),
        ({"num_agents": 0}, "num_agents"),
        ({"num_actions": 2.5}, "num_actions"),
    ],
)
def test_invalid_games_name_the_field(change, field):
    from contractrl.core.model import InvalidGameError

    args = {
        "rewards": np.zeros((1, 4, 2)),
        "transitions": np.ones((1, 4, 1)),
        "initial": [1.0],
        "num_agents": 2,
        "num_actions": 2,
        "discount": 0.9,
        "horizon": 2,
    }
    args.update(change)
    with pytest.raises(InvalidGameError, match="^" + re.escape(field)):
        MarkovGame(**args)


def test_bad_plans_and_policies_are_refused():
    game = matrix_game(GAMES_2X2["dilemma"], 2)
    with pytest.raises(ValueError, match="plan"):
        selfish_q(game, np.zeros((3, 1), int))
    with pytest.raises(ValueError, match="plan"):
        selfish_q(game, np.full((2, 1), 4))
    with pytest.raises(ValueError, match="alpha"):
        principal_optimum(game, -1.0)
    with pytest.raises(ValueError, match="tie_rule"):
        best_response(game, np.zeros((2, 1), int), np.zeros((2, 1, 2)), 0, "random")
    with pytest.raises(ValueError, match="contracts"):
        best_response(game, np.zeros((2, 1), int), -np.ones((2, 1, 2)), 0)
    with pytest.raises(ValueError, match=r"policies\[1\]"):
        evaluate_profile(
            game, np.zeros((2, 1), int), np.zeros((2, 1, 2)), [np.ones((2, 1, 2)) / 2] * 1 + [1]
        )
