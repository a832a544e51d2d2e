"""A PettingZoo facade for any protocol environment (:mod:`.protocol`); each step calls JAX.

``parallel_env(name, render_mode=None, **kwargs)`` gives the built-in or registered
environment ``name`` (:func:`.registry.make`) as a PettingZoo ``ParallelEnv``; ``aec_env``
the same turned into an AEC environment by PettingZoo's ``parallel_to_aec``;
:class:`ProtocolParallelEnv` wraps an environment object.

Agents are ``agent_0 … agent_{n-1}``; observations are ``float32`` boxes of the environment's
``observation_shape`` (bounds ``observation_bounds`` if the environment declares them, else
unbounded); actions are ``Discrete(num_actions)``. The protocol's auto-reset is hidden: on the
step that ends an episode, the facade returns the observation the step reached
(``info["final_obs"]``), every agent leaves (``agents`` is empty) and :meth:`render` draws the
reached state. ``infos[agent]`` holds the environment's ``measures`` of the step (e.g.
``{"lever_pulls": 1.0}``). ``reset(seed=…)`` makes the episode and every later step
reproducible: keys come from a NumPy generator seeded with it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.utils.conversions import parallel_to_aec


@functools.cache
def _compiled(env: Any):
    return jax.jit(env.reset), jax.jit(env.step)


class ProtocolParallelEnv(ParallelEnv):
    """PettingZoo ``ParallelEnv`` of a protocol environment (module docstring).

    Args:
        env: a protocol environment (hashable: compiled functions are cached per env).
        render_mode: ``None`` or ``"rgb_array"`` (needs the environment's ``render``).
        name: the name in ``metadata``.
    """

    metadata = {"name": "contractrl_protocol_v0", "render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, env: Any, render_mode: str | None = None, name: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode: must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        if render_mode is not None and not callable(getattr(env, "render", None)):
            raise ValueError("render_mode: this environment has no render(state)")
        self.metadata = dict(self.metadata, name=name or type(env).__name__.lower())
        self.env = env
        self.render_mode = render_mode
        self.possible_agents = [f"agent_{i}" for i in range(env.num_agents)]
        self.agents: list[str] = []
        self._reset, self._step = _compiled(env)
        self._state = self._shown = None
        self._rng = np.random.default_rng()
        low, high = getattr(env, "observation_bounds", (-np.inf, np.inf))
        box = spaces.Box(low, high, tuple(env.observation_shape), np.float32)
        self.observation_spaces = {a: box for a in self.possible_agents}
        self.action_spaces = {a: spaces.Discrete(env.num_actions) for a in self.possible_agents}

    def observation_space(self, agent):
        """The agent's observation space."""
        return self.observation_spaces[agent]

    def action_space(self, agent):
        """The agent's action space."""
        return self.action_spaces[agent]

    def _key(self) -> jax.Array:
        return jax.random.PRNGKey(int(self._rng.integers(0, 2**31 - 1)))

    def reset(self, seed=None, options=None):
        """Start an episode; ``seed`` makes it (and the steps after it) reproducible."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        obs, self._state = self._reset(self._key())
        self._shown = self._state
        self.agents = list(self.possible_agents)
        obs = np.asarray(obs, np.float32)
        return {a: obs[i] for i, a in enumerate(self.agents)}, {a: {} for a in self.agents}

    def step(self, actions):
        """All agents act at once (``actions``: agent -> action index)."""
        if not self.agents:
            raise RuntimeError("the episode is over: call reset()")
        missing = [a for a in self.possible_agents if a not in actions]
        if missing:
            raise ValueError(f"actions: no action for {missing[0]!r}")
        for a in self.possible_agents:
            if not self.action_spaces[a].contains(np.int64(actions[a])):
                raise ValueError(
                    f"actions[{a!r}]: {actions[a]!r} is outside {self.action_spaces[a]}"
                )
        joint = jnp.asarray([int(actions[a]) for a in self.possible_agents], jnp.int32)
        _, self._state, rewards, terminated, truncated, info = self._step(
            self._key(), self._state, joint
        )
        terminated, truncated = bool(terminated), bool(truncated)
        done = terminated or truncated
        self._shown = info.get("final_state", self._state) if done else self._state
        obs = np.asarray(info["final_obs"], np.float32)
        rewards = np.asarray(rewards)
        measures = {k: np.asarray(v) for k, v in info.get("measures", {}).items()}
        agents = list(self.agents)
        out = (
            {a: obs[i] for i, a in enumerate(agents)},
            {a: float(rewards[i]) for i, a in enumerate(agents)},
            {a: terminated for a in agents},
            {a: truncated for a in agents},
            {a: {k: float(v[i]) for k, v in measures.items()} for i, a in enumerate(agents)},
        )
        if done:
            self.agents = []
        return out

    def render(self):
        """``uint8 [H, W, 3]`` of the current (or, after the last step, the reached) state."""
        if self.render_mode is None or self._shown is None:
            return None
        return np.asarray(self.env.render(self._shown), np.uint8)

    def close(self):
        """Nothing to release."""


def parallel_env(name: str, render_mode: str | None = None, **kwargs) -> ProtocolParallelEnv:
    """The environment ``name`` (:func:`.registry.make`, with ``kwargs``) for PettingZoo."""
    from contractrl.envs.registry import make

    return ProtocolParallelEnv(make(name, **kwargs), render_mode=render_mode, name=name)


def aec_env(name: str, render_mode: str | None = None, **kwargs):
    """:func:`parallel_env` as a PettingZoo AEC environment (agents act in turn)."""
    return parallel_to_aec(parallel_env(name, render_mode=render_mode, **kwargs))
