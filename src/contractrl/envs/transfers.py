"""Budget-balanced transfers between agents, as environment wrappers (formal contracts, gifts).

They are the baselines of the incentive-design literature that contracts are compared with
(docs/escape-room.md, docs/cleanup.md).

Both wrap any protocol environment (:mod:`.protocol`) and change only the rewards (and, for
gifting, the actions), so the plain selfish learners train on them with the same network and
budget as every other phase. Transfers sum to zero over the agents on every step, so welfare
(``Σ_i r_i``) is the wrapped environment's.

* :class:`FormalContract` — the formal contract of Christoffersen, Haupt & Hadfield-Menell
  ("Get It in Writing: Formal Contracts Mitigate Social Dilemmas in Multi-Agent RL", AAMAS
  2023), in its fixed-price form: every unit of a contractible quantity ``m_i`` an agent
  produces (Cleanup's waste cleaned, Escape Room's lever pulls: the environment's
  ``contract_measure``) earns it ``θ``, paid in equal parts by the other agents:
  ``t_i = θ (m_i − Σ_{j≠i} m_j / (n − 1))``. ``θ = 0`` is the selfish game exactly.
* :class:`Gifting` — gifting (Lupu & Precup, "Gifting in Multi-Agent Reinforcement
  Learning", AAMAS 2020): one extra action, which does what the environment's no-op does
  (``noop_actions(state)``, or the ``noop_action`` index) and hands ``amount`` of the giver's
  reward to the others in equal parts.

Both add the measure ``transfer_received`` (``max(t_i, 0)`` per step: what the agent receives
net), which evaluation reports as the phase's payments, so budgets compare with the
principal's; :class:`Gifting` adds ``gifts`` (gift actions per agent).
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class _Wrapper:
    """Pass-through of the protocol's sizes, episode limit and optional ``render``."""

    def __init__(self, env: Any):
        self.env = env
        self.num_agents = env.num_agents
        self.num_actions = env.num_actions
        self.observation_shape = tuple(env.observation_shape)
        self.max_steps = env.max_steps
        declared = tuple(getattr(env, "measures", ()) or ())
        clash = sorted(set(declared) & set(self._added_measures))
        if clash:
            raise ValueError(
                f"baselines: the environment already declares the measure {clash[0]!r} (one "
                "transfer wrapper per environment)"
            )
        self.measures = declared + self._added_measures
        if getattr(env, "runs_on_host", False):
            self.runs_on_host = True
        # what the wrapped environment offers, passed on (render, bounds, the contract
        # measure and the no-op another wrapper may need)
        for name in ("render", "observation_bounds", "contract_measure", "noop_action"):
            if hasattr(env, name):
                setattr(self, name, getattr(env, name))
        if hasattr(env, "noop_actions"):
            self.noop_actions = env.noop_actions

    _added_measures: tuple[str, ...] = ()

    def reset(self, key: jax.Array):
        """The wrapped environment's reset."""
        return self.env.reset(key)

    def _measures(self, info: dict, **added) -> dict:
        out = dict(info)
        out["measures"] = dict(info.get("measures", {}), **added)
        return out


def _share_out(amounts: jax.Array) -> jax.Array:
    """``[n]`` transfers when agent ``i`` earns ``amounts[i]`` paid equally by the others.

    ``t_i = a_i − Σ_{j≠i} a_j / (n − 1)``; ``Σ_i t_i = 0``.
    """
    n = amounts.shape[-1]
    others = jnp.sum(amounts, axis=-1, keepdims=True) - amounts
    return amounts - others / (n - 1)


class FormalContract(_Wrapper):
    """The fixed-price formal contract on a contractible measure (module docstring).

    Args:
        env: a protocol environment declaring ``measure`` in its ``measures``.
        theta: the price ``θ`` per unit of the measure (reward units).
        measure: which measure is contracted on (default: the environment's
            ``contract_measure``).

    Raises:
        ValueError: naming ``theta`` or ``measure`` when they cannot be used.
    """

    _added_measures = ("transfer_received",)

    def __init__(self, env: Any, theta: float, measure: str | None = None):
        if not isinstance(theta, numbers.Real) or isinstance(theta, bool) or not np.isfinite(theta):
            raise ValueError(f"formal_thetas: a finite number needed, got {theta!r}")
        measure = measure or getattr(env, "contract_measure", None)
        declared = tuple(getattr(env, "measures", ()) or ())
        if not measure:
            raise ValueError(
                "formal_measure: the environment declares no contract_measure; name one of its "
                f"measures {declared}"
            )
        if measure not in declared:
            raise ValueError(
                f"formal_measure: {measure!r} is not one of the environment's measures {declared}"
            )
        self.theta = float(theta)
        self.measure = measure
        super().__init__(env)

    def __eq__(self, other) -> bool:
        return (
            type(other) is FormalContract
            and other.env == self.env
            and (other.theta, other.measure) == (self.theta, self.measure)
        )

    def __hash__(self) -> int:
        return hash(("formal_contract", self.env, self.theta, self.measure))

    def step(self, key: jax.Array, state, actions: jax.Array):
        """The wrapped step with ``t_i`` added to each agent's reward."""
        obs, state, rewards, terminated, truncated, info = self.env.step(key, state, actions)
        t = self.theta * _share_out(jnp.asarray(info["measures"][self.measure], jnp.float32))
        info = self._measures(info, transfer_received=jnp.maximum(t, 0.0))
        return obs, state, rewards + t, terminated, truncated, info


class Gifting(_Wrapper):
    """Gifting: an extra action that gives ``amount`` of reward to the others (docstring).

    Args:
        env: a protocol environment with ``noop_actions(state) -> [n]`` or a ``noop_action``
            index (what a gifting agent does in the environment).
        amount: reward given per gift (split equally among the others).
    """

    _added_measures = ("transfer_received", "gifts")

    def __init__(self, env: Any, amount: float):
        if (
            not isinstance(amount, numbers.Real)
            or isinstance(amount, bool)
            or not np.isfinite(amount)
            or amount <= 0
        ):
            raise ValueError(f"gift_amount: a positive number needed, got {amount!r}")
        if not hasattr(env, "noop_actions") and not isinstance(
            getattr(env, "noop_action", None), numbers.Integral
        ):
            raise ValueError(
                "baselines: 'gifting' needs an environment with noop_actions(state) or a "
                "noop_action index (what a gifting agent does)"
            )
        self.amount = float(amount)
        super().__init__(env)
        self.num_actions = env.num_actions + 1
        self.gift_action = env.num_actions

    def __eq__(self, other) -> bool:
        return type(other) is Gifting and other.env == self.env and other.amount == self.amount

    def __hash__(self) -> int:
        return hash(("gifting", self.env, self.amount))

    def _noop(self, state) -> jax.Array:
        if hasattr(self.env, "noop_actions"):
            return jnp.asarray(self.env.noop_actions(state), jnp.int32)
        return jnp.full(self.num_agents, int(self.env.noop_action), jnp.int32)

    def step(self, key: jax.Array, state, actions: jax.Array):
        """A gift plays the no-op and moves ``amount`` from the giver to the others."""
        actions = jnp.asarray(actions, jnp.int32)
        gifts = (actions == self.gift_action).astype(jnp.float32)
        played = jnp.where(gifts > 0, self._noop(state), actions)
        obs, state, rewards, terminated, truncated, info = self.env.step(key, state, played)
        t = -self.amount * _share_out(gifts)
        info = self._measures(info, transfer_received=jnp.maximum(t, 0.0), gifts=gifts)
        return obs, state, rewards + t, terminated, truncated, info
