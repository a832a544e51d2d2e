"""What the Coin Game learners must do, checked by training them briefly.

Scripted principals, the time limit as a truncation, the frozen principal, and whether the
rules pose a dilemma that cooperative learners escape.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.envs.coin_game import PRESETS, CoinGame
from contractrl.multiagent.agents import AgentsLearner
from contractrl.multiagent.algorithm3 import PrincipalLearner
from contractrl.multiagent.common import DQNConfig
from contractrl.multiagent.evaluation import rollout, summarise

GAME = PRESETS["paper-3x3"]  # random_one: the dilemma
ENV = CoinGame(GAME)


def _scripted_principal(config: DQNConfig, recommend: int):
    """A principal that always recommends ``recommend`` and whose agent model is indifferent
    between all actions (every contract is then exactly the nudge)."""
    params = PrincipalLearner(ENV, config).init(jax.random.PRNGKey(0)).params
    last_p = params["principal"]["dense"][-1]
    last_a = params["agent"]["dense"][-1]
    params["principal"]["dense"][-1] = {
        "w": jnp.zeros_like(last_p["w"]),
        "b": jax.nn.one_hot(recommend, GAME.num_actions),
    }
    params["agent"]["dense"][-1] = {
        "w": jnp.zeros_like(last_a["w"]),
        "b": jnp.zeros_like(last_a["b"]),
    }
    return params


def test_validation_agents_follow_a_strict_margin_and_leave_the_principal_untouched():
    """Paid 1.5 per followed step (more than any coin), fresh agents learn to follow; the
    frozen principal's parameters are bit-identical afterwards."""
    config = DQNConfig(
        iterations=4000, learning_starts=200, hidden=(32, 32), conv_channels=8, replay_capacity=4000
    )
    principal = _scripted_principal(config, recommend=2)
    before = [np.array(x) for x in jax.tree_util.tree_leaves(principal)]
    learner = AgentsLearner(ENV, config, "validation")
    state = learner.init(jax.random.PRNGKey(1), nudge=1.5)
    state, _ = learner.train_chunk(state, principal, 0, config.iterations)
    after = jax.tree_util.tree_leaves(principal)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, after, strict=True))
    metrics = summarise(
        rollout(ENV, learner.encoder, learner.policy(state, principal), jax.random.PRNGKey(2), 80)
    )
    assert metrics.follow_rate >= 0.95
    assert metrics.payments == pytest.approx(1.5 * metrics.follow_rate * GAME.horizon * 2)


@pytest.mark.parametrize("time_limit,expected", [("truncate", 0.0), ("terminate", 1.0)])
def test_the_last_step_of_an_episode_bootstraps_under_truncation(time_limit, expected):
    """The transition at t = H - 1 stores the state it reached (t = H, before the reset) and
    bootstraps from it unless the time limit is read as a termination."""
    config = DQNConfig(
        iterations=20_000, learning_starts=10_000, replay_capacity=200, time_limit=time_limit
    )
    learner = PrincipalLearner(ENV, config)
    state, _ = learner.train_chunk(learner.init(jax.random.PRNGKey(0)), 0, 2 * GAME.horizon)
    data = state.buffer.data
    t, next_t = np.asarray(data.obs.t), np.asarray(data.next_obs.t)
    terminal = np.asarray(data.terminal)
    last = np.flatnonzero(t == GAME.horizon - 1)
    assert last.size == 2 and np.all(next_t[last] == GAME.horizon)
    assert np.all(terminal[last] == expected)
    others_ = np.setdiff1d(np.arange(2 * GAME.horizon), last)  # filled slots, other steps
    assert np.all(terminal[others_] == 0.0)
    # the state reached is the moved one, not the next episode's first
    assert np.all(next_t[others_] == t[others_] + 1)


def _welfare(game, mode: str, seed: int, iterations: int) -> float:
    config = DQNConfig(iterations=iterations, learning_starts=500, replay_capacity=iterations)
    env = CoinGame(game)
    learner = AgentsLearner(env, config, mode)
    state = learner.init(jax.random.PRNGKey(seed))
    state, _ = learner.train_chunk(state, {}, 0, iterations)
    policy = learner.policy(state, {})
    totals = rollout(env, learner.encoder, policy, jax.random.PRNGKey(100 + seed), 200)
    return summarise(totals).welfare


@pytest.mark.slow
def test_cooperative_beats_selfish_only_when_one_agent_collects():
    """Under ``random_one`` the same learner reaches higher welfare maximising welfare than
    selfishly; under ``all_collect`` (no dilemma) it does not."""
    iterations = 8000
    single = [_welfare(GAME, m, 0, iterations) for m in ("selfish", "cooperative")]
    both_rules = dataclasses.replace(GAME, tie_rule="all_collect")
    both = [_welfare(both_rules, m, 0, iterations) for m in ("selfish", "cooperative")]
    assert single[1] - single[0] > 1.0, single
    assert both[1] - both[0] < 0.5, both
