"""A batched, pure-function JAX environment over any game (:class:`~.core.model.PrincipalAgentMDP`).

One step (docs/model.md §1): the agent takes ``action`` in ``state`` under ``contract [O]``; outcome
``o ~ P[s, a]`` is drawn; the agent earns ``r(s, a)`` and the payment ``b(o)``, the principal
``r^p(s, o) - b(o)``; the next state is drawn from ``T(s, o)``. The episode ends when that row is
all zeros or the horizon is reached; the batch then auto-resets to the initial state (the step
still reports the true next state and ``done``).

Everything is ``[N]``-batched and jittable, with the Coin Game's conventions
(:mod:`.coin_game`): ``reset(params, key, num_envs) -> (obs, state)`` and
``step(params, state, action, contract, key) -> (obs, state, info)``; the observation is the
state index ``[N]`` (the time step is ``state.t``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from contractrl.core.model import PrincipalAgentMDP


@struct.dataclass
class TabularParams:
    """A game as JAX arrays.

    Attributes:
        outcome_probs: ``[S, A, O]``.
        agent_reward: ``[S, A]``.
        principal_reward: ``[S, O]``.
        next_state: ``[S, O, K]`` successors of each ``(s, o)`` (padded with 0).
        next_prob: ``[S, O, K]`` their probabilities (0 for padding).
        terminal: ``[S, O]`` the outcome ends the episode.
        initial_state: ``s0``.
        horizon: ``H`` (``-1``: infinite).
        discount: ``γ``.
    """

    outcome_probs: jax.Array
    agent_reward: jax.Array
    principal_reward: jax.Array
    next_state: jax.Array
    next_prob: jax.Array
    terminal: jax.Array
    initial_state: jax.Array
    horizon: jax.Array
    discount: jax.Array

    @property
    def num_states(self) -> int:
        """``S``."""
        return self.outcome_probs.shape[-3]

    @property
    def num_actions(self) -> int:
        """``A``."""
        return self.outcome_probs.shape[-2]

    @property
    def num_outcomes(self) -> int:
        """``O``."""
        return self.outcome_probs.shape[-1]


@struct.dataclass
class TabularState:
    """Batched environment state: ``state [N]`` and time step ``t [N]`` (int32)."""

    state: jax.Array
    t: jax.Array


@struct.dataclass
class TabularStep:
    """What one batched step reports (all ``[N]``).

    Attributes:
        state: the state acted in.
        action: the agent's action.
        outcome: the drawn outcome.
        next_state: the true next state (before any auto-reset; arbitrary when ``terminal``).
        agent_reward: ``r(s, a)``, without the payment.
        principal_reward: ``r^p(s, o)``, without the payment.
        payment: ``b(o)``.
        terminal: the episode ended by the dynamics (bootstrap zero).
        done: terminal or the horizon reached (the env reset).
    """

    state: jax.Array
    action: jax.Array
    outcome: jax.Array
    next_state: jax.Array
    agent_reward: jax.Array
    principal_reward: jax.Array
    payment: jax.Array
    terminal: jax.Array
    done: jax.Array


def tabular_params(game: PrincipalAgentMDP, dtype=jnp.float32) -> TabularParams:
    """Convert a game to :class:`TabularParams` (successor lists padded to the max degree)."""
    num_s, num_o = game.num_states, game.num_outcomes
    csr = game.transitions
    counts = np.diff(csr.indptr)
    width = max(1, int(counts.max(initial=0)))
    rows = np.repeat(np.arange(num_s * num_o), counts)
    slot = np.arange(csr.nnz) - np.repeat(csr.indptr[:-1], counts)
    nxt = np.zeros((num_s * num_o, width), np.int32)
    prob = np.zeros((num_s * num_o, width), np.float64)
    nxt[rows, slot] = csr.indices
    prob[rows, slot] = csr.data
    return TabularParams(
        outcome_probs=jnp.asarray(game.outcome_probs, dtype),
        agent_reward=jnp.asarray(game.agent_reward, dtype),
        principal_reward=jnp.asarray(game.principal_reward, dtype),
        next_state=jnp.asarray(nxt.reshape(num_s, num_o, width)),
        next_prob=jnp.asarray(prob.reshape(num_s, num_o, width), dtype),
        terminal=jnp.asarray((counts == 0).reshape(num_s, num_o)),
        initial_state=jnp.asarray(game.initial_state, jnp.int32),
        horizon=jnp.asarray(-1 if game.horizon is None else game.horizon, jnp.int32),
        discount=jnp.asarray(game.discount, dtype),
    )


def reset(params: TabularParams, key: jax.Array, num_envs: int):
    """``num_envs`` environments at the initial state, ``t = 0`` (``key`` unused: s0 is fixed).

    Returns:
        ``(obs [N], state)``.
    """
    del key
    state = TabularState(
        state=jnp.full((num_envs,), params.initial_state, jnp.int32),
        t=jnp.zeros((num_envs,), jnp.int32),
    )
    return state.state, state


def step(
    params: TabularParams,
    env_state: TabularState,
    action: jax.Array,
    contract: jax.Array,
    key: jax.Array,
) -> tuple[jax.Array, TabularState, TabularStep]:
    """One step of ``N`` environments.

    Args:
        params: the game.
        env_state: ``[N]`` states and time steps.
        action: ``[N]`` agent actions.
        contract: ``[N, O]`` payments offered.
        key: PRNG key.

    Returns:
        ``(obs [N], next env state (auto-reset where done), step report)``.
    """
    key_o, key_s = jax.random.split(key)
    s = env_state.state
    probs = params.outcome_probs[s, action]  # [N, O]
    outcome = jax.random.categorical(key_o, jnp.log(probs), axis=-1)
    succ_p = params.next_prob[s, outcome]  # [N, K]
    terminal = params.terminal[s, outcome]
    choice = jax.random.categorical(
        key_s, jnp.where(succ_p > 0, jnp.log(jnp.where(succ_p > 0, succ_p, 1.0)), -jnp.inf)
    )
    nxt = jnp.take_along_axis(params.next_state[s, outcome], choice[:, None], axis=1)[:, 0]
    nxt = jnp.where(terminal, s, nxt).astype(jnp.int32)
    t_next = env_state.t + 1
    done = terminal | ((params.horizon > 0) & (t_next >= params.horizon))
    payment = jnp.take_along_axis(contract, outcome[:, None], axis=1)[:, 0]
    report = TabularStep(
        state=s,
        action=action,
        outcome=outcome.astype(jnp.int32),
        next_state=nxt,
        agent_reward=params.agent_reward[s, action],
        principal_reward=params.principal_reward[s, outcome],
        payment=payment,
        terminal=terminal,
        done=done,
    )
    new_state = TabularState(
        state=jnp.where(done, params.initial_state, nxt).astype(jnp.int32),
        t=jnp.where(done, 0, t_next).astype(jnp.int32),
    )
    return new_state.state, new_state, report
