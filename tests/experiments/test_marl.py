"""``contractrl train marl``: the whole pipeline in any protocol environment, its refusals, and
the Coin Game through the generic path giving the Coin experiment's numbers."""

import json
import math
import subprocess
import sys

import pytest

from contractrl.experiments.cli import main
from contractrl.experiments.coin import MARL_PRESETS, MarlExperimentConfig, env_kwargs_dict
from contractrl.experiments.config import from_dict, to_dict

KEYS = (
    "welfare",
    "welfare_selfish",
    "welfare_cooperative",
    "welfare_constant",
    "payments",
    "payment_share",
    "follow_rate",
    "spe_ratio",
    "ic_ratio",
    "iterations_per_second",
)


def test_smoke_pipeline_in_the_iterated_dilemma(tmp_path, capsys):
    out = tmp_path / "d"
    flags = ["--preset", "smoke", "--seeds", "1", "--backend", "inline", "--no-progress"]
    assert main(["train", "marl", "--env", "iterated_dilemma", "--out", str(out), *flags]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "marl" and results["config"]["env"] == "iterated_dilemma"
    for key in KEYS:
        assert math.isfinite(results["mean"][key]), key
    # welfare per episode is at most mutual cooperation's, 2 x 3 x horizon
    assert 0 < results["mean"]["welfare"] <= 60.0 + 1e-9
    assert "welfare" in capsys.readouterr().out
    # an episode of the principal's plan, drawn with the environment's own render
    assert main(["render", str(out)]) == 0
    assert (out / "episode-seed0.gif").stat().st_size > 0
    # the Figure 2/4 panels draw for it, and for a run still in progress (no results.json yet)
    assert main(["plot", str(out)]) == 0
    assert (out / "marl.png").exists()
    (out / "results.json").unlink()
    (out / "marl.png").unlink()
    capsys.readouterr()
    assert main(["plot", str(out)]) == 0
    assert "in progress" in capsys.readouterr().out and (out / "marl.png").exists()


def test_the_coin_game_through_marl_gives_the_coin_experiments_numbers(tmp_path):
    """Same rules, config and seed: ``train marl --env coin_game`` and ``train coin`` train the
    same runs (one environment protocol, one pipeline)."""
    common = ["--seeds", "1", "--backend", "inline", "--no-progress", "--iterations", "300"]
    common += ["--learning-starts", "100", "--eval-every", "300", "--eval-episodes", "8"]
    common += ["--baselines", "selfish", "--nudge-share", "0"]
    kwargs = json.dumps({"preset": "paper-3x3"})
    assert main(["train", "coin", "--preset", "smoke", "--out", str(tmp_path / "c"), *common]) == 0
    marl = ["train", "marl", "--env", "coin_game", "--env-kwargs", kwargs]
    assert main([*marl, "--preset", "smoke", "--out", str(tmp_path / "m"), *common]) == 0
    coin = json.loads((tmp_path / "c" / "results.json").read_text())["seeds"][0]
    generic = json.loads((tmp_path / "m" / "results.json").read_text())["seeds"][0]
    for key in ("welfare", "welfare_selfish", "payments", "follow_rate", "spe_ratio"):
        assert coin[key] == generic[key], key


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "contractrl", "train", "marl", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--env", "no_such_env"], "unknown 'no_such_env'"),
        (["--env", "no_such_module_xyz:make"], "cannot import"),
        (["--env-kwargs", "[1, 2]"], "env_kwargs: a JSON object"),
        (["--env-kwargs", "{horizon: 3}"], "env_kwargs: not valid JSON"),
        (["--env-kwargs", '{"horizon": 0}'], "horizon"),
        (["--env", "contractrl.envs.coin_game_pz:parallel_env"], "pass max_steps"),
        (["--env", "jaxmarl:no_such_env_xyz"], "jaxmarl"),
        (["--env", "examples/pettingzoo_dilemma.py:make", "--backend", "vmap"], "host"),
        (["--env-kwargs", '{"end_on_mutual_defection": "false"}'], "end_on_mutual_defection"),
    ],
)
def test_an_unusable_env_gets_one_line_and_exit_2(tmp_path, flags, needle):
    out = _cli(*flags, "--out", str(tmp_path / "x"))
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "x").exists()


def test_presets_round_trip_and_kwargs_parse():
    for preset in MARL_PRESETS.values():
        assert from_dict(MarlExperimentConfig, to_dict(preset)) == preset
        preset.validate()
    assert env_kwargs_dict("") == {} and env_kwargs_dict('{"a": 1}') == {"a": 1}
