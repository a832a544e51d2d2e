"""PettingZoo ``ParallelEnv`` facade of the Coin Game; each step calls the pure JAX function."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from contractrl.envs import coin_game
from contractrl.envs.coin_game import CoinGameConfig


@functools.cache
def _compiled(config: CoinGameConfig):
    return (
        jax.jit(functools.partial(coin_game.reset, config)),
        jax.jit(functools.partial(coin_game.step, config)),
    )


class CoinGameParallelEnv(ParallelEnv):
    """The Coin Game for PettingZoo: agents ``agent_0 ... agent_{n-1}``.

    Observations are the egocentric ``[G, G, 4]`` grids, actions the moves. Episodes end by
    truncation at the horizon. ``infos[agent]`` holds ``collected`` and ``own_coin``.
    """

    metadata = {"name": "coin_game_v0", "render_modes": []}

    def __init__(self, config: CoinGameConfig | None = None):
        self.config = config or CoinGameConfig()
        self.config.validate()
        self.possible_agents = [f"agent_{i}" for i in range(self.config.num_agents)]
        self.agents: list[str] = []
        self._reset, self._step = _compiled(self.config)
        self._state = None
        self._rng = np.random.default_rng()
        obs_space = spaces.Box(
            0.0, float(self.config.num_agents), self.config.obs_shape, np.float32
        )
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {
            a: spaces.Discrete(self.config.num_actions) for a in self.possible_agents
        }

    def observation_space(self, agent):
        """The agent's observation space."""
        return self.observation_spaces[agent]

    def action_space(self, agent):
        """The agent's action space."""
        return self.action_spaces[agent]

    def _key(self) -> jax.Array:
        return jax.random.PRNGKey(int(self._rng.integers(0, 2**31 - 1)))

    def reset(self, seed=None, options=None):
        """Start an episode; ``seed`` makes it reproducible."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs, self._state = self._reset(self._key())
        self.agents = list(self.possible_agents)
        obs = np.asarray(obs)
        return ({a: obs[i] for i, a in enumerate(self.agents)}, {a: {} for a in self.agents})

    def step(self, actions):
        """All agents act at once."""
        if not self.agents:
            raise RuntimeError("the episode is over: call reset()")
        joint = jnp.asarray([int(actions[a]) for a in self.possible_agents], jnp.int32)
        _, self._state, info = self._step(self._state, joint, self._key())
        obs = np.asarray(info.final_obs)
        done = bool(info.done)
        terminated, truncated = bool(info.terminated), bool(info.truncated)
        agents = list(self.agents)
        observations = {a: obs[i] for i, a in enumerate(agents)}
        rewards = {a: float(info.rewards[i]) for i, a in enumerate(agents)}
        terminations = {a: terminated for a in agents}
        truncations = {a: truncated for a in agents}
        infos = {
            a: {"collected": float(info.collected[i]), "own_coin": float(info.own_coin[i])}
            for i, a in enumerate(agents)
        }
        if done:
            self.agents = []
        return observations, rewards, terminations, truncations, infos
