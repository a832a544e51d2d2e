"""The budget frontier through the CLI: smoke preset end to end, transfers accounting."""

import json

import pytest

from contractrl.experiments.cli import main


@pytest.mark.slow  # ~80 s on 2 cores; the frontier and its plot run by default in the dilemma
def test_smoke_frontier_and_its_plot(tmp_path):
    out = tmp_path / "frontier"
    flags = ["--schemes", "redistribute,top_up", "--no-progress"]
    assert main(["train", "frontier", "--preset", "smoke", "--out", str(out), *flags]) == 0
    assert main(["plot", str(out)]) == 0
    assert (out / "frontier.png").stat().st_size > 10_000
    results = json.loads((out / "results.json").read_text())
    points = results["points"]
    contracts = [p for p in points if p["kind"] == "contracts"]
    constant = {p["scheme"]: p for p in points if p["kind"] == "constant"}
    assert sorted(p["nudge_share"] for p in contracts) == [0.0, 0.1]
    assert set(constant) == {"redistribute", "top_up"}
    for point in points:
        assert point["welfare"] == point["welfare"] and point["payments"] >= 0
    # Under random_one at most one agent collects per step, so with two agents the transfers
    # are exactly p W / 2 (redistribute: the other agent receives p (W/2 - 0)) and p W (top_up)
    red, top = constant["redistribute"], constant["top_up"]
    assert red["payments"] == pytest.approx(0.5 * red["welfare"] / 2, rel=1e-5, abs=1e-6)
    assert top["payments"] == pytest.approx(0.5 * top["welfare"], rel=1e-5, abs=1e-6)
    # each nudge has its own validation phase
    assert (out / "contracts-alpha0.1" / "runs" / "seed0" / "validation_nudge0.1.json").exists()


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--alphas", "0.1,0.1"], "alphas"),
        (["--shares", "0.1,0.1000001"], "shares"),
        (["--nudge-shares", "0.1"], "nudge_shares"),
        (["--schemes", "share"], "schemes"),
    ],
)
def test_bad_frontier_config_is_refused(tmp_path, capsys, flags, needle):
    out = tmp_path / "bad"
    assert main(["train", "frontier", "--preset", "smoke", "--out", str(out), *flags]) == 2
    assert needle in capsys.readouterr().err and not out.exists()


def test_frontier_in_another_environment_with_early_ends(tmp_path):
    """The frontier in the iterated dilemma (episodes end at a mutual defection): the nudge
    is a share of welfare per step the plain validation agents' episodes actually lasted."""
    out = tmp_path / "dilemma"
    flags = ["--env", "iterated_dilemma", "--env-kwargs", '{"horizon": 6}', "--no-progress"]
    flags += ["--iterations", "300", "--learning-starts", "50", "--eval-every", "300"]
    assert main(["train", "frontier", "--preset", "smoke", "--out", str(out), *flags]) == 0
    run = out / "contracts-alpha0.1" / "runs" / "seed0"
    plain = json.loads((run / "validation.json").read_text())
    nudged = json.loads((run / "validation_nudge0.1.json").read_text())
    assert 1 <= plain["episode_length"] <= 6
    per_step = max(plain["welfare"], 0.0) / (plain["episode_length"] * 2)
    assert nudged["nudge"] - plain["nudge"] == pytest.approx(0.1 * per_step, rel=1e-9)
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["env"] == "iterated_dilemma"
    assert all(p["welfare"] == p["welfare"] for p in results["points"])
    assert main(["plot", str(out)]) == 0
    assert (out / "frontier.png").stat().st_size > 10_000


def test_coin_frontier_refuses_env_kwargs(tmp_path, capsys):
    out = tmp_path / "bad"
    flags = ["--env-kwargs", '{"grid_size": 4}']
    assert main(["train", "frontier", "--preset", "smoke", "--out", str(out), *flags]) == 2
    assert "env_kwargs" in capsys.readouterr().err and not out.exists()
