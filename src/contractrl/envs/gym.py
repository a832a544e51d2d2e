"""A Gymnasium facade: the agent's view of a game under a fixed principal policy.

Each step calls the batched pure function :func:`contractrl.envs.tabular.step` with one
environment, so the facade shares its dynamics with the learners. Observation: the state, the
time step, the recommended action and the contract offered there; reward: the agent's reward
plus the payment. ``terminated`` when the dynamics end the episode, ``truncated`` at the
horizon. ``info`` carries the outcome, the payment and the principal's reward.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from contractrl.core.evaluate import check_policy
from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.solution import PrincipalPolicy
from contractrl.envs import tabular

_step = jax.jit(tabular.step)


class AgentEnv(gym.Env):
    """The agent's MDP given a principal policy (docs/model.md §1).

    Registered as ``contractrl/Agent-v0`` (``import contractrl.envs`` first): with no
    arguments ``gym.make`` builds the paper's Figure 1 game under its exact SPE policy.

    Args:
        game: the game.
        policy: the principal's policy (``K`` rows: 1, or ``H``).
        render_mode: ``None``, ``"ansi"`` (one line of text per call) or ``"rgb_array"``
            (a ``[32, 32 S, 3]`` uint8 strip, the current state highlighted).
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self, game: PrincipalAgentMDP, policy: PrincipalPolicy, render_mode: str | None = None
    ):
        check_policy(game, policy)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode: must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.game = game
        self.policy = policy
        self.params = tabular.tabular_params(game)
        horizon = game.horizon or 1
        high = float(max(np.max(policy.contract), 1.0))
        self.observation_space = gym.spaces.Dict(
            {
                "state": gym.spaces.Discrete(game.num_states),
                "time": gym.spaces.Discrete(horizon + 1),
                "recommendation": gym.spaces.Discrete(game.num_actions + 1, start=-1),
                "contract": gym.spaces.Box(0.0, high, (game.num_outcomes,), np.float32),
            }
        )
        self.action_space = gym.spaces.Discrete(game.num_actions)
        self._env_state: tabular.TabularState | None = None

    def _decision(self, state: int, t: int) -> tuple[int, np.ndarray]:
        k = max(0, min(t, self.policy.num_rows - 1))
        return int(self.policy.action[k, state]), self.policy.contract[k, state]

    def _obs(self, state: int | None = None, t: int | None = None) -> dict[str, Any]:
        if state is None:
            state, t = int(self._env_state.state[0]), int(self._env_state.t[0])
        rec, contract = self._decision(state, t)
        return {
            "state": state,
            "time": t if self.game.horizon is not None else 0,
            "recommendation": rec,
            "contract": contract.astype(np.float32),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Start an episode at the initial state."""
        super().reset(seed=seed)
        _, self._env_state = tabular.reset(self.params, jax.random.PRNGKey(0), 1)
        self._final: tuple[int, int] | None = None  # (state, t) once the episode ended
        return self._obs(), {}

    def step(self, action):
        """Take ``action``; the outcome and the next state are drawn from the game."""
        if self._env_state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        state, t = int(self._env_state.state[0]), int(self._env_state.t[0])
        _, contract = self._decision(state, t)
        key = jax.random.PRNGKey(int(self.np_random.integers(0, 2**31 - 1)))
        _, self._env_state, report = _step(
            self.params,
            self._env_state,
            jnp.array([action], jnp.int32),
            jnp.asarray(contract[None], jnp.float32),
            key,
        )
        payment = float(report.payment[0])
        reward = float(report.agent_reward[0]) + payment
        terminated = bool(report.terminal[0])
        truncated = bool(report.done[0]) and not terminated
        info = {
            "outcome": int(report.outcome[0]),
            "payment": payment,
            "principal_reward": float(report.principal_reward[0]) - payment,
        }
        if terminated or truncated:  # the final observation, not the auto-reset one
            time = t + 1 if self.game.horizon is not None else 0
            obs = self._obs(int(report.next_state[0]), time)
            self._final = (int(report.next_state[0]), t + 1)
        else:
            obs = self._obs()
        return obs, reward, terminated, truncated, info

    def render(self):
        """The current state: a line of text (``ansi``) or an image (``rgb_array``)."""
        if self.render_mode is None or self._env_state is None:
            return None
        state, t = int(self._env_state.state[0]), int(self._env_state.t[0])
        if getattr(self, "_final", None) is not None:  # the episode's last state
            state, t = self._final
        rec, contract = self._decision(state, t)
        if self.render_mode == "ansi":
            g = self.game
            pay = ", ".join(f"{g.outcome_name(o)}={float(b):.4g}" for o, b in enumerate(contract))
            return (
                f"t={t} state={g.state_name(state)} "
                f"recommended={g.action_name(rec) if rec >= 0 else 'none'} "
                f"contract: {pay}"
            )
        cell = 32
        image = np.full((cell, cell * self.game.num_states, 3), 200, np.uint8)
        image[:, ::cell] = 90  # borders between states
        image[4:-4, state * cell + 4 : (state + 1) * cell - 4] = (40, 110, 220)
        return image


def make_agent_env(
    game: PrincipalAgentMDP | None = None,
    policy: PrincipalPolicy | None = None,
    render_mode: str | None = None,
) -> AgentEnv:
    """The ``contractrl/Agent-v0`` factory: :class:`AgentEnv` with defaults.

    ``game`` defaults to the paper's Figure 1, ``policy`` to the game's exact SPE policy.
    """
    from contractrl.core.games import figure1
    from contractrl.core.solver import solve_spe

    game = figure1() if game is None else game
    policy = solve_spe(game).policy if policy is None else policy
    return AgentEnv(game, policy, render_mode)
