"""Learning contracts with deep Q-networks (paper Algorithm 2, SPEC §5).

The agent learns its *truncated* Q ``Q̄_φ(s, a)`` (without the current payment); the principal
learns the contractual ``q_θ(s, a*)``. Contracts are never learned: at any state they are the
min-pay contracts computed from ``Q̄_φ(s, ·)`` and the known outcome model ``P[s]``, inside the
jitted loop (:mod:`contractrl.learning.contracts`).

One iteration (SPEC §6): ``num_envs`` environment interactions, then one gradient step on a
batch from replay. Acting: the principal recommends ``a*`` ε-greedily over its ``q_θ`` among
implementable actions and offers the min-pay contract for it (with nudge ``ξ``); the agent
acts ε-greedily on ``Q̄_φ(s, a) + P[s, a]·b`` (ties toward ``a*``). Targets for a transition
``(s, a, o, s')`` in which the agent took ``a``:

* agent: ``r(s, a) + γ (Q̄_φ'(s', a'*) + P[s', a'*]·b'(s'))`` — its value at ``s'`` under the
  next contract ``b'`` (from the target network), following the recommendation
  ``a'* = argmax q_θ(s', ·)`` (online network);
* principal: ``r^p(s, o) - b_a(o) + γ q_θ'(s', a'*)`` where ``b_a`` is the min-pay contract for
  the action taken, from the current ``Q̄_φ(s, ·)`` (``q(s, a)`` is the value of inducing ``a``);
* terminal transitions (or the horizon) bootstrap zero.

Target networks are refreshed every ``target_period`` iterations. On finite state spaces the
target networks are stored as *tables* over every input (``q_θ'``, the agent's next-state
values and implementability), computed at each refresh: exact, and far cheaper than two
forward passes per sampled ``s'``.

Schedules: ``simultaneous`` (both networks every iteration, the paper's) or ``iterative``
(alternating phases of ``phase_length`` iterations in which only the agent, then only the
principal, learns — the faithful variant of Algorithm 1).

Nudging: a fixed ``ξ``, or ``auto``: Proposition 4.1 secures the principal's utility with
``ξ = 2 E`` for an agent whose Q error is at most ``E``. ``E`` is estimated from ``q``, a high
quantile over every input and action of the agent network's one-step error in expectation under
the known model, accumulated over the horizon (``auto_nudge_accumulation``); the nudge moves
at the end of each agent phase (``iterative``) or once per ``auto_nudge_period``
(``simultaneous``).

The training state of several runs (seeds, game instances with the same shapes) is stacked on
a leading axis and trained together with ``vmap``; iterations run in ``lax.scan`` chunks.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from contractrl._validate import require, require_positive_ints
from contractrl.envs import tabular
from contractrl.learning import replay
from contractrl.learning.contracts import min_pay_all_targets
from contractrl.learning.networks import (
    init_mlp,
    mlp_apply,
    mlp_from_rows,
    sparse_adam_rows,
    unique_rows,
)
from contractrl.learning.schedules import exponential_lr, linear_epsilon

SCHEDULES = ("simultaneous", "iterative")
LOSSES = ("huber", "mse")
AGENT_MODELS = ("truncated_q", "outcome_value")
ACCUMULATIONS = ("none", "sqrt", "linear")


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Hyper-parameters of Algorithm 2 (defaults: the paper's Tree MDP settings, SPEC §6).

    Attributes:
        iterations: training iterations.
        num_envs: environment interactions per iteration (parallel environments).
        batch_size: transitions per gradient step.
        target_period: iterations between target-network refreshes.
        lr_start: initial learning rate (Adam).
        lr_end: final learning rate (exponential decay over the run).
        epsilon_start: initial exploration rate (principal and agent).
        epsilon_end: final exploration rate.
        epsilon_fraction: share of the run over which ε decays linearly.
        hidden: hidden layer widths of both networks.
        loss: ``huber`` or ``mse``.
        max_grad_norm: global gradient-norm clip (``None``: no clipping).
        sparse_input_adam: update only the input-table rows a batch touches (lazy Adam, as
            PyTorch's ``SparseAdam``); ``False``: dense Adam over the whole table.
        dedup_sizes: when a batch has at most this many distinct inputs, the networks run on
            the distinct inputs only (exact: duplicates share activations, their gradients
            add up); the smallest size that fits is chosen at run time. Unbatched runs only.
        replay_capacity: replay slots.
        prioritized: prioritised replay (else uniform).
        priority_alpha: prioritisation exponent ``α``.
        priority_beta: importance-weight exponent ``β``.
        priority_eps: priority floor ``ε``.
        schedule: ``simultaneous`` or ``iterative``.
        phase_length: iterations per phase of the ``iterative`` schedule.
        nudge: fixed nudge ``ξ >= 0`` (ignored when ``auto_nudge``).
        auto_nudge: derive ``ξ`` from the agent network's estimated Bellman error.
        auto_nudge_scale: ``ξ = scale · Ê`` (Proposition 4.1: 2).
        auto_nudge_quantile: quantile, over every input and action, of the agent network's
            one-step error (in expectation under the known model) taken as ``q``.
        auto_nudge_period: iterations between updates of the automatic nudge with the
            ``simultaneous`` schedule (aligned with the end of the run). The ``iterative``
            schedule ignores it: the nudge moves at the end of each agent phase.
        auto_nudge_accumulation: how one-step errors add up to the Q error ``E`` of
            Proposition 4.1 over the effective horizon ``H_eff`` (``H``, or ``1/(1-γ)``):
            ``none`` (``E = q``), ``sqrt`` (``E = q·√H_eff``, independent errors) or
            ``linear`` (``E = q·H_eff``, the worst case).
        tie_tol: the simulated agent treats payoffs within this as ties (follows ``a*``).
        agent_model: ``truncated_q`` (the paper's: the agent network outputs ``Q̄(s, ·)``) or
            ``outcome_value``: it outputs ``W(s, ·)``, the expected next value after each
            outcome, and ``Q̄(s, a) = r(s, a) + γ P[s, a]·W(s, ·)``. Transitions depend on the
            outcome only, so every transition trains ``W(s, o)`` whatever action was taken
            and the non-recommended actions' values never go stale (needs the agent's reward
            table, which the agent knows in contract theory).
    """

    iterations: int = 20_000
    num_envs: int = 8
    batch_size: int = 128
    target_period: int = 100
    lr_start: float = 1e-3
    lr_end: float = 1e-4
    epsilon_start: float = 1.0
    epsilon_end: float = 0.0
    epsilon_fraction: float = 1.0
    hidden: tuple[int, ...] = (256, 256)
    loss: str = "huber"
    max_grad_norm: float | None = 10.0
    sparse_input_adam: bool = True
    dedup_sizes: tuple[int, ...] = (64, 96)
    replay_capacity: int = 100_000
    prioritized: bool = False
    priority_alpha: float = 0.4
    priority_beta: float = 0.0
    priority_eps: float = 1e-7
    schedule: str = "simultaneous"
    phase_length: int = 1000
    nudge: float = 0.0
    auto_nudge: bool = False
    auto_nudge_scale: float = 2.0
    auto_nudge_quantile: float = 0.9
    auto_nudge_accumulation: str = "sqrt"
    auto_nudge_period: int = 1000
    tie_tol: float = 1e-6
    agent_model: str = "truncated_q"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        require_positive_ints(
            self,
            (
                "auto_nudge_period",
                "iterations",
                "num_envs",
                "batch_size",
                "target_period",
                "replay_capacity",
                "phase_length",
            ),
        )
        require(
            self,
            [
                ("lr_start", self.lr_start > 0),
                ("lr_end", self.lr_end > 0),
                ("epsilon_start", 0 <= self.epsilon_start <= 1),
                ("epsilon_end", 0 <= self.epsilon_end <= 1),
                ("epsilon_fraction", 0 < self.epsilon_fraction <= 1),
                ("loss", self.loss in LOSSES),
                ("agent_model", self.agent_model in AGENT_MODELS),
                ("schedule", self.schedule in SCHEDULES),
                ("nudge", np.isfinite(self.nudge) and self.nudge >= 0),
                ("priority_alpha", self.priority_alpha >= 0),
                ("priority_beta", self.priority_beta >= 0),
                ("priority_eps", self.priority_eps > 0),
                ("auto_nudge_scale", self.auto_nudge_scale >= 0),
                ("auto_nudge_quantile", 0 < self.auto_nudge_quantile <= 1),
                ("auto_nudge_accumulation", self.auto_nudge_accumulation in ACCUMULATIONS),
                ("hidden", len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden)),
                ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0),
                ("batch_size", self.batch_size <= self.replay_capacity),
            ],
        )

    @property
    def learning_starts(self) -> int:
        """First iteration with a gradient step: once a batch's worth of transitions exists."""
        return -(-self.batch_size // self.num_envs)


@dataclasses.dataclass(frozen=True)
class LearnerSpec:
    """Static shapes of a game for the learner.

    Attributes:
        num_states: ``S``.
        num_actions: ``A``.
        num_outcomes: ``O``.
        horizon: ``H`` (``None``: infinite).
        time_input: networks see ``(t, s)`` (index ``t·S + s``) instead of ``s``; needed when
            a state can occur at several time steps of a finite horizon.
        effective_horizon: ``H``, or ``1/(1-γ)`` for an infinite horizon.
    """

    num_states: int
    num_actions: int
    num_outcomes: int
    horizon: int | None
    time_input: bool
    effective_horizon: float = 1.0

    @property
    def num_inputs(self) -> int:
        """Rows of the networks' one-hot input."""
        return self.num_states * (self.horizon if self.time_input else 1)


@struct.dataclass
class Transition:
    """One stored transition (all scalars)."""

    index: jax.Array
    state: jax.Array
    action: jax.Array
    outcome: jax.Array
    next_index: jax.Array
    agent_reward: jax.Array
    principal_reward: jax.Array
    end: jax.Array


@struct.dataclass
class TargetTables:
    """Target networks as tables over all inputs (refreshed every ``target_period``).

    Attributes:
        principal_q: ``[I, A]`` ``q_θ'``.
        agent_value: ``[I, A]`` ``Q̄_φ'(x, a) + P·b'_a`` (0 where not implementable).
        implementable: ``[I, A]``.
        agent_value_star: ``[I]`` ``agent_value`` at ``argmax q_θ'``.
        error: the ``auto_nudge_quantile`` quantile, over every input and action, of the
            agent network's one-step error in expectation under the known model.
    """

    principal_q: jax.Array
    agent_value: jax.Array
    implementable: jax.Array
    agent_value_star: jax.Array
    error: jax.Array


@struct.dataclass
class NetOptState:
    """Adam state of one network.

    Holds the optax state of the dense layers, the moments of the input table and the count.
    """

    dense: Any
    table_mu: jax.Array
    table_nu: jax.Array
    count: jax.Array


@struct.dataclass
class LearnerState:
    """Everything one run carries between iterations (checkpointed as is)."""

    params: Any
    opt_state: Any
    tables: TargetTables
    buffer: replay.ReplayBuffer
    env_state: tabular.TabularState
    key: jax.Array
    nudge: jax.Array
    error_estimate: jax.Array


@struct.dataclass
class LearnerStateView:
    """What the losses read besides the parameters: target tables and the current nudge."""

    tables: TargetTables
    nudge: jax.Array


@struct.dataclass
class IterationMetrics:
    """Per-iteration diagnostics (averaged over a chunk by the platform)."""

    agent_loss: jax.Array
    principal_loss: jax.Array
    nudge: jax.Array
    error_estimate: jax.Array
    payment: jax.Array
    follow_rate: jax.Array
    episode_end: jax.Array


NETS = ("agent", "principal")


class Learner:
    """Algorithm 2 for one game shape: builds the jitted functions and holds static settings.

    Args:
        spec: static shapes.
        config: hyper-parameters.
    """

    def __init__(self, spec: LearnerSpec, config: DQNConfig):
        config.validate()
        self.spec = spec
        self.config = config
        self.epsilon = linear_epsilon(
            config.epsilon_start,
            config.epsilon_end,
            int(config.epsilon_fraction * config.iterations),
        )
        self.lr = exponential_lr(config.lr_start, config.lr_end, config.iterations)
        self.dense_adam = optax.scale_by_adam()
        self._segment_jit = jax.jit(self._segment, static_argnums=(4, 5, 6))
        self.q_tables = jax.jit(self._q_tables)

    # ------------------------------------------------------------------ helpers
    def _index(self, state, t):
        if self.spec.time_input:
            return t * self.spec.num_states + state
        return state

    def _state_of(self, index):
        return index % self.spec.num_states if self.spec.time_input else index

    def _agent_q(self, out, env, states):
        """The agent's truncated Q ``[..., A]`` from its network's output at ``states``."""
        if self.config.agent_model == "truncated_q":
            return out
        return env.agent_reward[states] + env.discount * jnp.einsum(
            "...ao,...o->...a", env.outcome_probs[states], out
        )

    def _q_tables(self, params, env):
        """Both networks on every input: ``(Q̄ [I, A], q [I, A])``."""
        idx = jnp.arange(self.spec.num_inputs)
        q_bar = self._agent_q(mlp_apply(params["agent"], idx), env, self._state_of(idx))
        return q_bar, mlp_apply(params["principal"], idx)

    def _refresh(self, env: tabular.TabularParams, params, nudge) -> TargetTables:
        q_bar, q_p = self._q_tables(params, env)
        probs = env.outcome_probs[self._state_of(jnp.arange(self.spec.num_inputs))]
        _, payment, ok = min_pay_all_targets(q_bar, probs, nudge)
        value = jnp.where(ok, q_bar + jnp.where(ok, payment, 0.0), 0.0)
        best = jnp.argmax(jnp.where(ok, q_p, -jnp.inf), axis=1)
        star = jnp.take_along_axis(value, best[:, None], axis=1)[:, 0]
        if self.config.auto_nudge:
            errors = self._model_errors(env, q_bar, star)
            error = jnp.quantile(errors, self.config.auto_nudge_quantile)
        else:
            error = jnp.zeros((), q_bar.dtype)
        return TargetTables(q_p, value, ok, star, error)

    def _model_errors(self, env, q_bar, star):
        """``[I, A]``: ``|Q̄(x, a) - E[r + γ V*(x')]|`` for every input and action.

        The expectation runs over outcomes and successors under the known model: the one-step
        error behind Proposition 4.1, measured on every input so that rarely visited ones count.
        """
        spec = self.spec
        idx = jnp.arange(spec.num_inputs)
        s = self._state_of(idx)
        succ = env.next_state[s]  # [I, O, K]
        succ_p = env.next_prob[s]
        if spec.time_input:
            t = idx // spec.num_states
            at_horizon = (t + 1 >= spec.horizon)[:, None, None]
            succ = jnp.where(at_horizon, 0, (t + 1)[:, None, None] * spec.num_states + succ)
            succ_p = jnp.where(at_horizon, 0.0, succ_p)
        v_next = jnp.sum(succ_p * star[succ], axis=-1)  # [I, O]
        expected = env.agent_reward[s] + env.discount * jnp.einsum(
            "iao,io->ia", env.outcome_probs[s], v_next
        )
        return jnp.abs(q_bar - expected)

    # ------------------------------------------------------------------ init
    def _init_opt(self, net_params) -> NetOptState:
        rest = {k: v for k, v in net_params.items() if k != "table"}
        zeros = jnp.zeros_like(net_params["table"])
        return NetOptState(self.dense_adam.init(rest), zeros, zeros, jnp.zeros((), jnp.int32))

    def init(self, env: tabular.TabularParams, key: jax.Array) -> LearnerState:
        """Fresh state of one run (vmap over ``key`` and ``env`` for several runs)."""
        spec, cfg = self.spec, self.config
        k_agent, k_principal, k_reset, key = jax.random.split(key, 4)
        agent_outputs = spec.num_actions if cfg.agent_model == "truncated_q" else spec.num_outcomes
        params = {
            "agent": init_mlp(k_agent, spec.num_inputs, agent_outputs, cfg.hidden),
            "principal": init_mlp(k_principal, spec.num_inputs, spec.num_actions, cfg.hidden),
        }
        nudge = jnp.asarray(cfg.nudge, jnp.float32)
        example = Transition(
            *(jnp.zeros((), jnp.int32) for _ in range(5)),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
        )
        return LearnerState(
            params=params,
            opt_state={name: self._init_opt(params[name]) for name in NETS},
            tables=self._refresh(env, params, nudge),
            buffer=replay.init_buffer(example, cfg.replay_capacity, cfg.priority_alpha),
            env_state=tabular.reset(env, k_reset, cfg.num_envs),
            key=key,
            nudge=nudge,
            error_estimate=jnp.zeros((), jnp.float32),
        )

    # ------------------------------------------------------------------ acting
    def _act(self, env, state: LearnerState, epsilon, key):
        cfg = self.config
        k_rec, k_rand_rec, k_agent, k_rand_agent, k_env = jax.random.split(key, 5)
        s, t = state.env_state.state, state.env_state.t
        index = self._index(s, t)
        q_bar = self._agent_q(mlp_apply(state.params["agent"], index), env, s)  # [N, A]
        q_p = mlp_apply(state.params["principal"], index)
        probs = env.outcome_probs[s]  # [N, A, O]
        contracts, _, ok = min_pay_all_targets(q_bar, probs, state.nudge)
        greedy = jnp.argmax(jnp.where(ok, q_p, -jnp.inf), axis=1)
        random_rec = jax.random.categorical(k_rand_rec, jnp.where(ok, 0.0, -jnp.inf))
        explore = jax.random.uniform(k_rec, greedy.shape) < epsilon
        rec = jnp.where(explore, random_rec, greedy)
        contract = jnp.take_along_axis(contracts, rec[:, None, None], axis=1)[:, 0]  # [N, O]
        full = q_bar + jnp.einsum("nao,no->na", probs, contract)
        top = jnp.max(full, axis=1)
        follow = jnp.take_along_axis(full, rec[:, None], axis=1)[:, 0] >= top - cfg.tie_tol
        agent_greedy = jnp.where(follow, rec, jnp.argmax(full, axis=1))
        random_act = jax.random.randint(k_rand_agent, rec.shape, 0, self.spec.num_actions)
        agent_explore = jax.random.uniform(k_agent, rec.shape) < epsilon
        action = jnp.where(agent_explore, random_act, agent_greedy)
        env_state, step = tabular.step(env, state.env_state, action, contract, k_env)
        # past the horizon the transition ends (bootstraps zero): any valid index will do
        t_next = jnp.minimum(t + 1, (self.spec.horizon or 1) - 1)
        next_index = self._index(step.next_state, t_next)
        transitions = Transition(
            index=index,
            state=s,
            action=action,
            outcome=step.outcome,
            next_index=next_index,
            agent_reward=step.agent_reward,
            principal_reward=step.principal_reward,
            end=step.done.astype(jnp.float32),
        )
        metrics = (
            jnp.mean(step.payment),
            jnp.mean((action == rec).astype(jnp.float32)),
            jnp.mean(step.done.astype(jnp.float32)),
        )
        return state.replace(env_state=env_state), transitions, metrics

    # ------------------------------------------------------------------ learning
    def _losses(self, rest, rows, frozen, inverse, env, state, batch, weights, a_next):
        """TD losses of the networks in ``rest`` (the others' outputs come in ``frozen``).

        ``rest[net]`` are the dense parameters and ``rows[net]`` the input-table rows of the
        batch's distinct inputs (``inverse [B]`` maps each sample to its row).
        """
        outs = dict(frozen)
        for net in rest:
            outs[net] = mlp_from_rows(rest[net], rows[net])[inverse]
        gamma = env.discount
        agent_out = outs["agent"]  # [B, A] (truncated Q) or [B, O] (outcome values)
        q_bar = self._agent_q(agent_out, env, batch.state)  # [B, A]
        q_p = outs["principal"]
        idx = jnp.arange(batch.index.shape[0])
        not_end = 1.0 - batch.end
        tables = state.tables
        next_value = not_end * tables.agent_value[batch.next_index, a_next]
        if self.config.agent_model == "truncated_q":
            predicted = q_bar[idx, batch.action]
            y_agent = batch.agent_reward + gamma * next_value
        else:  # W(s, o) is the expected next value after outcome o, whatever the action
            predicted = agent_out[idx, batch.outcome]
            y_agent = next_value
        contracts, _, ok = min_pay_all_targets(
            jax.lax.stop_gradient(q_bar), env.outcome_probs[batch.state], state.nudge
        )
        paid = contracts[idx, batch.action, batch.outcome]
        valid = ok[idx, batch.action].astype(jnp.float32)
        y_principal = (
            batch.principal_reward
            - jnp.where(valid > 0, paid, 0.0)
            + gamma * not_end * tables.principal_q[batch.next_index, a_next]
        )
        delta_agent = predicted - jax.lax.stop_gradient(y_agent)
        delta_principal = q_p[idx, batch.action] - jax.lax.stop_gradient(y_principal)
        per = optax.huber_loss if self.config.loss == "huber" else (lambda d: 0.5 * d**2)
        losses = {
            "agent": jnp.mean(weights * per(delta_agent)),
            "principal": jnp.sum(weights * valid * per(delta_principal))
            / jnp.maximum(jnp.sum(valid), 1.0),
        }
        deltas = {"agent": delta_agent, "principal": delta_principal * valid}
        total = sum(losses[net] for net in rest)
        return total, (losses, deltas, q_bar)

    def _apply_gradients(self, params, opt_state, grad_rest, row_grads, rows, lr):
        """Clip by the global norm of the trained networks (the keys of ``grad_rest``); Adam.

        ``rows [B]`` are the distinct input rows of the batch (out-of-range fill ignored) and
        ``row_grads[net] [B, H0]`` their summed gradients. The input table gets row-sparse Adam
        unless ``sparse_input_adam`` is off (then dense Adam over every row).
        """
        cfg, num_inputs = self.config, self.spec.num_inputs
        nets = tuple(grad_rest)
        if not cfg.sparse_input_adam:
            row_grads = {
                n: jnp.zeros((num_inputs, g.shape[-1])).at[rows].add(g, mode="drop")
                for n, g in row_grads.items()
            }
            rows = jnp.arange(num_inputs)
        if cfg.max_grad_norm:
            norm = optax.tree.norm((grad_rest, row_grads))
            factor = jnp.minimum(1.0, cfg.max_grad_norm / (norm + 1e-12))
        else:
            factor = 1.0
        params, opt_state = dict(params), dict(opt_state)
        for n in nets:
            st = opt_state[n]
            g_rest = jax.tree_util.tree_map(lambda g: g * factor, grad_rest[n])
            updates, dense = self.dense_adam.update(g_rest, st.dense)
            rest = {k: v for k, v in params[n].items() if k != "table"}
            rest = optax.apply_updates(rest, jax.tree_util.tree_map(lambda u: -lr * u, updates))
            count = st.count + 1
            table, mu, nu = sparse_adam_rows(
                params[n]["table"],
                st.table_mu,
                st.table_nu,
                rows,
                row_grads[n] * factor,
                count,
                lr,
            )
            params[n] = {**rest, "table": table}
            opt_state[n] = NetOptState(dense, mu, nu, count)
        return params, opt_state

    def _sizes(self, batched: bool) -> list[int]:
        batch = self.config.batch_size
        small = sorted(u for u in set(self.config.dedup_sizes) if 0 < u < batch)
        return [batch] if batched else [*small, batch]

    def _gradients(self, params, env, state, batch, weights, a_next, nets, batched: bool):
        """Gradients of the losses of ``nets``.

        Every network runs on the batch's distinct inputs only (the smallest static size that
        fits is picked at run time).
        """
        num_inputs = self.spec.num_inputs
        rows, inverse = unique_rows(batch.index, num_inputs)
        count = jnp.sum(rows < num_inputs)
        sizes = self._sizes(batched)

        def branch(size):
            def run(_):
                u = jnp.minimum(rows[:size], num_inputs - 1)
                rest = {n: {k: v for k, v in params[n].items() if k != "table"} for n in nets}
                gathered = {n: params[n]["table"][u] for n in nets}
                frozen = {
                    n: jax.lax.stop_gradient(mlp_apply(params[n], u))[inverse]
                    for n in NETS
                    if n not in nets
                }
                (g_rest, g_rows), aux = jax.grad(self._losses, argnums=(0, 1), has_aux=True)(
                    rest, gathered, frozen, inverse, env, state, batch, weights, a_next
                )
                pad = batch.index.shape[0] - size
                g_rows = {n: jnp.pad(g, ((0, pad), (0, 0))) for n, g in g_rows.items()}
                return g_rest, g_rows, aux

            return run

        which = jnp.searchsorted(jnp.asarray(sizes), count)
        g_rest, g_rows, aux = jax.lax.switch(which, [branch(u) for u in sizes], None)
        return rows, g_rest, g_rows, aux

    def _forward_dedup(self, net_params, index, batched: bool):
        """``mlp_apply`` on the distinct inputs only, scattered back (exact)."""
        num_inputs = self.spec.num_inputs
        rows, inverse = unique_rows(index, num_inputs)
        count = jnp.sum(rows < num_inputs)
        sizes = self._sizes(batched)

        def branch(size):
            return lambda _: mlp_apply(net_params, jnp.minimum(rows[:size], num_inputs - 1))[
                inverse
            ]

        which = jnp.searchsorted(jnp.asarray(sizes), count)
        return jax.lax.switch(which, [branch(u) for u in sizes], None)

    def _accumulate(self, one_step_error):
        """Q error ``E`` from a one-step error (see ``auto_nudge_accumulation``)."""
        factor = {
            "none": 1.0,
            "sqrt": self.spec.effective_horizon**0.5,
            "linear": self.spec.effective_horizon,
        }[self.config.auto_nudge_accumulation]
        return factor * one_step_error

    def _sample(self, buffer, key):
        cfg = self.config
        return replay.sample(buffer, key, cfg.batch_size, cfg.prioritized, cfg.priority_beta)

    def _update(self, env, learning, batch, weights, nets, lr, batched: bool):
        """One gradient step of the networks ``nets`` (static), the others frozen.

        ``learning`` is the part of the state a step changes (the replay buffer stays outside,
        so that branching on the phase never copies it): ``(params, opt_state, tables, nudge,
        error_estimate)``. Returns it updated, the losses and the TD errors for priorities.
        """
        params, opt_state, tables, nudge, estimate = learning
        q_next = self._forward_dedup(params["principal"], batch.next_index, batched)
        a_next = jnp.argmax(
            jnp.where(tables.implementable[batch.next_index], q_next, -jnp.inf), axis=1
        )
        view = LearnerStateView(tables, nudge)
        rows, grad_rest, grad_rows, aux = self._gradients(
            params, env, view, batch, weights, a_next, nets, batched
        )
        losses, deltas, q_bar = aux
        params, opt_state = self._apply_gradients(params, opt_state, grad_rest, grad_rows, rows, lr)
        td = sum(jnp.abs(deltas[n]) for n in nets)
        return (params, opt_state, tables, nudge, estimate), (
            losses["agent"],
            losses["principal"],
            td,
        )

    # ------------------------------------------------------------------ one iteration
    def _iteration(self, env, state: LearnerState, epsilon, lr, nets, batched=False):
        """Act, store, and take a gradient step of the networks ``nets``.

        ``nets`` is static; it is empty while the replay fills up.
        """
        key, k_act, k_learn = jax.random.split(state.key, 3)
        state = state.replace(key=key)
        state, transitions, (payment, follow, ends) = self._act(env, state, epsilon, k_act)
        buffer = replay.add_batch(state.buffer, transitions)
        zero = jnp.zeros(())
        agent_loss = principal_loss = zero
        if nets:
            batch, idx, weights = self._sample(buffer, k_learn)
            learning = (
                state.params,
                state.opt_state,
                state.tables,
                state.nudge,
                state.error_estimate,
            )
            learning, (agent_loss, principal_loss, td) = self._update(
                env, learning, batch, weights, nets, lr, batched
            )
            if self.config.prioritized:
                buffer = replay.update_priorities(buffer, idx, td, self.config.priority_eps)
            params, opt_state, tables, nudge, estimate = learning
            state = state.replace(
                params=params, opt_state=opt_state, nudge=nudge, error_estimate=estimate
            )
        state = state.replace(buffer=buffer)
        metrics = IterationMetrics(
            agent_loss, principal_loss, state.nudge, state.error_estimate, payment, follow, ends
        )
        return state, metrics

    def phase_nets(self, i: int) -> tuple[str, ...]:
        """The networks iteration ``i`` trains.

        None while the replay fills up; both (simultaneous); or alternately the agent and the
        principal (iterative: phases of ``phase_length`` iterations counted from the end, so
        that the last one trains the agent).
        """
        cfg = self.config
        if i < cfg.learning_starts:
            return ()
        if cfg.schedule == "iterative":
            agent_phase = ((cfg.iterations - 1 - i) // cfg.phase_length) % 2 == 0
            return ("agent",) if agent_phase else ("principal",)
        return NETS

    def _segment(self, envs, states, start, length, nets, max_length: int, batched: bool):
        """``length <= max_length`` iterations from ``start``, all training ``nets``."""
        cfg = self.config
        iterate = functools.partial(self._iteration, nets=nets, batched=batched)
        refresh = self._refresh
        if batched:
            iterate = jax.vmap(iterate, in_axes=(0, 0, None, None))
            refresh = jax.vmap(refresh)
        _, example = jax.eval_shape(iterate, envs, states, 0.0, 0.0)
        empty = jax.tree_util.tree_map(
            lambda x: jnp.zeros((max_length, *x.shape), x.dtype), example
        )

        def body(j, carry):
            states, log = carry
            i = start + j
            states, metrics = iterate(envs, states, self.epsilon(i), self.lr(i))
            if cfg.auto_nudge and "agent" in nets:
                # The nudge moves at the end of each agent phase (iterative) or period
                # (simultaneous), from the
                # error measured at a fixed nudge: a larger nudge raises the agent's targets, so
                # moving it while measuring would feed it back into itself; and a frozen agent
                # (principal phase) lags its moving targets, so only a learning agent's error
                # measures its accuracy.
                period = cfg.phase_length if cfg.schedule == "iterative" else cfg.auto_nudge_period
                due_nudge = (cfg.iterations - 1 - i) % period == 0
                estimate = states.tables.error
                new = cfg.auto_nudge_scale * self._accumulate(estimate)
                states = states.replace(
                    nudge=jnp.where(due_nudge, new, states.nudge), error_estimate=estimate
                )
            log = jax.tree_util.tree_map(lambda buf, m: buf.at[j].set(m), log, metrics)
            # the predicate is shared by all runs, so this stays a real branch under vmap
            due = (i + 1) % cfg.target_period == 0
            tables = jax.lax.cond(
                due,
                lambda p, n: refresh(envs, p, n),
                lambda p, n: states.tables,
                states.params,
                states.nudge,
            )
            return states.replace(tables=tables), log

        return jax.lax.fori_loop(0, length, body, (states, empty))

    def train_chunk(
        self, envs, states: LearnerState, num_iterations: int, start: int, batched: bool = False
    ):
        """Run ``num_iterations`` iterations from iteration ``start`` (host integers).

        ``batched``: ``envs``/``states`` carry a leading run axis trained together with
        ``vmap`` (best on accelerators); otherwise one run. The range is split where the
        trained networks change, and each piece runs in a loop specialised to them (no
        branching on the phase inside). Returns the new state(s) and per-iteration
        :class:`IterationMetrics` (``[iters]`` or ``[iters, runs]``).
        """
        pieces = []
        seg_start = start
        for i in range(start, start + num_iterations + 1):
            end = i == start + num_iterations
            if end or self.phase_nets(i) != self.phase_nets(seg_start):
                pieces.append((seg_start, i - seg_start, self.phase_nets(seg_start)))
                seg_start = i
        logs = []
        for seg_start, length, nets in pieces:
            states, log = self._segment_jit(
                envs, states, seg_start, length, nets, num_iterations, batched
            )
            logs.append(jax.tree_util.tree_map(lambda x, n=length: x[:n], log))
        metrics = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *logs)
        return states, metrics


def learner_spec(game) -> LearnerSpec:
    """Static shapes for a game; time is an input when a state can recur within the horizon."""
    from contractrl.sweep import make_schedule

    needs_time = game.horizon is not None and make_schedule(game).kind == "time"
    effective = float(game.horizon) if game.horizon is not None else 1.0 / (1.0 - game.discount)
    return LearnerSpec(
        game.num_states, game.num_actions, game.num_outcomes, game.horizon, needs_time, effective
    )


@functools.partial(jax.jit, static_argnums=(0, 3))
def init_state(learner: Learner, env, key, batched: bool = False) -> LearnerState:
    """Initial state of one run, or of several (``env``/``key`` stacked) when ``batched``."""
    return jax.vmap(learner.init)(env, key) if batched else learner.init(env, key)
