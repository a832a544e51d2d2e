"""`contractrl train game FILE`: Algorithm 2 on a user's own instance file."""

import dataclasses
import json
import math

import pytest

from contractrl.core.games import figure1
from contractrl.core.instance import save_instance
from contractrl.experiments.cli import main
from contractrl.experiments.game import GAME_PRESETS, run_game


def test_smoke_preset_learns_a_small_finite_game(tmp_path):
    """The paper's Figure 1 game: >= 0.9 of the exact SPE principal value, plot, resume."""
    path = tmp_path / "fig1.json"
    save_instance(figure1(), path)
    out = tmp_path / "run"
    args = ["train", "game", str(path), "--out", str(out), "--no-progress", "--seeds", "1"]
    assert main([*args, "--backend", "inline"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "game" and results["instance"] == str(path)
    assert results["mean"]["spe_principal_value"] == pytest.approx(1.0)  # Figure 1's SPE
    assert results["mean"]["principal_utility_ratio"] >= 0.9
    assert (out / "instances" / "instance0.json").exists()
    assert main(["plot", str(out)]) == 0
    assert (out / "learning.png").stat().st_size > 10_000
    assert main(["render", str(out)]) == 0
    assert (out / "policy-tree.png").stat().st_size > 5_000
    # a finished experiment resumes to the same results without training
    assert main([*args, "--backend", "inline", "--resume"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["mean"]["principal_utility_ratio"] == results["mean"]["principal_utility_ratio"]


@pytest.mark.slow  # a second compile of the learner (~30 s); `make test-all`
def test_infinite_horizon_game_trains_from_python(tmp_path):
    """The Python API on a discounted game with no horizon."""
    import dataclasses

    game = dataclasses.replace(figure1(), horizon=None, discount=0.9)
    path = tmp_path / "inf.json"
    save_instance(game, path)
    config = dataclasses.replace(
        GAME_PRESETS["smoke"],
        seeds=1,
        backend="inline",
        eval_every=300,
        dqn=dataclasses.replace(GAME_PRESETS["smoke"].dqn, iterations=600),
    )
    results = run_game(config, path, tmp_path / "run", progress=False)
    ratio = results["mean"]["principal_utility_ratio"]
    assert 0.0 < ratio <= 1.0 + 1e-9
    assert results["config"]["dqn"]["iterations"] == 600


def test_bad_file_gets_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"states": ["a"]}')
    assert main(["train", "game", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.json" in err
    assert not (tmp_path / "o").exists()


def test_game_without_stationary_spe_trains_against_a_labelled_reference(tmp_path, capsys):
    """No stationary SPE: training runs; the ratio is against the SPE of the game cut at H."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from contractrl.core.solver import solve_spe
    from nospe import DISCOUNT, no_spe_game

    nospe = tmp_path / "nospe.json"
    save_instance(no_spe_game(), nospe)
    out = tmp_path / "a"
    args = ["--out", str(out), "--seeds", "1", "--iterations", "200", "--eval-every", "200"]
    assert main(["train", "game", str(nospe), *args, "--backend", "inline"]) == 0
    captured = capsys.readouterr()
    horizon = math.ceil(math.log(1e-4) / math.log(DISCOUNT))
    assert f"no stationary SPE: ratios against the SPE of the game cut at {horizon}" in (
        captured.err
    )
    assert f"of the reference finite_horizon_spe_H{horizon}" in captured.out
    results = json.loads((out / "results.json").read_text())
    assert results["reference"] == f"finite_horizon_spe_H{horizon}"
    cut = solve_spe(dataclasses.replace(no_spe_game(), horizon=horizon))
    m = results["mean"]
    assert m["spe_principal_value"] == pytest.approx(cut.initial_principal_value)
    assert m["principal_utility_ratio"] == pytest.approx(
        m["principal_utility"] / cut.initial_principal_value
    )
    # the learned principal per state, printed and saved; a game with cycles renders as a graph
    policy = json.loads((out / "runs" / "instance0-seed0" / "policy.json").read_text())
    assert [r["state"] for r in policy["rows"]] == ["s0", "s1"]
    assert "learned principal of seed 0" in captured.out
    assert main(["render", str(out)]) == 0
    assert (out / "policy-graph.png").stat().st_size > 5_000


def test_refusals_before_training(tmp_path, capsys):
    """Resuming with another game: exit 2."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from nospe import no_spe_game

    fig1 = tmp_path / "fig1.json"
    save_instance(figure1(), fig1)
    out = tmp_path / "b"
    args = ["--out", str(out), "--no-progress", "--seeds", "1", "--iterations", "200"]
    assert main(["train", "game", str(fig1), *args, "--eval-every", "200"]) == 0
    other = tmp_path / "other.json"
    save_instance(no_spe_game(), other)
    assert main(["train", "game", str(other), *args, "--eval-every", "200", "--resume"]) == 2
    assert "is not the game" in capsys.readouterr().err


def test_auto_preset_is_sized_from_the_game(capsys):
    """Phase pairs from the (effective) horizon, phase length from inputs x actions, and the
    largest nudge whose exact price is at most 1% (Figure 1: 1 - 2.25 ξ, so ξ <= 0.0044)."""
    from contractrl.experiments.game import auto_config, nudge_for

    game = figure1()
    # Figure 1 with margin ξ: both steps pay (0.8 + ξ) / 0.8 on L w.p. 0.9, so the principal
    # keeps 1 - 2 · 0.9 ξ / 0.8 = 1 - 2.25 ξ; the grid 0.01 · 2^-k first fits at 0.0025
    assert nudge_for(game) == pytest.approx(0.0025)
    config = auto_config(game)
    assert (config.dqn.iterations, config.dqn.phase_length) == (4000, 500)  # 4 pairs (minimum)
    assert config.dqn.principal_model == "outcome_value"
    longer = dataclasses.replace(game, horizon=None, discount=0.95)  # H_eff 20: 10 pairs
    assert auto_config(longer).dqn.iterations == 10 * 2 * 500
    # stated where a user looks: --print-config's stderr note and the resolved JSON
    path = "examples/games/figure1.yaml"
    assert main(["train", "game", path, "--print-config"]) == 0
    out = capsys.readouterr()
    assert "preset auto, sized from the game" in out.err and "nudge 0.0025" in out.err
    assert json.loads(out.out)["dqn"]["iterations"] == 4000


@pytest.mark.slow  # 3 runs x 5,000 iterations (minutes on 2 cores); `make test-all`
def test_default_preset_learns_a_small_infinite_horizon_game(tmp_path):
    """A random 3-state game at γ = 0.9 (the tuning set's random-11, where the paper's
    contractual-Q network kept 0.45): the default preset keeps >= 0.95 of the exact SPE."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from game_study import random_game

    from contractrl.experiments.game import auto_config

    game = random_game(11)
    assert game.horizon is None and game.num_states == 3
    path = tmp_path / "g.json"
    save_instance(game, path)
    results = run_game(auto_config(game), path, tmp_path / "run", progress=False)
    assert results["reference"] == "spe"
    for run in results["instances"][0]["runs"]:
        assert run["principal_utility_ratio"] >= 0.95
        # above the SPE only with a profitable deviation (commitment), never otherwise
        assert run["principal_utility_ratio"] <= 1 + 1e-9 or run["deviation_gain"] > 0
