"""Self-interested DQN agents in the Coin Game: the validation phase and the baselines (SPEC §7–8).

One learner, four reward modes, the same network and budget:

* ``validation`` — fresh black-box selfish agents under the frozen principal: each observes its
  recommendation, ``Q_ψ((s_i, a^p_i), a)``, and earns ``r_i + b_i·1[a_i = a^p_i]`` (paid only
  when following; ``b_i`` from the principal's frozen agent model, plus the nudge). The
  principal never sees ``ψ``.
* ``selfish`` — ``r_i`` (no contracts);
* ``cooperative`` — ``Σ_j r_j`` (each agent maximises welfare);
* ``constant`` — constant-proportion sharing (``p = 0`` is selfish, ``p = 1`` cooperative),
  one of two schemes (SPEC §8) **[choice]**: ``redistribute`` (default) — agent ``i`` receives
  ``(1 - p)·r_i + p·W/n`` with ``W = Σ_j r_j`` (the agents share a fixed percentage of welfare;
  nothing is paid from outside) — or ``top_up`` — ``r_i + p·Σ_{j≠i} r_j`` paid by the principal.

The *transfers* of a step (what the budget matching compares with the principal's payments,
per agent ``[n]``): the contract paid (``validation``); ``max(0, p·Σ_{j≠i} r_j)`` (``top_up``);
``max(0, p·(W/n - r_i))`` — what agent ``i`` receives net — (``redistribute``); 0 otherwise.
``top_up`` counts only positive transfers: with negative rewards (the classic game's penalty)
``p·Σ_{j≠i} r_j`` can be a tax, which is not an amount paid.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from contractrl.envs import coin_game
from contractrl.envs.coin_game import CoinGameConfig, CoinState
from contractrl.learning import replay
from contractrl.multiagent.algorithm3 import follower_contracts
from contractrl.multiagent.common import CoinBase, CoinDQNConfig, CoinTransition, epsilon_greedy
from contractrl.multiagent.networks import init_conv_q

MODES = ("validation", "selfish", "cooperative", "constant")
CONSTANT_SCHEMES = ("redistribute", "top_up")


@struct.dataclass
class AgentsState:
    """One run of independent agents (shared parameters ``ψ``)."""

    params: Any
    target: Any
    opt_state: Any
    buffer: replay.ReplayBuffer
    env: CoinState
    key: jax.Array
    share: jax.Array
    nudge: jax.Array


@struct.dataclass
class AgentStats:
    """Per-iteration statistics: environment rewards, payments, follows, episode ends, loss."""

    rewards: jax.Array
    payments: jax.Array
    follow: jax.Array
    done: jax.Array
    loss: jax.Array


class AgentsLearner(CoinBase):
    """Selfish DQN agents with shaped rewards.

    The constant share ``p`` and the validation nudge live in the state (:meth:`init`), so
    one compiled learner serves every value.

    Args:
        game: the Coin Game rules.
        config: hyper-parameters.
        mode: one of :data:`MODES`.
        scheme: the ``constant`` mode's scheme, one of :data:`CONSTANT_SCHEMES`.
    """

    def __init__(
        self, game: CoinGameConfig, config: CoinDQNConfig, mode: str, scheme: str = "redistribute"
    ):
        super().__init__(game, config)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if scheme not in CONSTANT_SCHEMES:
            raise ValueError(f"scheme must be one of {CONSTANT_SCHEMES}, got {scheme!r}")
        self.mode = mode
        self.scheme = scheme
        self._learn_jit = jax.jit(self._train_chunk, static_argnums=(3,))

    @property
    def sees_recommendation(self) -> bool:
        """Whether the agents observe the principal's recommendation."""
        return self.mode == "validation"

    def init(self, key: jax.Array, share: float = 0.0, nudge: float | None = None) -> AgentsState:
        """Fresh agents.

        ``share`` is ``p`` of the ``constant`` mode, ``nudge`` the extra payment per follow in
        ``validation`` mode (default: the config's).
        """
        g, cfg = self.game, self.config
        k_params, k_env, key = jax.random.split(key, 3)
        extra = g.num_actions if self.sees_recommendation else 0
        params = init_conv_q(
            k_params,
            g.grid_size,
            4,
            extra,
            g.num_actions,
            self.padding,
            cfg.conv_channels,
            cfg.hidden,
        )
        _, env = coin_game.reset(g, k_env)
        return AgentsState(
            params=params,
            target=params,
            opt_state=self.optimizer.init(params),
            buffer=replay.init_buffer(
                self.example_transition(), cfg.replay_capacity, cfg.priority_alpha
            ),
            env=env,
            key=key,
            share=jnp.asarray(share, jnp.float32),
            nudge=jnp.asarray(self.config.nudge if nudge is None else nudge, jnp.float32),
        )

    # ------------------------------------------------------------------ the principal's side
    def recommendations(self, principal, states: CoinState) -> jax.Array:
        """The frozen principal's greedy recommendations ``[..., n]`` (zeros without one)."""
        if not self.sees_recommendation:
            return jnp.zeros(states.positions.shape[:-1], jnp.int32)
        return jnp.argmax(self.q_values(principal["principal"], states), axis=-1)

    def payments(self, principal, states: CoinState, recs, actions, nudge) -> jax.Array:
        """``[..., n]`` contracts paid to followers (0 for the others, and without principal)."""
        if not self.sees_recommendation:
            return jnp.zeros(recs.shape, jnp.float32)
        ones = jnp.ones((*recs.shape, self.n - 1), jnp.float32)
        b = follower_contracts(self.q_values(principal["agent"], states, ones), recs, nudge)
        return b * (actions == recs)

    def shaped(self, rewards, payments, share) -> jax.Array:
        """The reward each agent learns from, ``[..., n]``."""
        total = jnp.sum(rewards, axis=-1, keepdims=True)
        if self.mode == "cooperative":
            return jnp.broadcast_to(total, rewards.shape)
        if self.mode == "constant":
            if self.scheme == "top_up":
                return rewards + share * (total - rewards)
            return (1.0 - share) * rewards + share * total / self.n
        return rewards + payments

    def transfers(self, rewards, payments, share) -> jax.Array:
        """What each agent receives beyond its own reward in a step, ``[..., n]``.

        See the module docstring: the budget the principal's payments are matched against.
        """
        if self.mode == "validation":
            return payments
        if self.mode != "constant":
            return jnp.zeros_like(rewards)
        total = jnp.sum(rewards, axis=-1, keepdims=True)
        if self.scheme == "top_up":  # a tax, not a transfer, where the others' rewards are < 0
            return jnp.maximum(share * (total - rewards), 0.0)
        return jnp.maximum(share * (total / self.n - rewards), 0.0)

    def extra(self, recs) -> jax.Array | None:
        """The agents' extra input: the one-hot recommendation (validation) or nothing."""
        if not self.sees_recommendation:
            return None
        return jax.nn.one_hot(recs, self.game.num_actions)

    def greedy_actions(self, params, principal, states: CoinState):
        """``(actions, recs)`` of the greedy agents at ``states``."""
        recs = self.recommendations(principal, states)
        q = self.q_values(params, states, self.extra(recs))
        return jnp.argmax(q, axis=-1), recs

    def policy(self, state: AgentsState, principal):
        """The greedy agents as an evaluation policy (see :mod:`.evaluation`)."""

        def act(states, actions=None):
            greedy, recs = self.greedy_actions(state.params, principal, states)
            chosen = greedy if actions is None else actions
            return chosen, recs, self.payments(principal, states, recs, chosen, state.nudge)

        return act

    # ------------------------------------------------------------------ training
    def _iteration(self, state: AgentsState, principal, i):
        key, k_act, k_env, k_sample = jax.random.split(state.key, 4)
        recs = self.recommendations(principal, state.env)
        q = self.q_values(state.params, state.env, self.extra(recs))
        actions = epsilon_greedy(k_act, q, self.epsilon(i))
        paid = self.payments(principal, state.env, recs, actions, state.nudge)
        _, env, info = coin_game.step(self.game, state.env, actions, k_env)
        follow = (actions == recs).astype(jnp.float32)
        transition = CoinTransition(
            state=state.env,
            next_state=info.final_state,
            actions=actions,
            recs=recs,
            follow=follow,
            # what the step paid, unshaped: the share p may change between evaluations (budget
            # calibration), so the loss shapes stored rewards with the current p
            rewards=info.rewards + paid,
            terminal=self.terminal(info),
        )
        buffer = self.store(state.buffer, transition)
        params, opt_state, target, buffer, loss = self.learn(
            i,
            state.params,
            state.opt_state,
            state.target,
            buffer,
            k_sample,
            lambda p, batch, w: self._loss(p, state.target, principal, batch, w, state.share),
        )
        state = state.replace(
            env=env, key=key, params=params, target=target, opt_state=opt_state, buffer=buffer
        )
        transfers = self.transfers(info.rewards, paid, state.share)
        return state, AgentStats(info.rewards, transfers, follow, info.done, loss)

    def _loss(self, params, target, principal, batch: CoinTransition, weights, share):
        """TD loss of the agents' shared network on ``batch`` (rewards shaped with ``share``)."""
        cfg = self.config
        rewards = self.shaped(batch.rewards, 0.0, share)  # stored: r_i + contract paid
        q = self.q_values(params, batch.state, self.extra(batch.recs))
        q_taken = jnp.take_along_axis(q, batch.actions[..., None], axis=-1)[..., 0]
        next_recs = self.recommendations(principal, batch.next_state)
        next_q = self.q_values(target, batch.next_state, self.extra(next_recs)).max(axis=-1)
        y = rewards + cfg.gamma * (1.0 - batch.terminal)[:, None] * next_q
        delta = q_taken - jax.lax.stop_gradient(y)
        loss = self.td_loss(delta, weights)
        return loss, (loss, jnp.abs(delta).mean(axis=-1))

    def step(self, state: AgentsState, principal, i):
        """One iteration ``i`` (traced) -> ``(state, AgentStats)``."""
        return self._iteration(state, principal, i)

    def _train_chunk(self, state, principal, start, length: int):
        def body(st, i):
            return self._iteration(st, principal, i)

        return jax.lax.scan(body, state, start + jnp.arange(length))

    def train_chunk(self, state: AgentsState, principal, start: int, length: int):
        """Run ``length`` iterations from ``start``; returns ``(state, AgentStats)``.

        ``principal`` holds the frozen principal's parameters (``{}`` for the baselines).
        """
        return self._learn_jit(state, principal, start, length)


@functools.cache
def agents_learner(
    game: CoinGameConfig, config: CoinDQNConfig, mode: str, scheme: str = "redistribute"
) -> AgentsLearner:
    """One compiled learner per configuration, mode, scheme and process."""
    return AgentsLearner(game, config, mode, scheme)
