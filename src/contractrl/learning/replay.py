"""Replay buffers as pure functions over a pytree of arrays (jittable, vmappable).

Uniform and proportional prioritised replay (Schaul et al. 2016) with the paper's parameters
(SPEC §8: ``α = 0.4``, ``β = 0``, ``ε = 1e-7``): a transition ``i`` is drawn with probability
``p_i^α / Σ_j p_j^α``, new transitions get the largest priority seen so far, and after a
gradient step ``p_i = |δ_i| + ε``. Importance weights are ``(N · P(i))^-β``, normalised by
their maximum. Sampling is an ``O(capacity)`` inverse-CDF search, which at the paper's
capacities costs less than the network update and keeps the code simple and exact.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
    """A ring buffer of transitions.

    Attributes:
        data: pytree of ``[capacity, ...]`` arrays.
        priorities: ``[capacity]`` raw priorities ``p_i`` (0 for empty slots).
        max_priority: largest priority seen (new transitions get it).
        position: next slot to write.
        size: number of filled slots.
    """

    data: Any
    priorities: jax.Array
    max_priority: jax.Array
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        """Number of slots."""
        return self.priorities.shape[0]


def init_buffer(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer whose slots have the shapes and dtypes of ``example`` (one transition)."""
    if capacity < 1:
        raise ValueError(f"replay capacity must be >= 1, got {capacity}")
    data = jax.tree_util.tree_map(
        lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    return ReplayBuffer(
        data=data,
        priorities=jnp.zeros(capacity, jnp.float32),
        max_priority=jnp.ones((), jnp.float32),
        position=jnp.zeros((), jnp.int32),
        size=jnp.zeros((), jnp.int32),
    )


def add_batch(buffer: ReplayBuffer, batch: Any) -> ReplayBuffer:
    """Append ``n`` transitions (leading axis ``n`` on every leaf), overwriting the oldest."""
    n = jax.tree_util.tree_leaves(batch)[0].shape[0]
    idx = (buffer.position + jnp.arange(n)) % buffer.capacity
    data = jax.tree_util.tree_map(lambda d, x: d.at[idx].set(x), buffer.data, batch)
    return buffer.replace(
        data=data,
        priorities=buffer.priorities.at[idx].set(buffer.max_priority),
        position=(buffer.position + n) % buffer.capacity,
        size=jnp.minimum(buffer.size + n, buffer.capacity),
    )


def sample_uniform(buffer: ReplayBuffer, key: jax.Array, batch_size: int):
    """Uniform sample of ``batch_size`` indices among filled slots; weights are ones.

    Returns:
        ``(batch, indices [B], weights [B])``.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    batch = jax.tree_util.tree_map(lambda d: d[idx], buffer.data)
    return batch, idx, jnp.ones(batch_size, jnp.float32)


def sample_prioritized(
    buffer: ReplayBuffer, key: jax.Array, batch_size: int, alpha: float, beta: float
):
    """Proportional prioritised sample: ``P(i) ∝ p_i^α``; weights ``(N P(i))^-β / max``.

    Returns:
        ``(batch, indices [B], weights [B])``.
    """
    scaled = jnp.where(buffer.priorities > 0, buffer.priorities**alpha, 0.0)
    cdf = jnp.cumsum(scaled)
    total = cdf[-1]
    u = jax.random.uniform(key, (batch_size,), jnp.float32) * total
    idx = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, buffer.capacity - 1)
    prob = scaled[idx] / total
    weights = (buffer.size.astype(jnp.float32) * prob) ** (-beta)
    weights = weights / jnp.max(weights)
    batch = jax.tree_util.tree_map(lambda d: d[idx], buffer.data)
    return batch, idx, weights


def update_priorities(
    buffer: ReplayBuffer, indices: jax.Array, td_errors: jax.Array, eps: float
) -> ReplayBuffer:
    """Set ``p_i = |δ_i| + ε`` for the sampled transitions."""
    new = jnp.abs(td_errors).astype(jnp.float32) + eps
    return buffer.replace(
        priorities=buffer.priorities.at[indices].set(new),
        max_priority=jnp.maximum(buffer.max_priority, jnp.max(new)),
    )
