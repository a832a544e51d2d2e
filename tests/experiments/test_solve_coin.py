"""``contractrl solve coin``: the exact Coin Game references through the command line."""

import json

import numpy as np
import pytest

from contractrl.core.markov_eval import evaluate_profile, follow_policy
from contractrl.core.markov_solver import principal_optimum, team_optimum
from contractrl.envs.coin_exact import export_coin_game
from contractrl.envs.coin_game import CoinGameConfig
from contractrl.experiments.cli import main


def test_solve_coin_json_agrees_with_the_library(capsys):
    assert main(["solve", "coin", "--grid", "2", "--horizon", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    game = export_coin_game(CoinGameConfig(grid_size=2, horizon=4), discount=0.99).game
    assert result["num_states"] == 4 * 4 * 4 * 2 and result["num_joint_actions"] == 16
    assert result["team_discounted_value"] == pytest.approx(team_optimum(game).value)
    solution = principal_optimum(game, 0.0)
    follow = [follow_policy(game, solution.plan, i) for i in range(2)]
    totals = evaluate_profile(game, solution.plan, solution.contracts, follow)
    first = result["welfare_first"]
    assert result["team_welfare"] == pytest.approx(totals.welfare)
    assert first["payments"] == pytest.approx(totals.payments.sum())
    assert first["payment_share"] == pytest.approx(first["payments"] / first["welfare"])
    for key in ("follow_rate_random_ties", "follow_rate_alone"):
        assert 0 < first[key] <= 1
    # the α-principal never earns more welfare than the team optimum
    assert result["principal_alpha"]["welfare"] <= result["team_welfare"] + 1e-9


def test_solve_coin_table_and_bad_grid(capsys):
    assert main(["solve", "coin", "--grid", "2", "--horizon", "2"]) == 0
    out = capsys.readouterr().out
    assert "welfare per episode (team optimum)" in out and "payment share" in out
    assert main(["solve", "coin", "--grid", "1"]) == 2
    assert "grid_size" in capsys.readouterr().err


def test_solve_coin_3x3_team_optimum_beats_every_learned_reference(capsys):
    """The 3×3 game (1,458 states): exact welfare per episode and min-pay share."""
    assert main(["solve", "coin", "--grid", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_states"] == 1458
    first = result["welfare_first"]
    assert np.isfinite(result["team_welfare"]) and result["team_welfare"] > 13.28
    assert 0 < first["payment_share"] < 0.3
    assert 0.5 < first["follow_rate_random_ties"] < 0.8


def test_stationary_reference_is_the_untimed_solution_audited_on_the_timed_game(capsys):
    """--stationary: the welfare-first principal of the game without its time limit, audited on
    the timed game; with one step left the untimed contracts price a future that is not there,
    so some visited steps are mispriced, and its plan cannot beat the team optimum."""
    import dataclasses

    from contractrl.core.markov_audit import audit_principal

    argv = ["solve", "coin", "--grid", "2", "--horizon", "4", "--stationary", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    ref = result["stationary_reference"]
    assert ref["converged"] and ref["plan_welfare"] <= result["team_welfare"] + 1e-9
    game = export_coin_game(CoinGameConfig(grid_size=2, horizon=4), discount=0.99).game
    untimed = principal_optimum(dataclasses.replace(game, horizon=None), 0.0)
    timed = audit_principal(game, untimed.plan, untimed.contracts, result["team_welfare"])
    assert ref["underpaid_share"] == pytest.approx(timed.underpaid_share)
    assert ref["payments_learned"] == pytest.approx(timed.payments_learned)
    assert result["command"].endswith("--stationary --json")
