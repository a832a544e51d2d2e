"""Exact SPE solvers: paper values, brute force, sweeps, off-path states, nudging."""

import numpy as np
import pytest

from contractrl.core.evaluate import audit
from contractrl.core.games import (
    FIGURE1_AGENT_VALUE,
    FIGURE1_CONTRACT,
    FIGURE1_PRINCIPAL_VALUE,
    figure1,
    random_game,
    tree_mdp,
)
from contractrl.core.lp import min_pay_contract
from contractrl.core.meta import meta_algorithm
from contractrl.core.solver import solve_spe
from reference import brute_force_spe, no_pay_values, separated_game


@pytest.mark.parametrize("sweep", ["auto", "time"])
@pytest.mark.parametrize("method", ["backward", "meta"])
def test_figure1_paper_values(sweep, method):
    game = figure1()
    sol = solve_spe(game, method=method, sweep=sweep)
    assert sol.initial_principal_value == pytest.approx(FIGURE1_PRINCIPAL_VALUE, abs=1e-12)
    assert sol.initial_agent_value == pytest.approx(FIGURE1_AGENT_VALUE, abs=1e-12)
    aL = game.action_names.index("aL")
    pairs = (
        [(0, 0), (1, 1), (1, 2)] if sol.stationary else [(t, s) for t in (0, 1) for s in range(3)]
    )
    for t, s in pairs:
        d = sol.decision(t, s)
        assert d.action == aL
        assert np.allclose(d.contract, FIGURE1_CONTRACT, atol=1e-12)
        assert d.expected_payment == pytest.approx(0.9, abs=1e-12)
    # the last step: principal 0.5, agent 0.1 (docs/model.md §4)
    assert sol.decision(1, 1).principal_value == pytest.approx(0.5, abs=1e-12)
    assert sol.decision(1, 2).agent_value == pytest.approx(0.1, abs=1e-12)


def test_figure1_implementing_aR_is_worse():
    """At sL on the last step, implementing aR is worth its gross reward minus the min-pay LP's
    payment (an independent solver, not the closed form the backward induction uses)."""
    game = figure1()
    sol = solve_spe(game)
    k = sol.row(1, 1)
    aR = game.action_names.index("aR")
    lp = min_pay_contract(game.agent_reward[1], game.outcome_probs[1], aR)
    expected = game.outcome_probs[1, aR] @ game.principal_reward[1] - lp.expected_payment
    assert sol.principal_q[k, 1, aR] == pytest.approx(expected, abs=1e-12)
    assert sol.principal_q[k, 1, aR] < sol.principal_value[k, 1]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(3, 2, 2, 2), (3, 3, 3, 2), (2, 2, 3, 3)])
def test_backward_induction_equals_brute_force(seed, shape):
    """Grid search over contracts at every (t, s), agent response computed from its values."""
    num_s, num_a, num_o, horizon = shape
    game = separated_game(num_s, num_a, num_o, horizon, seed)
    sol = solve_spe(game, sweep="time")
    points = 61 if num_o == 2 else 25
    pv, av, act = brute_force_spe(game, points=points, rounds=6 if num_o == 2 else 9)
    # A zooming grid reaches the optimal vertex to ~1e-6 with two outcomes; with three, the
    # feasible cone at a vertex where two IC rows bind is narrow and the grid stops ~1e-3 short.
    tol = 1e-5 if num_o == 2 else 2e-3
    assert sol.principal_value == pytest.approx(pv, abs=tol)
    assert sol.agent_value == pytest.approx(av, abs=10 * tol)
    assert (sol.action == act).all()
    # the grid never beats the exact optimum
    assert (pv <= sol.principal_value + 1e-9).all()


@pytest.mark.parametrize("seed", range(3))
def test_tree_brute_force_and_off_path(seed):
    """Depth-3 tree: every state, on and off the equilibrium path, matches the brute force."""
    game = tree_mdp(3, seed)
    sol = solve_spe(game)
    assert sol.stationary
    pv, av, _ = brute_force_spe(game, bound=4.0)
    for t in range(3):  # every (t, s): the stored row and, off it, the short horizons
        for s in range(game.num_states):
            assert sol.decision(t, s).principal_value == pytest.approx(pv[t, s], abs=1e-6)


def test_levels_and_time_sweeps_agree():
    game = tree_mdp(9, 3)
    fast = solve_spe(game)
    slow = solve_spe(game, sweep="time")
    assert fast.stationary and not slow.stationary
    assert fast.iterations == 9  # one sweep, one group per height
    heights = fast.heights
    for t in range(9):
        valid = t + heights <= 9
        assert np.allclose(
            slow.principal_value[t, valid], fast.principal_value[0, valid], atol=1e-12
        )
        assert (slow.action[t, valid] == fast.action[0, valid]).all()


def test_tree_high_effort_share():
    """docs/model.md §6: the principal induces a1 in about 60% of states (a reproduction: 57.6%)."""
    shares = [np.mean(solve_spe(tree_mdp(10, seed)).action == 1) for seed in range(5)]
    assert 0.5 < np.mean(shares) < 0.65


def test_off_path_states_are_solved():
    """At (t=0, sL) — never reached — the time-indexed solution still has the SPE decision."""
    game = figure1()
    sol = solve_spe(game, sweep="time")
    d = sol.decision(0, 1)  # sL at t=0: off path (sL ends the game)
    assert d.action == 0 and d.principal_value == pytest.approx(0.5, abs=1e-12)
    assert d.agent_value == pytest.approx(0.1, abs=1e-12)
    assert audit(game, sol).ok


def test_stationary_solution_answers_every_time_step():
    """Issue 10: a stationary solution of an acyclic game refused ``decision(1, s0)`` and had no
    ``action[1]``. Now ``decision`` and ``at`` answer every t < H; ``row`` (storage) refuses."""
    game = figure1()
    sol = solve_spe(game)
    ref = solve_spe(game, sweep="time")
    assert sol.stationary and sol.action.shape[0] == 1
    d = sol.decision(1, 0)  # s0 with one decision left: the one-shot problem at s0
    assert d.action == ref.action[1, 0]
    assert np.allclose(d.contract, ref.contract[1, 0], atol=1e-12)
    assert d.principal_value == pytest.approx(ref.principal_value[1, 0], abs=1e-12)
    assert d.agent_value == pytest.approx(ref.agent_value[1, 0], abs=1e-12)
    assert sol.at(1).action.tolist() == ref.action[1].tolist()
    with pytest.raises(ValueError, match="not stored"):
        sol.row(1, 0)
    with pytest.raises(ValueError, match="outside the horizon"):
        sol.decision(2, 1)
    with pytest.raises(ValueError, match="outside the horizon"):
        sol.at(-1)


def dag_game(seed, num_states=12, horizon_extra=1):
    """A random acyclic game (state s moves only to larger states; some outcomes end it),
    3 actions and 3 outcomes, horizon = its longest path + ``horizon_extra``."""
    from contractrl.core.model import PrincipalAgentMDP

    rng = np.random.default_rng(seed)
    num_a = num_o = 3
    probs = 0.5 * rng.dirichlet(np.ones(num_o), size=(num_states, num_a))
    for a in range(num_a):
        probs[:, a, a] += 0.5
    trans = np.zeros((num_states, num_o, num_states))
    for s in range(num_states - 1):
        for o in range(num_o):
            if rng.random() < 0.8:
                size = min(2, num_states - s - 1)
                nxt = rng.choice(np.arange(s + 1, num_states), size=size, replace=False)
                trans[s, o, nxt] = rng.dirichlet(np.ones(nxt.size))
    heights = np.ones(num_states, dtype=int)
    for s in range(num_states - 1, -1, -1):
        succ = np.flatnonzero(trans[s].sum(axis=0))
        heights[s] = 1 + (heights[succ].max() if succ.size else 0)
    return PrincipalAgentMDP(
        probs,
        -0.5 * rng.random((num_states, num_a)),
        2.0 * rng.random((num_states, num_o)),
        trans,
        horizon=int(heights.max()) + horizon_extra,
        discount=0.9,
    )


@pytest.mark.parametrize("method", ["backward", "meta"])
@pytest.mark.parametrize("seed", range(4))
def test_stationary_and_time_indexed_solutions_agree_at_every_time_step(seed, method):
    """Every (t, s) with t < H, on and off the stored row, matches H full time sweeps; the
    materialised time-indexed tables pass the audit (IC and values at every (t, s))."""
    for game in (tree_mdp(5, seed), dag_game(seed, horizon_extra=seed % 2)):
        sol = solve_spe(game, method=method)
        ref = solve_spe(game, sweep="time")
        assert sol.stationary and not ref.stationary and sol.heights.max() > 1
        uncovered = 0
        for t in range(game.horizon):
            step = sol.at(t)
            assert (step.action == ref.action[t]).all()
            for name in ("contract", "expected_payment", "principal_value", "agent_value"):
                assert np.allclose(getattr(step, name), getattr(ref, name)[t], atol=1e-9), name
            assert np.allclose(step.principal_q, ref.principal_q[t], atol=1e-9)
            assert np.allclose(step.agent_q, ref.agent_q[t], atol=1e-9)
            for s in range(game.num_states):
                d = sol.decision(t, s)
                uncovered += t + sol.heights[s] > game.horizon
                assert d.action == ref.action[t, s]
                assert d.principal_value == pytest.approx(ref.principal_value[t, s], abs=1e-9)
                assert d.agent_value == pytest.approx(ref.agent_value[t, s], abs=1e-9)
                assert np.allclose(d.contract, ref.contract[t, s], atol=1e-9)
        assert uncovered > 0  # the test reaches pairs the stored row does not hold
        full = sol.time_indexed()
        assert full.action.shape == ref.action.shape and not full.stationary
        assert np.allclose(full.principal_value, ref.principal_value, atol=1e-9)
        report = audit(game, full)
        assert report.ok, report.violations


def test_short_horizons_are_computed_only_when_asked():
    """Solving a tree stores one row (``make bench`` speed); the uncovered pairs are computed on
    the first request, over those pairs only (never H full rows), and then cached."""
    game = tree_mdp(8, 0)
    sol = solve_spe(game)
    assert sol.action.shape == (1, game.num_states)
    assert sol.short_rows._rows is None  # nothing computed by solving
    sol.decision(0, 0)  # covered by the stored row: still nothing computed
    assert sol.short_rows._rows is None
    sol.decision(7, 0)  # root with one step left
    rows = sol.short_rows._rows
    assert sorted(rows) == list(range(1, 8))
    updates = sum(step.action.size for _, step in rows.values())
    assert updates == int((sol.heights - 1).sum()) < game.num_states
    sol.at(3)
    assert sol.short_rows._rows is rows


def test_unconverged_meta_refuses_uncovered_pairs_clearly():
    """A stationary iterate that is no equilibrium cannot be completed: a clear error."""
    game = tree_mdp(4, 0)
    sol = meta_algorithm(game, max_iterations=1)
    assert not sol.converged and sol.stationary
    assert sol.decision(0, 0).action in (0, 1)  # the stored row still answers
    with pytest.raises(ValueError, match="sweep='time'"):
        sol.decision(3, 0)


def test_horizon_one_is_the_one_shot_problem(rng):
    """H = 1: one LP per action, principal picks the best (docs/model.md §3)."""
    game = random_game(4, 3, 3, horizon=1, seed=7)
    sol = solve_spe(game, contract_method="lp")
    for s in range(4):
        values = []
        for a in range(3):
            res = min_pay_contract(game.agent_reward[s], game.outcome_probs[s], a)
            gross = game.outcome_probs[s, a] @ game.principal_reward[s]
            values.append(gross - res.expected_payment if res.implementable else -np.inf)
        assert sol.principal_value[0, s] == pytest.approx(max(values), abs=1e-9)
        assert sol.action[0, s] == int(np.argmax(values))


@pytest.mark.parametrize("seed", range(3))
def test_per_stage_bound_and_audit(seed):
    """At every (t, s) the principal does at least as well as by paying nothing (the agent then
    takes its own best action) under the same continuation values, and exactly as well where the
    equilibrium pays nothing. The no-pay value comes from plain loops over the game's tables
    (tests/reference.py), not from the solver's own arrays; IC and b >= 0 hold."""
    game = separated_game(6, 3, 3, 4, seed, discount=0.95)  # it pays at some (t, s), not all
    sol = solve_spe(game)
    assert sol.action.shape[0] == 4  # a cyclic game: one row per time step
    unpaid = 0
    for t in range(4):
        agent_next = sol.agent_value[t + 1] if t + 1 < 4 else np.zeros(game.num_states)
        principal_next = sol.principal_value[t + 1] if t + 1 < 4 else np.zeros(game.num_states)
        free = no_pay_values(game, agent_next, principal_next)
        assert (sol.principal_value[t] >= free - 1e-9).all()
        zero = sol.expected_payment[t] == 0
        unpaid += int(zero.sum())
        assert np.allclose(sol.principal_value[t, zero], free[zero], atol=1e-9)
    assert 0 < unpaid < sol.action.size  # both cases occur
    report = audit(game, sol)
    assert report.ok, report.violations
    assert report.min_payment >= 0


def test_per_stage_bound_catches_a_wrong_value():
    """The reference bound is not vacuous: lowering one value below paying nothing fails it."""
    game = separated_game(6, 3, 3, 4, 0, discount=0.95)
    sol = solve_spe(game)
    free = no_pay_values(game, sol.agent_value[1], sol.principal_value[1])
    wrong = sol.principal_value[0].copy()
    wrong[2] = free[2] - 1e-3
    assert not (wrong >= free - 1e-9).all()


@pytest.mark.parametrize("method", ["closed_form", "vertex", "lp"])
def test_contract_methods_give_the_same_spe(method):
    game = tree_mdp(5, 1)
    ref = solve_spe(game)
    sol = solve_spe(game, contract_method=method)
    assert np.allclose(sol.principal_value, ref.principal_value, atol=1e-9)
    assert (sol.action == ref.action).all()


def test_nudge_makes_recommendation_strict():
    game = tree_mdp(6, 2)
    xi = 0.05
    sol = solve_spe(game, margin=xi)
    report = audit(game, sol)
    assert report.ok and report.max_ic_violation <= 1e-9
    plain = solve_spe(game)
    assert sol.initial_principal_value < plain.initial_principal_value


def test_infinite_horizon_fixed_point_residuals_decay():
    """The fixed point of the backward operator converges; its residuals shrink like γ^k."""
    game = random_game(8, 2, 2, horizon=None, discount=0.8, seed=3)
    sol = solve_spe(game)
    assert sol.method == "fixed_point" and sol.converged
    res = np.array(sol.residuals)
    assert res[-1] <= 1e-10
    k = np.arange(len(res))
    assert (res <= res[0] * 0.8**k * 1.5 + 1e-12).all()
    assert audit(game, sol).ok


def test_acyclic_infinite_horizon_needs_one_sweep():
    game = random_game(5, 2, 2, horizon=None, discount=0.9, seed=0, terminal_prob=1.0)
    sol = solve_spe(game)
    assert sol.iterations == 1 and sol.stationary


def test_solve_spe_rejects_bad_options():
    with pytest.raises(ValueError, match="method"):
        solve_spe(figure1(), method="nope")
    with pytest.raises(ValueError, match="margin"):
        solve_spe(figure1(), margin=-0.1)
    with pytest.raises(ValueError, match="levels"):
        solve_spe(random_game(3, 2, 2, horizon=2), sweep="levels")


def test_close_distributions_give_the_lp_spe():
    """Issue 10 item 1: three actions whose outcome distributions differ by ~1e-6. The old
    absolute determinant test (|det| <= 1e-12) skipped action a0's min-pay vertex, so backward
    induction implemented a2 at a lower principal value than the LP reference."""
    from contractrl.core.model import PrincipalAgentMDP

    probs = np.array(
        [
            [0.057926601580034445, 0.20516791563019537, 0.7369054827897702],
            [0.05792545910277481, 0.20516847549411826, 0.736906065403107],
            [0.057926699308528555, 0.2051687220151003, 0.7369045786763712],
        ]
    )
    reward = np.array([2.7561129134888195e-07, 1.335964541781234e-06, 1.4026108582504762e-06])
    game = PrincipalAgentMDP(
        probs[None],
        reward[None],
        np.array([[9e5, -9e5, 6e5]]),
        np.zeros((1, 3, 1)),
        horizon=1,
        discount=1.0,
    )
    ref = solve_spe(game, contract_method="lp")
    assert ref.action[0, 0] == 0  # the LP's answer: pay ~1.15 to implement a0
    for method in ("auto", "vertex"):
        sol = solve_spe(game, contract_method=method)
        assert sol.action[0, 0] == ref.action[0, 0]
        assert sol.initial_principal_value == pytest.approx(ref.initial_principal_value, rel=1e-12)
        assert audit(game, sol).ok


def test_game_without_stationary_spe_is_reported_not_converged():
    """Issue 10 item 2: none of the four stationary recommendation profiles of this game is an
    SPE (checked by enumeration, tests/reference.py), so the fixed point cannot converge. It
    used to run its whole budget (100,000 iterations) and return a value as if converged; now
    the stalled residual stops it early, with ``converged=False`` and a status."""
    from nospe import AGENT_REWARD, DISCOUNT, PRINCIPAL_REWARD, PROBS, TRANSITIONS, no_spe_game
    from reference import stationary_spe_profiles

    assert (
        stationary_spe_profiles(PROBS, AGENT_REWARD, PRINCIPAL_REWARD, TRANSITIONS, DISCOUNT) == []
    )
    sol = solve_spe(no_spe_game())
    assert not sol.converged and not sol.ok
    assert sol.status == "stalled"
    assert sol.iterations < 2_000
    assert min(sol.residuals) > 1e-3  # it really was not converging


def test_random_two_state_games_converge_to_the_enumerated_spe():
    """Where a stationary SPE exists and the fixed point converges, it is one of them; where
    the fixed point does not converge, it says so (a random game need not have one)."""
    from reference import stationary_spe_profiles

    for seed in range(8):
        game = random_game(2, 2, 2, horizon=None, discount=0.95, seed=seed)
        spes = stationary_spe_profiles(
            game.outcome_probs,
            game.agent_reward,
            game.principal_reward,
            game.transitions.toarray().reshape(2, 2, 2),
            game.discount,
        )
        sol = solve_spe(game)
        if sol.converged:
            assert any(
                tuple(sol.action[0]) == sigma and np.allclose(vp, sol.principal_value[0], atol=1e-7)
                for sigma, _, vp in spes
            )
        else:
            assert sol.status in ("stalled", "budget")


def test_stages_and_records_are_frozen_dataclasses():
    """Issue 10: stage functions were ``functools.partial`` of 5-8 positional arguments that
    passed string-keyed dicts; now a frozen stage object and a frozen record per stage."""
    import dataclasses

    from contractrl.core.evaluate import BestResponseStage, EvaluationStage, ResponseStep
    from contractrl.core.meta import PrincipalStage
    from contractrl.core.solution import PrincipalPolicy
    from contractrl.core.stages import PrincipalChoice, SPEStage, SPEStep
    from contractrl.core.sweep import make_schedule, run_backward

    game = figure1()
    schedule = make_schedule(game)
    stage = SPEStage(game, 0.0, "auto")
    result = run_backward(game, schedule, stage, 2)
    assert isinstance(result.records, SPEStep) and isinstance(result.records, PrincipalChoice)
    assert result.records.action.shape == (1, 3) and result.records.agent_q.shape == (1, 3, 2)
    sol = solve_spe(game)
    assert np.array_equal(result.records.contract, sol.contract)
    policy = PrincipalPolicy.pay_nothing(game.num_states, game.num_outcomes)
    response = run_backward(game, schedule, BestResponseStage(game, policy, 1e-9), 1)
    assert isinstance(response.records, ResponseStep)
    evaluation = EvaluationStage(game, policy, np.zeros((1, 3), dtype=np.int64))
    assert run_backward(game, schedule, evaluation, 3).records is None
    principal = PrincipalStage(game, sol.agent_q, 0.0, "auto")
    assert isinstance(run_backward(game, schedule, principal, 1).records, PrincipalChoice)
    for obj in (stage, principal, evaluation, result.records, response.records):
        assert dataclasses.is_dataclass(obj)
        with pytest.raises(dataclasses.FrozenInstanceError):
            obj.game = None


def test_decision_by_state_name_with_action_and_outcome_names():
    from contractrl.core.games import figure1

    sol = solve_spe(figure1())
    d = sol.decision(1, "sL")
    assert (d.action, d.action_name) == (0, "aL")
    assert d.contract_by_outcome == {"L": 1.0, "R": 0.0}  # Figure 1: pay 1 on L
    by_index = sol.decision(1, 1)
    assert by_index.action_name == "aL" and by_index.contract_by_outcome == d.contract_by_outcome
    for t, s, needle in [(0, "nope", "no state"), (0, 3, "outside the states"), (2, 0, "t=2")]:
        with pytest.raises(ValueError, match=needle):
            sol.decision(t, s)


def test_table_prints_round_off_as_zero():
    from pathlib import Path

    from contractrl.core.instance import load_instance
    from contractrl.core.report import solution_table

    game = load_instance(Path(__file__).parents[2] / "examples/games/repeated_effort.yaml")
    sol = solve_spe(game)
    assert 0 < abs(sol.initial_agent_value) < 1e-8  # the fixed point's round-off
    table = solution_table(game, sol)
    assert "e-1" not in table  # no 2.4e-10 beside values printed to 6 digits
    rows = [line.split() for line in table.splitlines() if line.startswith(("0 ", "1 "))]
    assert [row[-2] for row in rows] == ["0", "0"]
