"""Pure schedules of the iteration: ε linear, learning rate exponential (paper App. D.1)."""

from __future__ import annotations

import jax.numpy as jnp
import optax


def linear_epsilon(start: float, end: float, duration: int):
    """``ε(i)``: linear from ``start`` to ``end`` over ``duration`` iterations, then ``end``."""
    return optax.linear_schedule(start, end, max(1, duration))


def exponential_lr(start: float, end: float, duration: int):
    """Learning rate decaying exponentially from ``start`` to ``end`` over ``duration`` steps."""
    if start <= 0 or end <= 0:
        raise ValueError(f"learning rates must be > 0, got {start} -> {end}")
    rate = end / start
    return lambda step: start * jnp.power(rate, jnp.minimum(step, duration) / max(1, duration))
