"""The command line: JSON output, tables, generated games, and clean refusals."""

import json
import subprocess
import sys

import pytest

from contractrl.core.games import figure1
from contractrl.core.instance import instance_dict, save_instance
from contractrl.experiments.cli import main


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "contractrl.experiments.cli", *args], capture_output=True, text=True
    )


def test_solve_json(tmp_path):
    path = tmp_path / "f1.json"
    save_instance(figure1(), path)
    out = run("solve", str(path), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # exactly one JSON object
    assert data["principal_value"] == pytest.approx(1.0)
    assert data["agent_value"] == pytest.approx(0.2)
    assert data["iterations"] >= 1 and data["solve_seconds"] > 0
    first = data["policy"][0]
    assert first["t"] == 0 and first["state"] == "s0" and first["action"] == "aL"
    assert first["contract"] == {"L": pytest.approx(1.0), "R": pytest.approx(0.0)}
    assert {e["state"] for e in data["policy"]} == {"s0", "sL", "sR"}


def test_solve_meta_time_indexed_lists_every_t_and_state(tmp_path):
    path = tmp_path / "f1.yaml"
    save_instance(figure1(), path)
    out = run("solve", str(path), "--method", "meta", "--sweep", "time", "--json")
    data = json.loads(out.stdout)
    assert data["method"] == "meta" and not data["stationary"]
    assert [(e["t"], e["state"]) for e in data["policy"]] == [
        (t, s) for t in (0, 1) for s in ("s0", "sL", "sR")
    ]
    on_path = {(e["t"], e["state"]) for e in data["policy"] if e["on_path"]}
    assert on_path == {(0, "s0"), (1, "sL"), (1, "sR")}


def test_nudge(capsys):
    assert main(["example", "figure1", "--solve", "--json", "--nudge", "0.08"]) == 0
    data = json.loads(capsys.readouterr().out)
    # paying 0.1 more on L: expected payment 0.99 per step
    assert data["nudge"] == 0.08
    assert data["principal_value"] == pytest.approx(2 * (1.4 - 0.99), abs=1e-9)


def test_table_output(capsys):
    assert main(["tree", "--depth", "10", "--seed", "1", "--solve", "--max-rows", "5"]) == 0
    text = capsys.readouterr().out
    assert "1023 states" in text and "principal value" in text
    assert "... 1018 more rows" in text


def test_tree_written_sparse(tmp_path, capsys):
    path = tmp_path / "tree.json"
    assert main(["tree", "--depth", "6", "--seed", "4", "--out", str(path)]) == 0
    data = json.loads(path.read_text())
    assert "sparse" in data["transitions"] and len(data["states"]) == 63
    assert main(["solve", str(path), "--json"]) == 0
    solved = json.loads(capsys.readouterr().out)
    assert main(["tree", "--depth", "6", "--seed", "4", "--solve", "--json"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert solved["principal_value"] == direct["principal_value"]


def test_example_to_stdout(capsys):
    assert main(["example", "figure1"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(instance_dict(figure1())))


@pytest.mark.parametrize(
    "mutation,needle",
    [
        (lambda d: d["outcome_probs"][1].__setitem__(0, [0.9, 0.2]), "outcome_probs[1][0]"),
        (lambda d: d.__setitem__("discount", 2), "discount"),
        (lambda d: d.__setitem__("extra", 1), "extra: unknown key"),
    ],
)
def test_malformed_file_exit_code_2(tmp_path, mutation, needle):
    data = instance_dict(figure1(), sparse=False)
    mutation(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    out = run("solve", str(path), "--json")
    assert out.returncode == 2
    assert out.stdout == ""
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["solve", "does-not-exist.json"],
        ["tree", "--depth", "0", "--solve"],
        ["example", "figure1", "--solve", "--nudge", "-1"],
        ["solve"],
    ],
)
def test_user_mistakes_exit_code_2(args):
    out = run(*args)
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr


def test_levels_sweep_on_cyclic_game_is_a_usage_error(tmp_path):
    from contractrl.core.games import random_game

    path = tmp_path / "cyc.json"
    save_instance(random_game(3, 2, 2, horizon=2), path)
    out = run("solve", str(path), "--sweep", "levels")
    assert out.returncode == 2 and "levels" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("method", ["backward", "meta"])
@pytest.mark.parametrize("as_json", [True, False])
def test_game_without_stationary_spe_exits_3(tmp_path, method, as_json):
    """Issue 10 item 2: a game with no stationary SPE used to print a value with exit code 0
    after 100,000 iterations. Now: one stderr line saying it did not converge, exit code 3,
    nothing on stdout."""
    from nospe import instance_dict as no_spe_instance

    path = tmp_path / "nospe.json"
    path.write_text(json.dumps(no_spe_instance()))
    out = run("solve", str(path), "--method", method, *(["--json"] if as_json else []))
    assert out.returncode == 3, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not converge" in lines[0] and str(path) in lines[0]


def test_exit_code_3_is_documented():
    out = run("solve", "--help")
    assert out.returncode == 0 and "3 no equilibrium" in " ".join(out.stdout.split())


@pytest.mark.parametrize("method", ["backward", "meta"])
def test_nudge_with_nothing_implementable_exits_3_not_infinity(tmp_path, method):
    """Issue 10 item 4: identical outcome rows and a nudge: no action can win by ξ. This used
    to print "principal_value": -Infinity (invalid JSON) with exit code 0."""
    data = instance_dict(figure1(), sparse=False)
    data["outcome_probs"][1] = [[0.5, 0.5], [0.5, 0.5]]
    data["agent_reward"][1] = [0.0, 0.0]  # state sL: the two actions are indistinguishable
    path = tmp_path / "flat.json"
    path.write_text(json.dumps(data))
    out = run("solve", str(path), "--json", "--nudge", "0.1", "--method", method)
    assert out.returncode == 3, out.stderr
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "no action can be implemented" in lines[0]


def test_solution_json_is_strict_when_nothing_is_implementable():
    """The JSON report of such a solution has an explicit status and null, never -Infinity."""
    from contractrl.core.instance import parse_instance
    from contractrl.core.report import solution_dict
    from contractrl.core.solver import solve_spe

    data = instance_dict(figure1(), sparse=False)
    data["outcome_probs"][1] = [[0.5, 0.5], [0.5, 0.5]]
    data["agent_reward"][1] = [0.0, 0.0]  # state sL: the two actions are indistinguishable
    game = parse_instance(data)
    sol = solve_spe(game, margin=0.1)
    assert sol.status == "not_implementable" and not sol.ok
    report = solution_dict(game, sol)
    text = json.dumps(report, allow_nan=False)  # raises on inf/NaN
    assert json.loads(text)["status"] == "not_implementable"


def test_output_directory_misuse_is_refused(tmp_path, capsys):
    """--out at a file, a foreign non-empty folder, --resume of nothing: one line, no writes."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("x")
    base = ["train", "tree", "--preset", "smoke", "--no-progress"]
    cases = [
        ([*base, "--out", str(a_file)], "is a file"),
        ([*base, "--out", str(foreign)], "not empty and holds no experiment"),
        ([*base, "--out", str(tmp_path / "new"), "--resume"], "holds no experiment"),
    ]
    for args, needle in cases:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert a_file.read_text() == "mine"
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]
    assert not (tmp_path / "new").exists()


def test_ctrl_c_prints_one_line_with_the_resume_command(tmp_path, capsys, monkeypatch):
    from contractrl.experiments import tree

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tree, "run_tasks", interrupt)
    out = tmp_path / "run"
    args = ["train", "tree", "--preset", "smoke", "--no-progress", "--out", str(out)]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"contractrl train tree --preset smoke --no-progress --out {out} --resume" in err


def test_help_shows_each_flags_meaning_type_and_default(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train", "coin", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--tie-rule TIE_RULE" in out
    assert "[default: random_one]" in out  # the budget-3x3 preset's rules
    assert "iterations between evaluations. (int) [default: 5000]" in out
    assert "(comma-separated str) [default: selfish,cooperative,constant]" in out
    assert "override" not in out and "``" not in out


def test_unknown_flag_gets_a_suggestion(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        main(["train", "tree", "--preset", "smoke", "--iteratons", "5", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "unrecognized arguments: --iteratons 5 (did you mean --iterations?)" in (
        capsys.readouterr().err
    )


def test_none_and_non_finite_flag_values(capsys):
    import pytest

    assert main(["train", "coin", "--max-grad-norm", "none", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["dqn"]["max_grad_norm"] is None
    with pytest.raises(SystemExit):
        main(["train", "tree", "--checkpoint-seconds", "nan", "--print-config"])
    assert "expected a finite number, got 'nan'" in capsys.readouterr().err


def test_example_solve_with_out_writes_the_file_and_solves(tmp_path, capsys):
    from contractrl.experiments.cli import main as cli_main

    path = tmp_path / "d.json"
    assert cli_main(["example", "delegation", "--solve", "--out", str(path)]) == 0
    captured = capsys.readouterr()
    assert path.exists() and "delegation-K4-H6" in captured.out
    assert cli_main(["example", "delegation", "--out", str(tmp_path / "d.txt")]) == 2
    assert "expected a .json or .yaml file name" in capsys.readouterr().err
    assert not (tmp_path / "d.txt").exists()
