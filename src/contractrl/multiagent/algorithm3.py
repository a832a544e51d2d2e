"""Contracts for a team of agents (paper Section 5, Algorithm 3): the training phase.

Written against the environment protocol (:mod:`contractrl.envs.protocol`): any environment
with discrete actions.


The principal recommends an action to each agent and pays agent ``i`` only if it follows.
Each agent's choice is reduced to a *follow bit* ``f_i`` sampled per episode; the agents'
shared-parameter Q-network conditions on the others' bits, ``Q_φ((s_i, f_-i), a)``, and learns
selfishly: ``r_i + γ max_a' Q_φ'((s'_i, f_-i), a')``. The contract for agent ``i`` recommended
``a_i`` is what makes following as good as its best selfish action when the others follow,

    b_i = max_a Q_φ((s_i, f_-i = 1), a) - Q_φ((s_i, f_-i = 1), a_i)  (+ nudge),

from the online network. The principal (shared parameters ``θ``) learns ``q_θ(s_i, a)`` with
per-agent targets ``y_i = r_i - α b_i + γ max_a' q_θ'(s'_i, a')`` trained as VDN:
``Σ_i q_θ(s_i, a_i)`` regresses on ``Σ_i y_i``. Followers play the principal's ε-greedy
recommendation, the others ε-greedily from their own Q. One environment step and one gradient
step (both networks) per iteration; prioritised replay.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from contractrl.learning import replay
from contractrl.multiagent.common import (  # noqa: F401 - follower_contracts: the equation
    DQNConfig,
    LearnerBase,
    Transition,
    epsilon_greedy,
    follower_contracts,
    others,
)
from contractrl.multiagent.networks import head_from_first


def vdn_targets(rewards, payments, next_q_max, terminal, alpha: float, gamma: float, mask=None):
    """Per-agent principal targets and their VDN sum (paper Algorithm 3).

    ``y_i = r_i - α b_i + γ (1 - terminal) max_a' q_θ'(s'_i, a')``, where ``b_i`` is the
    min-pay contract for the action agent ``i`` took (as if it had been recommended). Arrays
    are ``[B, n]`` (``terminal [B]``); ``mask [B, n]`` (default all ones) selects the agents
    whose terms enter the sum. Returns ``(y [B, n], Σ_i mask_i y_i [B])``.
    """
    y = rewards - alpha * payments + gamma * (1.0 - terminal)[:, None] * next_q_max
    weights = jnp.ones_like(y) if mask is None else mask
    return y, jnp.sum(weights * y, axis=-1)


def principal_cost_terms(payments, follow, rule: str):
    """``(payments charged [B, n], VDN mask [B, n] or None)`` for a ``principal_cost`` rule.

    ``charge_all``: every agent's term pays the contract for its action; ``followers_only``:
    only followers' terms enter the sum; ``unpaid_deviations``: non-followers cost nothing.
    """
    if rule == "charge_all":
        return payments, None
    if rule == "followers_only":
        return payments, follow
    return payments * follow, None


@struct.dataclass
class PrincipalState:
    """One run of the training phase."""

    params: Any
    target: Any
    opt_state: Any
    buffer: replay.ReplayBuffer
    env: Any
    obs: Any
    follow: jax.Array
    key: jax.Array


@struct.dataclass
class StepStats:
    """Per-iteration statistics of the training phase (the acting environment)."""

    rewards: jax.Array
    payments: jax.Array
    follow: jax.Array
    done: jax.Array
    agent_loss: jax.Array
    principal_loss: jax.Array


class PrincipalLearner(LearnerBase):
    """Algorithm 3's training phase for one protocol environment and configuration."""

    networks = ("agent", "principal")

    def __init__(self, env, config: DQNConfig):
        super().__init__(env, config)
        self._learn_jit = jax.jit(self._train_chunk, static_argnums=(2,))

    # -------------------------------------------------------------- networks
    def _init_params(self, key):
        k_a, k_p = jax.random.split(key)
        agent = self.init_network(k_a, self.n - 1)  # extra inputs: the others' follow bits
        return {"agent": agent, "principal": self.init_principal(k_p)}

    def contracts(self, params, states, recs, nudge):
        """Contracts ``[..., n]`` for recommendations ``recs [..., n]`` at ``states``.

        The others are assumed to follow.
        """
        pre = self.first_layer(params["agent"], states)
        return self.contracts_from_first(params["agent"], pre, recs, nudge)

    def policy(self, state: PrincipalState):
        """The principal's plan as an evaluation policy (see :mod:`.evaluation`).

        Every agent follows the greedy recommendation and is paid its contract.
        """
        params = state.params

        def act(states, actions=None):
            recs = self.principal_recommendations(params["principal"], states)
            chosen = recs if actions is None else actions
            paid = self.contracts(params, states, recs, self.config.nudge) * (chosen == recs)
            return chosen, recs, paid

        return act

    # -------------------------------------------------------------- init
    def init(self, key: jax.Array) -> PrincipalState:
        """A fresh run."""
        k_params, k_env, k_follow, key = jax.random.split(key, 4)
        params = self._init_params(k_params)
        obs, env = self.env.reset(k_env)
        return PrincipalState(
            params=params,
            target=params,
            opt_state=self.optimizer.init(params),
            buffer=replay.init_buffer(
                self.example_transition(), self.config.replay_slots, self.config.priority_alpha
            ),
            env=env,
            obs=self.encoder.keep(obs),
            follow=self._sample_follow(k_follow),
            key=key,
        )

    def _sample_follow(self, key):
        return (jax.random.uniform(key, (self.n,)) < self.config.follow_prob).astype(jnp.float32)

    # -------------------------------------------------------------- one iteration
    def _act(self, state: PrincipalState, epsilon, key):
        k_rec, k_own, k_env, k_follow = jax.random.split(key, 4)
        params = state.params
        view = self.encoder.view(state.obs, state.env)
        explore = epsilon if self.config.explore_recommendations else 0.0
        recs = self.principal_recommendations(params["principal"], view, k_rec, explore)
        pre = self.first_layer(params["agent"], view)
        own = epsilon_greedy(
            k_own, head_from_first(params["agent"], pre, others(state.follow)), epsilon
        )
        actions = jnp.where(state.follow > 0, recs, own)
        contracts = self.contracts_from_first(params["agent"], pre, recs, self.config.nudge)
        payments = contracts * state.follow
        obs, env, rewards, terminated, truncated, info = self.env.step(k_env, state.env, actions)
        done = terminated | truncated
        transition = Transition(
            obs=view,
            next_obs=self.encoder.final_view(info),
            actions=actions,
            recs=recs,
            follow=state.follow,
            rewards=rewards,
            terminal=self.terminal(terminated, truncated),
        )
        follow = jnp.where(done, self._sample_follow(k_follow), state.follow)
        stats = (rewards, payments, state.follow, done)
        kept = self.encoder.keep(obs)
        return state.replace(env=env, obs=kept, follow=follow), transition, stats

    def _losses(self, params, target, batch: Transition, weights):
        """The agents' TD loss and the principal's VDN loss (Algorithm 3) on a replay batch.

        Agent target ``r_i + γ (1 - terminal) max_a' Q_φ'((s'_i, f_-i), a')``; principal
        target :func:`vdn_targets` with the contract for the action taken from the online
        agent network (others following), charged as ``principal_cost`` says.
        """
        cfg = self.config
        f_others = others(batch.follow)  # [B, n, n-1]
        continues = cfg.gamma * (1.0 - batch.terminal)[:, None]
        # agent: selfish Q conditioned on the others' bits
        pre = self.first_layer(params["agent"], batch.obs)  # [B, n, H]
        q = head_from_first(params["agent"], pre, f_others)  # [B, n, A]
        q_taken = jnp.take_along_axis(q, batch.actions[..., None], axis=-1)[..., 0]
        next_q = self.q_values(target["agent"], batch.next_obs, f_others).max(axis=-1)
        y_agent = batch.rewards + continues * next_q
        delta_agent = q_taken - jax.lax.stop_gradient(y_agent)
        # principal: contracts from the online agent network, the others assumed to follow
        contracts = self.contracts_from_first(params["agent"], pre, batch.actions, cfg.nudge)
        payments = jax.lax.stop_gradient(contracts)
        charged, mask = principal_cost_terms(payments, batch.follow, cfg.principal_cost)
        if cfg.principal_head == "joint":
            delta_vdn = self._joint_delta(params, target, batch, charged, mask)
        else:
            next_qp = self.q_values(target["principal"], batch.next_obs).max(axis=-1)
            _, y_sum = vdn_targets(
                batch.rewards, charged, next_qp, batch.terminal, cfg.alpha, cfg.gamma, mask
            )
            qp = self.q_values(params["principal"], batch.obs)
            qp_taken = jnp.take_along_axis(qp, batch.actions[..., None], axis=-1)[..., 0]
            qp_sum = jnp.sum(qp_taken if mask is None else mask * qp_taken, axis=-1)
            delta_vdn = qp_sum - jax.lax.stop_gradient(y_sum)
        agent_loss = self.td_loss(delta_agent, weights)
        principal_loss = self.td_loss(delta_vdn, weights)
        priority = jnp.abs(delta_vdn) + jnp.abs(delta_agent).mean(axis=-1)
        return agent_loss + principal_loss, ((agent_loss, principal_loss), priority)

    def _joint_delta(self, params, target, batch: Transition, charged, mask):
        """TD error of the ``joint`` head: ``Q_θ(s, j) − (Σ_i (r_i − α b_i) + γ max Q_θ'(s', ·))``.

        The same per-agent terms as the VDN target (:func:`vdn_targets`, ``mask`` selecting
        agents), bootstrapped from one joint value instead of a sum of per-agent ones.
        """
        cfg = self.config
        terms = batch.rewards - cfg.alpha * charged
        own = jnp.sum(terms if mask is None else mask * terms, axis=-1)
        next_q = self.joint_q(target["principal"], batch.next_obs).max(axis=-1)
        y = own + cfg.gamma * (1.0 - batch.terminal) * next_q
        q = self.joint_q(params["principal"], batch.obs)
        q_taken = jnp.take_along_axis(q, self.joint_index(batch.actions)[..., None], axis=-1)
        return q_taken[..., 0] - jax.lax.stop_gradient(y)

    def _iteration(self, state: PrincipalState, i):
        key, k_act, k_sample = jax.random.split(state.key, 3)
        state, transition, (rewards, payments, follow, done) = self._act(
            state.replace(key=key), self.epsilon(i), k_act
        )
        buffer = self.store(state.buffer, transition)
        params, opt_state, target, buffer, (agent_loss, principal_loss) = self.learn(
            i,
            state.params,
            state.opt_state,
            state.target,
            buffer,
            k_sample,
            lambda p, batch, w: self._losses(p, state.target, batch, w),
        )
        state = state.replace(params=params, opt_state=opt_state, target=target, buffer=buffer)
        return state, StepStats(rewards, payments, follow, done, agent_loss, principal_loss)

    def step(self, state: PrincipalState, principal, i):
        """One iteration ``i`` (traced) -> ``(state, StepStats)``; ``principal`` is unused.

        The signature of :meth:`AgentsLearner.step`, so both run as lanes of one program.
        """
        del principal
        return self._iteration(state, i)

    def _train_chunk(self, state, start, length: int):
        return jax.lax.scan(self._iteration, state, start + jnp.arange(length))

    def train_chunk(self, state: PrincipalState, start: int, length: int):
        """Run ``length`` iterations from ``start`` (host ints).

        ``start`` counts from the phase's first iteration, which the schedules and
        ``learning_starts`` read.

        Returns ``(state, StepStats)`` with ``[length]``-leading statistics.
        """
        return self._learn_jit(state, start, length)


@functools.cache
def principal_learner(env, config: DQNConfig) -> PrincipalLearner:
    """One compiled learner per environment, configuration and process."""
    return PrincipalLearner(env, config)


def train(env, config: DQNConfig, key: jax.Array) -> tuple[PrincipalState, StepStats]:
    """Algorithm 3's training phase in ``env``: ``config.iterations`` iterations from ``key``.

    The entry point for scripts (the experiment pipeline adds evaluation, checkpoints and the
    other phases). Returns the final :class:`PrincipalState` (``params["principal"]`` is
    ``q_θ``, ``params["agent"]`` the agents' ``Q_φ`` the contracts come from) and the
    per-iteration :class:`StepStats` (``[iterations]``-leading).
    """
    learner = principal_learner(env, config)
    return learner.train_chunk(learner.init(key), 0, config.iterations)
