"""The Coin Game experiment through the platform: smoke preset end to end, refusals."""

import json

import pytest

from contractrl.experiments.cli import main
from contractrl.experiments.coin import COIN_PRESETS, CoinExperimentConfig
from contractrl.experiments.config import from_dict, to_dict

RESULT_KEYS = {
    "welfare",
    "welfare_selfish",
    "welfare_cooperative",
    "welfare_constant",
    "payment_share",
    "payment_ratio",
    "follow_rate",
    "spe_ratio",
    "ic_ratio",
    "iterations_per_second",
}


def test_smoke_preset_runs_the_whole_pipeline(tmp_path):
    """Training, validation, baselines, metrics and the figure."""
    out = tmp_path / "coin"
    flags = ["--preset", "smoke", "--backend", "inline", "--no-progress"]  # local: test_coin_lanes
    assert main(["train", "coin", *flags, "--out", str(out)]) == 0
    assert main(["plot", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= set(results["mean"])
    for key in RESULT_KEYS:
        assert results["mean"][key] == results["mean"][key], key  # not NaN
        assert f"{key}_se" in results["mean"]
    assert len(results["seeds"]) == 2
    phases = {p.name for p in (out / "runs" / "seed0").glob("*.json")}
    assert {
        "principal.json",
        "validation.json",
        "validation_nudged.json",
        "constant.json",
        "constant_nudged.json",
        "selfish.json",
        "cooperative.json",
    } <= phases
    seed0 = results["seeds"][0]
    # budget matching on the amount: the constant phase targets what the principal paid and
    # reports its realised transfers (redistribute: what the worse-off agent received)
    val = json.loads((out / "runs" / "seed0" / "validation.json").read_text())
    const = json.loads((out / "runs" / "seed0" / "constant.json").read_text())
    assert const["target_payments"] == val["payments"] == seed0["payments"]
    assert seed0["constant_payments"] == const["payments"] >= 0
    assert 0 <= seed0["constant_share"] <= 1
    assert results["constant_schemes"] == ["redistribute"]
    assert (out / "figure4.png").stat().st_size > 20_000
    # 3x3: each seed's principal is audited exactly, against the exact team optimum
    # (`contractrl solve coin --grid 3` with the smoke game's rules gives the same number)
    from contractrl.experiments.solve_coin import build_parser, solve_coin

    game = COIN_PRESETS["smoke"].game
    solved = solve_coin(
        build_parser().parse_args(
            [
                "--grid",
                str(game.grid_size),
                "--horizon",
                str(game.horizon),
                "--tie-rule",
                game.tie_rule,
                "--gamma",
                str(COIN_PRESETS["smoke"].dqn.gamma),
            ]
        )
    )
    assert results["exact"]["team_welfare"] == pytest.approx(solved["team_welfare"])
    for row in results["seeds"]:
        assert row["audit_plan_welfare"] <= solved["team_welfare"] + 1e-9
        assert row["audit_welfare_of_optimum"] == pytest.approx(
            row["audit_plan_welfare"] / solved["team_welfare"]
        )
        assert 0 <= row["audit_underpaid_share"] <= row["audit_contested_share"] <= 1
        assert 0 <= row["audit_follow_rate_random_ties"] <= 1 and 0 <= row["audit_follow_rate"] <= 1
    assert "audit_contract_rmse_se" in results["mean"]
    # the validation agents' parameters are kept, and their exact evaluation agrees with the
    # sampled one (greedy agents: only spawns and ties are random) within sampling error
    assert (out / "runs" / "seed0" / "validation.params.msgpack").exists()
    for row in results["seeds"]:
        exact, sampled = row["audit_validation_follow_rate"], row["follow_rate"]
        assert abs(exact - sampled) < 0.2, (exact, sampled)
        assert row["audit_validation_welfare"] == pytest.approx(row["welfare"], abs=0.25 * 13.9)
        assert 0 <= row["audit_validation_welfare_relevant_follow_rate"] <= 1
        assert row["audit_validation_welfare_relevant_follow_rate"] >= exact - 1e-9
    # an animated episode of seed 1's trained principal's plan
    assert main(["render", str(out), "--seed-index", "1"]) == 0
    from PIL import Image

    with Image.open(out / "episode-seed1.gif") as gif:
        assert gif.n_frames == COIN_PRESETS["smoke"].game.horizon + 1
    _check_kept_agents(out)


def _check_kept_agents(out):
    """The kept validation agents replay training's last evaluation and are re-evaluated."""
    import jax

    from contractrl.experiments.coin import _config
    from contractrl.experiments.reevaluate import phase_rows
    from contractrl.experiments.render import coin_episode

    config = _config(out)
    for phase in ("validation", "validation_nudged"):
        logged = json.loads((out / "runs" / "seed1" / f"{phase}.json").read_text())
        # training evaluated the final agents with this key (coin.train_phase)
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 1 + 10_000), logged["iterations"])
        (row,) = phase_rows(out, config, 1, phase, config.eval_episodes, [key])
        for metric in ("welfare", "payments", "follow_rate", "spe_ratio", "ic_ratio"):
            assert row[metric] == pytest.approx(logged[metric], abs=1e-5), (phase, metric)
    # the validation agents' own episode: what they played, paid only where they followed
    episode = coin_episode(out, 1, agents="validation")
    followed = episode["actions"] == episode["recs"]
    assert (episode["payments"][~followed] == 0).all()
    assert main(["render", str(out), "--seed-index", "1", "--agents", "validation"]) == 0
    assert (out / "episode-seed1-validation.gif").exists()
    assert main(["render", str(out), "--agents", "selfish"]) == 2
    # more episodes and keys: per-seed intervals that hold their means
    assert main(["evaluate", str(out), "--episodes", "20", "--batches", "3"]) == 0
    result = json.loads((out / "reevaluation.json").read_text())
    assert {(r["seed"], r["phase"]) for r in result["rows"]} == {
        (s, p) for s in (0, 1) for p in ("validation", "validation_nudged")
    }
    for r in result["rows"]:
        follow = r["metrics"]["follow_rate"]
        assert follow["count"] == 3 and follow["low"] <= follow["mean"] <= follow["high"]
        assert 0 <= follow["mean"] <= 1
    assert main(["evaluate", str(out), "--batches", "1"]) == 2


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--grid-size", "1"], "grid_size"),
        (["--baselines", "greedy"], "baselines"),
        (["--nudge-share", "1.5"], "nudge_share"),
        (["--alpha", "0"], "alpha"),
        (["--tie-rule", "random-one"], "(valid: all_collect, random_one)"),
        (["--principal-cost", "free"], "charge_all, followers_only, unpaid_deviations"),
        (["--constant-schemes", "share"], "constant_schemes"),
        (["--budget-calibration", "2"], "budget_calibration"),
    ],
)
def test_bad_config_is_refused(tmp_path, capsys, flags, needle):
    out = tmp_path / "bad"
    assert main(["train", "coin", "--preset", "smoke", "--out", str(out), *flags]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


def test_abbreviated_flags_are_refused(tmp_path, capsys):
    out = tmp_path / "abbrev"
    with pytest.raises(SystemExit) as exc:
        main(["train", "coin", "--preset", "smoke", "--out", str(out), "--nudg", "0.1"])
    assert exc.value.code == 2 and "--nudg" in capsys.readouterr().err and not out.exists()


def test_print_config_shows_the_resolved_preset(capsys):
    flags = ["--preset", "headline-3x3", "--constant-schemes", "redistribute,top_up"]
    assert main(["train", "coin", *flags, "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert config["dqn"]["iterations"] == 200_000
    assert config["game"]["tie_rule"] == "random_one"
    assert config["dqn"]["time_limit"] == "truncate"
    assert config["constant_schemes"] == ["redistribute", "top_up"]


def test_presets_round_trip():
    for config in COIN_PRESETS.values():
        config.validate()
        assert from_dict(CoinExperimentConfig, json.loads(json.dumps(to_dict(config)))) == config
    assert COIN_PRESETS["paper-3x3"].dqn.iterations == 1_000_000
    assert COIN_PRESETS["paper-7x7"].game.grid_size == 7
    for name in ("paper-3x3", "paper-7x7", "budget-3x3", "budget-7x7", "headline-3x3", "smoke"):
        assert COIN_PRESETS[name].game.tie_rule == "random_one", name


def test_phase_names_parse_into_kinds_schemes_and_nudges():
    """Every phase the pipeline runs is parsed once into a Phase; unknown names are refused."""
    import dataclasses

    config = dataclasses.replace(
        COIN_PRESETS["smoke"], nudge_share=0.1, constant_schemes=("redistribute", "top_up")
    )
    phases = {name: config.phase(name) for name in (*config.phases(), "selfish", "cooperative")}
    assert [p.kind for p in phases.values()] == [
        "principal",
        "validation",
        "validation",
        "constant",
        "constant",
        "constant",
        "constant",
        "selfish",
        "cooperative",
    ]
    assert phases["validation_nudged"].nudged and not phases["validation"].nudged
    assert phases["constant_top_up_nudged"].scheme == "top_up"
    assert phases["constant_top_up_nudged"].nudged
    assert phases["constant"].scheme == "redistribute" and not phases["constant"].nudged
    assert [p.has_principal for p in phases.values()] == [True, True, True] + [False] * 6
    for bad in ("constant_bogus", "validation_nudge", "validation_nudgedX", "validation_nudge0.1"):
        with pytest.raises(ValueError, match="phase"):
            config.phase(bad)


def test_every_move_arrow_stays_on_the_grid_and_points_its_way():
    """Moves off an edge wrap around the torus; their arrows stop at the edge, inside the axes,
    and still point in the move's direction (the render used to lose them)."""
    from contractrl.plotting.animation import _ARROWS, arrow_segment

    g = 3
    for r in range(g):
        for c in range(g):
            for dx in (-0.06, 0.0, 0.06):
                for dr, dc in _ARROWS[:4]:
                    (x0, y0), (x1, y1) = arrow_segment(r + dx, c + dx, dr, dc, g)
                    assert -0.5 < x1 < g - 0.5 and -0.5 < y1 < g - 0.5
                    assert (x1 - x0) * dc > 0 or (y1 - y0) * dr > 0  # some length, its way
