"""Evaluation of Coin Game policies over batches of episodes: the metrics of SPEC §8.

A *policy* maps states ``[E]`` to ``(actions [E, n], recommendations [E, n], payments [E, n])``
for greedy agents. :func:`rollout` plays ``E`` episodes in parallel and totals, per episode and
agent, the environment rewards, the payments and the followed recommendations. The metrics:

(a) welfare — ``Σ_i Σ_t r_i`` per episode (payments are transfers and do not count);
(c) payment share — payments / welfare; payment ratio — payments over what agents would be paid
    for maximising welfare, ``Σ_i Σ_{j≠i} r_j`` of the cooperative baseline;
(d) follow rate — share of recommendations followed;
(e) SPE ratio — an agent's utility (rewards + payments) playing its own policy while the others
    follow, over its utility when following too;
(f) IC ratio — the same with the others playing their own policies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from contractrl.envs import coin_game
from contractrl.envs.coin_game import CoinGameConfig

#: ``policy(states, actions=None) -> (actions, recommendations, payments)``; given ``actions``,
#: it returns the payments for those actions instead of its own.
Policy = Callable[..., tuple[jax.Array, jax.Array, jax.Array]]


@struct.dataclass
class EpisodeTotals:
    """Per-episode totals ``[E, n]``: environment rewards, payments, followed steps."""

    rewards: jax.Array
    payments: jax.Array
    follows: jax.Array


def rollout(
    game: CoinGameConfig, policy: Policy, key: jax.Array, episodes: int, transfers=None
) -> EpisodeTotals:
    """Play ``episodes`` full episodes in parallel with ``policy`` (jit the caller).

    ``transfers(rewards [E, n]) -> [E, n]``, if given, adds reward-sharing transfers (the
    constant-proportion baseline's) to the payments.
    """
    k_reset, k_steps = jax.random.split(key)
    _, states = coin_game.reset_batch(game, jax.random.split(k_reset, episodes))
    zeros = jnp.zeros((episodes, game.num_agents), jnp.float32)

    def body(carry, key):
        states, totals = carry
        actions, recs, payments = policy(states)
        _, states, info = coin_game.step_batch(
            game, states, actions, jax.random.split(key, episodes)
        )
        if transfers is not None:
            payments = payments + transfers(info.rewards)
        totals = EpisodeTotals(
            totals.rewards + info.rewards,
            totals.payments + payments,
            totals.follows + (actions == recs).astype(jnp.float32),
        )
        return (states, totals), None

    (_, totals), _ = jax.lax.scan(
        body, (states, EpisodeTotals(zeros, zeros, zeros)), jax.random.split(k_steps, game.horizon)
    )
    return totals


def mix(own: Policy, play_own: np.ndarray) -> Policy:
    """Agent ``i`` plays ``own``'s action where ``play_own[i]``, else its recommendation.

    Payments are those ``own`` makes for the actions taken.
    """
    mask = jnp.asarray(play_own) > 0

    def policy(states, actions=None):
        own_actions, recs, _ = own(states)
        chosen = jnp.where(mask, own_actions, recs) if actions is None else actions
        _, _, paid = own(states, chosen)
        return chosen, recs, paid

    return policy


@dataclass(frozen=True)
class CoinMetrics:
    """Means over evaluation episodes (see the module docstring)."""

    welfare: float
    payments: float
    payment_share: float
    follow_rate: float
    agent_utility: tuple[float, ...]


def summarise(totals: EpisodeTotals, game: CoinGameConfig) -> CoinMetrics:
    """Metrics (a), (c: share), (d) of a rollout."""
    rewards = np.asarray(totals.rewards)
    payments = np.asarray(totals.payments)
    welfare = float(rewards.sum(axis=1).mean())
    paid = float(payments.sum(axis=1).mean())
    follow = float(np.asarray(totals.follows).mean() / game.horizon)
    utility = tuple(float(x) for x in (rewards + payments).mean(axis=0))
    share = paid / welfare if welfare > 0 else float("nan")
    return CoinMetrics(welfare, paid, share, follow, utility)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` (``nan`` when the denominator is not positive)."""
    return numerator / denominator if denominator > 0 else float("nan")
