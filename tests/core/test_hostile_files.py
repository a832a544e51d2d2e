"""Hostile and malformed instance files (issue 10): ``contractrl solve FILE`` answers each with
exit code 2, one stderr line naming the file and the field, nothing on stdout, no traceback, in
bounded time and memory; ``--out`` to an unwritable path fails cleanly and leaves no temporary
file; the one atomic-write helper (``contractrl._io``) cleans up after itself."""

import json
import os

import numpy as np
import pytest

from contractrl._io import write_atomic
from contractrl.core.games import figure1, random_game
from contractrl.core.instance import instance_dict, load_instance, parse_instance
from contractrl.core.model import InvalidGameError
from contractrl.core.solver import solve_spe
from contractrl.core.sweep import MAX_TIME_TABLE_ENTRIES
from contractrl.experiments.cli import main

HUGE = 10**400  # an integer far beyond float64


def dense():
    return instance_dict(figure1(), sparse=False)


def sparse():
    return instance_dict(figure1(), sparse=True)


def edit(doc, path, value):
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


def cyclic(horizon):
    doc = instance_dict(random_game(3, 2, 2, horizon=5, discount=0.9, seed=1), sparse=False)
    doc["horizon"] = horizon
    return doc


def alias_bomb(field):
    """~900 bytes of YAML whose aliases stand for 9**9 rows (the billion laughs)."""
    lines = ["base: &l0 [[0.5, 0.5]]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    doc = dense()
    doc[field] = "BOMB"
    lines += [f"{key}: {json.dumps(value)}" for key, value in doc.items()]
    return "\n".join(lines).replace('"BOMB"', "*l9") + "\n"


# (file name, content, field the message must name)
HOSTILE = [
    ("big_discount.json", json.dumps(edit(dense(), ["discount"], HUGE)), "discount"),
    (
        "big_entry.json",
        json.dumps(edit(dense(), ["agent_reward", 0, 0], HUGE)),
        "agent_reward[0][0]",
    ),
    (
        "big_index.json",
        json.dumps(edit(sparse(), ["transitions", "sparse", 0, 2], HUGE)),
        "transitions.sparse[0][2]",
    ),
    (
        "big_prob.json",
        json.dumps(edit(sparse(), ["transitions", "sparse", 1, 3], HUGE)),
        "transitions.sparse[1][3]",
    ),
    ("big_initial.json", json.dumps(edit(dense(), ["initial_state"], HUGE)), "initial_state"),
    ("big_horizon.json", json.dumps(edit(dense(), ["horizon"], HUGE)), "horizon"),
    (
        "nan_index.json",
        json.dumps(edit(sparse(), ["transitions", "sparse", 0, 0], float("nan"))),
        "transitions.sparse[0][0]",
    ),
    (
        "inf_index.json",
        json.dumps(edit(sparse(), ["transitions", "sparse", 0, 1], float("inf"))),
        "transitions.sparse[0][1]",
    ),
    (
        "1e30_index.json",
        json.dumps(edit(sparse(), ["transitions", "sparse", 0, 2], 1e30)),
        "transitions.sparse[0][2] (next state): index 1e+30 out of range",
    ),
    ("long_cyclic.json", json.dumps(cyclic(10**12)), "horizon: 1,000,000,000,000 time steps"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("deep.yaml", "[" * 100_000 + "]" * 100_000, "nest"),
    ("bomb.yaml", alias_bomb("outcome_probs"), "outcome_probs"),
    (
        "bool_entry.json",
        json.dumps(edit(dense(), ["agent_reward", 1, 0], True)),
        "agent_reward[1][0]",
    ),
    (
        "bool_row.json",
        json.dumps(edit(dense(), ["outcome_probs", 0, 0], [True, False])),
        "outcome_probs[0][0][0]",
    ),
    (
        "bool_prob.json",
        json.dumps(edit(sparse(), ["transitions", "sparse", 0, 3], True)),
        "transitions.sparse[0][3]",
    ),
    (
        "bool_index.json",
        json.dumps(edit(sparse(), ["transitions", "sparse", 0, 1], False)),
        "transitions.sparse[0][1]",
    ),
    ("bool_discount.json", json.dumps(edit(dense(), ["discount"], True)), "discount"),
    ("digits.json", '{"discount": ' + "9" * 5000 + "}", "more than 4300 digits"),
    ("keys.yaml", "1: a\nb: c\n", "unknown key"),
    # found by the property test: a scalar YAML document with an '&' crashed the alias check
    ("null_ampersand.yaml", "null  # &a\n", "expected an object"),
    ("string_ampersand.yaml", '"&x"\n', "expected an object"),
]


@pytest.mark.parametrize("name,content,field", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_file_exit_2_one_line(tmp_path, capsys, name, content, field):
    path = tmp_path / name
    path.write_text(content)
    assert main(["solve", str(path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith(f"contractrl solve: error: {path}: "), err
    assert field in err, err
    assert len(err) < 400, err  # a 400-digit integer is summarised, not printed


def test_huge_integer_is_summarised_not_printed():
    with pytest.raises(InvalidGameError, match=r"agent_reward\[0\]\[0\]: integer too large") as e:
        parse_instance(edit(dense(), ["agent_reward", 0, 0], -HUGE))
    assert "about 401 digits" in str(e.value)


def test_beyond_int64_but_within_float_is_accepted():
    """10**20 (beyond int64: an object array) is the number 1e20, not 'expected numbers'."""
    game = parse_instance(edit(dense(), ["principal_reward", 1, 0], 10**20))
    assert game.principal_reward[1, 0] == 1e20


@pytest.mark.parametrize("contract_method", ["auto", "lp"])
def test_large_magnitudes_solve_or_fail_cleanly(tmp_path, capsys, contract_method):
    """The rule (README, instance format): every finite float64 is accepted; the solvers
    rescale (the LP), and a float64 overflow is a solver limit — exit 3 on one line, never an
    inf/nan in the answer nor a RuntimeWarning."""
    for scale in (1e20, 1e200, 1e307):
        game = random_game(4, 3, 3, horizon=3, discount=1.0, seed=2)
        doc = instance_dict(game, sparse=False)
        doc["agent_reward"] = (np.asarray(doc["agent_reward"]) * scale).tolist()
        doc["principal_reward"] = (np.asarray(doc["principal_reward"]) * scale).tolist()
        path = tmp_path / "big.json"
        path.write_text(json.dumps(doc))
        code = main(["solve", str(path), "--json", "--contract-method", contract_method])
        out, err = capsys.readouterr()
        assert code in (0, 3), err
        if code == 0:
            assert err == ""
            json.loads(out, parse_constant=lambda c: pytest.fail(f"non-finite {c} in output"))
        else:
            assert out == "" and err.count("\n") == 1 and "float64" in err, err


def test_long_horizon_on_cyclic_game_refused_before_allocating():
    game = parse_instance(cyclic(10**12))
    with pytest.raises(ValueError, match=r"horizon: .* use a shorter horizon, or horizon null"):
        solve_spe(game)
    with pytest.raises(ValueError, match=r"horizon: "):
        solve_spe(game, method="meta")
    # just under the limit is still solved; on an acyclic game any horizon is (one level sweep)
    assert MAX_TIME_TABLE_ENTRIES >= 10**7
    acyclic = parse_instance(edit(dense(), ["horizon"], 10**12))
    assert solve_spe(acyclic).initial_principal_value == pytest.approx(
        solve_spe(figure1()).initial_principal_value
    )


def test_yaml_anchor_without_sharing_is_fine(tmp_path):
    """An anchor used once (or a name containing '&') is harmless; only repeated use is refused."""
    doc = dense()
    doc["name"] = "R&D"
    path = tmp_path / "g.yaml"
    path.write_text(json.dumps(doc).replace('"agent_reward": ', '"agent_reward": &r ', 1))
    assert load_instance(path).name == "R&D"


@pytest.mark.parametrize("command", [["example", "figure1"], ["tree", "--depth", "3"]])
@pytest.mark.parametrize("target", ["dir", "under_file", "under_file_deeper"])
def test_out_to_unwritable_path(tmp_path, capsys, command, target):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    out_path = {
        "dir": tmp_path / "dir",
        "under_file": tmp_path / "file" / "g.json",
        "under_file_deeper": tmp_path / "file" / "sub" / "g.yaml",
    }[target]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main([*command, "--out", str(out_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and f"--out {out_path}: cannot write the file" in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no temporary file left


def test_write_atomic_replaces_and_cleans_up(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "a.json"
    write_atomic(path, "one")
    write_atomic(path, b"two", fsync=True)
    assert path.read_text() == "two"
    assert os.listdir(path.parent) == ["a.json"]

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, "three")
    assert os.listdir(path.parent) == ["a.json"] and path.read_text() == "two"


def test_store_uses_the_shared_helper(tmp_path):
    from contractrl.experiments import store

    assert store.write_atomic is write_atomic
    store.write_json(tmp_path / "r.json", {"a": np.arange(2)})
    assert store.read_json(tmp_path / "r.json") == {"a": [0, 1]}
    log = store.MetricsLog(tmp_path / "m.csv", ["iteration", "x"])
    for i in range(4):
        log.append({"iteration": i, "x": i * 0.5})
    log.truncate_after(1)
    assert [r["iteration"] for r in log.read()] == ["0", "1"]
    assert sorted(os.listdir(tmp_path)) == ["m.csv", "r.json"]
