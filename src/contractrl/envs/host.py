"""A PettingZoo ``ParallelEnv`` as a protocol environment, stepped on the host.

The learners run inside compiled programs (``lax.scan`` over iterations); an environment not
written in JAX is stepped from them through host callbacks (``jax.experimental.io_callback``):
the compiled program stops at each environment step, Python steps the PettingZoo environment,
and the learner's update runs compiled as before. Much slower than a JAX environment
(docs/your-environment.md measures it), but any ``ParallelEnv`` with discrete actions works.

The JAX-side state of an episode is a *handle* (which host instance plays it) and the step
count; :class:`PettingZooEnv` keeps a pool of instances, one per episode played at once (one
per learner in training, one per evaluation episode): ``reset`` takes a new one, an episode's
end resets its instance in place, and the least recently used instances are closed beyond
``capacity`` (4,096); an episode whose instance was closed fails with a message (never a
silent restart). Agents that leave an episode early get no action; the protocol has no
per-agent end, so they count as present (rewards 0) until the episode ends. Under ``vmap``
each element needs its own key (a shared key would share instances): the ``vmap`` experiment
backend, which evaluates masks with one key, refuses host environments.
Under ``vmap`` every element calls the host in turn (``jax.custom_batching.sequential_vmap``).
Seeds: ``reset(key)`` seeds the instance from ``key``, so a seeded run repeats exactly.
Checkpoints cannot hold a host environment's state: a run resumed from a checkpoint starts a
fresh episode where the interrupted one stood.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.experimental import io_callback

from contractrl.envs.adapters import EnvUnusableError, _discrete_size


@struct.dataclass
class HostState:
    """A host episode: the instance's ``handle`` and the step ``t``."""

    handle: jax.Array
    t: jax.Array


class PettingZooEnv:
    """A PettingZoo ``ParallelEnv`` factory as a protocol environment (module docstring).

    ``runs_on_host`` tells the experiment pipeline that this environment cannot be a lane of a
    ``vmap``-ed program.

    Args:
        factory: ``factory(**kwargs)`` returns a fresh ``ParallelEnv``.
        kwargs: its keyword arguments.
        max_steps: the episode limit (default: ``max_steps`` in ``kwargs``, else the
            environment's ``max_steps`` or ``max_cycles`` attribute).
        name: shown in messages.
    """

    runs_on_host = True

    def __init__(
        self,
        factory: Callable[..., Any],
        kwargs: dict | None = None,
        max_steps: int | None = None,
        name: str = "pettingzoo",
    ):
        self.factory, self.kwargs, self.name = factory, dict(kwargs or {}), name
        probe = factory(**self.kwargs)
        self.agents = tuple(probe.possible_agents)
        sizes = {_discrete_size(probe.action_space(a), a) for a in self.agents}
        shapes = {tuple(probe.observation_space(a).shape) for a in self.agents}
        if len(sizes) != 1 or len(shapes) != 1:
            raise EnvUnusableError(
                f"{name}: agents differ in actions {sorted(sizes)} or observation shapes "
                f"{sorted(shapes)}; the learners share one network across agents"
            )
        limit = max_steps
        for attr in ("max_steps", "max_cycles"):
            limit = limit if limit is not None else getattr(probe, attr, None)
        if not isinstance(limit, int | np.integer) or limit < 1:
            raise EnvUnusableError(f"{name}: no episode limit found; pass max_steps")
        probe.close()
        self.num_agents = len(self.agents)
        self.num_actions = sizes.pop()
        self.observation_shape = shapes.pop() or (1,)
        self.max_steps = int(limit)
        self.capacity = 4096
        self._pool: OrderedDict[int, Any] = OrderedDict()
        self._closed: set[int] = set()
        self._next = 0
        self._obs = jax.ShapeDtypeStruct((self.num_agents, *self.observation_shape), jnp.float32)

    # ------------------------------------------------------------------ host side
    def _stack(self, obs: dict) -> np.ndarray:
        rows = [np.asarray(obs[a], np.float32).reshape(self.observation_shape) for a in self.agents]
        return np.stack(rows)

    def _instance(self, handle: int):
        """The pool's instance ``handle``, most recently used now; a new one if unknown."""
        env = self._pool.pop(handle, None)
        if env is None:
            if handle in self._closed:
                raise RuntimeError(
                    f"{self.name}: more than {self.capacity} episodes were played at once "
                    "(instance pool exhausted); lower eval_episodes"
                )
            env = self.factory(**self.kwargs)  # new, or from before a restart: a fresh one
        self._pool[handle] = env
        while len(self._pool) > self.capacity:  # the least recently used episode goes
            old_handle, old = self._pool.popitem(last=False)
            self._closed.add(old_handle)
            old.close()
        return env

    def _host_reset(self, key_data) -> tuple[np.ndarray, np.ndarray]:
        handle = self._next
        self._next = (self._next + 1) % (2**31 - 1)
        obs, _ = self._instance(handle).reset(seed=_seed(key_data))
        return self._stack(obs), np.int32(handle)

    def _host_step(self, handle, actions, key_data, at_limit):
        fresh_instance = int(handle) not in self._pool
        env = self._instance(int(handle))
        if fresh_instance:  # resumed from a checkpoint: the episode restarts
            env.reset(seed=_seed(key_data))
        live = set(env.agents)  # agents that left the episode get no action
        acts = {a: int(actions[i]) for i, a in enumerate(self.agents) if a in live}
        obs, rewards, terms, truncs, _ = env.step(acts)
        final = self._stack({a: obs.get(a, np.zeros(self.observation_shape)) for a in self.agents})
        rewards = np.asarray([rewards.get(a, 0.0) for a in self.agents], np.float32)
        terminated = all(terms.get(a, True) for a in self.agents)
        ended = terminated or bool(at_limit) or all(truncs.get(a, True) for a in self.agents)
        fresh = final
        if ended or not env.agents:
            obs, _ = env.reset(seed=_seed(key_data))
            fresh = self._stack(obs)
        return final, fresh, rewards, np.bool_(terminated), np.bool_(ended or not env.agents)

    # ------------------------------------------------------------------ protocol
    def reset(self, key: jax.Array):
        """A new episode on the next instance of the pool: ``(obs [n, ...], HostState)``."""

        @jax.custom_batching.sequential_vmap
        def call(key_data):
            spec = (self._obs, jax.ShapeDtypeStruct((), jnp.int32))
            return io_callback(self._host_reset, spec, key_data, ordered=False)

        obs, handle = call(_key_data(key))
        return obs, HostState(handle, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: HostState, actions: jax.Array):
        """One host step; the instance resets itself after an end (protocol)."""

        @jax.custom_batching.sequential_vmap
        def call(handle, acts, key_data, at_limit):
            spec = (
                self._obs,
                self._obs,
                jax.ShapeDtypeStruct((self.num_agents,), jnp.float32),
                jax.ShapeDtypeStruct((), jnp.bool_),
                jax.ShapeDtypeStruct((), jnp.bool_),
            )
            args = (handle, acts, key_data, at_limit)
            return io_callback(self._host_step, spec, *args, ordered=False)

        t = state.t + 1
        at_limit = t >= self.max_steps
        final, fresh, rewards, terminated, ended = call(
            state.handle, actions, _key_data(key), at_limit
        )
        truncated = ended & ~terminated
        next_state = HostState(state.handle, jnp.where(ended, 0, t))
        return fresh, next_state, rewards, terminated, truncated, {"final_obs": final}


def _key_data(key: jax.Array) -> jax.Array:
    """Raw ``uint32`` words of a PRNG key (old-style or typed)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def _seed(key_data) -> int:
    """A host environment's seed from a key's words."""
    words = np.asarray(key_data, np.uint32).ravel()
    return (int(words[-1]) ^ (int(words[0]) << 1)) & 0x7FFFFFFF
