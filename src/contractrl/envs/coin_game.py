"""The Coin Game (paper Section 5.2, App. D.2) as pure JAX functions, every rule a flag.

Agents move on a toroidal ``G x G`` grid; one coin at a time, of one agent's colour. Collecting
a coin of one's own colour pays ``own_reward`` (paper: +1), another's colour ``other_reward``
(paper: +0.2) and costs the coin's owner ``owner_penalty`` (paper: 0; the classic game: +1 and
-2). Grabbing every coin is individually rational but lowers welfare: the social dilemma.

Defaults (**[choice]**, the widely used RLlib rules, revised): the coin's colour alternates
between agents; a new coin never appears on an agent's cell; agents start on distinct cells;
when several agents reach the coin at once, **one of them, at random, collects it**
(``random_one``). RLlib's own tie rule — every agent on the coin collects (``all_collect``) —
removes the dilemma under the paper's +1/+0.2/0 rewards (agents that chase together collect
every coin together; docs/coin.md measures it), so it is a flag, not the default. Four moves
(a fifth, "stay", is a flag).
Observations are egocentric — each agent sees the grid rolled so that it sits at the centre —
with four channels: own position, the others' positions, coins of its own colour, coins of
another colour; so agents can share parameters.

Functions work on one environment (``vmap`` them for a batch; :func:`reset_batch` and
:func:`step_batch` do): ``reset(config, key) -> (obs [n, G, G, 4], state)`` and
``step(config, state, actions [n], key) -> (obs, state, StepInfo)``; ``step`` resets the
environment when the horizon is reached (``StepInfo.done``; the observation returned is the new
episode's first one, the final one is in ``StepInfo.final_obs``). The game has no terminal
state: the horizon is a time limit, reported as ``truncated`` (``terminated`` is always false),
as Gymnasium and PettingZoo report it; learners bootstrap through it.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from contractrl._validate import require
from contractrl.envs.protocol import MultiAgentEnv, SparseObservations

#: Moves as (row, column) offsets: up, down, left, right, stay.
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))
COLOUR_RULES = ("alternate", "random")
SPAWN_RULES = ("avoid_agents", "anywhere")
TIE_RULES = ("all_collect", "random_one")
NUM_CHANNELS = 4


@dataclasses.dataclass(frozen=True)
class CoinGameConfig:
    """Rules of the Coin Game (static: hashable, one compilation per config).

    Attributes:
        grid_size: side ``G`` of the toroidal grid.
        horizon: steps per episode.
        num_agents: ``n >= 2``.
        num_actions: 4 moves, or 5 with "stay".
        colour_rule: ``alternate`` (next coin: the next agent's colour) or ``random``.
        spawn_rule: ``avoid_agents`` (never on an agent's cell) or ``anywhere``.
        tie_rule: ``random_one`` (one agent on the coin, uniformly at random, collects it) or
            ``all_collect`` (every agent on the coin collects; no dilemma under +1/+0.2/0).
        own_reward: reward for a coin of one's own colour.
        other_reward: reward for a coin of another agent's colour.
        owner_penalty: added to the owner's reward when another agent takes its coin.
        distinct_starts: agents start on distinct cells.
    """

    grid_size: int = 7
    horizon: int = 50
    num_agents: int = 2
    num_actions: int = 4
    colour_rule: str = "alternate"
    spawn_rule: str = "avoid_agents"
    tie_rule: str = "random_one"
    own_reward: float = 1.0
    other_reward: float = 0.2
    owner_penalty: float = 0.0
    distinct_starts: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        checks = [
            ("grid_size", isinstance(self.grid_size, int) and self.grid_size >= 2),
            ("horizon", isinstance(self.horizon, int) and self.horizon >= 1),
            ("num_agents", isinstance(self.num_agents, int) and self.num_agents >= 2),
            ("num_actions", self.num_actions in (4, 5), (4, 5)),
            ("colour_rule", self.colour_rule in COLOUR_RULES, COLOUR_RULES),
            ("spawn_rule", self.spawn_rule in SPAWN_RULES, SPAWN_RULES),
            ("tie_rule", self.tie_rule in TIE_RULES, TIE_RULES),
            ("num_agents", self.num_agents + 1 <= self.grid_size**2 or not self.distinct_starts),
        ]
        require(self, checks)

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """``(G, G, 4)``: one agent's observation."""
        return (self.grid_size, self.grid_size, NUM_CHANNELS)


PRESETS = {
    "paper-7x7": CoinGameConfig(grid_size=7, horizon=50),
    "paper-3x3": CoinGameConfig(grid_size=3, horizon=20),
    "classic": CoinGameConfig(other_reward=1.0, owner_penalty=-2.0),
}


@struct.dataclass
class CoinState:
    """One environment: ``positions [n, 2]``, ``coin [2]``, ``colour`` (owner), ``t``."""

    positions: jax.Array
    coin: jax.Array
    colour: jax.Array
    t: jax.Array


@struct.dataclass
class StepInfo:
    """What a step reports besides the observation.

    Attributes:
        rewards: ``[n]`` each agent's reward.
        collected: ``[n]`` 1 where the agent collected the coin this step.
        own_coin: ``[n]`` 1 where what it collected was its own colour.
        done: the episode ended (the environment was reset): ``terminated | truncated``.
        terminated: the episode reached a terminal state (never, in the Coin Game).
        truncated: the episode hit the time limit (``horizon``).
        final_obs: ``[n, G, G, 4]`` the observation before the reset (equals the returned one
            when not done).
        final_state: the state before the reset (equals the returned one when not done).
    """

    rewards: jax.Array
    collected: jax.Array
    own_coin: jax.Array
    done: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    final_state: CoinState


def _cells(config: CoinGameConfig) -> jax.Array:
    g = config.grid_size
    return jnp.stack(jnp.meshgrid(jnp.arange(g), jnp.arange(g), indexing="ij"), -1).reshape(-1, 2)


def _spawn_coin(config: CoinGameConfig, positions: jax.Array, key: jax.Array) -> jax.Array:
    cells = _cells(config)
    if config.spawn_rule == "avoid_agents":
        occupied = jnp.any(jnp.all(cells[:, None, :] == positions[None], axis=-1), axis=1)
        logits = jnp.where(occupied, -jnp.inf, 0.0)
    else:
        logits = jnp.zeros(cells.shape[0])
    return cells[jax.random.categorical(key, logits)].astype(jnp.int32)


def _start_positions(config: CoinGameConfig, key: jax.Array) -> jax.Array:
    num_cells = config.grid_size**2
    if config.distinct_starts:
        idx = jax.random.choice(key, num_cells, (config.num_agents,), replace=False)
    else:
        idx = jax.random.randint(key, (config.num_agents,), 0, num_cells)
    return _cells(config)[idx].astype(jnp.int32)


def observe(config: CoinGameConfig, state: CoinState) -> jax.Array:
    """Egocentric observations ``[n, G, G, 4]`` (float32)."""
    g, n = config.grid_size, config.num_agents
    centre = g // 2

    def one_hot(pos):
        return jnp.zeros((g, g), jnp.float32).at[pos[0], pos[1]].add(1.0)

    agents = jax.vmap(one_hot)(state.positions)  # [n, G, G]
    coin = one_hot(state.coin)

    def view(i):
        others = jnp.sum(agents, axis=0) - agents[i]
        own_colour = (state.colour == i).astype(jnp.float32)
        grid = jnp.stack([agents[i], others, coin * own_colour, coin * (1 - own_colour)], -1)
        shift = centre - state.positions[i]
        return jnp.roll(grid, (shift[0], shift[1]), axis=(0, 1))

    return jax.vmap(view)(jnp.arange(n))


def reset(config: CoinGameConfig, key: jax.Array) -> tuple[jax.Array, CoinState]:
    """A new episode: start positions, a coin off the agents, a random colour."""
    k_pos, k_coin, k_colour = jax.random.split(key, 3)
    positions = _start_positions(config, k_pos)
    state = CoinState(
        positions=positions,
        coin=_spawn_coin(config, positions, k_coin),
        colour=jax.random.randint(k_colour, (), 0, config.num_agents, jnp.int32),
        t=jnp.zeros((), jnp.int32),
    )
    return observe(config, state), state


def step(config: CoinGameConfig, state: CoinState, actions: jax.Array, key: jax.Array):
    """All agents move at once; the coin may be collected; a new one appears.

    Args:
        config: the rules.
        state: the environment.
        actions: ``[n]`` moves (int).
        key: PRNG key.

    Returns:
        ``(obs [n, G, G, 4], next state, StepInfo)``; auto-reset at the horizon.
    """
    n = config.num_agents
    k_tie, k_coin, k_colour, k_reset = jax.random.split(key, 4)
    moves = jnp.asarray(MOVES, jnp.int32)[actions]
    positions = (state.positions + moves) % config.grid_size
    on_coin = jnp.all(positions == state.coin[None], axis=-1)  # [n]
    if config.tie_rule == "random_one":
        pick = jax.random.categorical(k_tie, jnp.where(on_coin, 0.0, -jnp.inf))
        collectors = on_coin & (jnp.arange(n) == pick)
    else:
        collectors = on_coin
    own = jnp.arange(n) == state.colour
    gains = jnp.where(own, config.own_reward, config.other_reward)
    rewards = jnp.where(collectors, gains, 0.0)
    thefts = jnp.sum(collectors & ~own)
    rewards = rewards + jnp.where(own, config.owner_penalty * thefts, 0.0)
    taken = jnp.any(collectors)
    if config.colour_rule == "alternate":
        next_colour = (state.colour + 1) % n
    else:
        next_colour = jax.random.randint(k_colour, (), 0, n, jnp.int32)
    moved = CoinState(
        positions=positions,
        coin=jnp.where(taken, _spawn_coin(config, positions, k_coin), state.coin),
        colour=jnp.where(taken, next_colour, state.colour).astype(jnp.int32),
        t=state.t + 1,
    )
    final_obs = observe(config, moved)
    done = moved.t >= config.horizon
    fresh_obs, fresh = reset(config, k_reset)
    next_state = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), fresh, moved)
    obs = jnp.where(done, fresh_obs, final_obs)
    info = StepInfo(
        rewards=rewards.astype(jnp.float32),
        collected=collectors.astype(jnp.float32),
        own_coin=(collectors & own).astype(jnp.float32),
        done=done,
        terminated=jnp.zeros((), bool),
        truncated=done,
        final_obs=final_obs,
        final_state=moved,
    )
    return obs, next_state, info


def reset_batch(config: CoinGameConfig, keys: jax.Array):
    """:func:`reset` over a batch of keys ``[N, 2]``."""
    return jax.vmap(reset, in_axes=(None, 0))(config, keys)


def step_batch(config: CoinGameConfig, states: CoinState, actions: jax.Array, keys: jax.Array):
    """:func:`step` over a batch: ``actions [N, n]``, ``keys [N, 2]``."""
    return jax.vmap(step, in_axes=(None, 0, 0, 0))(config, states, actions, keys)


# ------------------------------------------------------------------ sparse observations
def observation_ones(config: CoinGameConfig, states: CoinState):
    """The ones of every agent's egocentric observation, straight from the states.

    Returns ``(cells, channels)``, each ``[..., n, n + 1]`` (self, the others in agent order,
    the coin); ``cells`` are flat ``row * G + column`` indices of the rolled grid.
    """
    g, n = config.grid_size, config.num_agents
    centre = g // 2
    pos = states.positions  # [..., n, 2]
    rel = (pos[..., None, :, :] - pos[..., :, None, :] + centre) % g  # [..., i, j, 2]
    coin = (states.coin[..., None, :] - pos + centre) % g  # [..., n, 2]
    cells = jnp.concatenate(
        [rel[..., 0] * g + rel[..., 1], (coin[..., 0] * g + coin[..., 1])[..., None]], axis=-1
    )
    agent_channels = jnp.where(jnp.eye(n, dtype=bool), 0, 1)  # self 0, others 1
    own = states.colour[..., None] == jnp.arange(n)  # [..., n]
    coin_channel = jnp.where(own, 2, 3)[..., None]
    channels = jnp.concatenate(
        [jnp.broadcast_to(agent_channels, cells.shape[:-1] + (n,)), coin_channel], axis=-1
    )
    return cells, channels


#: Largest number of distinct observations worth enumerating (see :func:`distinct_observations`).
MAX_DISTINCT_OBSERVATIONS = 1024


def distinct_observations(grid_size: int, num_agents: int):
    """Every egocentric observation as its ones: ``(cells [K, n+1], channels [K, n+1])``.

    Ones in the order self (the centre, channel 0), the others (channel 1, in agent order),
    the coin (channel 2 if its own colour, else 3); observation ``k`` is numbered as
    :func:`observation_ids` numbers it. ``None`` when there are more than
    :data:`MAX_DISTINCT_OBSERVATIONS`.
    """
    g2, n = grid_size * grid_size, num_agents
    count = g2 ** (n - 1) * g2 * 2
    if count > MAX_DISTINCT_OBSERVATIONS:
        return None
    centre = (grid_size // 2) * grid_size + grid_size // 2
    combos = np.array(list(itertools.product(*[range(g2)] * n, range(2))), np.int32)
    cells = np.concatenate([np.full((count, 1), centre, np.int32), combos[:, :n]], axis=1)
    channels = np.concatenate(
        [
            np.zeros((count, 1), np.int32),
            np.ones((count, n - 1), np.int32),
            2 + combos[:, n:],
        ],
        axis=1,
    )
    return cells, channels


def observation_ids(cells: jax.Array, channels: jax.Array, grid_size: int) -> jax.Array:
    """Index into :func:`distinct_observations` of the ones from :func:`observation_ones`.

    ``cells``/``channels`` are ``[..., n, n + 1]`` (agent ``i``'s ones: every agent in agent
    order, itself included, then the coin); returns ``[..., n]``.
    """
    g2, n = grid_size * grid_size, cells.shape[-2]
    others_idx = np.array([[j for j in range(n) if j != i] for i in range(n)], np.int32)
    others_cells = jnp.take_along_axis(
        cells[..., :n], jnp.broadcast_to(others_idx, cells.shape[:-1] + (n - 1,)), axis=-1
    )
    ids = jnp.zeros(cells.shape[:-1], jnp.int32)
    for k in range(n - 1):
        ids = ids * g2 + others_cells[..., k]
    ids = ids * g2 + cells[..., n]
    return ids * 2 + (channels[..., n] - 2)


#: Agent colours of :meth:`CoinGame.render` (RGB), then the empty cell's.
COLOURS = ((220, 50, 47), (38, 139, 210), (133, 153, 0), (211, 54, 130), (181, 137, 0))
EMPTY = (238, 232, 213)


class CoinGame(MultiAgentEnv, SparseObservations):
    """The Coin Game as an environment of the protocol (:mod:`contractrl.envs.protocol`).

    Args:
        config: the rules (default: the paper's 7x7 game); or give its fields as keywords.
    """

    def __init__(self, config: CoinGameConfig | None = None, **flags):
        if config is None:
            config = CoinGameConfig(**flags)
        elif flags:
            config = dataclasses.replace(config, **flags)
        config.validate()
        self.config = config
        self.num_agents = config.num_agents
        self.num_actions = config.num_actions
        self.observation_shape = config.obs_shape
        self.max_steps = config.horizon
        self._distinct = distinct_observations(config.grid_size, config.num_agents)

    def __eq__(self, other) -> bool:
        return isinstance(other, CoinGame) and other.config == self.config

    def __hash__(self) -> int:
        return hash(("coin_game", self.config))

    def __repr__(self) -> str:
        return f"CoinGame({self.config})"

    def reset(self, key: jax.Array):
        """``(obs [n, G, G, 4], state)`` of a new episode."""
        return reset(self.config, key)

    def step(self, key: jax.Array, state: CoinState, actions: jax.Array):
        """One step of the protocol; ``info`` adds ``final_state``, ``collected``, ``own_coin``."""
        obs, state, info = step(self.config, state, actions, key)
        extra = {
            "final_obs": info.final_obs,
            "final_state": info.final_state,
            "collected": info.collected,
            "own_coin": info.own_coin,
        }
        return obs, state, info.rewards, info.terminated, info.truncated, extra

    def observation_ones(self, states: CoinState):
        """See :func:`observation_ones`."""
        return observation_ones(self.config, states)

    def distinct_observation_ones(self):
        """See :func:`distinct_observations`."""
        return self._distinct

    def observation_ids(self, cells: jax.Array, channels: jax.Array) -> jax.Array:
        """See :func:`observation_ids`."""
        return observation_ids(cells, channels, self.config.grid_size)

    def render(self, state: CoinState, cell: int = 24) -> np.ndarray:
        """``uint8 [G * cell, G * cell, 3]``: agents as squares, the coin as a dot of its owner."""
        g = self.config.grid_size
        image = np.full((g * cell, g * cell, 3), EMPTY, np.uint8)
        image[::cell, :] = image[:, ::cell] = 200
        for i, (r, c) in enumerate(np.asarray(state.positions)):
            pad = 3 + 2 * i  # several agents on one cell stay visible
            image[r * cell + pad : (r + 1) * cell - pad, c * cell + pad : (c + 1) * cell - pad] = (
                COLOURS[i % len(COLOURS)]
            )
        r, c = np.asarray(state.coin)
        yy, xx = np.mgrid[:cell, :cell]
        disc = (yy - cell / 2) ** 2 + (xx - cell / 2) ** 2 <= (cell / 4) ** 2
        owner = COLOURS[int(np.asarray(state.colour)) % len(COLOURS)]
        image[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell][disc] = owner
        return image
