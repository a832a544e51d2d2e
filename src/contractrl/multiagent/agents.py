"""Self-interested DQN agents: the validation phase and the baselines (paper Sections 5.1–5.2).

One learner, four reward modes, the same network and budget:

* ``validation`` — fresh black-box selfish agents under the frozen principal: each observes its
  recommendation, ``Q_ψ((s_i, a^p_i), a)``, and earns ``r_i + b_i·1[a_i = a^p_i]`` (paid only
  when following; ``b_i`` from the principal's frozen agent model, plus the nudge). The
  principal never sees ``ψ``.
* ``selfish`` — ``r_i`` (no contracts);
* ``cooperative`` — ``Σ_j r_j`` (each agent maximises welfare);
* ``constant`` — constant-proportion sharing (``p = 0`` is selfish, ``p = 1`` cooperative),
  one of two schemes (model.md §8) **[choice]**: ``redistribute`` (default) — agent ``i`` receives
  ``(1 - p)·r_i + p·W/n`` with ``W = Σ_j r_j`` (the agents share a fixed percentage of welfare;
  nothing is paid from outside) — or ``top_up`` — ``r_i + p·Σ_{j≠i} r_j`` paid by the principal.

The *transfers* of a step (what the budget matching compares with the principal's payments,
per agent ``[n]``): the contract paid (``validation``); ``max(0, p·Σ_{j≠i} r_j)`` (``top_up``);
``max(0, p·(W/n - r_i))`` — what agent ``i`` receives net — (``redistribute``); 0 otherwise.
``top_up`` counts only positive transfers: with negative rewards (a penalty, say)
``p·Σ_{j≠i} r_j`` can be a tax, which is not an amount paid.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from contractrl.learning import replay
from contractrl.multiagent.common import DQNConfig, LearnerBase, Transition, epsilon_greedy

MODES = ("validation", "selfish", "cooperative", "constant")
CONSTANT_SCHEMES = ("redistribute", "top_up")


@struct.dataclass
class AgentsState:
    """One run of independent agents (shared parameters ``ψ``)."""

    params: Any
    target: Any
    opt_state: Any
    buffer: replay.ReplayBuffer
    env: Any
    obs: Any
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


class AgentsLearner(LearnerBase):
    """Selfish DQN agents with shaped rewards, in any protocol environment.

    The constant share ``p`` and the validation nudge live in the state (:meth:`init`), so
    one compiled learner serves every value.

    Args:
        env: a protocol environment (:mod:`contractrl.envs.protocol`).
        config: hyper-parameters.
        mode: one of :data:`MODES`.
        scheme: the ``constant`` mode's scheme, one of :data:`CONSTANT_SCHEMES`.
    """

    def __init__(self, env, config: DQNConfig, mode: str, scheme: str = "redistribute"):
        super().__init__(env, config)
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
        cfg = self.config
        k_params, k_env, key = jax.random.split(key, 3)
        extra = self.num_actions if self.sees_recommendation else 0
        params = self.init_network(k_params, extra)
        obs, env = self.env.reset(k_env)
        return AgentsState(
            params=params,
            target=params,
            opt_state=self.optimizer.init(params),
            buffer=replay.init_buffer(
                self.example_transition(), cfg.replay_slots, cfg.priority_alpha
            ),
            env=env,
            obs=self.encoder.keep(obs),
            key=key,
            share=jnp.asarray(share, jnp.float32),
            nudge=jnp.asarray(self.config.nudge if nudge is None else nudge, jnp.float32),
        )

    # ------------------------------------------------------------------ the principal's side
    def recommendations(self, principal, views) -> jax.Array:
        """The frozen principal's greedy recommendations ``[..., n]`` (zeros without one)."""
        if not self.sees_recommendation:
            return jnp.zeros(self.agent_shape(views), jnp.int32)
        return self.principal_recommendations(principal["principal"], views)

    def payments(self, principal, views, recs, actions, nudge) -> jax.Array:
        """``[..., n]`` contracts paid to followers (0 for the others, and without principal)."""
        if not self.sees_recommendation:
            return jnp.zeros(recs.shape, jnp.float32)
        pre = self.first_layer(principal["agent"], views)
        b = self.contracts_from_first(principal["agent"], pre, recs, nudge)
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
        return jax.nn.one_hot(recs, self.num_actions)

    def greedy_actions(self, params, principal, views):
        """``(actions, recs)`` of the greedy agents at ``views``."""
        recs = self.recommendations(principal, views)
        q = self.q_values(params, views, self.extra(recs))
        return jnp.argmax(q, axis=-1), recs

    def policy(self, state: AgentsState, principal):
        """The greedy agents as an evaluation policy (see :mod:`.evaluation`)."""

        def act(views, actions=None):
            greedy, recs = self.greedy_actions(state.params, principal, views)
            chosen = greedy if actions is None else actions
            return chosen, recs, self.payments(principal, views, recs, chosen, state.nudge)

        return act

    # ------------------------------------------------------------------ training
    def _iteration(self, state: AgentsState, principal, i):
        key, k_act, k_env, k_sample = jax.random.split(state.key, 4)
        view = self.encoder.view(state.obs, state.env)
        recs = self.recommendations(principal, view)
        q = self.q_values(state.params, view, self.extra(recs))
        actions = epsilon_greedy(k_act, q, self.epsilon(i))
        paid = self.payments(principal, view, recs, actions, state.nudge)
        obs, env, rewards, terminated, truncated, info = self.env.step(k_env, state.env, actions)
        follow = (actions == recs).astype(jnp.float32)
        transition = Transition(
            obs=view,
            next_obs=self.encoder.final_view(info),
            actions=actions,
            recs=recs,
            follow=follow,
            # what the step paid, unshaped: the share p may change between evaluations (budget
            # calibration), so the loss shapes stored rewards with the current p
            rewards=rewards + paid,
            terminal=self.terminal(terminated, truncated),
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
            env=env,
            obs=self.encoder.keep(obs),
            key=key,
            params=params,
            target=target,
            opt_state=opt_state,
            buffer=buffer,
        )
        transfers = self.transfers(rewards, paid, state.share)
        return state, AgentStats(rewards, transfers, follow, terminated | truncated, loss)

    def _loss(self, params, target, principal, batch: Transition, weights, share):
        """TD loss of the agents' shared network on ``batch`` (rewards shaped with ``share``)."""
        cfg = self.config
        rewards = self.shaped(batch.rewards, 0.0, share)  # stored: r_i + contract paid
        q = self.q_values(params, batch.obs, self.extra(batch.recs))
        q_taken = jnp.take_along_axis(q, batch.actions[..., None], axis=-1)[..., 0]
        next_recs = self.recommendations(principal, batch.next_obs)
        next_q = self.q_values(target, batch.next_obs, self.extra(next_recs)).max(axis=-1)
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
    env, config: DQNConfig, mode: str, scheme: str = "redistribute"
) -> AgentsLearner:
    """One compiled learner per environment, configuration, mode, scheme and process."""
    return AgentsLearner(env, config, mode, scheme)


def train(
    env,
    config: DQNConfig,
    mode: str,
    key: jax.Array,
    principal: dict | None = None,
    scheme: str = "redistribute",
    share: float = 0.0,
    nudge: float | None = None,
) -> tuple[AgentsState, AgentStats]:
    """Train fresh agents of ``mode`` in ``env`` for ``config.iterations`` iterations.

    ``principal``: the frozen principal's parameters (``validation`` mode; from
    :func:`.algorithm3.train`). Returns the final :class:`AgentsState` and the per-iteration
    :class:`AgentStats`.
    """
    learner = agents_learner(env, config, mode, scheme)
    state = learner.init(key, share, nudge)
    return learner.train_chunk(state, principal or {}, 0, config.iterations)
