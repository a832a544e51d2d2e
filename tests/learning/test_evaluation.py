"""The learned principal's evaluation: exact against Monte Carlo, the per-state table, and the
subgame-perfection check behind ratios above 1 (docs/own-games.md)."""

import dataclasses

import numpy as np
import pytest

from contractrl.core.evaluate import agent_best_response
from contractrl.core.games import figure1, random_game
from contractrl.core.solution import PrincipalPolicy
from contractrl.core.solver import solve_spe
from contractrl.learning.evaluation import (
    evaluate_with_oracle,
    format_policy_table,
    monte_carlo_principal_value,
    policy_table,
    principal_deviation_gain,
)


def _perturbed(spe, game, seed):
    """A principal policy near the SPE: its contracts scaled by random factors."""
    rng = np.random.default_rng(seed)
    contract = np.asarray(spe.contract) * rng.uniform(0.8, 1.3, np.shape(spe.contract))
    return PrincipalPolicy(np.asarray(spe.action), contract)


@pytest.mark.parametrize("horizon", [4, None])
def test_exact_evaluation_equals_monte_carlo_within_its_interval(horizon):
    """The oracle evaluation's exact value against 40,000 simulated episodes (4 s.e.)."""
    game = dataclasses.replace(random_game(3, 3, 3, horizon=4, seed=5), horizon=horizon)
    if horizon is None:
        game = dataclasses.replace(game, discount=0.8)
    spe = solve_spe(game)
    policy = _perturbed(spe, game, 0)
    ev = evaluate_with_oracle(game, policy, spe)
    response = agent_best_response(game, policy)
    mean, se = monte_carlo_principal_value(game, policy, response.action, 40_000, seed=1)
    assert se > 0
    assert abs(mean - ev.principal_utility) < 4 * se


def test_the_spe_has_no_profitable_deviation_and_a_perturbed_policy_has():
    game = figure1()
    spe = solve_spe(game)
    exact = PrincipalPolicy(np.asarray(spe.action), np.asarray(spe.contract))
    assert principal_deviation_gain(game, exact) == pytest.approx(0.0, abs=1e-9)
    # overpaying in sL by 0.5 on L: the principal would rather pay the min-pay contract there
    over = np.array(spe.contract, dtype=float)
    over[..., 1, 0] += 0.5
    gain = principal_deviation_gain(game, PrincipalPolicy(np.asarray(spe.action), over))
    assert gain == pytest.approx(0.9 * 0.5)  # the overpayment's expected value under aL


def test_policy_table_lists_each_state_beside_the_spe():
    game = figure1()
    spe = solve_spe(game)
    exact = PrincipalPolicy(np.asarray(spe.action), np.asarray(spe.contract))
    rows = policy_table(game, exact, spe)
    assert [r["state"] for r in rows] == ["s0", "sL", "sR"]
    for r in rows:  # the SPE against itself: the same decision, the oracle follows
        assert r["action"] == r["spe_action"] == "aL" and r["follows"] and r["reached"]
        assert r["contract"] == pytest.approx(r["spe_contract"])
        assert r["expected_payment"] == pytest.approx(0.9)  # paper Figure 1: b = (1, 0)
    text = format_policy_table(rows)
    assert text.splitlines()[0].split()[:3] == ["t", "state", "learned"]
    assert "(ignores)" not in text
