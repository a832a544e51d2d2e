"""Evaluation of multi-agent policies over batches of episodes: the metrics of paper Section 5.2.

A *policy* maps the encoder's views ``[E]`` (:mod:`.torso`) to ``(actions [E, n],
recommendations [E, n], payments [E, n])`` for greedy agents. :func:`rollout` plays ``E``
episodes of a protocol environment in parallel, each until it ends (terminated or truncated;
the environment's ``max_steps`` bounds them), and totals, per episode and agent, the
environment rewards, the payments, the followed recommendations, the steps played and the
environment's ``measures`` (:mod:`contractrl.envs.protocol`); steps after an episode's end (the
environment has reset itself) count for nothing. The metrics:

(a) welfare — ``Σ_i Σ_t r_i`` per episode (payments are transfers and do not count);
(c) payment share — payments / welfare; payment ratio — payments over what agents would be paid
    for maximising welfare, ``Σ_i Σ_{j≠i} r_j`` of the cooperative baseline;
(d) follow rate — share of recommendations followed (over the steps played);
(e) SPE ratio — an agent's utility (rewards + payments) playing its own policy while the others
    follow, over its utility when following too;
(f) IC ratio — the same with the others playing their own policies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

#: ``policy(states, actions=None) -> (actions, recommendations, payments)``; given ``actions``,
#: it returns the payments for those actions instead of its own.
Policy = Callable[..., tuple[jax.Array, jax.Array, jax.Array]]


@struct.dataclass
class EpisodeTotals:
    """Per-episode totals: rewards, payments, followed steps ``[E, n]``; steps played ``[E]``.

    ``measures``: the environment's measures, ``{name: [E, n]}`` (empty if it has none).
    """

    rewards: jax.Array
    payments: jax.Array
    follows: jax.Array
    steps: jax.Array
    measures: dict = struct.field(default_factory=dict)


def rollout(
    env, encoder, policy: Policy, key: jax.Array, episodes: int, transfers=None
) -> EpisodeTotals:
    """Play ``episodes`` whole episodes of ``env`` in parallel with ``policy`` (jit the caller).

    Every episode runs until its first ``terminated`` or ``truncated`` (at most
    ``env.max_steps`` steps); the last step's rewards and payments count, nothing after it.
    ``encoder`` makes the policy's views (:mod:`.torso`). ``transfers(rewards [E, n]) ->
    [E, n]``, if given, adds reward-sharing transfers (the constant-proportion baseline's) to
    the payments.
    """
    k_reset, k_steps = jax.random.split(key)
    obs, states = jax.vmap(env.reset)(jax.random.split(k_reset, episodes))
    zeros = jnp.zeros((episodes, env.num_agents), jnp.float32)
    step = jax.vmap(env.step)

    def body(carry, key):
        states, kept, totals, alive = carry
        actions, recs, payments = policy(encoder.view(kept, states))
        obs, states, rewards, terminated, truncated, info = step(
            jax.random.split(key, episodes), states, actions
        )
        if transfers is not None:
            payments = payments + transfers(rewards)
        live = alive[:, None]
        totals = EpisodeTotals(
            totals.rewards + rewards * live,
            totals.payments + payments * live,
            totals.follows + (actions == recs).astype(jnp.float32) * live,
            totals.steps + alive,
            {
                name: total + info["measures"][name] * live
                for name, total in totals.measures.items()
            },
        )
        alive = alive * (1.0 - (terminated | truncated).astype(jnp.float32))
        return (states, encoder.keep(obs), totals, alive), None

    measures = {name: zeros for name in getattr(env, "measures", ()) or ()}
    start = EpisodeTotals(zeros, zeros, zeros, jnp.zeros(episodes, jnp.float32), measures)
    carry = (states, encoder.keep(obs), start, jnp.ones(episodes, jnp.float32))
    (_, _, totals, _), _ = jax.lax.scan(body, carry, jax.random.split(k_steps, env.max_steps))
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
class TeamMetrics:
    """Means over evaluation episodes (see the module docstring); ``episode_length`` in steps.

    ``measures``: per measure, each agent's mean total per episode.
    """

    welfare: float
    payments: float
    payment_share: float
    follow_rate: float
    agent_utility: tuple[float, ...]
    episode_length: float = float("nan")
    measures: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)


def summarise(totals: EpisodeTotals) -> TeamMetrics:
    """Metrics (a), (c: share), (d) of a rollout.

    The follow rate is followed steps over steps played (every agent plays every step of its
    episode): ``mean(follows) / mean(steps)``.
    """
    rewards = np.asarray(totals.rewards)
    payments = np.asarray(totals.payments)
    welfare = float(rewards.sum(axis=1).mean())
    paid = float(payments.sum(axis=1).mean())
    steps = np.asarray(totals.steps)
    follow = float(np.asarray(totals.follows).mean() / steps.mean())
    utility = tuple(float(x) for x in (rewards + payments).mean(axis=0))
    share = paid / welfare if welfare > 0 else float("nan")
    measures = {
        name: tuple(float(x) for x in np.asarray(v).mean(axis=0))
        for name, v in totals.measures.items()
    }
    return TeamMetrics(welfare, paid, share, follow, utility, float(steps.mean()), measures)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` (``nan`` when the denominator is not positive)."""
    return numerator / denominator if denominator > 0 else float("nan")
