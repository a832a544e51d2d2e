"""Shared pieces of the multi-agent learners: config, replay of encoder views, DQN helpers."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from contractrl._validate import require, require_positive_ints
from contractrl.envs.protocol import validate_env
from contractrl.learning import replay
from contractrl.learning.schedules import exponential_lr, linear_epsilon
from contractrl.multiagent.networks import _dense_layers, head_from_first
from contractrl.multiagent.torso import make_encoder

CLIP_SCOPES = ("per_network", "global")
TIME_LIMITS = ("truncate", "terminate")
PRINCIPAL_COSTS = ("charge_all", "followers_only", "unpaid_deviations")
PRINCIPAL_HEADS = ("vdn", "joint")
#: Largest joint action space ``A**n`` a ``joint`` principal head enumerates.
MAX_JOINT_ACTIONS = 4096


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Hyper-parameters of the multi-agent learners (defaults: the paper's, Appendix D.2).

    Attributes:
        iterations: iterations of each phase (1 environment step + 1 gradient step each).
        batch_size: transitions per gradient step.
        target_period: iterations between target-network copies.
        lr_start: initial learning rate (Adam).
        lr_end: final learning rate (exponential decay).
        epsilon_start: initial exploration rate.
        epsilon_end: final exploration rate.
        epsilon_fraction: share of the phase over which ε decays linearly.
        gamma: discount.
        replay_capacity: replay slots (unless ``replay_fraction`` is set).
        replay_fraction: replay slots as a share of the phase's iterations, replacing
            ``replay_capacity`` when set (the paper's 100k slots for 1M iterations is 0.1; at
            shorter budgets a fixed 100k never evicts anything). At least ``batch_size``.
        prioritized: prioritised replay.
        priority_alpha: prioritisation exponent.
        priority_beta: importance-weight exponent.
        priority_eps: priority floor.
        alpha: weight of payments in the principal's objective (``r^p = Σ r_i / α -
            payments``; the principal's target per agent is ``r_i - α b_i + γ max q'``).
        follow_prob: probability that an agent follows in an episode (training phase)
            **[choice]**.
        nudge: added to every contract (0: the agent is indifferent).
        conv_padding: ``auto``, ``valid`` or ``circular`` (see :mod:`.networks`).
        conv_channels: channels of the conv layer.
        hidden: widths of the dense layers.
        loss: ``huber`` or ``mse``.
        max_grad_norm: gradient-norm clip (``None``: none).
        clip_scope: ``per_network`` (each network — the agents', the principal's — clipped to
            ``max_grad_norm`` on its own, so a large principal error does not shrink the
            update of the network the contracts come from) or ``global`` (one norm over all).
        learning_starts: iterations of each phase that only collect experience before the
            first gradient step **[choice]**.
        time_limit: ``truncate`` — the horizon is a time limit and targets bootstrap through
            it (a game without terminal states, whose observations carry no time) — or
            ``terminate`` — targets stop at the horizon as if it were terminal.
        principal_cost: how the principal's VDN target charges agents that did not follow
            their recommendation in the training phase: ``charge_all`` — every agent's term
            pays the contract for the action it took, as if recommended (Algorithm 2's
            target) — ``followers_only`` — only followers' terms enter the VDN sum — or
            ``unpaid_deviations`` — non-followers' actions enter at no cost.
        explore_recommendations: followers play the principal's ε-greedy recommendation in
            the training phase (the paper's Algorithm 3), so the agents' ``Q((s, f_-i = 1),
            ·)`` the contracts come from is the value against an exploring partner. ``False``:
            followers play the greedy recommendation (contracts priced against a greedy
            partner, the one the plan has); exploration comes from the non-followers alone.
        principal_head: the principal's Q-function: ``vdn`` (the paper's Algorithm 3: one
            ``q_θ(s_i, a_i)`` per agent, summed, each agent recommended its own argmax) or
            ``joint`` (beyond the paper: one ``Q_θ(s, j)`` over joint actions ``j`` from every
            agent's observation, for small ``A**n``; it can recommend *different* actions to
            agents in identical situations, which VDN with shared parameters cannot:
            docs/escape-room.md).
        replay_sampler: how prioritised replay draws: ``sum_tree`` (a descent of the sum
            tree, ``O(B log M)``) or ``prefix_sum`` (one cumulative sum and one comparison:
            fewer, larger operations, for accelerators where a small update is bound by
            kernel launches). The same distribution; the draws differ by float rounding.
    """

    iterations: int = 1_000_000
    batch_size: int = 128
    target_period: int = 100
    lr_start: float = 5e-4
    lr_end: float = 1e-4
    epsilon_start: float = 0.4
    epsilon_end: float = 0.0
    epsilon_fraction: float = 1.0
    gamma: float = 0.99
    replay_capacity: int = 100_000
    replay_fraction: float | None = None
    prioritized: bool = True
    priority_alpha: float = 0.4
    priority_beta: float = 0.0
    priority_eps: float = 1e-7
    alpha: float = 0.1
    follow_prob: float = 0.5
    nudge: float = 0.0
    conv_padding: str = "auto"
    conv_channels: int = 32
    hidden: tuple[int, ...] = (64, 64)
    loss: str = "huber"
    max_grad_norm: float | None = 10.0
    clip_scope: str = "per_network"
    learning_starts: int = 1_000
    time_limit: str = "truncate"
    principal_cost: str = "charge_all"
    replay_sampler: str = "sum_tree"
    principal_head: str = "vdn"
    explore_recommendations: bool = True

    @property
    def replay_slots(self) -> int:
        """Replay slots: ``replay_fraction`` of the phase when set, else ``replay_capacity``."""
        if self.replay_fraction is None:
            return self.replay_capacity
        return max(self.batch_size, round(self.replay_fraction * self.iterations))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        require_positive_ints(
            self, ("iterations", "batch_size", "target_period", "replay_capacity", "conv_channels")
        )
        if self.replay_capacity < self.batch_size:  # the capacity is what a user lowers
            raise ValueError(
                f"replay_capacity: must be >= batch_size ({self.batch_size}), got "
                f"{self.replay_capacity}"
            )
        require(
            self,
            [
                ("lr_start", self.lr_start > 0),
                ("lr_end", self.lr_end > 0),
                (
                    "replay_fraction",
                    self.replay_fraction is None or 0 < self.replay_fraction <= 1,
                    ["0 < replay_fraction <= 1, or none"],
                ),
                ("epsilon_start", 0 <= self.epsilon_start <= 1),
                ("epsilon_end", 0 <= self.epsilon_end <= 1),
                ("epsilon_fraction", 0 < self.epsilon_fraction <= 1),
                ("gamma", 0 < self.gamma <= 1),
                ("alpha", self.alpha > 0),
                ("follow_prob", 0 <= self.follow_prob <= 1),
                ("nudge", np.isfinite(self.nudge) and self.nudge >= 0),
                ("loss", self.loss in ("huber", "mse"), ("huber", "mse")),
                ("hidden", len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden)),
                ("max_grad_norm", self.max_grad_norm is None or self.max_grad_norm > 0),
                ("clip_scope", self.clip_scope in CLIP_SCOPES, CLIP_SCOPES),
                ("learning_starts", isinstance(self.learning_starts, int)),
                (
                    "learning_starts",
                    0 <= self.learning_starts < self.iterations,
                    ["0 <= learning_starts < iterations"],
                ),
                ("time_limit", self.time_limit in TIME_LIMITS, TIME_LIMITS),
                ("principal_cost", self.principal_cost in PRINCIPAL_COSTS, PRINCIPAL_COSTS),
                ("replay_sampler", self.replay_sampler in replay.SAMPLERS, replay.SAMPLERS),
                ("principal_head", self.principal_head in PRINCIPAL_HEADS, PRINCIPAL_HEADS),
            ],
        )


@struct.dataclass
class Transition:
    """One stored step, ``[n]`` arrays; ``obs``/``next_obs`` are the encoder's views.

    ``terminal`` (scalar, 0/1) stops the bootstrap: the step ended the episode in a terminal
    state (or hit the time limit under ``time_limit = "terminate"``). ``next_obs`` is the view
    of what the step reached, before any reset.
    """

    obs: Any
    next_obs: Any
    actions: jax.Array
    recs: jax.Array
    follow: jax.Array
    rewards: jax.Array
    terminal: jax.Array


class LearnerBase:
    """Static settings shared by the multi-agent learners.

    Args:
        env: a protocol environment (:mod:`contractrl.envs.protocol`).
        config: hyper-parameters.
    """

    #: Top-level keys of the parameters that are separate networks (clipped one by one under
    #: ``clip_scope = "per_network"``); empty: the parameters are one network.
    networks: tuple[str, ...] = ()

    def __init__(self, env, config: DQNConfig):
        validate_env(env)
        config.validate()
        self.env = env
        self.config = config
        self.encoder = make_encoder(env, config.conv_padding, config.conv_channels, config.hidden)
        self.epsilon = linear_epsilon(
            config.epsilon_start,
            config.epsilon_end,
            int(config.epsilon_fraction * config.iterations),
        )
        self.lr = exponential_lr(config.lr_start, config.lr_end, config.iterations)
        self.optimizer = optax.scale_by_adam()
        joint = env.num_actions**env.num_agents
        if config.principal_head == "joint" and joint > MAX_JOINT_ACTIONS:
            raise ValueError(
                f"principal_head: 'joint' enumerates num_actions**num_agents = {joint} joint "
                f"actions, more than {MAX_JOINT_ACTIONS}; use 'vdn'"
            )
        # digit weights of a joint action: agent 0 the most significant (core.markov_game)
        self._joint_weights = jnp.asarray(
            env.num_actions ** np.arange(env.num_agents - 1, -1, -1), jnp.int32
        )

    @property
    def n(self) -> int:
        """Number of agents."""
        return self.env.num_agents

    @property
    def num_actions(self) -> int:
        """Actions per agent."""
        return self.env.num_actions

    def example_transition(self) -> Transition:
        """A zero transition with the right shapes (for the replay buffer)."""
        n = self.n
        view = self.encoder.example()
        ints, floats = jnp.zeros(n, jnp.int32), jnp.zeros(n, jnp.float32)
        return Transition(view, view, ints, ints, floats, floats, jnp.zeros((), jnp.float32))

    def terminal(self, terminated: jax.Array, truncated: jax.Array) -> jax.Array:
        """Whether a step's target stops bootstrapping (``time_limit``), float32 scalar."""
        stop = terminated
        if self.config.time_limit == "terminate":
            stop = stop | truncated
        return stop.astype(jnp.float32)

    def clip(self, grads):
        """Gradients clipped to ``max_grad_norm`` per top-level network or globally."""
        cfg = self.config
        if not cfg.max_grad_norm:
            return grads
        if cfg.clip_scope == "global" or not self.networks:
            return clip_by_norm(grads, cfg.max_grad_norm)
        return {name: clip_by_norm(grads[name], cfg.max_grad_norm) for name in self.networks}

    def init_network(self, key: jax.Array, extra: int) -> dict:
        """Parameters of one Q-network with ``extra`` inputs after the torso."""
        return self.encoder.init(key, extra, self.num_actions)

    # ------------------------------------------------------------ the principal's Q
    def init_principal(self, key: jax.Array) -> dict:
        """Parameters of the principal's Q-network (``principal_head``)."""
        if self.config.principal_head == "vdn":
            return self.init_network(key, 0)
        k_torso, k_joint = jax.random.split(key)
        width = self.config.hidden[0]
        joint = self.num_actions**self.n
        return {
            "torso": self.init_network(k_torso, 0),
            "joint": _dense_layers(k_joint, [(self.n * width, width), (width, joint)]),
        }

    def joint_q(self, principal_params, views) -> jax.Array:
        """``[..., A**n]`` the ``joint`` head's ``Q_θ(s, j)``.

        Every agent's first-layer features (ReLU), concatenated, then two dense layers.
        """
        pre = self.first_layer(principal_params["torso"], views)  # [..., n, H]
        h = jax.nn.relu(pre).reshape(*pre.shape[:-2], -1)
        first, last = principal_params["joint"]
        h = jax.nn.relu(h @ first["w"] + first["b"])
        return h @ last["w"] + last["b"]

    def joint_index(self, actions: jax.Array) -> jax.Array:
        """``[...]`` the joint action of per-agent ``actions [..., n]``."""
        return jnp.sum(actions * self._joint_weights, axis=-1)

    def joint_actions(self, joint: jax.Array) -> jax.Array:
        """``[..., n]`` per-agent actions of joint actions ``joint [...]``."""
        return (joint[..., None] // self._joint_weights) % self.num_actions

    def principal_recommendations(self, principal_params, views, key=None, epsilon=0.0):
        """``[..., n]`` the principal's (ε-)greedy recommendations at ``views``.

        ``vdn``: each agent's own argmax of ``q_θ(s_i, ·)`` (ε per agent); ``joint``: the
        argmax joint action (ε over joint actions).
        """
        if self.config.principal_head == "vdn":
            q = self.q_values(principal_params, views)
            return jnp.argmax(q, axis=-1) if key is None else epsilon_greedy(key, q, epsilon)
        q = self.joint_q(principal_params, views)
        joint = jnp.argmax(q, axis=-1) if key is None else epsilon_greedy(key, q, epsilon)
        return self.joint_actions(joint)

    def first_layer(self, net_params, views) -> jax.Array:
        """First dense pre-activation ``[..., n, H]`` of every agent's observation of ``views``.

        Reusable across extra inputs (:func:`.networks.head_from_first`).
        """
        return self.encoder.first_layer(net_params, views)

    def q_values(self, net_params, views, extra=None) -> jax.Array:
        """``[..., n, A]`` Q-values of every agent at ``views`` (and extra inputs)."""
        return head_from_first(net_params, self.first_layer(net_params, views), extra)

    def contracts_from_first(self, agent_params, pre: jax.Array, recs: jax.Array, nudge):
        """The min-pay contracts ``[..., n]`` for recommendations ``recs [..., n]``.

        Computed from the agent network's first-layer pre-activation ``pre [..., n, H]`` with
        every other agent following (their follow bits all 1): :func:`follower_contracts`.
        The one place the learners build "the others follow".
        """
        all_follow = jnp.ones((*pre.shape[:-1], self.n - 1), jnp.float32)
        return follower_contracts(head_from_first(agent_params, pre, all_follow), recs, nudge)

    def agent_shape(self, views) -> tuple[int, ...]:
        """``(..., n)``: the batch dimensions of ``views`` and the agent axis."""
        return (*self.encoder.lead_shape(views), self.n)

    @property
    def keeps_tree(self) -> bool:
        """Whether the replay's sum tree needs its interior nodes (``replay_sampler``)."""
        return self.config.replay_sampler == "sum_tree"

    def store(self, buffer: replay.ReplayBuffer, transition: Transition):
        """``buffer`` with one more transition."""
        batch = jax.tree_util.tree_map(lambda x: x[None], transition)
        return replay.add_batch(buffer, batch, self.keeps_tree)

    def sample(self, buffer: replay.ReplayBuffer, key: jax.Array, i: jax.Array):
        """A replay batch ``(batch, indices, weights)`` at iteration ``i``.

        ``i >= 0`` (always true) is the fusion boundary's predicate (:func:`replay.sample`):
        the iteration counter is shared by the lanes of a ``vmap`` over runs, so the
        conditional stays a conditional there too.
        """
        cfg = self.config
        return replay.sample(
            buffer,
            key,
            cfg.batch_size,
            cfg.prioritized,
            cfg.priority_beta,
            shared=jnp.asarray(i) >= 0,
            sampler=cfg.replay_sampler,
        )

    def td_loss(self, delta: jax.Array, weights: jax.Array) -> jax.Array:
        """Weighted Huber or squared loss of TD errors ``[B, ...]``."""
        per = optax.huber_loss(delta) if self.config.loss == "huber" else 0.5 * delta**2
        per = per.reshape(per.shape[0], -1).mean(axis=1)
        return jnp.mean(weights * per)

    def learn(self, i, params, opt_state, target, buffer, key, loss_fn):
        """One learning step at iteration ``i`` of a phase (shared by the learners).

        Draws a replay batch; from iteration ``learning_starts`` on, takes a gradient step of
        ``loss_fn(params, batch, weights) -> (loss, (losses, priority [B]))`` (clipped, Adam at
        iteration ``i``'s learning rate) and sets the sampled transitions' priorities (before
        it, parameters and priorities stay as they are and ``losses`` are zeros); copies the
        target every ``target_period`` iterations. Returns
        ``(params, opt_state, target, buffer, losses)``.
        """
        cfg = self.config
        batch, idx, weights = self.sample(buffer, key, i)
        active = i >= cfg.learning_starts
        grads, (losses, priority) = jax.grad(loss_fn, has_aux=True)(params, batch, weights)
        new_params, new_opt_state = self.apply_updates(params, opt_state, grads, self.lr(i))
        # a select, not a conditional: a conditional around the step costs ~25% per iteration
        # (it stops XLA fusing across it); before ``learning_starts`` the step is discarded
        params = tree_where(active, new_params, params)
        opt_state = tree_where(active, new_opt_state, opt_state)
        losses = jax.tree_util.tree_map(lambda x: jnp.where(active, x, 0.0), losses)
        if cfg.prioritized:
            buffer = replay.update_priorities(
                buffer, idx, priority, cfg.priority_eps, active, self.keeps_tree
            )
        target = tree_where((i + 1) % cfg.target_period == 0, params, target)
        return params, opt_state, target, buffer, losses

    def apply_updates(self, params, opt_state, grads, lr):
        """One Adam step with learning rate ``lr`` (after clipping)."""
        updates, opt_state = self.optimizer.update(self.clip(grads), opt_state, params)
        params = optax.apply_updates(params, jax.tree_util.tree_map(lambda u: -lr * u, updates))
        return params, opt_state


def follower_contracts(q_all_follow: jax.Array, recs: jax.Array, nudge) -> jax.Array:
    """Contracts ``b_i = max_a Q_i(a) - Q_i(a_i) + nudge`` (paper Section 5.1), ``[..., n]``.

    ``q_all_follow [..., n, A]`` are the agents' Q-values with the others following and
    ``recs [..., n]`` the recommended actions.
    """
    chosen = jnp.take_along_axis(q_all_follow, recs[..., None], axis=-1)[..., 0]
    return jnp.max(q_all_follow, axis=-1) - chosen + nudge


def epsilon_greedy(key: jax.Array, q: jax.Array, epsilon) -> jax.Array:
    """``[..., A]`` Q-values -> actions ``[...]``: greedy, or uniform with probability ε."""
    k_explore, k_random = jax.random.split(key)
    greedy = jnp.argmax(q, axis=-1)
    random = jax.random.randint(k_random, greedy.shape, 0, q.shape[-1])
    return jnp.where(jax.random.uniform(k_explore, greedy.shape) < epsilon, random, greedy)


def others(bits: jax.Array) -> jax.Array:
    """``[..., n]`` per-agent values -> ``[..., n, n-1]``: for each agent, the others'."""
    n = bits.shape[-1]
    idx = np.array([[j for j in range(n) if j != i] for i in range(n)])
    return bits[..., idx]


def clip_by_norm(tree: Any, max_norm: float) -> Any:
    """``tree`` scaled by ``min(1, max_norm / ‖tree‖₂)`` (the norm over all its leaves)."""
    norm = optax.tree.norm(tree)
    scale = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
    return jax.tree_util.tree_map(lambda g: g * scale, tree)


def tree_where(cond, a: Any, b: Any) -> Any:
    """Leaf-wise ``where`` of two pytrees with a scalar condition."""
    return jax.tree_util.tree_map(lambda x, y: jnp.where(cond, x, y), a, b)
