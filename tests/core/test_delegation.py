"""The delegation game: construction, validation, exact SPE against hand checks and references."""

import re

import numpy as np
import pytest

from contractrl.core.delegation import delegation_game, on_time_states
from contractrl.core.delegation_study import (
    misspecification,
    sequential_value,
    shifted_probs,
)
from contractrl.core.evaluate import audit
from contractrl.core.lp import min_pay_contract
from contractrl.core.meta import meta_algorithm
from contractrl.core.model import InvalidGameError
from contractrl.core.solver import solve_spe

# two tiers, two outcomes: small is free and passes w.p. 0.4, large costs 0.1 and passes w.p. 0.8
TWO_TIERS = dict(
    tiers=("small", "large"),
    outcomes=("fail", "pass"),
    tier_costs=(0.0, 0.1),
    outcome_probs=((0.6, 0.4), (0.2, 0.8)),
    advance=(0, 1),
    accept_value=(0.0, 1.0),
)


def test_default_game_shapes_and_dynamics():
    game = delegation_game()
    assert (game.num_states, game.num_actions, game.num_outcomes) == (24, 3, 3)
    assert game.horizon == 6 and game.discount == 1.0
    # draft@0: fail -> draft@1, pass/excellent -> test@1; accept@t: pass/excellent end the task
    t = game.transitions.toarray().reshape(24, 3, 24)
    assert t[0, 0, 4] == 1 and t[0, 1, 5] == 1 and t[0, 2, 5] == 1
    accept = game.state_names.index("accept@3")
    assert t[accept, 1].sum() == 0 and game.principal_reward[accept].tolist() == [0, 1, 1.25]
    assert game.principal_reward[0].tolist() == [0, 0, 0]
    last = game.state_names.index("test@5")
    assert t[last].sum() == 0  # the deadline ends the episode
    retry = delegation_game(deadline=None)
    assert retry.horizon is None and retry.discount == 0.85 and retry.num_states == 4
    assert retry.transitions.toarray().reshape(4, 3, 4)[2, 0, 2] == 1  # fail: retry the stage


def test_fail_back_and_per_stage_tables():
    game = delegation_game(deadline=None, advance=(-1, 1, 2), tier_costs=[[0, 0.1, 0.2]] * 4)
    t = game.transitions.toarray().reshape(4, 3, 4)
    assert t[2, 0, 1] == 1 and t[0, 0, 0] == 1  # sent back one stage, never below the first
    assert t[1, 2, 3] == 1 and t[2, 2].sum() == 0  # an excellent skips a stage / accepts
    assert game.principal_reward[2].tolist() == [0, 0, 1.25]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(tier_costs=(0.0, -0.01, 0.03)), "tier_costs[1]"),
        (dict(tier_costs=(0.0, 0.01)), "tier_costs"),
        (dict(outcome_probs=((0.5, 0.5),) * 3), "outcome_probs"),
        (dict(outcome_probs=((0.5, 0.4, 0.2),) * 3), "outcome_probs"),
        (dict(advance=(0, 1.5, 1)), "advance"),
        (dict(deadline=0), "deadline"),
        (dict(deadline=None, discount=1.0), "discount"),
        (dict(stages=0), "stages"),
        (dict(tiers=("a", "a", "b")), "tiers"),
        (dict(accept_value=(0, 1)), "accept_value"),
    ],
)
def test_bad_parameters_name_the_field(kwargs, field):
    with pytest.raises(InvalidGameError, match="delegation_game: .*" + re.escape(field)):
        delegation_game(**kwargs)


def test_one_stage_min_pay_closed_form():
    """One attempt: implement large by paying c / (p_L - p_S) on a pass (docs/model.md §2)."""
    game = delegation_game(stages=1, deadline=1, **TWO_TIERS)
    sol = solve_spe(game)
    assert sol.action[0, 0] == 1
    assert np.allclose(sol.contract[0, 0], [0.0, 0.1 / 0.4], atol=1e-12)
    assert sol.initial_principal_value == pytest.approx(0.8 - 0.8 * 0.25, abs=1e-12)
    assert sol.initial_agent_value == pytest.approx(-0.1 + 0.8 * 0.25, abs=1e-12)
    lp = min_pay_contract([0.0, -0.1], [[0.6, 0.4], [0.2, 0.8]], target=1)
    assert np.allclose(lp.contract, sol.contract[0, 0], atol=1e-9)


def test_two_stage_hand_checked():
    """Two stages, two attempts: the agent's future rent lowers the first payment.

    Last stage (test@1): pay 0.25 on a pass; principal 0.8 - 0.2 = 0.6, agent 0.1. A failed
    draft leaves one attempt for two stages: worth nothing. At draft@0 the agent's truncated Q:
    small 0.4 * 0.1 = 0.04, large -0.1 + 0.8 * 0.1 = -0.02; large needs 0.06 / 0.4 = 0.15 on a
    pass (expected 0.12): principal 0.8 * 0.6 - 0.12 = 0.36 > 0.4 * 0.6; agent -0.02 + 0.12.
    """
    game = delegation_game(stages=2, deadline=2, **TWO_TIERS)
    sol = solve_spe(game)
    test1 = game.state_names.index("stage2@1")
    assert sol.action[0, test1] == 1 and sol.action[0, 0] == 1
    assert np.allclose(sol.contract[0, test1], [0, 0.25], atol=1e-12)
    assert np.allclose(sol.contract[0, 0], [0, 0.15], atol=1e-12)
    assert sol.initial_principal_value == pytest.approx(0.36, abs=1e-12)
    assert sol.initial_agent_value == pytest.approx(0.10, abs=1e-12)


@pytest.mark.parametrize("deadline", [6, None])
def test_spe_against_audit_and_meta_algorithm(deadline):
    game = delegation_game(deadline=deadline)
    sol = solve_spe(game)
    assert sol.ok
    report = audit(game, sol)
    assert report.ok, report.violations
    meta = meta_algorithm(game)
    assert meta.ok
    assert meta.initial_principal_value == pytest.approx(sol.initial_principal_value, abs=1e-8)
    assert meta.initial_agent_value == pytest.approx(sol.initial_agent_value, abs=1e-8)
    if deadline is not None:  # Theorem 3.3: at most H + 1 iterations
        assert meta.iterations <= game.horizon + 1
    path = on_time_states(game, 4)
    assert np.array_equal(sol.action[0, path], meta.action[0, path])


def test_sequential_value_one_stage_equal_then_gap():
    rows = sequential_value(stage_counts=(1, 2, 4), deadline_slack=2)
    one = sequential_value(stage_counts=(1,), deadline_slack=0)[0]  # one state: one contract
    assert one.spe == pytest.approx(one.stationary, abs=1e-8)
    for r in rows:
        assert r.stationary <= r.spe + 1e-9 <= r.first_best + 2e-9
        assert r.best_one_parameter <= r.stationary + 1e-9
    gaps = [r.spe / r.stationary for r in rows]
    assert gaps[0] < gaps[1] < gaps[2]
    retry = sequential_value(stage_counts=(1,), deadline_slack=None)[0]
    assert retry.spe == pytest.approx(retry.stationary, abs=1e-8)  # one state: one contract


def test_misspecification_correct_model_recovers_spe():
    plays = misspecification(shifts=(0.0, 0.05), margins=(0.0,), deadline=6)
    exact = plays[0]
    assert exact.principal_utility == pytest.approx(exact.spe_principal_utility, abs=1e-9)
    assert exact.followed.all()
    assert plays[1].principal_utility <= exact.spe_principal_utility + 1e-12


def test_shifted_probs_stay_distributions():
    probs = shifted_probs([[0.5, 0.4, 0.1], [0.3, 0.5, 0.2], [0.15, 0.5, 0.35]], 0.4)
    assert np.allclose(probs.sum(axis=1), 1) and (probs >= 0).all()
    assert probs[0].tolist() == [0.5, 0.4, 0.1] and probs[2, 0] == 0.0


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"stages": 2.0}, "stages"),
        ({"advance": None}, "advance"),
        ({"advance": 1}, "advance"),
        ({"deadline": 10**7}, "deadline: at most 500 attempts"),
        ({"accept_value": [[0.0, 1.0, 1.25]]}, "accept_value: expected 3 numbers"),
        ({"tier_costs": (0.02, 0.03, 0.05)}, "tier_costs\\[0\\]: some tier must cost 0"),
        ({"deadline": 4, "discount": 1.5}, "discount"),
        ({"stages": 5000, "deadline": None}, "stages: at most"),
    ],
)
def test_more_bad_parameters_name_the_field(kwargs, field):
    with pytest.raises(InvalidGameError, match=field):
        delegation_game(**kwargs)


def test_numpy_scalars_are_accepted():
    game = delegation_game(deadline=None, discount=np.float32(0.8))
    assert game.discount == pytest.approx(0.8)


def test_a_belief_without_an_spe_is_flagged_not_played():
    """Retry game: the principal's believed game at shift -0.1 has no stationary SPE; that
    row says so (ok false), the correct-model row without a nudge is the SPE exactly."""
    plays = {
        (p.shift, p.margin): p
        for p in misspecification(shifts=(-0.1, 0.0), margins=(0.0,), deadline=None)
    }
    assert not plays[(-0.1, 0.0)].ok and plays[(-0.1, 0.0)].believed_status != "converged"
    exact = plays[(0.0, 0.0)]
    assert exact.ok and exact.principal_utility == pytest.approx(exact.spe_principal_utility)


@pytest.mark.parametrize("deadline", [6, None])
@pytest.mark.parametrize("scale", [1e-9, 1e-4, 1e4, 1e9])
def test_contract_comparison_scales_with_the_game(deadline, scale):
    """Value and costs in other units (a $10,000 task, or micro-units): every row is the
    default table times the scale (the tie tolerances must not be absolute)."""
    from contractrl.core.simple_contracts import compare_contracts

    costs, value = np.array((0.0, 0.01, 0.03)), np.array((0.0, 1.0, 1.25))
    base = compare_contracts(delegation_game(deadline=deadline))
    scaled = compare_contracts(
        delegation_game(deadline=deadline, tier_costs=costs * scale, accept_value=value * scale)
    )
    for a, b in zip(base.rows, scaled.rows, strict=True):
        assert a.name == b.name
        for field in ("principal_utility", "agent_utility", "welfare", "expected_payment"):
            assert getattr(b, field) == pytest.approx(getattr(a, field) * scale, rel=1e-6), field
        np.testing.assert_array_equal(a.action, b.action)


def test_an_abandoning_outcome_ends_the_task_unaccepted():
    """Retry until accepted, but a fail abandons the task: one attempt, as with deadline 1."""
    once = delegation_game(stages=1, deadline=1)
    abandoned = delegation_game(stages=1, deadline=None, discount=0.9, abandon=(True, False, False))
    assert abandoned.num_states == 1
    assert solve_spe(abandoned).initial_principal_value == pytest.approx(
        solve_spe(once).initial_principal_value, abs=1e-12
    )
    with pytest.raises(InvalidGameError, match="abandon"):
        delegation_game(abandon=(1, 0, 0))


def test_top_outcome_must_be_an_index():
    from contractrl.core.simple_contracts import compare_contracts

    for bad in (True, 3, -4, 1.0):
        with pytest.raises(ValueError, match="top_outcome"):
            compare_contracts(delegation_game(), top_outcome=bad)
