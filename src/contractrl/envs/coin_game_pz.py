"""PettingZoo facades of the Coin Game (:func:`parallel_env`, :func:`env`); each step calls JAX."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec

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
    :meth:`state` is the global ``[G, G, n + 1]`` grid (channel ``i``: agent ``i``; the last:
    the coin, valued ``1 +`` its owner). ``render_mode``: ``"ansi"`` (the grid as text: agents
    ``0..n-1``, the coin ``c<owner>``), ``"human"`` (that text printed) or ``"rgb_array"``
    (``[32 G, 32 G, 3]`` uint8).
    """

    metadata = {
        "name": "coin_game_v0",
        "render_modes": ["human", "ansi", "rgb_array"],
        "render_fps": 4,
    }

    def __init__(self, config: CoinGameConfig | None = None, render_mode: str | None = None):
        self.config = config or CoinGameConfig()
        self.config.validate()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode: must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.possible_agents = [f"agent_{i}" for i in range(self.config.num_agents)]
        self.agents: list[str] = []
        self._reset, self._step = _compiled(self.config)
        self._state = self._shown = None
        self._rng = np.random.default_rng()
        obs_space = spaces.Box(
            0.0, float(self.config.num_agents), self.config.obs_shape, np.float32
        )
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {
            a: spaces.Discrete(self.config.num_actions) for a in self.possible_agents
        }
        g, n = self.config.grid_size, self.config.num_agents
        self.state_space = spaces.Box(0.0, float(n), (g, g, n + 1), np.float32)

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
        self._shown = self._state  # what state() and render() show
        self.agents = list(self.possible_agents)
        obs = np.asarray(obs)
        return ({a: obs[i] for i, a in enumerate(self.agents)}, {a: {} for a in self.agents})

    def step(self, actions):
        """All agents act at once."""
        if not self.agents:
            raise RuntimeError("the episode is over: call reset()")
        joint = jnp.asarray([int(actions[a]) for a in self.possible_agents], jnp.int32)
        _, self._state, info = self._step(self._state, joint, self._key())
        # after the last step, the final state (not the next episode's, already reset)
        self._shown = info.final_state if bool(info.done) else self._state
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

    def state(self) -> np.ndarray:
        """The global state ``[G, G, n + 1]`` (see the class docstring)."""
        if self._state is None:
            raise RuntimeError("call reset() before state()")
        shown = self._shown
        g, n = self.config.grid_size, self.config.num_agents
        grid = np.zeros((g, g, n + 1), np.float32)
        positions = np.asarray(shown.positions)
        for i in range(n):
            grid[positions[i, 0], positions[i, 1], i] = 1.0
        coin = np.asarray(shown.coin)
        grid[coin[0], coin[1], n] = 1.0 + float(shown.colour)
        return grid

    def render(self):
        """The grid as text (``ansi``) or an image (``rgb_array``); ``None`` without a mode."""
        if self.render_mode is None or self._state is None:
            return None
        g, n = self.config.grid_size, self.config.num_agents
        positions = np.asarray(self._shown.positions)
        coin, owner = tuple(np.asarray(self._shown.coin)), int(self._shown.colour)
        if self.render_mode in ("ansi", "human"):
            rows = []
            for r in range(g):
                cells = []
                for c in range(g):
                    here = "".join(str(i) for i in range(n) if tuple(positions[i]) == (r, c))
                    if (r, c) == coin:
                        here += f"c{owner}"
                    cells.append(f"{here or '.':>4}")
                rows.append("".join(cells))
            if self.render_mode == "human":
                print("\n".join(rows) + "\n")
                return None
            return "\n".join(rows)
        cell = 32
        palette = np.array(
            [(220, 60, 60), (60, 110, 220), (60, 170, 80), (200, 150, 40), (150, 70, 190)],
            np.uint8,
        )
        image = np.full((g * cell, g * cell, 3), 235, np.uint8)
        image[::cell, :] = image[:, ::cell] = 160
        r, c = coin
        image[r * cell + 10 : (r + 1) * cell - 10, c * cell + 10 : (c + 1) * cell - 10] = palette[
            owner % len(palette)
        ]
        for i in range(n):
            r, c = positions[i]
            top, left = r * cell + 3 + 2 * i, c * cell + 3 + 2 * i
            colour = palette[i % len(palette)]
            image[top : top + 4, left : left + cell - 8] = colour  # an outline per agent
            image[top + cell - 12 : top + cell - 8, left : left + cell - 8] = colour
            image[top : top + cell - 8, left : left + 4] = colour
            image[top : top + cell - 8, left + cell - 12 : left + cell - 8] = colour
        return image


def parallel_env(render_mode: str | None = None, **flags):
    """PettingZoo ``ParallelEnv`` of the Coin Game.

    Flags are :class:`CoinGameConfig` fields; with none, the paper's 7x7 rules.
    """
    return CoinGameParallelEnv(CoinGameConfig(**flags), render_mode=render_mode)


def env(render_mode: str | None = None, **flags):
    """PettingZoo AEC environment of the Coin Game, converted from :func:`parallel_env`.

    Agents act in turn; the joint step is taken when the last has acted (PettingZoo's standard
    ``parallel_to_aec``).
    """
    return parallel_to_aec(parallel_env(render_mode=render_mode, **flags))
