"""The game model: validation, immutability, structure; the built-in factories."""

import numpy as np
import pytest
import scipy.sparse as sp

from contractrl.core.games import figure1, random_game, tree_mdp
from contractrl.core.model import InvalidGameError, PrincipalAgentMDP
from contractrl.core.sweep import state_heights


def kwargs(**over):
    base = dict(
        outcome_probs=[[[0.5, 0.5]]],
        agent_reward=[[0.0]],
        principal_reward=[[1.0, 0.0]],
        transitions=[[[0.0], [0.0]]],
        horizon=1,
        discount=1.0,
    )
    base.update(over)
    return base


def test_minimal_game():
    game = PrincipalAgentMDP(**kwargs())
    assert (game.num_states, game.num_actions, game.num_outcomes) == (1, 1, 2)
    assert game.state_name(0) == "s0" and game.action_name(0) == "a0"


@pytest.mark.parametrize(
    "over,match",
    [
        (dict(outcome_probs=[[0.5, 0.5]]), r"outcome_probs: expected a 3-d array"),
        (dict(agent_reward=[[0.0, 1.0]]), r"agent_reward: expected shape \[1, 1\]"),
        (dict(principal_reward=[[1.0]]), r"principal_reward: expected shape \[1, 2\]"),
        (dict(transitions=[[[0.0], [0.0]], [[0.0], [0.0]]]), r"transitions: expected shape"),
        (dict(transitions=sp.csr_array((3, 1))), r"transitions: expected sparse shape"),
        (dict(initial_state=1), r"initial_state: index 1 out of range"),
        (dict(horizon=True), r"horizon: expected a positive integer"),
        (dict(state_names=("a", "b")), r"states: expected 1 names"),
        (dict(outcome_names=("x", "x")), r"outcomes\[1\]: duplicate name 'x'"),
        (dict(outcome_probs=[[[0.5, np.inf]]]), r"outcome_probs\[0\]\[0\]\[1\]: must be finite"),
    ],
)
def test_validation_names_the_field(over, match):
    with pytest.raises(InvalidGameError, match=match):
        PrincipalAgentMDP(**kwargs(**over))


def test_sparse_transition_errors_name_state_and_outcome():
    bad = sp.csr_array(([0.5], ([1], [0])), shape=(2, 1))
    with pytest.raises(InvalidGameError, match=r"transitions\[0\]\[1\]: probabilities sum"):
        PrincipalAgentMDP(**kwargs(transitions=bad))
    neg = sp.csr_array(([-0.5], ([1], [0])), shape=(2, 1))
    with pytest.raises(InvalidGameError, match=r"transitions\[0\]\[1\]\[0\]: negative"):
        PrincipalAgentMDP(**kwargs(transitions=neg))


def test_arrays_are_read_only():
    game = figure1()
    with pytest.raises(ValueError):
        game.outcome_probs[0, 0, 0] = 0.5
    with pytest.raises(ValueError):
        game.transitions.data[0] = 0.5
    with pytest.raises(AttributeError):
        game.horizon = 3


def test_continuation():
    game = figure1()
    values = np.array([0.0, 1.0, 2.0])
    assert np.allclose(game.continuation(values), [[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]])
    assert np.allclose(game.continuation(values, np.array([0])), [[1.0, 2.0]])
    assert game.is_terminal_row().tolist() == [[False, False], [True, True], [True, True]]


def test_tree_structure():
    game = tree_mdp(5, seed=3)
    assert game.num_states == 31 and game.horizon == 5 and game.discount == 1.0
    dense = game.transitions.toarray().reshape(31, 2, 31)
    for s in range(15):
        assert dense[s, 0, 2 * s + 1] == 1.0 and dense[s, 1, 2 * s + 2] == 1.0
    assert dense[15:].sum() == 0  # last level ends the episode
    assert np.allclose(game.outcome_probs[:, 1], [0.1, 0.9])
    assert (game.agent_reward[:, 0] == 0).all() and (game.agent_reward[:, 1] <= 0).all()
    assert (game.agent_reward[:, 1] >= -1).all() and (game.principal_reward[:, 1] <= 2).all()
    heights, groups = state_heights(game)
    assert heights[0] == 5 and len(groups) == 5 and (heights[15:] == 1).all()


def test_tree_is_seeded():
    a, b, c = tree_mdp(6, 1), tree_mdp(6, 1), tree_mdp(6, 2)
    assert np.array_equal(a.agent_reward, b.agent_reward)
    assert not np.array_equal(a.agent_reward, c.agent_reward)


def test_tree_reward_distribution():
    """u ~ U[0, 1-v] with v ~ U[0,1] has mean 1/4; u' with v' ~ U[0,2] has mean 1/2."""
    game = tree_mdp(16, 0)
    assert -game.agent_reward[:, 1].mean() == pytest.approx(0.25, abs=0.005)
    assert game.principal_reward[:, 1].mean() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("depth", [0, 27, 2.5])
def test_tree_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match="depth"):
        tree_mdp(depth)


def test_cycles_are_detected():
    assert state_heights(random_game(4, 2, 2, horizon=3)) is None
    assert state_heights(figure1())[0].tolist() == [2, 1, 1]


@pytest.mark.parametrize("kind", [sp.csr_array, sp.csr_matrix, sp.coo_array])
def test_sparse_input_is_copied(kind):
    """Issue 10 item 7: a game built from a caller's sparse matrix must not share its buffers:
    mutating the caller's matrix afterwards must neither change the validated game nor fail
    because the game froze the caller's arrays."""
    caller = kind(np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]))
    game = PrincipalAgentMDP(
        outcome_probs=np.full((2, 2, 2), 0.5),
        agent_reward=np.zeros((2, 2)),
        principal_reward=np.zeros((2, 2)),
        transitions=caller,
        horizon=2,
    )
    before = game.transitions.toarray().copy()
    caller.data[:] = 7.0  # the caller still owns a writable matrix
    assert (game.transitions.toarray() == before).all()
    assert before[0].tolist() == [1.0, 0.0]
