"""Target networks stored as tables over every input, and the automatic nudge's error estimate.

On a finite input space (states, or (time, state) pairs) the target networks of Algorithm 2 are
evaluated once per refresh on *every* input and kept as tables: exact, and far cheaper than two
forward passes per sampled next state. The same refresh measures the agent network's one-step
error over every input, from which the automatic nudge (Proposition 4.1) is derived.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from contractrl.learning.contracts import min_pay_all_targets


@struct.dataclass
class TargetTables:
    """Target networks as tables over all inputs (refreshed every ``target_period``).

    Attributes:
        principal_q: ``[I, A]`` ``q_θ'``.
        agent_value: ``[I, A]`` ``Q̄_φ'(x, a) + P·b'_a`` (0 where not implementable).
        implementable: ``[I, A]``.
        agent_value_star: ``[I]`` ``agent_value`` at ``argmax q_θ'``.
        error: the ``auto_nudge_quantile`` quantile, over every input and action, of the
            agent network's one-step error in expectation under the known model (0 when the
            nudge is fixed).
    """

    principal_q: jax.Array
    agent_value: jax.Array
    implementable: jax.Array
    agent_value_star: jax.Array
    error: jax.Array


def target_values(q_bar, principal_q, outcome_probs, nudge):
    """The agent's value of each recommendation under its min-pay contract.

    Args:
        q_bar: ``[I, A]`` the agent network's truncated Q.
        principal_q: ``[I, A]`` the principal network's contractual Q.
        outcome_probs: ``[I, A, O]``.
        nudge: ``ξ``.

    Returns:
        ``(agent_value [I, A], implementable [I, A], agent_value_star [I])``: ``Q̄(x, a) +
        P[x, a]·b_a`` (0 where ``a`` cannot be implemented) and its value at the principal's
        greedy implementable recommendation.
    """
    _, payment, ok = min_pay_all_targets(q_bar, outcome_probs, nudge)
    value = jnp.where(ok, q_bar + jnp.where(ok, payment, 0.0), 0.0)
    best = jnp.argmax(jnp.where(ok, principal_q, -jnp.inf), axis=1)
    star = jnp.take_along_axis(value, best[:, None], axis=1)[:, 0]
    return value, ok, star


def one_step_errors(
    q_bar, agent_reward, outcome_probs, discount, successors, successor_probs, star
):
    """``[I, A]``: ``|Q̄(x, a) - E[r(x, a) + γ V(x')]|`` for every input and action.

    The expectation runs over outcomes and successors under the known model; ``V = star`` is
    the agent's value of following the next recommendation. This is the one-step error behind
    Proposition 4.1, measured on every input so that rarely visited ones count.

    Args:
        q_bar: ``[I, A]``.
        agent_reward: ``[I, A]`` ``r(x, a)``.
        outcome_probs: ``[I, A, O]``.
        discount: ``γ``.
        successors: ``[I, O, K]`` input index of each possible next input (any valid index
            where its probability is 0).
        successor_probs: ``[I, O, K]``.
        star: ``[I]`` ``V``.
    """
    v_next = jnp.sum(successor_probs * star[successors], axis=-1)  # [I, O]
    expected = agent_reward + discount * jnp.einsum("iao,io->ia", outcome_probs, v_next)
    return jnp.abs(q_bar - expected)


#: How one-step errors add up to the Q error ``E`` over an effective horizon ``H``.
ACCUMULATION = {
    "none": lambda horizon: 1.0,
    "sqrt": lambda horizon: horizon**0.5,
    "linear": lambda horizon: horizon,
}


def auto_nudge(one_step_error, scale: float, accumulation: str, horizon: float):
    """Proposition 4.1's nudge ``ξ = scale · E`` with ``E`` the accumulated one-step error."""
    return scale * (ACCUMULATION[accumulation](horizon) * one_step_error)
