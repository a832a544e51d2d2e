"""The exact audit of a learned multi-agent principal against closed forms (the iterated
prisoner's dilemma: min-pay contract 2 per step, welfare 60 over 10 steps) and invariants."""

import numpy as np
import pytest

from contractrl.core.markov_audit import audit_principal, visitation
from contractrl.core.markov_game import MarkovGame
from contractrl.core.markov_solver import principal_optimum, selfish_q

DILEMMA = [[(3, 3), (0, 5)], [(5, 0), (1, 1)]]  # C = 0, D = 1


def iterated_dilemma(horizon=10, discount=0.9):
    """Mutual defection ends the episode (envs/dilemma.py)."""
    rewards = np.array([[DILEMMA[a][b] for a in range(2) for b in range(2)]], float)
    trans = np.ones((1, 4, 1))
    trans[0, 3] = 0.0
    return MarkovGame(rewards, trans, [1.0], 2, 2, discount, horizon)


def _audit(contract, horizon=10):
    game = iterated_dilemma(horizon)
    plan = np.zeros((1, 1), np.int64)  # both cooperate, every step (stationary)
    return audit_principal(game, plan, np.full((1, 1, 2), contract), team_welfare=6.0 * horizon)


def test_exact_contracts_audit_to_zero_error_and_the_tie_rules_follow_rates():
    audit = _audit(2.0)
    assert audit.contract_bias == 0.0 and audit.contract_rmse == 0.0
    assert audit.underpaid_share == 0.0 and audit.contested_share == 1.0
    assert audit.plan_welfare == pytest.approx(60.0) and audit.welfare_of_optimum == 1.0
    assert audit.payments_learned == pytest.approx(40.0) == audit.payments_exact
    rules = {b.tie_rule: b for b in audit.best_response}
    assert rules["follow"].follow_rate == 1.0 and rules["follow"].welfare == pytest.approx(60.0)
    # indifferent at every step (3 + 2 = 5): each agent follows with probability 1/2
    assert rules["uniform"].follow_rate == pytest.approx(0.5)


def test_a_margin_is_bias_and_makes_random_tie_breakers_follow():
    audit = _audit(2.1)
    assert audit.contract_bias == pytest.approx(0.1) and audit.contract_rmse == pytest.approx(0.1)
    assert audit.underpaid_share == 0.0
    assert audit.payments_learned == pytest.approx(42.0) and audit.payments_exact == pytest.approx(
        40
    )
    assert {b.tie_rule: b.follow_rate for b in audit.best_response} == {
        "follow": 1.0,
        "uniform": 1.0,
    }


def test_underpaying_everywhere_makes_exact_agents_defect():
    """b = 1.9 < 2: each agent defects (5 > 3 + 1.9) expecting the other to follow; both
    defect on step 1 and the episode ends. Alone: 10 · 5 = 50 against 10 · 4.9 (SPE 50/49);
    against a defector, following earns 1.9 per step for 10 steps against 1 (IC 1/19)."""
    audit = _audit(1.9)
    assert audit.underpaid_share == 1.0 and audit.contract_bias == pytest.approx(-0.1)
    for b in audit.best_response:
        assert b.follow_rate == 0.0 and b.welfare == pytest.approx(2.0) and b.payments == 0.0
        assert b.spe_ratio == pytest.approx(50 / 49) and b.ic_ratio == pytest.approx(1 / 19)
        assert b.spe_gain == pytest.approx(1.0) and b.ic_gain == pytest.approx(-18.0)


def test_torus_game_exact_principal_audits_clean():
    """A random 2-agent torus game (no episode end): the exact welfare-first principal's own
    contracts audit to zero error, and agents that follow on ties follow everywhere."""
    import itertools

    rng = np.random.default_rng(3)
    cells, num_states = 4, 16
    trans = np.zeros((num_states, 4, num_states))
    moves = [(0, 1), (1, 0)]
    for s, (a0, a1) in itertools.product(range(num_states), itertools.product(range(2), repeat=2)):
        c = divmod(s, cells)
        nxt = []
        for i, a in enumerate((a0, a1)):
            r, col = divmod(c[i], 2)
            nxt.append(((r + moves[a][0]) % 2) * 2 + (col + moves[a][1]) % 2)
        trans[s, a0 * 2 + a1, nxt[0] * cells + nxt[1]] = 1.0
    game = MarkovGame(
        rng.uniform(-1, 1, (num_states, 4, 2)), trans, rng.dirichlet(np.ones(16)), 2, 2, 0.9, 4
    )
    solution = principal_optimum(game, 0.0)
    audit = audit_principal(game, solution.plan, solution.contracts, team_welfare=1.0)
    assert audit.contract_rmse == pytest.approx(0.0, abs=1e-12)
    assert audit.underpaid_share == 0.0
    assert {b.tie_rule: b for b in audit.best_response}["follow"].follow_rate == 1.0
    visits = visitation(game, solution.plan)
    np.testing.assert_allclose(visits.sum(axis=1), 1.0)  # nothing ends early
    # contracts of the same plan from the solver, paid per visit, are the payments per episode
    exact = selfish_q(game, solution.plan).contracts
    assert audit.payments_exact == pytest.approx(float((visits[..., None] * exact).sum()))


def test_bad_shapes_name_the_field():
    game = iterated_dilemma()
    with pytest.raises(ValueError, match="contracts"):
        audit_principal(game, np.zeros((1, 1), np.int64), np.zeros((1, 1, 3)), 60.0)
    with pytest.raises(ValueError, match="plan"):
        audit_principal(game, np.zeros((2, 1), np.int64), np.zeros((2, 1, 2)), 60.0)


def test_steps_and_team_welfare_are_checked():
    game = iterated_dilemma()
    plan, contracts = np.zeros((1, 1), np.int64), np.full((1, 1, 2), 2.0)
    with pytest.raises(ValueError, match="steps"):
        audit_principal(game, plan, contracts, 60.0, steps=11)
    for bad in (float("inf"), float("nan"), None):
        with pytest.raises(ValueError, match="team_welfare"):
            audit_principal(game, plan, contracts, bad)


def _onehot(action, num_states=1, num_actions=2):
    pol = np.zeros((1, num_states, num_actions))
    pol[..., action] = 1.0
    return pol


def test_agents_that_follow_or_defect_in_the_dilemma():
    from contractrl.core.markov_audit import audit_agents

    game = iterated_dilemma()
    plan, contracts = np.zeros((1, 1), np.int64), np.full((1, 1, 2), 2.0)
    loyal = audit_agents(game, plan, contracts, [_onehot(0), _onehot(0)])
    assert loyal.follow_rate == 1.0 and loyal.welfare == pytest.approx(60.0)
    assert loyal.contested_share == 1.0 and loyal.follow_rate_contested == 1.0
    assert loyal.neutral_share == 0.0 and loyal.welfare_relevant_follow_rate == 1.0
    # both defect: the episode ends on step 1 (welfare 1 + 1), nothing followed
    rebels = audit_agents(game, plan, contracts, [_onehot(1), _onehot(1)])
    assert rebels.follow_rate == 0.0 and rebels.welfare == pytest.approx(2.0)
    assert rebels.welfare_relevant_follow_rate == 0.0 and rebels.payments == 0.0


def test_deviations_that_cost_no_welfare_count_as_following():
    """Rewards (1 + a0 - a1, 1 - a0 + a1): welfare 2 whatever is played, so no deviation
    matters; agents that never follow are welfare-relevant followers everywhere."""
    from contractrl.core.markov_audit import audit_agents

    payoff = [[(1 + a - b, 1 - a + b) for b in range(2)] for a in range(2)]
    rewards = np.array([[payoff[a][b] for a in range(2) for b in range(2)]], float)
    game = MarkovGame(rewards, np.ones((1, 4, 1)), [1.0], 2, 2, 0.9, 5)
    plan = np.zeros((1, 1), np.int64)
    audit = audit_agents(game, plan, np.zeros((1, 1, 2)), [_onehot(1), _onehot(1)])
    assert audit.follow_rate == 0.0 and audit.neutral_share == 1.0
    assert audit.welfare_relevant_follow_rate == 1.0
    half = np.full((1, 1, 2), 0.5)
    assert audit_agents(game, plan, np.zeros((1, 1, 2)), [half, half]).follow_rate == pytest.approx(
        0.5
    )
