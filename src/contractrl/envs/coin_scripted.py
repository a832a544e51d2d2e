"""Scripted Coin Game policies: does a rule set pose a social dilemma at all?

Two hand-written team behaviours bracket what learners can reach:

* ``chase`` — every agent walks to the coin by a shortest path, whatever its colour (what
  selfish agents converge to under the paper's +1/+0.2 rewards: grabbing is never worse);
* ``owner_only`` — the coin's owner walks to it; the others walk anywhere but onto it (every
  coin pays its owner the full +1: the cooperative convention).

:func:`scripted_welfare` plays one of them and returns the mean welfare per episode. When
``chase`` earns at least as much welfare as ``owner_only``, the rules pose no dilemma: e.g. on
the 3x3 grid with ``tie_rule="all_collect"``, agents that chase every coin end on the same
cell and then collect each coin together (+1.2 per coin), more than owner-only play.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from contractrl.envs import coin_game
from contractrl.envs.coin_game import MOVES, CoinGameConfig, CoinState

POLICIES = ("chase", "owner_only")


@dataclasses.dataclass(frozen=True)
class ScriptedWelfare:
    """Welfare (sum of the agents' rewards per episode) of a scripted policy.

    Attributes:
        policy: ``chase`` or ``owner_only``.
        mean: mean welfare per episode.
        standard_error: its standard error over the episodes.
        episodes: episodes played.
    """

    policy: str
    mean: float
    standard_error: float
    episodes: int


def shortest_move(position: jax.Array, target: jax.Array, grid_size: int) -> jax.Array:
    """The move (index into :data:`MOVES`) that shortens the torus distance to ``target``.

    Rows first, then columns; when already there, "right" (no "stay" in the 4-move game).
    """
    d = (target - position) % grid_size
    delta = jnp.where(d > grid_size // 2, d - grid_size, d)  # signed, shortest way round
    return jnp.where(
        delta[0] < 0, 0, jnp.where(delta[0] > 0, 1, jnp.where(delta[1] < 0, 2, 3))
    ).astype(jnp.int32)


def scripted_actions(config: CoinGameConfig, state: CoinState, policy: str) -> jax.Array:
    """``[n]`` actions of a scripted policy at ``state``."""
    g, n = config.grid_size, config.num_agents
    moves = jnp.asarray(MOVES[:4], jnp.int32)
    chase = jax.vmap(lambda p: shortest_move(p, state.coin, g))(state.positions)
    if policy == "chase":
        return chase
    # owner_only: a non-owner whose chase move lands on the coin takes the first move that
    # does not (with four moves one always exists)
    lands = jnp.all((state.positions + moves[chase]) % g == state.coin, axis=-1)  # [n]
    candidates = (state.positions[:, None, :] + moves[None]) % g  # [n, 4, 2]
    safe = jnp.argmax(~jnp.all(candidates == state.coin, axis=-1), axis=-1)
    owner = jnp.arange(n) == state.colour
    return jnp.where(owner | ~lands, chase, safe).astype(jnp.int32)


def scripted_welfare(
    config: CoinGameConfig, policy: str, episodes: int = 1000, seed: int = 0
) -> ScriptedWelfare:
    """Mean welfare per episode of ``policy`` under the rules ``config``.

    Raises:
        ValueError: an unknown policy or a non-positive number of episodes.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy: must be one of {POLICIES}, got {policy!r}")
    if not isinstance(episodes, int) or episodes < 2:
        raise ValueError(f"episodes: must be an integer >= 2, got {episodes!r}")
    config.validate()

    def episode(key):
        k_reset, k_steps = jax.random.split(key)
        _, state = coin_game.reset(config, k_reset)

        def body(st, k):
            _, st, info = coin_game.step(config, st, scripted_actions(config, st, policy), k)
            return st, jnp.sum(info.rewards)

        _, rewards = jax.lax.scan(body, state, jax.random.split(k_steps, config.horizon))
        return jnp.sum(rewards)

    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    welfare = np.asarray(jax.jit(jax.vmap(episode))(keys), np.float64)
    return ScriptedWelfare(
        policy, float(welfare.mean()), float(welfare.std(ddof=1) / np.sqrt(episodes)), episodes
    )
