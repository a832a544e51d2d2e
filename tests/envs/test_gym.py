"""The Gymnasium facade passes Gymnasium's checker and reports the contract bookkeeping."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from contractrl.core.games import figure1, random_game
from contractrl.core.solver import solve_spe
from contractrl.envs.gym import AgentEnv


@pytest.mark.parametrize("make", [figure1, lambda: random_game(4, 3, 2, horizon=3, seed=2)])
def test_check_env_passes(make):
    game = make()
    env = AgentEnv(game, solve_spe(game).policy)
    check_env(env, skip_render_check=True)


def test_rewards_include_payments_and_episode_ends():
    game = figure1()
    env = AgentEnv(game, solve_spe(game).policy)
    obs, _ = env.reset(seed=0)
    assert obs["state"] == 0 and obs["recommendation"] == 0
    assert np.allclose(obs["contract"], [1.0, 0.0])
    total = 0.0
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(0)
        assert reward == pytest.approx(-0.8 + info["payment"])
        assert info["payment"] == (1.0 if info["outcome"] == 0 else 0.0)
        total += reward
    assert terminated and not truncated


def test_same_seed_same_episode():
    game = random_game(4, 2, 2, horizon=4, seed=5)
    env = AgentEnv(game, solve_spe(game).policy)
    runs = []
    for _ in range(2):
        env.reset(seed=11)
        runs.append([env.step(1)[4]["outcome"] for _ in range(4)])
    assert runs[0] == runs[1]


def test_registered_id_spec_and_render_modes():
    import gymnasium as gym

    import contractrl.envs  # noqa: F401  (registers contractrl/Agent-v0)

    env = gym.make("contractrl/Agent-v0", render_mode="ansi")
    assert env.spec is not None and env.spec.id == "contractrl/Agent-v0"
    env.reset(seed=0)
    text = env.render()
    assert text == "t=0 state=s0 recommended=aL contract: L=1, R=0"
    check_env(env.unwrapped)
    game = figure1()
    image_env = gym.make("contractrl/Agent-v0", game=game, render_mode="rgb_array")
    image_env.reset(seed=0)
    image = image_env.render()
    assert image.shape == (32, 96, 3) and image.dtype == np.uint8
    assert (image[16, 16] == (40, 110, 220)).all() and (image[16, 48] == 200).all()
    with pytest.raises(ValueError, match="render_mode"):
        AgentEnv(game, solve_spe(game).policy, render_mode="human")
