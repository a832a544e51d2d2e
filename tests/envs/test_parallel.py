"""The PettingZoo facade of any protocol environment: Cleanup through PettingZoo's checkers."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from contractrl.envs.parallel import ProtocolParallelEnv, parallel_env
from contractrl.envs.protocol import validate_env
from contractrl.envs.registry import make
from contractrl.envs.transfers import FormalContract, Gifting


def test_cleanup_passes_the_parallel_api_and_seed_tests_and_renders():
    parallel_api_test(parallel_env("cleanup", preset="small"), num_cycles=20)
    parallel_seed_test(lambda: parallel_env("cleanup", preset="small"))
    par = parallel_env("cleanup", preset="small", render_mode="rgb_array")
    obs, _ = par.reset(seed=0)
    assert obs["agent_0"].shape == (9, 9, 7)
    image = par.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    _, _, _, _, infos = par.step({"agent_0": 5, "agent_1": 4})  # clean, stay
    assert set(infos["agent_0"]) == {"waste_cleaned", "apples_collected", "cleaning_beams"}
    assert infos["agent_0"]["cleaning_beams"] == 1.0 and infos["agent_1"]["cleaning_beams"] == 0.0


def test_cleanup_takes_both_transfer_baselines():
    env = make("cleanup", preset="small")
    validate_env(FormalContract(env, 0.5))  # on waste_cleaned, the env's contract measure
    gifting = Gifting(env, 1.0)
    validate_env(gifting)
    assert gifting.num_actions == env.num_actions + 1


def test_facade_refuses_an_unknown_render_mode_and_a_step_after_the_end():
    with pytest.raises(ValueError, match="render_mode"):
        parallel_env("escape_room", render_mode="human")
    par = ProtocolParallelEnv(make("escape_room"))
    par.reset(seed=1)
    with pytest.raises(ValueError, match="agent_1"):
        par.step({"agent_0": 0})
    par.step({"agent_0": 0, "agent_1": 2})  # lever and door: the episode ends
    with pytest.raises(RuntimeError, match="reset"):
        par.step({"agent_0": 0, "agent_1": 2})
