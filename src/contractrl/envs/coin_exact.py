"""The Coin Game (:mod:`.coin_game`) as an exact tabular Markov game (``core.markov_game``).

Every state of the game is enumerated — each agent's cell, the coin's cell, its colour
(``G**(2n) · G² · n`` states: 1,458 on 3×3 with two agents, unreachable ones included) — and the
rules of :func:`.coin_game.step` and :func:`.coin_game.reset` are applied to it in NumPy:
moves :data:`.coin_game.MOVES` on the torus; the coin is collected by one agent on it chosen
uniformly (``random_one``; rewards are then expected over that draw) or by every agent on it
(``all_collect``); a collected coin gives way to a new one, uniform over the cells the rule
allows, of the next colour (``alternate``) or a uniform one (``random``). Episodes start from
:func:`.coin_game.reset`'s distribution and last ``horizon`` steps (the env's time limit; the
time ``t`` is the solver's step index, not part of the state). ``tests/envs/test_coin_exact.py``
checks the tables against rollouts of the JAX environment (docs/exact-multiagent.md).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from contractrl.core.markov_game import MarkovGame
from contractrl.envs.coin_game import MOVES, CoinGameConfig, CoinState, observe
from contractrl.envs.protocol import ExactExport

#: Largest number of states :func:`export_coin_game` builds (the solver is dense in ``J``).
MAX_STATES = 200_000


@dataclass(frozen=True, eq=False)
class CoinTables:
    """An exported Coin Game: the tabular game and the meaning of its state indices.

    Attributes:
        config: the rules.
        game: the Markov game (``S = G**(2n) · G² · n`` states, ``J = A**n``).
        positions: ``[S, n, 2]`` each agent's (row, column) in state ``s``.
        coin: ``[S, 2]`` the coin's (row, column).
        colour: ``[S]`` the coin's owner.
    """

    config: CoinGameConfig
    game: MarkovGame
    positions: np.ndarray
    coin: np.ndarray
    colour: np.ndarray

    def index(self, positions, coin, colour) -> np.ndarray:
        """State indices of ``positions [..., n, 2]``, ``coin [..., 2]``, ``colour [...]``."""
        return state_index(self.config, positions, coin, colour)


def num_exported_states(config: CoinGameConfig) -> int:
    """``G**(2n) · G² · n``: the states :func:`export_coin_game` enumerates (before building)."""
    g2 = config.grid_size**2
    return g2**config.num_agents * g2 * config.num_agents


def state_index(config: CoinGameConfig, positions, coin, colour) -> np.ndarray:
    """The exported state index (agents' cells, then the coin's, then the colour)."""
    g = config.grid_size
    cells = np.asarray(positions)[..., 0] * g + np.asarray(positions)[..., 1]  # [..., n]
    idx = np.zeros(cells.shape[:-1], np.int64)
    for i in range(config.num_agents):
        idx = idx * g * g + cells[..., i]
    coin = np.asarray(coin)
    idx = idx * g * g + coin[..., 0] * g + coin[..., 1]
    return idx * config.num_agents + np.asarray(colour)


def _spawn_probs(config: CoinGameConfig, cells: np.ndarray) -> np.ndarray:
    """``[S, G²]`` the new coin's cell distribution given agents' cells ``[S, n]``."""
    g2 = config.grid_size**2
    if config.spawn_rule == "anywhere":
        return np.full((cells.shape[0], g2), 1.0 / g2)
    free = np.ones((cells.shape[0], g2), bool)
    free[np.arange(cells.shape[0])[:, None], cells] = False
    return free / free.sum(axis=1, keepdims=True)


def _rewards(config: CoinGameConfig, on_coin: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """``[S, n]`` expected rewards given who is on the coin ``[S, n]`` and its owner ``[S]``."""
    n = config.num_agents
    own = np.arange(n)[None] == colour[:, None]  # [S, n]
    gains = np.where(own, config.own_reward, config.other_reward)
    if config.tie_rule == "random_one":
        k = np.maximum(on_coin.sum(axis=1, keepdims=True), 1)
        collect = on_coin / k  # probability that agent i collects
    else:
        collect = on_coin.astype(float)
    thefts = (collect * ~own).sum(axis=1, keepdims=True)  # expected non-owner collections
    return collect * gains + own * config.owner_penalty * thefts


def _initial(config: CoinGameConfig, num_states: int) -> np.ndarray:
    g, n = config.grid_size, config.num_agents
    g2 = g * g
    initial = np.zeros(num_states)
    if config.distinct_starts:
        starts = list(itertools.permutations(range(g2), n))
    else:
        starts = list(itertools.product(range(g2), repeat=n))
    cells = np.asarray(starts)
    spawn = _spawn_probs(config, cells)  # [P, G²]
    for k in range(n):
        pos = np.stack([cells // g, cells % g], -1)
        coins = np.arange(g2)
        idx = state_index(
            config,
            np.broadcast_to(pos[:, None], (len(starts), g2, n, 2)),
            np.stack([coins // g, coins % g], -1)[None],
            np.full((len(starts), g2), k),
        )
        np.add.at(initial, idx.ravel(), (spawn / (len(starts) * n)).ravel())
    return initial


def export_coin_game(
    config: CoinGameConfig | None = None, discount: float = 0.99, horizon: int | None = -1
) -> CoinTables:
    """The Coin Game of ``config`` as a tabular Markov game.

    Args:
        config: the rules (default: the paper's 3×3 game, ``PRESETS["paper-3x3"]``).
        discount: ``γ`` (paper: 0.99).
        horizon: steps per episode; default (``-1``) the config's; ``None``: infinite (the
            learners' view of the time limit, which they bootstrap through).

    Returns:
        :class:`CoinTables`; ``rewards [S, J, n]`` are expected over the tie draw.

    Raises:
        ValueError: the config is invalid, or the game has more than :data:`MAX_STATES` states.
    """
    config = CoinGameConfig(grid_size=3, horizon=20) if config is None else config
    config.validate()
    g, n, num_actions = config.grid_size, config.num_agents, config.num_actions
    g2 = g * g
    num_states = num_exported_states(config)
    if num_states > MAX_STATES:
        raise ValueError(
            f"grid_size: {num_states} states for {n} agents on {g}x{g}, more than {MAX_STATES}"
        )
    grid = np.indices((g2,) * (n + 1) + (n,)).reshape(n + 2, -1).T  # [S, n cells, coin, colour]
    cells, coin_cell, colour = grid[:, :n], grid[:, n], grid[:, n + 1]
    moves = np.asarray(MOVES[:num_actions])
    num_joint = num_actions**n
    rewards = np.zeros((num_states, num_joint, n))
    rows, cols, vals = [], [], []
    states = np.arange(num_states)
    colour_probs = (
        np.eye(n)[(colour + 1) % n] if config.colour_rule == "alternate" else np.full((1, n), 1 / n)
    )
    for j, joint in enumerate(itertools.product(range(num_actions), repeat=n)):
        rc = np.stack([cells // g, cells % g], -1) + moves[list(joint)][None]  # [S, n, 2]
        rc %= g
        new_cells = rc[..., 0] * g + rc[..., 1]
        on_coin = new_cells == coin_cell[:, None]
        taken = on_coin.any(axis=1)
        rewards[:, j] = _rewards(config, on_coin, colour)
        row = states * num_joint + j
        # not taken: the coin and its colour stay
        stay = ~taken
        rows.append(row[stay])
        cols.append(state_index(config, rc[stay], _rc(coin_cell[stay], g), colour[stay]))
        vals.append(np.ones(int(stay.sum())))
        # taken: a new coin of the next colour
        spawn = _spawn_probs(config, new_cells[taken])  # [S', G²]
        colours = np.broadcast_to(colour_probs, (num_states, n))[taken]  # [S', n]
        probs = spawn[:, :, None] * colours[:, None, :]  # [S', G², n]
        t_idx, c_idx, k_idx = np.nonzero(probs)
        rows.append(row[taken][t_idx])
        cols.append(state_index(config, rc[taken][t_idx], _rc(c_idx, g), k_idx))
        vals.append(probs[t_idx, c_idx, k_idx])
    transitions = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(num_states * num_joint, num_states),
    )
    game = MarkovGame(
        rewards=rewards,
        transitions=transitions,
        initial=_initial(config, num_states),
        num_agents=n,
        num_actions=num_actions,
        discount=discount,
        horizon=config.horizon if horizon == -1 else horizon,
        name=f"coin-{g}x{g}",
    )
    return CoinTables(
        config, game, np.stack([cells // g, cells % g], -1), _rc(coin_cell, g), colour
    )


def coin_exact_export(config: CoinGameConfig, discount: float = 0.99) -> ExactExport:
    """The game as an :class:`~.protocol.ExactExport` (:mod:`.exact`).

    The exported tables, with every state as a :class:`~.coin_game.CoinState` batch and its
    observations.

    Raises ``ValueError`` when the grid has too many states (3×3 with two agents: 1,458).
    """
    import jax
    import jax.numpy as jnp

    tables = export_coin_game(config, discount)
    states = CoinState(
        positions=jnp.asarray(tables.positions, jnp.int32),
        coin=jnp.asarray(tables.coin, jnp.int32),
        colour=jnp.asarray(tables.colour, jnp.int32),
        t=jnp.zeros(tables.game.num_states, jnp.int32),
    )
    obs = jax.vmap(lambda s: observe(config, s))(states)
    return ExactExport(tables.game, obs, states)


def _rc(cell: np.ndarray, g: int) -> np.ndarray:
    return np.stack([cell // g, cell % g], -1)
