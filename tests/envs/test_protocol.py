"""The multi-agent environment protocol: the base class's time limit and auto-reset, the
iterated dilemma's rules, the registry's names and errors, the Coin Game as a protocol env."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.envs import coin_game
from contractrl.envs.adapters import EnvUnusableError
from contractrl.envs.coin_game import PRESETS, CoinGame
from contractrl.envs.dilemma import IteratedDilemma
from contractrl.envs.protocol import MultiAgentEnv, validate_env
from contractrl.envs.registry import make

C, D = 0, 1


def _play(env, actions_per_step, key=0):
    """Step ``env`` with the given joint actions; returns the per-step outputs."""
    obs, state = env.reset(jax.random.PRNGKey(key))
    out = []
    for t, acts in enumerate(actions_per_step):
        obs, state, r, term, trunc, info = env.step(
            jax.random.PRNGKey(100 + t), state, jnp.asarray(acts)
        )
        out.append((np.asarray(obs), np.asarray(r), bool(term), bool(trunc), info))
    return out


def test_dilemma_rewards_are_the_stage_game():
    env = IteratedDilemma()
    steps = _play(env, [(C, C), (C, D), (D, C)])
    assert [list(s[1]) for s in steps] == [[3.0, 3.0], [0.0, 5.0], [5.0, 0.0]]
    assert not any(s[2] or s[3] for s in steps)
    # observations: the share of the episode elapsed, nothing of past actions
    obs, _ = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(obs), [[0.0], [0.0]])
    np.testing.assert_allclose(steps[1][0], [[0.2], [0.2]])  # after 2 of 10 steps


def test_mutual_defection_terminates_and_the_env_resets_after_the_step():
    env = IteratedDilemma(horizon=5)
    obs, reward, terminated, truncated, info = _play(env, [(C, C), (D, D)])[-1]
    assert terminated and not truncated
    assert list(reward) == [1.0, 1.0]  # the last step's rewards are the step's own
    np.testing.assert_array_equal(obs, [[0.0], [0.0]])  # the next episode's first observation
    np.testing.assert_allclose(np.asarray(info["final_obs"]), [[0.4], [0.4]])  # 2 of 5 steps


class _Counter(MultiAgentEnv):
    """Two agents, rewards 1 per step, no terminal state: only the time limit ends episodes."""

    num_agents, num_actions, observation_shape, max_steps = 2, 2, (1,), 3

    def reset_env(self, key):
        return jnp.zeros((2, 1)), jnp.zeros((), jnp.int32)

    def step_env(self, key, state, actions):
        return jnp.full((2, 1), state + 1.0), state + 1, jnp.ones(2), jnp.zeros((), bool)


def test_the_base_class_truncates_at_max_steps_and_resets():
    steps = _play(_Counter(), [(C, C)] * 4)
    assert [(s[2], s[3]) for s in steps] == [(False, False), (False, False), (False, True)] + [
        (False, False)
    ]
    np.testing.assert_array_equal(np.asarray(steps[2][4]["final_obs"]), [[3.0], [3.0]])
    np.testing.assert_array_equal(steps[2][0], [[0.0], [0.0]])  # the next episode's first


def test_the_dilemmas_horizon_is_a_terminal_state():
    """Its agents observe the time, so the last step ends the game (terminated)."""
    env = IteratedDilemma(horizon=3)
    steps = _play(env, [(C, C)] * 4)
    assert [(s[2], s[3]) for s in steps] == [(False, False), (False, False), (True, False)] + [
        (False, False)
    ]
    last = _play(env, [(C, C), (C, C), (D, D)])[-1]
    assert last[2] and not last[3]
    with pytest.raises(ValueError, match="end_on_mutual_defection"):
        IteratedDilemma(end_on_mutual_defection="false")
    with pytest.raises(ValueError, match="reward"):
        IteratedDilemma(reward="3")


def test_coin_game_protocol_step_is_the_functional_step():
    cfg = PRESETS["paper-3x3"]
    env = CoinGame(cfg)
    key = jax.random.PRNGKey(4)
    obs, state = env.reset(key)
    obs_ref, state_ref = coin_game.reset(cfg, key)
    np.testing.assert_array_equal(np.asarray(obs), np.asarray(obs_ref))
    for t in range(25):
        acts = jnp.asarray([t % 4, (t * 3) % 4])
        k = jax.random.PRNGKey(t)
        obs, state, rewards, term, trunc, info = env.step(k, state, acts)
        obs_ref, state_ref, ref = coin_game.step(cfg, state_ref, acts, k)
        np.testing.assert_array_equal(np.asarray(obs), np.asarray(obs_ref))
        np.testing.assert_array_equal(np.asarray(rewards), np.asarray(ref.rewards))
        assert bool(trunc) == bool(ref.truncated) and not bool(term)
        np.testing.assert_array_equal(np.asarray(info["final_obs"]), np.asarray(ref.final_obs))
    assert env == CoinGame(cfg) and hash(env) == hash(CoinGame(cfg))


def test_coin_game_sparse_ones_are_the_dense_observation():
    """The capability's ones, scattered into a grid, are the env's own observation."""
    cfg = coin_game.CoinGameConfig(grid_size=4, num_agents=3, horizon=10)
    env = CoinGame(cfg)
    _, states = coin_game.reset_batch(cfg, jax.random.split(jax.random.PRNGKey(0), 16))
    dense = np.asarray(jax.vmap(lambda s: coin_game.observe(cfg, s))(states))
    cells, channels = (np.asarray(x) for x in env.observation_ones(states))
    rebuilt = np.zeros_like(dense)
    for b in range(16):
        for i in range(3):
            for cell, ch in zip(cells[b, i], channels[b, i], strict=True):
                rebuilt[b, i, cell // 4, cell % 4, ch] += 1
    np.testing.assert_array_equal(rebuilt, dense)


def test_coin_game_renders_an_image():
    env = CoinGame(PRESETS["paper-3x3"])
    _, state = env.reset(jax.random.PRNGKey(0))
    image = env.render(state)
    assert image.shape == (72, 72, 3) and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) >= 4  # grid, cells, two agents, coin


def test_make_builds_the_builtins_with_their_fields():
    assert make("coin_game", preset="paper-3x3").config == PRESETS["paper-3x3"]
    assert make("coin_game", grid_size=5).config.grid_size == 5
    assert make("iterated_dilemma", horizon=7).max_steps == 7


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("no_such_env", {}, "unknown 'no_such_env'"),
        ("coin_game", {"grid_sise": 3}, "grid_sise"),
        ("coin_game", {"grid_size": 1}, "grid_size"),
        ("coin_game", {"preset": "huge"}, "unknown preset"),
        ("no_such_module_xyz:make", {}, "cannot import"),
        ("contractrl.envs.dilemma:nothing", {}, "no callable 'nothing'"),
        ("iterated_dilemma", {"temptation": float("nan")}, "temptation"),
    ],
)
def test_make_refuses_with_one_message(name, kwargs, match):
    with pytest.raises(EnvUnusableError, match=match):
        make(name, **kwargs)


class _Continuous:
    num_agents = 2
    num_actions = 0
    observation_shape = (3,)
    max_steps = 5

    def reset(self, key):
        raise AssertionError("never called")

    step = reset


def test_validate_env_names_what_is_missing():
    with pytest.raises(ValueError, match="num_actions"):
        validate_env(_Continuous())
    single = IteratedDilemma()
    single.num_agents = 1
    with pytest.raises(ValueError, match="at least 2 agents"):
        validate_env(single)


def test_a_parallel_env_without_an_episode_limit_gets_one_line():
    with pytest.raises(EnvUnusableError, match="no episode limit found; pass max_steps"):
        make("contractrl.envs.coin_game_pz:parallel_env")
    env = make("contractrl.envs.coin_game_pz:parallel_env", grid_size=3, horizon=20, max_steps=20)
    assert (env.num_agents, env.num_actions, env.observation_shape) == (2, 4, (3, 3, 4))


class _WrongShape(_Counter):
    observation_shape = (3,)  # reset returns [2, 1]


class _ScalarRewards(_Counter):
    def step_env(self, key, state, actions):
        return jnp.full((2, 1), state + 1.0), state + 1, jnp.ones(()), jnp.zeros((), bool)


class _PerAgentEnds(_Counter):
    def step(self, key, state, actions):
        obs, state, rewards, term, trunc, info = super().step(key, state, actions)
        return obs, state, rewards, jnp.zeros(2, bool), trunc, info


@pytest.mark.parametrize(
    "env,match",
    [
        (_WrongShape(), r"reset: observations of shape \(2, 1\), expected \(2, 3\)"),
        (_ScalarRewards(), "rewards"),
        (_PerAgentEnds(), r"step: terminated of shape \(2,\), expected \(\)"),
    ],
)
def test_validate_env_checks_what_reset_and_step_return(env, match):
    with pytest.raises(ValueError, match=match):
        validate_env(env)


def _raising_factory():
    raise RuntimeError("boom")


def test_a_failing_factory_or_a_dropped_limit_gets_one_line(tmp_path):
    with pytest.raises(EnvUnusableError, match="RuntimeError: boom"):
        make("tests.envs.test_protocol:_raising_factory")
    bad = tmp_path / "bad_env.py"
    bad.write_text("def make(:\n")
    with pytest.raises(EnvUnusableError, match="SyntaxError"):
        make(f"{bad}:make")
    # a sibling module of the env's file imports, as when the file runs as a script
    (tmp_path / "helper_mod_xyz.py").write_text("HORIZON = 4\n")
    (tmp_path / "uses_helper.py").write_text(
        "from helper_mod_xyz import HORIZON\n"
        "from contractrl.envs.dilemma import IteratedDilemma\n"
        "def make():\n    return IteratedDilemma(horizon=HORIZON)\n"
    )
    assert make(f"{tmp_path / 'uses_helper.py'}:make").max_steps == 4
    examples = Path(__file__).resolve().parents[2] / "examples"
    with pytest.raises(EnvUnusableError, match="max_steps: the factory takes no such keyword"):
        make(f"{examples / 'public_goods.py'}:make", max_steps=3)


class _NumpySizes(_Counter):
    """Sizes given as NumPy integers and a list, as envs built from arrays often declare them."""

    num_agents, num_actions, max_steps = np.int64(2), np.int64(2), np.int32(3)
    observation_shape = [1]


def test_numpy_integer_sizes_and_list_shapes_are_accepted():
    from contractrl.multiagent.algorithm3 import PrincipalLearner
    from contractrl.multiagent.common import DQNConfig

    env = _NumpySizes()
    validate_env(env)
    learner = PrincipalLearner(env, DQNConfig(iterations=20, learning_starts=5, hidden=(8,)))
    state, stats = learner.train_chunk(learner.init(jax.random.PRNGKey(0)), 0, 20)
    assert np.isfinite(np.asarray(stats.agent_loss)).all()
