"""Instance files (docs/instance-format.md): round trips; every malformed class refused."""

import copy
import json

import numpy as np
import pytest

from contractrl.core.games import figure1, random_game, tree_mdp
from contractrl.core.instance import instance_dict, load_instance, parse_instance, save_instance
from contractrl.core.model import InvalidGameError
from contractrl.core.solver import solve_spe


def same_game(a, b):
    assert a.num_states == b.num_states and a.horizon == b.horizon
    assert a.discount == b.discount and a.initial_state == b.initial_state
    assert np.array_equal(a.outcome_probs, b.outcome_probs)
    assert np.array_equal(a.agent_reward, b.agent_reward)
    assert np.array_equal(a.principal_reward, b.principal_reward)
    assert (a.transitions != b.transitions).nnz == 0
    assert [a.state_name(s) for s in range(a.num_states)] == [
        b.state_name(s) for s in range(b.num_states)
    ]


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
@pytest.mark.parametrize("sparse", [False, True])
def test_round_trip(tmp_path, suffix, sparse):
    for game in (
        figure1(),
        random_game(4, 3, 2, horizon=None, discount=0.9, seed=1),
        tree_mdp(4, 2),
    ):
        path = tmp_path / f"game{suffix}"
        save_instance(game, path, sparse=sparse)
        loaded = load_instance(path)
        same_game(game, loaded)
        assert solve_spe(loaded).initial_principal_value == solve_spe(game).initial_principal_value


def test_tree_is_written_sparse_by_default():
    data = instance_dict(tree_mdp(8, 0))
    assert "sparse" in data["transitions"]
    assert len(data["transitions"]["sparse"]) == 2 * (2**7 - 1)


def test_names_accepted_in_sparse_entries_and_initial_state():
    data = instance_dict(figure1(), sparse=True)
    data["transitions"] = {"sparse": [["s0", "L", "sL", 1.0], ["s0", "R", "sR", 1.0]]}
    data["initial_state"] = "s0"
    game = parse_instance(data)
    assert solve_spe(game).initial_principal_value == pytest.approx(1.0)


def base():
    return instance_dict(figure1(), sparse=False)


def mutate(path, value):
    data = base()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


MALFORMED = [
    # wrong shapes
    (mutate(["outcome_probs", 1], [[0.9, 0.1]]), r"outcome_probs\[1\]: expected 2 entries"),
    (mutate(["outcome_probs", 2, 0], [0.5, 0.3, 0.2]), r"outcome_probs\[2\]\[0\]: expected 2"),
    (mutate(["agent_reward"], [[0.0, 0.0]]), r"agent_reward: expected 3 entries"),
    (mutate(["principal_reward", 0], 5), r"principal_reward\[0\]: expected a list"),
    (mutate(["transitions", 0, 1], [0.0, 1.0]), r"transitions\[0\]\[1\]: expected 3 entries"),
    (mutate(["outcome_probs", 0, 0, 1], "x"), r"outcome_probs\[0\]\[0\]\[1\]: expected a number"),
    # rows not summing to 1
    (mutate(["outcome_probs", 1, 0], [0.9, 0.2]), r"outcome_probs\[1\]\[0\]: probabilities sum"),
    (mutate(["transitions", 0, 0], [0.0, 0.5, 0.4]), r"transitions\[0\]\[0\]: probabilities sum"),
    # negative probabilities
    (mutate(["outcome_probs", 2, 1], [1.1, -0.1]), r"outcome_probs\[2\]\[1\]\[1\]: negative"),
    (mutate(["transitions", 0, 1], [-0.5, 0.5, 1.0]), r"transitions\[0\]\[1\]\[0\]: negative"),
    # NaN / inf
    (mutate(["agent_reward", 1, 0], float("nan")), r"agent_reward\[1\]\[0\]: must be finite"),
    (mutate(["principal_reward", 2, 1], float("inf")), r"principal_reward\[2\]\[1\]: must be fin"),
    # discount and horizon
    (mutate(["discount"], 0.0), r"discount: must lie in \(0, 1\]"),
    (mutate(["discount"], 1.5), r"discount: must lie in \(0, 1\]"),
    (mutate(["discount"], "high"), r"discount: expected a number"),
    (mutate(["horizon"], None), r"discount: an infinite horizon .* needs discount < 1"),
    (mutate(["horizon"], 0), r"horizon: must be >= 1"),
    (mutate(["horizon"], 2.5), r"horizon: expected a positive integer"),
    # unknown and missing keys, names
    ({**base(), "colour": "red"}, r"colour: unknown key"),
    ({k: v for k, v in base().items() if k != "agent_reward"}, r"agent_reward: required key"),
    (mutate(["states", 2], "s0"), r"states\[2\]: duplicate name 's0'"),
    (mutate(["actions"], []), r"actions: expected a non-empty list"),
    (mutate(["initial_state"], "s9"), r"initial_state: unknown name 's9'"),
    (mutate(["initial_state"], 3), r"initial_state: index 3 out of range"),
    # sparse transitions
    (
        mutate(["transitions"], {"sparse": [[0, 0, 1, 1.0], [0, 1, 7, 1.0]]}),
        r"transitions.sparse\[1\]\[2\] \(next state\): index 7 out of range",
    ),
    (
        mutate(["transitions"], {"sparse": [[0, 0, 1, 1.0], [0, 0, 1, 1.0]]}),
        r"transitions.sparse\[1\]: duplicate entry",
    ),
    (mutate(["transitions"], {"sparse": [[0, 0, 1, 0.7]]}), r"transitions\[0\]\[0\]: probab"),
    (mutate(["transitions"], {"sparse": [[0, 0, 1]]}), r"transitions.sparse\[0\]: expected"),
    (
        mutate(["transitions"], {"sparse": [["s0", "Q", "sL", 1.0]]}),
        r"transitions.sparse\[0\]\[1\] \(outcome\): unknown name 'Q'",
    ),
    (
        mutate(["transitions"], {"sparse": [[0, 0, 1, float("nan")]]}),
        r"transitions.sparse\[0\]\[3\]",
    ),
    (mutate(["transitions"], {"dense": []}), r"transitions: expected a dense"),
    ([1, 2, 3], r"instance: expected an object"),
]


@pytest.mark.parametrize("data,match", MALFORMED)
def test_malformed_instances_are_refused(data, match):
    with pytest.raises(InvalidGameError, match=match):
        parse_instance(copy.deepcopy(data))


def test_file_level_errors(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"states": [1, 2,}')
    with pytest.raises(InvalidGameError, match=r"invalid JSON at line 1"):
        load_instance(bad_json)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("states: [a, b\nactions: x")
    with pytest.raises(InvalidGameError, match=r"invalid YAML"):
        load_instance(bad_yaml)
    with pytest.raises(InvalidGameError, match=r"cannot read"):
        load_instance(tmp_path / "missing.json")


def test_yaml_nan_is_refused(tmp_path):
    path = tmp_path / "g.yaml"
    save_instance(figure1(), path)
    path.write_text(path.read_text().replace("- [-0.8, 0.0]", "- [.nan, 0.0]", 1))
    with pytest.raises(InvalidGameError, match=r"agent_reward\[0\]\[0\]: must be finite"):
        load_instance(path)


def test_json_written_is_plain_json(tmp_path):
    path = tmp_path / "g.json"
    save_instance(figure1(), path)
    assert json.loads(path.read_text())["outcomes"] == ["L", "R"]


def test_documented_examples_load_and_solve():
    """Every game of examples/games (shown in docs/instance-format.md) loads and solves."""
    from pathlib import Path

    from contractrl.core.instance import load_instance
    from contractrl.core.solver import solve_spe

    root = Path(__file__).resolve().parents[2] / "examples" / "games"
    files = sorted(root.iterdir())
    assert {f.name for f in files} >= {
        "figure1.yaml",
        "two_stage_sparse.json",
        "repeated_effort.yaml",
    }
    doc = (Path(__file__).resolve().parents[2] / "docs" / "instance-format.md").read_text()
    for f in files:
        assert f"examples/games/{f.name}" in doc
        game = load_instance(f)
        spe = solve_spe(game)
        assert spe.initial_principal_value == spe.initial_principal_value  # not NaN
    sparse = solve_spe(load_instance(root / "two_stage_sparse.json"))
    # work in both stages, paid 0.5 / (0.8 - 0.1) on success: 2 x (0.8 x 2 - 0.8 x 0.7143)
    assert sparse.initial_principal_value == pytest.approx(2 * (1.6 - 0.8 * 0.5 / 0.7), abs=1e-6)
