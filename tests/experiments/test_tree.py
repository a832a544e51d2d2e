"""The Tree MDP experiment through the platform: smoke preset, resume, Ray, config flags."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from contractrl.experiments.cli import main
from contractrl.experiments.config import from_dict, to_dict
from contractrl.experiments.tree import TREE_PRESETS, TreeExperimentConfig

TINY = [
    "--depth",
    "4",
    "--instances",
    "1",
    "--seeds",
    "1",
    "--iterations",
    "1200",
    "--eval-every",
    "200",
    "--checkpoint-seconds",
    "0",
    "--hidden",
    "32,32",
    "--replay-capacity",
    "4000",
    "--phase-length",
    "300",
    "--no-progress",
]
RESULT_KEYS = {
    "principal_utility_ratio",
    "accuracy",
    "agent_utility",
    "spe_principal_value",
    "spe_agent_value",
    "wall_seconds",
}


def cli(log, *args, **kwargs):
    """Start the CLI in a subprocess, its output in the file ``log``."""
    with open(log, "w") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "contractrl.experiments.cli", *args],
            stdout=fh,
            stderr=subprocess.STDOUT,
            **kwargs,
        )


def metrics_rows(path):
    with open(path, newline="") as fh:
        return [
            {k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(fh)
        ]


def test_smoke_preset_end_to_end(tmp_path):
    """The smoke preset: training, evaluation, results and the figure, in under 2 minutes."""
    out = tmp_path / "smoke"
    assert main(["train", "tree", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert RESULT_KEYS <= set(results["mean"])
    for inst in results["instances"]:
        assert RESULT_KEYS <= set(inst)
    assert results["mean"]["principal_utility_ratio"] >= 0.9
    assert results["mean"]["accuracy"] >= 0.8
    assert (out / "instances" / "instance0.json").exists()
    rows = metrics_rows(out / "runs" / "instance0-seed0" / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(500, 4001, 500))
    assert main(["plot", str(out)]) == 0
    assert (out / "figure3.png").stat().st_size > 10_000


def test_killed_run_resumes_to_identical_metrics(tmp_path):
    whole = cli(
        tmp_path / "whole.log",
        "train",
        "tree",
        "--preset",
        "smoke",
        "--out",
        str(tmp_path / "whole"),
        "--backend",
        "inline",
        *TINY,
    )
    killed_dir = tmp_path / "killed"
    proc = cli(
        tmp_path / "killed.log",
        "train",
        "tree",
        "--preset",
        "smoke",
        "--out",
        str(killed_dir),
        "--backend",
        "inline",
        *TINY,
        start_new_session=True,
    )
    progress = killed_dir / "runs" / "instance0-seed0" / "progress.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if json.loads(progress.read_text())["iteration"] >= 600:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "results.json").exists()
    assert whole.wait() == 0, (tmp_path / "whole.log").read_text()
    resumed = cli(
        tmp_path / "resumed.log",
        "train",
        "tree",
        "--preset",
        "smoke",
        "--out",
        str(killed_dir),
        "--backend",
        "inline",
        *TINY,
        "--resume",
    )
    assert resumed.wait() == 0, (tmp_path / "resumed.log").read_text()
    run = "runs/instance0-seed0/metrics.csv"
    assert metrics_rows(killed_dir / run) == metrics_rows(tmp_path / "whole" / run)
    assert len(metrics_rows(killed_dir / run)) == 6


# Ray's own subprocess pipes can be collected late, inside another test: not our warnings
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.slow  # Ray's start-up dominates (60-100 s); run with `make test-all`
def test_ray_backend_matches_local(tmp_path):
    pytest.importorskip("ray")
    args = ["--preset", "smoke", *TINY, "--seeds", "2", "--iterations", "400"]
    assert main(["train", "tree", *args, "--out", str(tmp_path / "ray"), "--backend", "ray"]) == 0
    assert (
        main(["train", "tree", *args, "--out", str(tmp_path / "local"), "--backend", "local"]) == 0
    )
    for seed in (0, 1):
        run = f"runs/instance0-seed{seed}/metrics.csv"
        assert metrics_rows(tmp_path / "ray" / run) == metrics_rows(tmp_path / "local" / run)


def test_existing_directory_needs_resume(tmp_path, capsys):
    out = tmp_path / "x"
    args = [
        "train",
        "tree",
        "--preset",
        "smoke",
        "--out",
        str(out),
        "--backend",
        "inline",
        *TINY,
        "--iterations",
        "200",
    ]
    assert main(args) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume", "--seeds", "3"]) == 2
    assert "another config: seeds 3 (saved: 1)" in capsys.readouterr().err
    # a finished run cannot be extended: the refusal names the field and the way to do it
    assert main([*args, "--resume", "--iterations", "400"]) == 2
    err = capsys.readouterr().err
    assert "iterations 400 (saved: 200)" in err and "--iterations 400 and a new --out" in err
    assert main([*args, "--resume"]) == 0  # already complete: nothing to do


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--depth", "0"], "depth"),
        (["--iterations", "-5"], "iterations"),
        (["--loss", "l3"], "loss"),
        (["--backend", "slurm"], "backend"),
        # the field at fault, and its valid range
        (["--replay-capacity", "10"], "replay_capacity: must be >= batch_size (128), got 10"),
        (["--epsilon-fraction", "1.5"], "epsilon_fraction: invalid value 1.5 (valid: (0, 1])"),
        (["--loss", "l3"], "valid: huber, mse"),
    ],
)
def test_bad_config_is_refused_before_work(tmp_path, capsys, flags, needle):
    out = tmp_path / "bad"
    assert main(["train", "tree", "--preset", "smoke", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()


def test_presets_round_trip_and_flags_override():
    for config in TREE_PRESETS.values():
        config.validate()
        assert from_dict(TreeExperimentConfig, json.loads(json.dumps(to_dict(config)))) == config
    from contractrl.experiments.cli import build_parser

    args = build_parser().parse_args(
        [
            "train",
            "tree",
            "--out",
            "x",
            "--hidden",
            "64,32",
            "--auto-nudge",
            "--nudge",
            "0.5",
            "--seeds",
            "2",
        ]
    )
    from contractrl.experiments.config import apply_overrides

    config = apply_overrides(TREE_PRESETS["paper"], args)
    assert config.dqn.hidden == (64, 32) and config.dqn.auto_nudge and config.seeds == 2
    assert config.dqn.nudge == 0.5 and config.depth == TREE_PRESETS["paper"].depth


def test_vmap_backend_lanes_match_the_runs_alone_and_resume(tmp_path, monkeypatch):
    """Every (instance, seed) a lane of one program: the same metrics as the process backend
    (up to float rounding of batched products); an interrupted run resumes from its
    checkpoint to the same metrics."""
    from contractrl.experiments import tree_runs as tree

    args = ["train", "tree", *TINY[:3], "2", *TINY[4:7], "600", *TINY[8:]]
    assert main([*args, "--out", str(tmp_path / "alone"), "--backend", "inline"]) == 0
    assert main([*args, "--out", str(tmp_path / "lanes"), "--backend", "vmap"]) == 0
    lanes = json.loads((tmp_path / "lanes" / "results.json").read_text())
    assert lanes["backend"] == "vmap"
    keys = ("principal_utility", "accuracy", "agent_utility", "follow_rate")
    for run in ("instance0-seed0", "instance1-seed0"):
        a = metrics_rows(tmp_path / "alone" / "runs" / run / "metrics.csv")
        b = metrics_rows(tmp_path / "lanes" / "runs" / run / "metrics.csv")
        assert len(a) == len(b) == 3
        for ra, rb in zip(a, b, strict=True):
            for key in keys:
                assert float(rb[key]) == pytest.approx(float(ra[key]), rel=1e-4, abs=1e-6), key
    assert not (tmp_path / "lanes" / "stages" / "tree.checkpoint.msgpack").exists()
    # interrupt at the evaluation of iteration 400, then resume from the checkpoint
    real, seen = tree._evaluate, []

    def interrupted(learner, game, env, spe, state, metrics, iteration):
        if iteration == 400 and not seen:
            seen.append(iteration)
            raise KeyboardInterrupt
        return real(learner, game, env, spe, state, metrics, iteration)

    monkeypatch.setattr(tree, "_evaluate", interrupted)
    assert main([*args, "--out", str(tmp_path / "cut"), "--backend", "vmap"]) == 130
    assert (tmp_path / "cut" / "stages" / "tree.checkpoint.msgpack").exists()
    assert main([*args, "--out", str(tmp_path / "cut"), "--backend", "vmap", "--resume"]) == 0
    for run in ("instance0-seed0", "instance1-seed0"):
        assert metrics_rows(tmp_path / "cut" / "runs" / run / "metrics.csv") == metrics_rows(
            tmp_path / "lanes" / "runs" / run / "metrics.csv"
        )


def test_damaged_checkpoint_is_named_and_recomputed(tmp_path, monkeypatch, capsys):
    """A checkpoint cut to 100 bytes (a disk error): resume names it, recomputes the run, and
    ends with the metrics of an uninterrupted run."""
    from contractrl.experiments import tree_runs as tree

    args = ["train", "tree", *TINY[:7], "600", *TINY[8:], "--backend", "inline"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    real, seen = tree._evaluate, []

    def interrupted(learner, game, env, spe, state, metrics, iteration):
        if iteration == 400 and not seen:
            seen.append(iteration)
            raise KeyboardInterrupt
        return real(learner, game, env, spe, state, metrics, iteration)

    monkeypatch.setattr(tree, "_evaluate", interrupted)
    assert main([*args, "--out", str(tmp_path / "cut")]) == 130
    ckpt = tmp_path / "cut" / "runs" / "instance0-seed0" / "checkpoint.msgpack"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "cut"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"{ckpt} is damaged" in err and "Traceback" not in err
    run = "instance0-seed0"
    assert metrics_rows(tmp_path / "cut" / "runs" / run / "metrics.csv") == metrics_rows(
        tmp_path / "whole" / "runs" / run / "metrics.csv"
    )


def test_unimplementable_targets_are_not_divergence():
    """The outcome-value principal marks a target no contract implements with q = -inf; a
    run is diverged only on NaN, +inf, a non-finite agent Q or nudge, or a state left with no
    finite action."""
    from contractrl.experiments.tree_runs import q_tables_finite

    agent = np.zeros((4, 2))
    principal = np.array([[1.0, -np.inf], [0.5, 0.2], [-np.inf, 3.0], [0.0, 0.0]])
    assert q_tables_finite(agent, principal, 0.005)
    for bad in (np.nan, np.inf):
        broken = principal.copy()
        broken[1, 0] = bad
        assert not q_tables_finite(agent, broken, 0.005)
    stranded = principal.copy()
    stranded[3] = -np.inf
    assert not q_tables_finite(agent, stranded, 0.005)
    assert not q_tables_finite(np.array([[0.0, np.nan]]), principal, 0.005)
    assert not q_tables_finite(agent, principal, float("inf"))
    # the contractual-Q principal never marks targets: there -inf is overflow
    assert not q_tables_finite(agent, principal, 0.005, unimplementable=False)
    assert q_tables_finite(agent, np.zeros((4, 2)), 0.005, unimplementable=False)


def test_nudge_rule_falls_back_to_the_smallest_nudge_it_tried():
    from contractrl.core.games import figure1
    from contractrl.experiments.tree_runs import nudge_for

    assert nudge_for(figure1(), cost=-1.0) == pytest.approx(0.01 / 2**9)  # none is cheap enough
    assert nudge_for(figure1(), cost=-1.0, halvings=1) == pytest.approx(0.01)


@pytest.mark.parametrize("backend", ["inline", "vmap"])
def test_exact_price_nudge_rule_gives_each_instance_its_rule_nudge(tmp_path, backend):
    """``nudge_rule: exact_price``: every run trains with the largest 0.01 · 2^-k whose exact
    price (the SPE with that margin, against the SPE) is at most 1%, whatever dqn.nudge says;
    checked against the rule written out with the exact solver."""
    from contractrl.core.instance import load_instance
    from contractrl.core.solver import solve_spe

    out = tmp_path / backend
    flags = ["--preset", "smoke", "--nudge-rule", "exact_price", "--instances", "2"]
    flags += ["--seeds", "1", "--iterations", "500", "--phase-length", "250", "--nudge", "0.3"]
    assert (
        main(["train", "tree", *flags, "--backend", backend, "--out", str(out), "--no-progress"])
        == 0
    )
    for i in range(2):
        game = load_instance(out / "instances" / f"instance{i}.json")
        spe = solve_spe(game).initial_principal_value
        price = {
            xi: 1 - solve_spe(game, margin=xi).initial_principal_value / spe
            for xi in (0.01 / 2**k for k in range(10))
        }
        expected = max(xi for xi, p in price.items() if p <= 0.01)
        rows = metrics_rows(out / "runs" / f"instance{i}-seed0" / "metrics.csv")
        assert [float(r["nudge"]) for r in rows] == pytest.approx([expected] * len(rows), rel=1e-6)
        if backend == "inline" and i == 0:  # the same run as a fixed nudge of that value
            fixed = tmp_path / "fixed"
            again = [*flags[:2], *flags[4:-1], f"{expected!r}", "--instances", "1"]
            assert (
                main(
                    [
                        "train",
                        "tree",
                        *again,
                        "--backend",
                        backend,
                        "--out",
                        str(fixed),
                        "--no-progress",
                    ]
                )
                == 0
            )
            timeless = [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]
            fixed_rows = metrics_rows(fixed / "runs" / "instance0-seed0" / "metrics.csv")
            assert [
                {k: v for k, v in r.items() if k != "train_seconds"} for r in fixed_rows
            ] == timeless


def test_exact_price_refuses_the_automatic_estimator(capsys, tmp_path):
    flags = ["--preset", "smoke", "--nudge-rule", "exact_price", "--auto-nudge"]
    assert main(["train", "tree", *flags, "--out", str(tmp_path / "x")]) == 2
    assert "nudge_rule" in capsys.readouterr().err
