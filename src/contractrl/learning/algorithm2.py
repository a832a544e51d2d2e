"""Learning contracts with deep Q-networks (paper Algorithm 2, docs/model.md §5).

The agent learns its *truncated* Q ``Q̄_φ(s, a)`` (without the current payment); the principal
learns the contractual ``q_θ(s, a*)``. Contracts are never learned: at any state they are the
min-pay contracts computed from ``Q̄_φ(s, ·)`` and the known outcome model ``P[s]``, inside the
jitted loop (:mod:`contractrl.learning.contracts`).

One iteration (paper App. D.1): ``num_envs`` environment interactions, then one gradient step on a
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
a leading axis and trained together with ``vmap``; iterations run in compiled loops.

Reading order: the TD targets (:func:`agent_targets`, :func:`principal_targets`) and losses
(:func:`td_losses`) are pure functions; :class:`Learner` acts (:meth:`Learner.act`), learns
(:meth:`Learner.learn`) and loops; :func:`train` runs it end to end. The speed machinery lives
in its own modules: row-sparse Adam (:mod:`.optim`), networks on a batch's distinct inputs
(:mod:`.distinct`) and target networks as tables (:mod:`.target_tables`).
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
from contractrl.learning import distinct, replay
from contractrl.learning.contracts import min_pay_all_targets
from contractrl.learning.networks import init_mlp, mlp_apply
from contractrl.learning.optim import RowSparseAdam
from contractrl.learning.schedules import exponential_lr, linear_epsilon
from contractrl.learning.target_tables import (
    ACCUMULATION,
    TargetTables,
    auto_nudge,
    one_step_errors,
    target_values,
)

SCHEDULES = ("simultaneous", "iterative")
LOSSES = ("huber", "mse")
AGENT_MODELS = ("truncated_q", "outcome_value")
PRINCIPAL_MODELS = ("contractual_q", "outcome_value")
ACCUMULATIONS = tuple(ACCUMULATION)


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Hyper-parameters of Algorithm 2 (defaults: the Tree MDP settings of paper App. D.1).

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
        nudge: fixed nudge ``ξ >= 0``; with ``auto_nudge``, the starting nudge (until the
            first automatic update).
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
        principal_model: ``contractual_q`` (the paper's: the principal network outputs
            ``q(s, ·)``) or ``outcome_value``: it outputs ``U(s, ·)``, the principal's expected
            value after each outcome, and ``q(s, a) = P[s, a]·(r^p(s, ·) - b_a + γ U(s, ·))``
            with ``b_a`` the min-pay contract computed now (paper Eq. 3). The payment a
            recommendation costs is then always the current agent network's, never a stale
            estimate learned under earlier contracts (needs the principal's reward table,
            which the principal knows).
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
    principal_model: str = "contractual_q"

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
                ("lr_start", self.lr_start > 0, ["> 0"]),
                ("lr_end", self.lr_end > 0, ["> 0"]),
                ("epsilon_start", 0 <= self.epsilon_start <= 1, ["[0, 1]"]),
                ("epsilon_end", 0 <= self.epsilon_end <= 1, ["[0, 1]"]),
                ("epsilon_fraction", 0 < self.epsilon_fraction <= 1, ["(0, 1]"]),
                ("loss", self.loss in LOSSES, LOSSES),
                ("agent_model", self.agent_model in AGENT_MODELS, AGENT_MODELS),
                (
                    "principal_model",
                    self.principal_model in PRINCIPAL_MODELS,
                    PRINCIPAL_MODELS,
                ),
                ("schedule", self.schedule in SCHEDULES, SCHEDULES),
                ("nudge", np.isfinite(self.nudge) and self.nudge >= 0, ["a finite number >= 0"]),
                ("priority_alpha", self.priority_alpha >= 0, [">= 0"]),
                ("priority_beta", self.priority_beta >= 0, [">= 0"]),
                ("priority_eps", self.priority_eps > 0, ["> 0"]),
                ("auto_nudge_scale", self.auto_nudge_scale >= 0, [">= 0"]),
                ("auto_nudge_quantile", 0 < self.auto_nudge_quantile <= 1, ["(0, 1]"]),
                (
                    "auto_nudge_accumulation",
                    self.auto_nudge_accumulation in ACCUMULATIONS,
                    ACCUMULATIONS,
                ),
                (
                    "hidden",
                    len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
                    ["one or more widths >= 1"],
                ),
                (
                    "max_grad_norm",
                    self.max_grad_norm is None or self.max_grad_norm > 0,
                    ["> 0, or none"],
                ),
            ],
        )
        if self.replay_capacity < self.batch_size:
            # the replay must hold one batch: name the field the user is likeliest to have set
            raise ValueError(
                f"replay_capacity: must be >= batch_size ({self.batch_size}), got "
                f"{self.replay_capacity} (or lower --batch-size)"
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


def learner_spec(game) -> LearnerSpec:
    """Static shapes for a game; time is an input when a state can recur within the horizon."""
    from contractrl.core.sweep import make_schedule

    needs_time = game.horizon is not None and make_schedule(game).kind == "time"
    effective = float(game.horizon) if game.horizon is not None else 1.0 / (1.0 - game.discount)
    return LearnerSpec(
        game.num_states, game.num_actions, game.num_outcomes, game.horizon, needs_time, effective
    )


# ---------------------------------------------------------------------------------- state
@struct.dataclass
class Transition:
    """One stored transition (all scalars; ``[B]`` in a batch)."""

    index: jax.Array
    state: jax.Array
    action: jax.Array
    outcome: jax.Array
    next_index: jax.Array
    agent_reward: jax.Array
    principal_reward: jax.Array
    end: jax.Array


@struct.dataclass
class LearnerState:
    """Everything one run carries between iterations (checkpointed as is).

    Attributes:
        params: ``{"agent": ..., "principal": ...}`` network parameters.
        opt_state: ``{net: NetOptState}`` (:mod:`.optim`).
        tables: the target networks as tables (:class:`TargetTables`).
        buffer: the replay buffer of :class:`Transition`.
        env_state: ``num_envs`` environments.
        key: PRNG key.
        nudge: the current ``ξ``.
        error_estimate: the automatic nudge's last one-step error quantile (0 if fixed).
    """

    params: Any
    opt_state: Any
    tables: TargetTables
    buffer: replay.ReplayBuffer
    env_state: tabular.TabularState
    key: jax.Array
    nudge: jax.Array
    error_estimate: jax.Array


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


# ------------------------------------------------------------------------- the equations
def truncated_q(agent_out, agent_model: str, agent_reward, outcome_probs, discount):
    """The agent's truncated Q ``Q̄(s, ·) [..., A]`` from its network's output.

    ``truncated_q``: the output itself. ``outcome_value``: the output is ``W(s, ·) [..., O]``
    and ``Q̄(s, a) = r(s, a) + γ Σ_o P[s, a, o] W(s, o)``.
    """
    if agent_model == "truncated_q":
        return agent_out
    return agent_reward + discount * jnp.einsum("...ao,...o->...a", outcome_probs, agent_out)


def contractual_q(principal_out, principal_model: str, contracts, principal_reward, probs, gamma):
    """The principal's contractual Q ``q(s, ·) [..., A]`` from its network's output.

    ``contractual_q``: the output itself. ``outcome_value``: the output is ``U(s, ·) [..., O]``
    and ``q(s, a) = Σ_o P[s, a, o] (r^p(s, o) - b_a(o) + γ U(s, o))`` with ``contracts
    [..., A, O]`` the min-pay contracts ``b_a`` (non-implementable actions are masked by the
    callers).
    """
    if principal_model == "contractual_q":
        return principal_out
    net = principal_reward[..., None, :] - contracts + gamma * principal_out[..., None, :]
    return jnp.sum(probs * net, axis=-1)


def agent_targets(batch: Transition, next_value, discount, agent_model: str):
    """The agent network's TD target ``[B]`` (what it predicts: :func:`td_losses`).

    ``next_value [B]`` is ``Q̄_φ'(s', a'*) + P[s', a'*]·b'(s')``: the agent's value at ``s'``
    following the next recommendation ``a'*`` under its min-pay contract ``b'``.

    * ``truncated_q`` predicts ``Q̄(s, a)``: ``y = r(s, a) + γ (1 - end) next_value``;
    * ``outcome_value`` predicts ``W(s, o)``: ``y = (1 - end) next_value``.
    """
    not_end = 1.0 - batch.end
    if agent_model == "truncated_q":
        return batch.agent_reward + discount * (not_end * next_value)
    return not_end * next_value


def principal_targets(batch: Transition, paid, next_q, discount):
    """The principal network's TD target ``[B]`` for ``q_θ(s, a)``, ``a`` the action taken.

    ``y = r^p(s, o) - b_a(o) + γ (1 - end) q_θ'(s', a'*)``, with ``paid [B] = b_a(o)`` the
    min-pay contract for ``a`` from the current ``Q̄_φ(s, ·)``: ``q(s, a)`` is the value of
    inducing ``a``. ``next_q [B]`` is ``q_θ'(s', a'*)``.
    """
    return batch.principal_reward - paid + discount * (1.0 - batch.end) * next_q


def td_losses(outputs, batch: Transition, weights, a_next, env, tables: TargetTables, nudge, cfg):
    """TD losses and errors of both networks on a batch.

    Args:
        outputs: ``{"agent": [B, A or O], "principal": [B, A]}`` the networks at ``batch.index``.
        batch: transitions.
        weights: ``[B]`` importance weights (1 for uniform replay).
        a_next: ``[B]`` the next recommendation ``argmax q_θ(s', ·)`` (online network).
        env: :class:`~contractrl.envs.tabular.TabularParams`.
        tables: target networks.
        nudge: ``ξ``.
        cfg: :class:`DQNConfig`.

    Returns:
        ``(losses, deltas)``: ``{net: scalar}`` and ``{net: [B]}`` TD errors. The principal's
        loss averages over transitions whose action was implementable.
    """
    agent_out = outputs["agent"]
    q_bar = truncated_q(
        agent_out,
        cfg.agent_model,
        env.agent_reward[batch.state],
        env.outcome_probs[batch.state],
        env.discount,
    )
    idx = jnp.arange(batch.index.shape[0])
    next_value = tables.agent_value[batch.next_index, a_next]
    y_agent = agent_targets(batch, next_value, env.discount, cfg.agent_model)
    if cfg.agent_model == "truncated_q":
        predicted = q_bar[idx, batch.action]
    else:  # W(s, o) is the expected next value after outcome o, whatever the action
        predicted = agent_out[idx, batch.outcome]
    contracts, _, ok = min_pay_all_targets(
        jax.lax.stop_gradient(q_bar), env.outcome_probs[batch.state], nudge
    )
    valid = ok[idx, batch.action].astype(jnp.float32)
    paid = jnp.where(valid > 0, contracts[idx, batch.action, batch.outcome], 0.0)
    next_q = tables.principal_q[batch.next_index, a_next]
    if cfg.principal_model == "contractual_q":
        y_principal = principal_targets(batch, paid, next_q, env.discount)
        predicted_p = outputs["principal"][idx, batch.action]
    else:  # U(s, o) is the principal's expected next value after o, whatever the action
        y_principal = (1.0 - batch.end) * next_q
        predicted_p = outputs["principal"][idx, batch.outcome]
    delta_agent = predicted - jax.lax.stop_gradient(y_agent)
    delta_principal = predicted_p - jax.lax.stop_gradient(y_principal)
    per = optax.huber_loss if cfg.loss == "huber" else (lambda d: 0.5 * d**2)
    losses = {
        "agent": jnp.mean(weights * per(delta_agent)),
        "principal": jnp.sum(weights * valid * per(delta_principal))
        / jnp.maximum(jnp.sum(valid), 1.0),
    }
    return losses, {"agent": delta_agent, "principal": delta_principal * valid}


# ------------------------------------------------------------------------------ learner
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
        self.optimizer = RowSparseAdam(
            spec.num_inputs, config.max_grad_norm, config.sparse_input_adam
        )
        self._segment_jit = jax.jit(self._segment, static_argnums=(4, 5, 6))
        self.q_tables = jax.jit(self._q_tables)

    # ------------------------------------------------------------------ inputs and tables
    def _index(self, state, t):
        """Network input of ``state`` at time ``t``: ``t·S + s`` with time input, else ``s``."""
        if self.spec.time_input:
            return t * self.spec.num_states + state
        return state

    def _state_of(self, index):
        return index % self.spec.num_states if self.spec.time_input else index

    def _agent_q(self, out, env, states):
        return truncated_q(
            out,
            self.config.agent_model,
            env.agent_reward[states],
            env.outcome_probs[states],
            env.discount,
        )

    def _principal_q(self, out, env, states, q_bar, nudge, contracts=None):
        """``q(s, ·) [N, A]`` from the principal network's output (:func:`contractual_q`)."""
        if self.config.principal_model == "contractual_q":
            return out
        if contracts is None:
            contracts = min_pay_all_targets(q_bar, env.outcome_probs[states], nudge)[0]
        return contractual_q(
            out,
            "outcome_value",
            contracts,
            env.principal_reward[states],
            env.outcome_probs[states],
            env.discount,
        )

    def _q_tables(self, params, env, nudge=0.0):
        """Both networks on every input: ``(Q̄ [I, A], q [I, A])`` (contracts with ``nudge``)."""
        idx = jnp.arange(self.spec.num_inputs)
        states = self._state_of(idx)
        q_bar = self._agent_q(mlp_apply(params["agent"], idx), env, states)
        q_p = self._principal_q(mlp_apply(params["principal"], idx), env, states, q_bar, nudge)
        if self.config.principal_model == "outcome_value":
            # where the contracts find a target not implementable (float32 near a degenerate
            # vertex, where float64 may still find one), its q has no contract: the learner
            # never recommends it, and neither may its evaluation
            ok = min_pay_all_targets(q_bar, env.outcome_probs[states], nudge)[2]
            q_p = jnp.where(ok, q_p, -jnp.inf)
        return q_bar, q_p

    def _refresh(self, env: tabular.TabularParams, params, nudge) -> TargetTables:
        """Target tables from the current networks (and the automatic nudge's error)."""
        q_bar, q_p = self._q_tables(params, env, nudge)
        states = self._state_of(jnp.arange(self.spec.num_inputs))
        value, ok, star = target_values(q_bar, q_p, env.outcome_probs[states], nudge)
        if self.config.auto_nudge:
            errors = self._model_errors(env, q_bar, star)
            error = jnp.quantile(errors, self.config.auto_nudge_quantile)
        else:
            error = jnp.zeros((), q_bar.dtype)
        return TargetTables(q_p, value, ok, star, error)

    def _model_errors(self, env, q_bar, star):
        """``[I, A]`` one-step errors of every input and action (:func:`one_step_errors`)."""
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
        return one_step_errors(
            q_bar, env.agent_reward[s], env.outcome_probs[s], env.discount, succ, succ_p, star
        )

    # ------------------------------------------------------------------ init
    def init(self, env: tabular.TabularParams, key: jax.Array, nudge=None) -> LearnerState:
        """Fresh state of one run (vmap over ``key`` and ``env`` for several runs).

        ``nudge``: the run's ``ξ`` (default ``config.nudge``; a per-run value, e.g. the Tree
        experiment's exact-price rule).
        """
        spec, cfg = self.spec, self.config
        k_agent, k_principal, k_reset, key = jax.random.split(key, 4)
        agent_outputs = spec.num_actions if cfg.agent_model == "truncated_q" else spec.num_outcomes
        params = {
            "agent": init_mlp(k_agent, spec.num_inputs, agent_outputs, cfg.hidden),
            "principal": init_mlp(
                k_principal,
                spec.num_inputs,
                spec.num_actions if cfg.principal_model == "contractual_q" else spec.num_outcomes,
                cfg.hidden,
            ),
        }
        nudge = jnp.asarray(cfg.nudge if nudge is None else nudge, jnp.float32)
        example = Transition(
            *(jnp.zeros((), jnp.int32) for _ in range(5)),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
        )
        return LearnerState(
            params=params,
            opt_state={name: self.optimizer.init(params[name]) for name in NETS},
            tables=self._refresh(env, params, nudge),
            buffer=replay.init_buffer(example, cfg.replay_capacity, cfg.priority_alpha),
            env_state=tabular.reset(env, k_reset, cfg.num_envs)[1],
            key=key,
            nudge=nudge,
            error_estimate=jnp.zeros((), jnp.float32),
        )

    # ------------------------------------------------------------------ acting
    def act(self, env, state: LearnerState, epsilon, key):
        """``num_envs`` interactions: recommend, offer the min-pay contract, the agent acts.

        The principal recommends ``a*`` ε-greedily over ``q_θ`` among implementable actions
        and offers the min-pay contract for it (nudge ``ξ``); the agent acts ε-greedily on
        ``Q̄_φ(s, a) + P[s, a]·b`` (ties within ``tie_tol`` toward ``a*``).

        Returns:
            ``(state, transitions [N], (mean payment, follow rate, share of episode ends))``.
        """
        cfg = self.config
        k_rec, k_rand_rec, k_agent, k_rand_agent, k_env = jax.random.split(key, 5)
        s, t = state.env_state.state, state.env_state.t
        index = self._index(s, t)
        q_bar = self._agent_q(mlp_apply(state.params["agent"], index), env, s)  # [N, A]
        probs = env.outcome_probs[s]  # [N, A, O]
        contracts, _, ok = min_pay_all_targets(q_bar, probs, state.nudge)
        q_p = self._principal_q(
            mlp_apply(state.params["principal"], index), env, s, q_bar, state.nudge, contracts
        )
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
        _, env_state, step = tabular.step(env, state.env_state, action, contract, k_env)
        # past the horizon the transition ends (bootstraps zero): any valid index will do
        t_next = jnp.minimum(t + 1, (self.spec.horizon or 1) - 1)
        transitions = Transition(
            index=index,
            state=s,
            action=action,
            outcome=step.outcome,
            next_index=self._index(step.next_state, t_next),
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
    def learn(self, env, state: LearnerState, buffer, key, lr, nets, batched: bool):
        """One gradient step of the networks ``nets`` (static) on a batch; the others frozen.

        Returns ``(params, opt_state, buffer, losses)``; the buffer's priorities are updated
        with the TD errors when replay is prioritised.
        """
        cfg, spec = self.config, self.spec
        batch, slots, weights = replay.sample(
            buffer, key, cfg.batch_size, cfg.prioritized, cfg.priority_beta
        )
        sizes = distinct.static_sizes(cfg.batch_size, cfg.dedup_sizes, batched)
        tables = state.tables
        if cfg.principal_model == "contractual_q":  # double DQN: the online network picks
            q_next = distinct.forward(
                state.params["principal"], batch.next_index, spec.num_inputs, sizes
            )
        else:  # its q needs the contracts at s': the target table's
            q_next = tables.principal_q[batch.next_index]
        a_next = jnp.argmax(
            jnp.where(tables.implementable[batch.next_index], q_next, -jnp.inf), axis=1
        )

        def loss(outputs):
            losses, deltas = td_losses(
                outputs, batch, weights, a_next, env, tables, state.nudge, cfg
            )
            return sum(losses[n] for n in nets), (losses, deltas)

        rows, grad_dense, grad_rows, (losses, deltas) = distinct.gradients(
            loss, state.params, nets, batch.index, spec.num_inputs, sizes
        )
        params, opt_state = self.optimizer.step(
            state.params, state.opt_state, grad_dense, grad_rows, rows, lr
        )
        if cfg.prioritized:
            td = sum(jnp.abs(deltas[n]) for n in nets)
            buffer = replay.update_priorities(buffer, slots, td, cfg.priority_eps)
        return params, opt_state, buffer, losses

    def _iteration(self, env, state: LearnerState, epsilon, lr, nets, batched=False):
        """Act, store, and take a gradient step of the networks ``nets``.

        ``nets`` is static; it is empty while the replay fills up.
        """
        key, k_act, k_learn = jax.random.split(state.key, 3)
        state = state.replace(key=key)
        state, transitions, (payment, follow, ends) = self.act(env, state, epsilon, k_act)
        buffer = replay.add_batch(state.buffer, transitions)
        agent_loss = principal_loss = jnp.zeros(())
        if nets:
            params, opt_state, buffer, losses = self.learn(
                env, state, buffer, k_learn, lr, nets, batched
            )
            agent_loss, principal_loss = losses["agent"], losses["principal"]
            state = state.replace(params=params, opt_state=opt_state)
        state = state.replace(buffer=buffer)
        metrics = IterationMetrics(
            agent_loss, principal_loss, state.nudge, state.error_estimate, payment, follow, ends
        )
        return state, metrics

    # ------------------------------------------------------------------ the loop
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
        nudge_period = cfg.phase_length if cfg.schedule == "iterative" else cfg.auto_nudge_period

        def body(j, carry):
            states, log = carry
            i = start + j
            states, metrics = iterate(envs, states, self.epsilon(i), self.lr(i))
            if cfg.auto_nudge and "agent" in nets:
                # The nudge moves at the end of each agent phase (iterative) or period
                # (simultaneous), from the error measured at a fixed nudge: a larger nudge
                # raises the agent's targets, so moving it while measuring would feed it back
                # into itself; and a frozen agent (principal phase) lags its moving targets, so
                # only a learning agent's error measures its accuracy.
                due_nudge = (cfg.iterations - 1 - i) % nudge_period == 0
                estimate = states.tables.error
                new = auto_nudge(
                    estimate,
                    cfg.auto_nudge_scale,
                    cfg.auto_nudge_accumulation,
                    self.spec.effective_horizon,
                )
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


@functools.cache
def cached_learner(spec: LearnerSpec, config: DQNConfig) -> Learner:
    """One compiled learner per (shapes, config) and process: runs reuse its jitted code."""
    return Learner(spec, config)


@functools.partial(jax.jit, static_argnums=(0, 3))
def init_state(learner: Learner, env, key, batched: bool = False, nudge=None) -> LearnerState:
    """Initial state of one run, or of several (``env``/``key`` stacked) when ``batched``.

    ``nudge``: the run's ``ξ`` (``[runs]`` when batched; default the config's).
    """
    if not batched:
        return learner.init(env, key, nudge)
    if nudge is None:
        return jax.vmap(learner.init)(env, key)
    return jax.vmap(learner.init)(env, key, jnp.asarray(nudge, jnp.float32))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train`.

    Attributes:
        learner: the learner (its jitted functions, spec and config).
        state: the final :class:`LearnerState`.
        metrics: :class:`IterationMetrics` of every iteration (``[iterations]`` leaves).
    """

    learner: Learner
    state: LearnerState
    metrics: IterationMetrics


def train(game, config: DQNConfig, seed: int = 0, chunk: int = 1000) -> TrainResult:
    """Algorithm 2 on ``game`` for ``config.iterations`` iterations, in one call.

    The experiments (:mod:`contractrl.experiments.tree`) run the same loop with checkpoints,
    evaluations and progress; this is the plain version, for scripts and notebooks.
    """
    learner = Learner(learner_spec(game), config)
    env = tabular.tabular_params(game)
    state = init_state(learner, env, jax.random.PRNGKey(seed))
    logs, done = [], 0
    while done < config.iterations:
        steps = min(chunk, config.iterations - done)
        state, metrics = learner.train_chunk(env, state, steps, done)
        logs.append(metrics)
        done += steps
    metrics = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *logs)
    return TrainResult(learner, state, metrics)
