"""Adapters that bring other libraries' multi-agent environments to the protocol.

:class:`JaxMARLEnv` wraps any `JaxMARL <https://github.com/FLAIROx/JaxMARL>`_
``MultiAgentEnv`` with discrete actions (the optional ``jaxmarl`` extra: ``pip install
'contractrl[jaxmarl]'``). JaxMARL's per-agent dicts become ``[n]``-leading arrays in the
order of ``env.agents``; the adapter steps the raw dynamics (``step_env``) and resets itself,
so the observation before the reset is kept (``info["final_obs"]``). JaxMARL reports one
``done`` per step: the adapter counts the steps and calls an episode's end *truncated* when it
comes at the declared ``max_steps`` and *terminated* otherwise.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from contractrl.envs.protocol import MultiAgentEnv


class EnvUnusableError(ValueError):
    """An environment cannot be used by the multi-agent learners (the message says why)."""


def _discrete_size(space: Any, agent: str) -> int:
    """Number of actions of a discrete space (JaxMARL's or Gymnasium's ``Discrete``)."""
    n = getattr(space, "n", None)
    if n is None or getattr(space, "shape", ()) not in ((), None):
        raise EnvUnusableError(
            f"agent {agent!r} has a {type(space).__name__} action space: contracts pay on "
            "discrete actions (an agent follows a recommended action or does not)"
        )
    return int(n)


class JaxMARLEnv(MultiAgentEnv):
    """A JaxMARL ``MultiAgentEnv`` as a protocol environment (module docstring).

    An end reported on the step that reaches ``max_steps`` is a truncation
    (``limit_ends_as_truncation``): JaxMARL environments report their own time limits as done.

    Args:
        env: the JaxMARL environment.
        max_steps: the episode limit (default: the environment's ``max_steps`` attribute).
        name: shown in messages and results.
    """

    limit_ends_as_truncation = True

    def __init__(self, env: Any, max_steps: int | None = None, name: str = "jaxmarl"):
        self.inner = env
        self.name = name
        self.agents = tuple(env.agents)
        sizes = {_discrete_size(env.action_space(a), a) for a in self.agents}
        if len(sizes) != 1:
            raise EnvUnusableError(
                f"{name}: agents have different numbers of actions {sorted(sizes)}; the learners "
                "share one network across agents"
            )
        shapes = {tuple(env.observation_space(a).shape) for a in self.agents}
        if len(shapes) != 1:
            raise EnvUnusableError(
                f"{name}: agents observe different shapes {sorted(shapes)}; the learners share "
                "one network across agents"
            )
        limit = max_steps if max_steps is not None else getattr(env, "max_steps", None)
        if not isinstance(limit, int | np.integer) or limit < 1:
            raise EnvUnusableError(
                f"{name}: no episode limit found; pass max_steps in --env-kwargs"
            )
        self.num_agents = len(self.agents)
        self.num_actions = sizes.pop()
        self.observation_shape = shapes.pop()
        self.max_steps = int(limit)

    def _stack(self, per_agent: dict) -> jax.Array:
        return jnp.stack([jnp.asarray(per_agent[a]) for a in self.agents])

    def reset_env(self, key: jax.Array):
        """``(obs [n, ...], JaxMARL state)``."""
        obs, state = self.inner.reset(key)
        return self._stack(obs).astype(jnp.float32), state

    def step_env(self, key: jax.Array, state, actions: jax.Array):
        """JaxMARL's raw dynamics with array actions."""
        acts = {a: actions[i] for i, a in enumerate(self.agents)}
        obs, state, rewards, dones, _ = self.inner.step_env(key, state, acts)
        terminated = jnp.asarray(dones["__all__"], bool)
        return self._stack(obs).astype(jnp.float32), state, self._stack(rewards), terminated


def from_jaxmarl(env_id: str, **kwargs) -> JaxMARLEnv:
    """``jaxmarl.make(env_id, **kwargs)`` as a protocol environment.

    ``max_steps`` among ``kwargs`` is passed to JaxMARL where the environment takes it and
    used as the episode limit either way.

    Raises:
        EnvUnusableError: jaxmarl is not installed, the id does not exist, or the environment
            cannot be used (continuous actions, agents that differ).
    """
    try:
        import jaxmarl
    except ImportError:
        raise EnvUnusableError(
            "jaxmarl is not installed: pip install 'contractrl[jaxmarl]' (or pip install jaxmarl)"
        ) from None
    registered = getattr(jaxmarl.registration, "registered_envs", None)
    if registered is not None and env_id not in registered:
        raise EnvUnusableError(
            f"jaxmarl has no environment {env_id!r} (known: {', '.join(sorted(registered))})"
        )
    try:
        env = jaxmarl.make(env_id, **kwargs)
    except TypeError as exc:
        limit = kwargs.pop("max_steps", None)
        if limit is None:
            raise EnvUnusableError(f"jaxmarl:{env_id}: {exc}") from None
        env = jaxmarl.make(env_id, **kwargs)
        return JaxMARLEnv(env, int(limit), f"jaxmarl:{env_id}")
    return JaxMARLEnv(env, kwargs.get("max_steps"), f"jaxmarl:{env_id}")
