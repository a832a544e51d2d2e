"""Evaluation totals an environment's measures per agent over each episode, and no further."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from contractrl.envs.escape_room import DOOR, LEVER, EscapeRoom
from contractrl.multiagent.evaluation import rollout, summarise
from contractrl.multiagent.torso import make_encoder


def _fixed(actions):
    def policy(views, chosen=None):
        shape = jax.tree_util.tree_leaves(views)[0].shape[:1]
        acts = jnp.broadcast_to(jnp.asarray(actions, jnp.int32), (*shape, len(actions)))
        return acts, acts, jnp.zeros(acts.shape, jnp.float32)

    return policy


def test_measures_count_each_episode_until_its_end():
    env = EscapeRoom()
    encoder = make_encoder(env, "auto", 32, (64, 64))
    # lever and door: one step, then the episode ends (what follows the reset is not counted)
    totals = jax.jit(lambda k: rollout(env, encoder, _fixed([LEVER, DOOR]), k, 6))(
        jax.random.PRNGKey(0)
    )
    metrics = summarise(totals)
    assert metrics.episode_length == 1.0 and metrics.welfare == 9.0
    assert metrics.measures["lever_pulls"] == (1.0, 0.0)
    assert metrics.measures["escapes"] == (0.0, 1.0)
    # both at the lever for the whole episode: five pulls each, nobody escapes
    metrics = summarise(
        jax.jit(lambda k: rollout(env, encoder, _fixed([LEVER, LEVER]), k, 4))(
            jax.random.PRNGKey(1)
        )
    )
    assert metrics.episode_length == 5.0
    assert metrics.measures["lever_pulls"] == (5.0, 5.0)
    assert metrics.measures["escapes"] == (0.0, 0.0)
    np.testing.assert_allclose(metrics.welfare, -2.0)  # one move each, then staying is free


def test_an_env_without_measures_reports_none():
    from contractrl.envs.dilemma import IteratedDilemma

    env = IteratedDilemma()
    encoder = make_encoder(env, "auto", 32, (64, 64))
    metrics = summarise(rollout(env, encoder, _fixed([0, 0]), jax.random.PRNGKey(0), 2))
    assert metrics.measures == {}
