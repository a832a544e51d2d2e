"""Simple contract classes: closed forms on one stage, optimisers against brute-force grids."""

import itertools

import numpy as np
import pytest

from contractrl.core.delegation import delegation_game
from contractrl.core.evaluate import agent_best_response, evaluate_policies
from contractrl.core.simple_contracts import (
    CONTRACT_CLASSES,
    _Dense,
    best_stationary_coordinate,
    best_stationary_enumerated,
    compare_contracts,
)
from contractrl.core.solution import PrincipalPolicy

# one stage, one attempt; small: free, (fail, pass, excellent) = (0.5, 0.4, 0.1);
# large: cost 0.1, (0.2, 0.5, 0.3); the principal values a pass 1, an excellent 1.5
ONE_STAGE = dict(
    stages=1,
    deadline=1,
    tiers=("small", "large"),
    tier_costs=(0.0, 0.1),
    outcome_probs=((0.5, 0.4, 0.1), (0.2, 0.5, 0.3)),
    accept_value=(0.0, 1.0, 1.5),
)


def _principal_value(game, contract, recommend=None):
    """Independent reference: the core's exact best response to a stationary contract.

    Ties go to ``recommend[S]`` where it is optimal (paper Lemma B.12), else to the lowest index.
    """
    num_s = game.num_states
    rec = np.full((1, num_s), -1) if recommend is None else recommend[None]
    policy = PrincipalPolicy(rec, contract[None])
    action = agent_best_response(game, policy).action
    values = evaluate_policies(game, policy, action)
    return float(values.principal[0, game.initial_state]), action[0]


def _attained(game, row):
    """The row's action is the agent's best response to its contract, with its value."""
    value, action = _principal_value(game, row.contract, row.action)
    assert np.array_equal(action, row.action), row.name
    assert value == pytest.approx(row.principal_utility, abs=1e-9), row.name


def test_one_stage_closed_forms():
    """E_L[r^p] = 0.95, E_S[r^p] = 0.55, cost 0.1 (hand-computed).

    Best linear share: alpha* = 0.1 / (0.95 - 0.55) = 0.25; principal 0.75 * 0.95 = 0.7125.
    Min-pay (SPE): pay on excellent, the largest likelihood ratio: 0.1 / (0.3 - 0.1) = 0.5;
    principal 0.95 - 0.3 * 0.5 = 0.8. Fixed price on delivery (pass or excellent):
    0.1 / 0.3 = 1/3, principal 0.95 - 0.8 / 3. First-best: 0.95 - 0.1.
    """
    game = delegation_game(**ONE_STAGE)
    cmp = compare_contracts(game)
    assert [r.name for r in cmp.rows] == list(CONTRACT_CLASSES)
    linear = cmp.row("linear")
    assert linear.parameter == pytest.approx(0.25, abs=1e-12)
    assert linear.principal_utility == pytest.approx(0.7125, abs=1e-12)
    assert linear.action[0] == 1
    spe = cmp.row("spe")
    assert np.allclose(spe.contract[0], [0, 0, 0.5], atol=1e-12)
    assert spe.principal_utility == pytest.approx(0.8, abs=1e-12)
    assert spe.agent_utility == pytest.approx(0.05, abs=1e-12)
    assert cmp.row("pay_for_pass").parameter == pytest.approx(0.5, abs=1e-12)
    assert cmp.row("stationary").principal_utility == pytest.approx(0.8, abs=1e-9)
    fixed = cmp.row("fixed_price")
    assert fixed.parameter == pytest.approx(1 / 3, abs=1e-12)
    assert fixed.principal_utility == pytest.approx(0.95 - 0.8 / 3, abs=1e-12)
    fb = cmp.row("first_best")
    assert fb.principal_utility == pytest.approx(0.85, abs=1e-12) and fb.agent_utility == 0
    assert cmp.row("no_contract").principal_utility == pytest.approx(0.55, abs=1e-12)
    for r in cmp.rows:
        assert r.welfare == pytest.approx(r.principal_utility + r.agent_utility, abs=1e-12)


@pytest.mark.parametrize("deadline", [4, None])
def test_one_parameter_optimisers_against_grid(deadline):
    game = delegation_game(stages=3, deadline=deadline)
    cmp = compare_contracts(game)
    rp = game.principal_reward
    top = np.zeros_like(rp)
    top[:, -1] = 1.0
    shapes = {
        "fixed_price": ((rp > 0).astype(float), np.linspace(0, 0.6, 301)),
        "pay_for_pass": (top, np.linspace(0, 0.6, 301)),
        "linear": (rp, np.linspace(0, 1, 501)),
    }
    for name, (shape, grid) in shapes.items():
        row = cmp.row(name)
        best_grid = max(_principal_value(game, lam * shape)[0] for lam in grid)
        assert row.principal_utility >= best_grid - 1e-9, name
        assert np.allclose(row.contract, row.parameter * shape)
        _attained(game, row)


def test_stationary_optimisers_against_grid():
    game = delegation_game(stages=2, deadline=None)
    d = _Dense.of(game)
    b_enum, v_enum = best_stationary_enumerated(d)
    b_coord, v_coord = best_stationary_coordinate(d, [np.zeros(3)])
    assert v_coord == pytest.approx(v_enum, abs=1e-9)
    grid = itertools.product([0.0, 0.02, 0.05], np.linspace(0, 0.3, 16), np.linspace(0, 0.3, 31))
    best_grid = max(
        _principal_value(game, np.tile(np.array(b), (game.num_states, 1)))[0] for b in grid
    )
    assert v_enum >= best_grid - 1e-9
    row = compare_contracts(game).row("stationary")
    assert row.method == "exact" and row.principal_utility == pytest.approx(v_enum, abs=1e-9)
    assert np.allclose(row.contract, b_enum)
    _attained(game, row)


def test_comparison_ordering_and_rows_are_exact():
    for deadline in (6, None):
        game = delegation_game(deadline=deadline)
        cmp = compare_contracts(game)
        fb = cmp.row("first_best").principal_utility
        spe = cmp.row("spe").principal_utility
        assert spe <= fb + 1e-12
        for r in cmp.rows:
            assert r.principal_utility <= spe + 1e-9 or r.name == "first_best"
            if r.contract is not None:
                _attained(game, r)
        assert (
            cmp.row("stationary").principal_utility
            >= max(cmp.row(n).principal_utility for n in ("no_contract", "pay_for_pass")) - 1e-12
        )
        assert "| exact SPE" in cmp.markdown([0])


def test_first_best_refuses_positive_agent_rewards():
    from contractrl.core.games import figure1
    from contractrl.core.model import PrincipalAgentMDP
    from contractrl.core.simple_contracts import first_best

    g = figure1()
    bad = PrincipalAgentMDP(
        g.outcome_probs, -g.agent_reward, g.principal_reward, g.transitions, 0, 2, 1.0
    )
    with pytest.raises(ValueError, match=r"agent_reward\[0\]\[0\]"):
        first_best(bad)
