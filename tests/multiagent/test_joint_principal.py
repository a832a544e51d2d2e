"""The ``joint`` principal head: joint actions in the core's order, and Escape Room's
asymmetric optimum, which the paper's VDN head cannot recommend from a symmetric state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.core.markov_game import MarkovGame
from contractrl.envs.escape_room import DOOR, LEVER, EscapeRoom
from contractrl.multiagent.algorithm3 import principal_learner
from contractrl.multiagent.common import DQNConfig


def test_joint_indices_follow_the_core_markov_games_order():
    env = EscapeRoom(num_agents=3, min_at_lever=2)
    learner = principal_learner(env, DQNConfig(iterations=2000, principal_head="joint"))
    game = MarkovGame(np.zeros((1, 27, 3)), np.zeros((1, 27, 1)), [1.0], 3, 3, 0.9, 2)
    actions = jnp.asarray(game.joint_actions)
    np.testing.assert_array_equal(learner.joint_index(actions), np.arange(27))
    np.testing.assert_array_equal(learner.joint_actions(jnp.arange(27)), game.joint_actions)
    assert game.joint_index((2, 0, 1)) == int(learner.joint_index(jnp.array([2, 0, 1])))


def test_too_many_joint_actions_are_refused_naming_the_field():
    from contractrl.envs.coin_game import CoinGame

    with pytest.raises(ValueError, match="principal_head"):
        principal_learner(
            CoinGame(grid_size=3, num_agents=7), DQNConfig(iterations=2000, principal_head="joint")
        )
    with pytest.raises(ValueError, match="principal_head"):
        DQNConfig(principal_head="central").validate()


def test_a_short_run_recommends_lever_and_door_from_the_symmetric_start():
    """4,000 iterations: the joint head's plan is the exact optimum (welfare 9 in one step)."""
    from contractrl.multiagent.evaluation import rollout, summarise

    env = EscapeRoom()
    config = DQNConfig(
        iterations=4000, replay_capacity=4000, learning_starts=500, principal_head="joint"
    )
    learner = principal_learner(env, config)
    state, _ = learner.train_chunk(learner.init(jax.random.PRNGKey(0)), 0, 4000)
    obs, start = env.reset(jax.random.PRNGKey(1))
    recs = learner.principal_recommendations(
        state.params["principal"], learner.encoder.view(learner.encoder.keep(obs), start)
    )
    assert sorted(np.asarray(recs).tolist()) == [LEVER, DOOR]
    totals = rollout(env, learner.encoder, learner.policy(state), jax.random.PRNGKey(2), 8)
    metrics = summarise(totals)
    assert metrics.welfare == pytest.approx(9.0) and metrics.episode_length == 1.0
