"""Escape Room ER(N, M): the incentive-design benchmark of LIO (Yang et al., NeurIPS 2020).

``N`` agents stand in a room with three positions: the **lever** (0), the **start** (1) and the
**door** (2). An action is the position to move to (3 actions). On a step where at least ``M``
agents choose the lever, the door is open for that step. Rewards per agent and step (LIO's
``room_symmetric`` rules): ``door_reward`` (+10) for going to (or staying at) the open door;
otherwise 0 for staying where one is and ``-move_cost`` (−1) for moving. The episode ends
(``terminated``) after a step on which the door was open and some agent stands at it, or after
``horizon`` steps (5, a truncation). Everyone starts at the start.

Pulling the lever costs the puller and only helps the others, so independent learners never
pull it and nobody leaves: the dilemma. The cooperative optimum needs ``M`` agents to take a
loss so that ``N − M`` escape (closed forms below; ``tests/envs/test_escape_room.py``).

Observations (a flat vector per agent): the agent's own position (one-hot, 3), the others'
positions (one-hot each, in agent order without itself) — LIO's, without its gift channel —
and, with ``observe_index`` (default), the agent's own index one-hot (``N``). The index is an
addition to LIO's observation: contractrl's learners share one network among agents (LIO
trains one network per agent), and without it every agent sees the same input at the start, so
no shared greedy policy could send one agent to the lever and another to the door.

Closed forms (``M < N``, everyone at the start; ``horizon ≥ 1``):

* team optimum: on the first step ``M`` agents go to the lever and ``N − M`` to the door:
  welfare ``door_reward·(N − M) − move_cost·M`` per episode (9 for ER(2,1), 8 for ER(3,2)),
  when that is positive (else 0: nobody moves);
* min-pay contracts for that plan, the others following (paper Section 5.1, ``b_i = max_a
  Q_i − Q_i(a_i)``): a lever agent that does not pull keeps the door shut, stays for free
  and loses nothing, so it is paid ``move_cost`` (1); door agents are paid 0: total ``M ·
  move_cost`` per episode (1 and 2), a payment share of 1/9 and 2/8.

:func:`export_escape_room` gives the game as an exact tabular Markov game
(:mod:`contractrl.core.markov_game`), which ``contractrl solve escape-room`` solves.

Measures (``info["measures"]``): ``lever_pulls`` (1 for each agent at the lever after the step)
— what a formal contract pays for (:mod:`.transfers`) — and ``escapes`` (1 for each agent that
went through the open door).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from contractrl._validate import is_finite_number, is_int, require
from contractrl.envs.protocol import MultiAgentEnv

LEVER, START, DOOR = 0, 1, 2
POSITIONS = ("lever", "start", "door")


@dataclasses.dataclass(frozen=True)
class EscapeRoomConfig:
    """Rules of ER(N, M) (module docstring); defaults are LIO's ER(2, 1).

    Attributes:
        num_agents: ``N`` (LIO: 2 or 3).
        min_at_lever: ``M``, agents at the lever that open the door (LIO: 1 with ``N = 2``,
            2 with ``N = 3``).
        horizon: steps per episode at most (LIO ``max_steps``: 5).
        door_reward: reward for going to the open door (LIO: 10).
        move_cost: cost of moving to another position (LIO: 1; ``>= 0``, the closed forms
            assume it).
        observe_index: add each agent's index to its observation (module docstring).
    """

    num_agents: int = 2
    min_at_lever: int = 1
    horizon: int = 5
    door_reward: float = 10.0
    move_cost: float = 1.0
    observe_index: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        n = self.num_agents
        require(
            self,
            [
                ("num_agents", is_int(n) and n >= 2),
                ("min_at_lever", is_int(self.min_at_lever) and 1 <= self.min_at_lever <= n),
                ("horizon", is_int(self.horizon) and self.horizon >= 1),
                ("door_reward", is_finite_number(self.door_reward)),
                ("move_cost", is_finite_number(self.move_cost) and self.move_cost >= 0),
                ("observe_index", isinstance(self.observe_index, bool)),
            ],
        )

    @property
    def optimum_welfare(self) -> float:
        """The team optimum's welfare per episode (closed form, module docstring)."""
        n, m = self.num_agents, self.min_at_lever
        if m >= n:
            return 0.0
        return max(self.door_reward * (n - m) - self.move_cost * m, 0.0)

    @property
    def min_pay_payments(self) -> float:
        """Min-pay payments per episode of the optimal plan (closed form, module docstring)."""
        return self.min_at_lever * self.move_cost if self.optimum_welfare > 0 else 0.0


def _share(config: EscapeRoomConfig) -> float | None:
    welfare = config.optimum_welfare
    return config.min_pay_payments / welfare if welfare > 0 else None


#: LIO's two Escape Room settings.
PRESETS: dict[str, EscapeRoomConfig] = {
    "er2-1": EscapeRoomConfig(num_agents=2, min_at_lever=1),
    "er3-2": EscapeRoomConfig(num_agents=3, min_at_lever=2),
}


def step_rules(config: EscapeRoomConfig, positions, actions):
    """One step of the rules on ``positions [..., n]`` and ``actions [..., n]`` (NumPy or JAX).

    Returns ``(rewards [..., n], door_open [...], terminated [...])``; the next positions are
    ``actions``.
    """
    xp = jnp if isinstance(actions, jax.Array) else np
    at_lever = xp.sum(actions == LEVER, axis=-1)
    door_open = at_lever >= config.min_at_lever
    escapes = door_open[..., None] & (actions == DOOR)
    stays = actions == positions
    rewards = xp.where(escapes, config.door_reward, xp.where(stays, 0.0, -config.move_cost))
    return rewards, door_open, door_open & xp.any(actions == DOOR, axis=-1)


class EscapeRoom(MultiAgentEnv):
    """Escape Room as a protocol environment (module docstring).

    The state is the agents' positions ``[n]`` (int32). ``noop_actions(state)`` (staying put)
    is what the gifting wrapper (:mod:`.transfers`) plays on a gift.

    Args:
        config: the rules; or give its fields as keywords.
    """

    num_actions = 3
    observation_bounds = (0.0, 1.0)
    measures = ("lever_pulls", "escapes")
    contract_measure = "lever_pulls"

    def __init__(self, config: EscapeRoomConfig | None = None, **flags):
        config = (
            EscapeRoomConfig(**flags) if config is None else dataclasses.replace(config, **flags)
        )
        config.validate()
        self.config = config
        self.num_agents = config.num_agents
        self.max_steps = config.horizon
        n = config.num_agents
        self.observation_shape = (3 * n + (n if config.observe_index else 0),)
        # order[i]: agent i's own position first, then the others' in agent order
        self._order = np.asarray([[i] + [j for j in range(n) if j != i] for i in range(n)])

    def __eq__(self, other) -> bool:
        return isinstance(other, EscapeRoom) and other.config == self.config

    def __hash__(self) -> int:
        return hash(("escape_room", self.config))

    def observe(self, positions: jax.Array) -> jax.Array:
        """``[n, observation_shape]`` every agent's observation of ``positions [n]``."""
        n = self.num_agents
        seen = jax.nn.one_hot(positions[self._order], 3).reshape(n, 3 * n)
        if self.config.observe_index:
            seen = jnp.concatenate([seen, jnp.eye(n)], axis=1)
        return seen.astype(jnp.float32)

    def reset_env(self, key: jax.Array):
        """Everyone at the start."""
        del key
        positions = jnp.full(self.num_agents, START, jnp.int32)
        return self.observe(positions), positions

    def step_env(self, key: jax.Array, state: jax.Array, actions: jax.Array):
        """Move everyone to the chosen positions; the door opens with ``M`` at the lever."""
        del key
        actions = jnp.asarray(actions, jnp.int32)
        rewards, door_open, terminated = step_rules(self.config, state, actions)
        measures = {
            "lever_pulls": (actions == LEVER).astype(jnp.float32),
            "escapes": (door_open & (actions == DOOR)).astype(jnp.float32),
        }
        return self.observe(actions), actions, rewards, terminated, measures

    def noop_actions(self, state) -> jax.Array:
        """``[n]`` the actions that keep every agent where it is (``state.inner``: positions)."""
        return jnp.asarray(state.inner, jnp.int32)

    def exact_references(self, discount: float = 0.99) -> dict:
        """The exact references a run is judged against (per episode, undiscounted).

        Solved exactly (:func:`export_escape_room`, :mod:`contractrl.core.markov_solver`):
        ``team_welfare`` (the team optimum) and, for the payment-minimising welfare-optimal
        plan (``α = 0``), its min-pay ``payments``, ``payment_share``, and the follow rate of
        agents that best-respond exactly and break ties at random; ``closed_form`` holds the
        module docstring's formulas (they agree; ``tests/envs/test_escape_room.py``).
        """
        from contractrl.core.markov_eval import plan_summary
        from contractrl.core.markov_solver import principal_optimum

        if self.config.num_agents > MAX_EXPORT_AGENTS:
            return {
                "source": "closed form (the exact game is too large to solve here)",
                "team_welfare": self.config.optimum_welfare,
                "payments": self.config.min_pay_payments,
                "payment_share": _share(self.config),
                "closed_form": {
                    "team_welfare": self.config.optimum_welfare,
                    "payments": self.config.min_pay_payments,
                },
            }
        game = export_escape_room(self.config, discount)
        summary = plan_summary(game, principal_optimum(game, 0.0))
        return {
            "source": "contractrl.core.markov_solver on export_escape_room",
            "team_welfare": summary["welfare"],
            "payments": summary["payments"],
            "payment_share": summary["payment_share"],
            "follow_rate_random_ties": summary["follow_rate_random_ties"],
            "closed_form": {
                "team_welfare": self.config.optimum_welfare,
                "payments": self.config.min_pay_payments,
            },
        }

    def exact_export(self, discount: float = 0.99):
        """The game as an exact tabular export (:mod:`.exact`, :func:`export_escape_room`).

        Raises ``ValueError`` beyond :data:`MAX_EXPORT_AGENTS` agents.
        """
        from contractrl.envs.protocol import ExactExport, TimeLimitState

        game = export_escape_room(self.config, discount)
        n = self.num_agents
        # state index: agent 0's position the most significant base-3 digit
        positions = np.stack(np.unravel_index(np.arange(3**n), (3,) * n), axis=1)
        positions = jnp.asarray(positions, jnp.int32)
        states = TimeLimitState(positions, jnp.zeros(3**n, jnp.int32))
        return ExactExport(game, jax.vmap(self.observe)(positions), states)

    def render(self, state, cell: int = 48) -> np.ndarray:
        """``uint8 [cell·N, 3·cell, 3]``: one row per agent, its position marked.

        Columns: lever (grey), start (white), door (brown); the agent's square is coloured
        by its index.
        """
        positions = np.asarray(state.inner)
        n = len(positions)
        image = np.full((cell * n, 3 * cell, 3), 245, np.uint8)
        image[:, 0:cell] = (200, 200, 200)
        image[:, 2 * cell :] = (190, 150, 110)
        colours = [(220, 60, 60), (60, 110, 220), (60, 170, 80), (230, 160, 40)]
        for i, p in enumerate(positions):
            y, x = i * cell, int(p) * cell
            image[y + 8 : y + cell - 8, x + 8 : x + cell - 8] = colours[i % len(colours)]
        return image


#: Largest ``N`` :func:`export_escape_room` builds (``3**N`` states and joint actions).
MAX_EXPORT_AGENTS = 6


def export_escape_room(config: EscapeRoomConfig | None = None, discount: float = 0.99):
    """ER(N, M) as a tabular Markov game (:class:`~contractrl.core.markov_game.MarkovGame`).

    States are the ``3**N`` position profiles (agent 0's position the most significant
    digit), joint actions the ``3**N`` target profiles in the same order; the next state is the
    joint action, a terminating step a row of zeros (sparse); episodes start with everyone at
    the start and last ``horizon`` steps (the time limit: the solver's step index).

    Raises:
        ValueError: ``num_agents`` above :data:`MAX_EXPORT_AGENTS`.
    """
    import scipy.sparse as sp

    from contractrl.core.markov_game import MarkovGame

    config = config or EscapeRoomConfig()
    config.validate()
    n = config.num_agents
    if n > MAX_EXPORT_AGENTS:
        raise ValueError(
            f"num_agents: the exact game has 3**N states and joint actions; N <= "
            f"{MAX_EXPORT_AGENTS} is exported, got {n}"
        )
    profiles = np.indices((3,) * n).reshape(n, -1).T  # [3**n, n], C order
    num = len(profiles)
    rewards, _, terminated = step_rules(config, profiles[:, None, :], profiles[None, :, :])
    terminated = np.broadcast_to(terminated, (num, num))  # it does not depend on s
    rows = np.flatnonzero(~terminated.ravel())  # row s*J + j moves to state j
    transitions = sp.csr_array((np.ones(rows.size), (rows, rows % num)), shape=(num * num, num))
    initial = np.zeros(num)
    initial[int(np.ravel_multi_index((START,) * n, (3,) * n))] = 1.0
    return MarkovGame(
        rewards.astype(np.float64),
        transitions,
        initial,
        n,
        3,
        discount,
        config.horizon,
        f"escape room ER({n},{config.min_at_lever})",
    )
