"""The multi-agent environment protocol every multi-agent learner is written against.

An environment is a set of pure, jittable functions over JAX arrays (one environment; ``vmap``
for a batch), with its sizes declared as attributes:

* ``num_agents`` ``n``, ``num_actions`` ``A`` (discrete, the same for every agent),
  ``observation_shape`` (one agent's observation; rank 3 means a ``[H, W, C]`` grid, channels
  last), ``max_steps`` (the episode limit: no episode lasts longer);
* ``reset(key) -> (obs [n, *observation_shape], state)``;
* ``step(key, state, actions [n]) -> (obs, state, rewards [n], terminated [], truncated [],
  info)`` — ``terminated``: the episode reached a terminal state (targets stop
  bootstrapping); ``truncated``: it hit a time limit (targets bootstrap through it). When either
  is true the environment **resets itself**: ``obs``/``state`` are the next episode's first,
  and ``info["final_obs"]`` (always present) is the observation the step reached, before the
  reset. ``rewards`` are those of the step itself, so a learner records the last step's rewards
  and payments before the reset takes effect.

In the paper's multi-agent model (Section 5) the principal observes the agents' actions and
pays an agent only when it followed its recommendation, so an environment needs nothing else.

Optional capabilities an environment may offer:

* :class:`SparseObservations` — the observation is a one-hot grid with a few ones per agent,
  computable from the state (the Coin Game): learners then store states, not observations,
  and evaluate their first layer from the ones (exact, several times cheaper);
  ``info["final_state"]`` then holds the state the step reached, before the reset;
* ``render(state) -> uint8 [H, W, 3]`` — a picture of one environment;
* ``measures`` — a tuple of names of per-agent quantities the environment counts on every step
  (e.g. Cleanup's ``waste_cleaned``); ``step`` then returns them in ``info["measures"]``, a dict
  of float ``[n]`` arrays (the step's own amounts, before the reset). Evaluation reports their
  per-episode totals per agent (who did what: the division of labour), and a formal contract
  (:mod:`contractrl.envs.transfers`) can pay for one of them;
* ``exact_export(discount) -> ExactExport`` — the rules as an exact tabular game with every
  state as the environment holds it (:class:`ExactExport`, :mod:`contractrl.envs.exact`): runs
  are then audited against the exact solution.

:class:`MultiAgentEnv` is a base class that supplies the time limit and the auto-reset: a
subclass writes ``reset_env`` and ``step_env`` (the raw dynamics, without either) and gets the
protocol's ``reset``/``step``. An environment may also implement ``reset``/``step`` itself.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@dataclass(frozen=True, eq=False)
class ExactExport:
    """An environment's exact game and its states as the environment holds them.

    Attributes:
        game: the tabular :class:`~contractrl.core.markov_game.MarkovGame` (``S`` states);
            time is the solver's step index.
        obs: ``[S, n, *observation_shape]`` every agent's observation of state ``s``.
        states: the protocol state of ``s`` (a pytree, leading axis ``S``; step ``t = 0``,
            which the observations do not show).
    """

    game: Any
    obs: jax.Array
    states: Any


@struct.dataclass
class TimeLimitState:
    """What :class:`MultiAgentEnv` keeps: the environment's own state ``inner``, the step ``t``."""

    inner: Any
    t: jax.Array


class MultiAgentEnv:
    """Base class of protocol environments (module docstring).

    Subclasses set ``num_agents``, ``num_actions``, ``observation_shape`` and ``max_steps`` and
    write

    * ``reset_env(key) -> (obs [n, *observation_shape], inner_state)``;
    * ``step_env(key, inner_state, actions [n]) -> (obs, inner_state, rewards [n],
      terminated [])``, or with a fifth item, the dict of the step's ``measures`` (float
      ``[n]`` each, keys exactly the class's ``measures``).

    ``step`` counts steps, truncates at ``max_steps`` and resets after the last step (keys:
    ``step`` splits its key into the dynamics' and the reset's); ``info["final_state"]`` is the
    :class:`TimeLimitState` the step reached. A subclass that can draw itself defines
    ``render(state)`` for that state (its own state is ``state.inner``). With
    ``limit_ends_as_truncation`` an end the dynamics report on the step that reaches
    ``max_steps`` counts as a truncation (for wrapped environments that report their own time
    limit as an end).
    """

    num_agents: int
    num_actions: int
    observation_shape: tuple[int, ...]
    max_steps: int
    limit_ends_as_truncation: bool = False
    measures: tuple[str, ...] = ()

    def reset_env(self, key: jax.Array):
        """A new episode's ``(obs, inner_state)`` (subclasses)."""
        raise NotImplementedError

    def step_env(self, key: jax.Array, state, actions: jax.Array):
        """One step of the raw dynamics ``(obs, state, rewards, terminated)`` (subclasses)."""
        raise NotImplementedError

    def reset(self, key: jax.Array):
        """``(obs [n, ...], state)`` of a new episode."""
        obs, inner = self.reset_env(key)
        return obs, TimeLimitState(inner, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: TimeLimitState, actions: jax.Array):
        """One step with the time limit and the auto-reset (module docstring)."""
        k_step, k_reset = jax.random.split(key)
        out = self.step_env(k_step, state.inner, actions)
        obs, inner, rewards, terminated = out[:4]
        measures = out[4] if len(out) > 4 else {}
        t = state.t + 1
        terminated = jnp.asarray(terminated, bool)
        at_limit = t >= self.max_steps
        if self.limit_ends_as_truncation:
            terminated = terminated & ~at_limit
        truncated = at_limit & ~terminated
        done = terminated | truncated
        fresh_obs, fresh = self.reset(k_reset)
        reached = TimeLimitState(inner, t)
        next_state = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), fresh, reached)
        next_obs = jnp.where(done, fresh_obs, obs)
        info = {"final_obs": obs, "final_state": reached}
        if self.measures:
            info["measures"] = {
                name: jnp.asarray(measures[name], jnp.float32) for name in self.measures
            }
        return next_obs, next_state, jnp.asarray(rewards, jnp.float32), terminated, truncated, info


class SparseObservations:
    """Capability: one-hot grid observations given by their ones, computed from states.

    An environment with it has ``observation_shape == (H, W, C)`` and every agent's
    observation has exactly ``K`` ones; ``info["final_state"]`` is returned by ``step``.
    Methods (states may carry any leading batch dimensions):

    * ``observation_ones(states) -> (cells [..., n, K], channels [..., n, K])`` — the flat cell
      ``h * W + w`` and the channel of each one of every agent's observation;
    * ``distinct_observation_ones() -> (cells [D, K], channels [D, K]) | None`` — every
      observation an agent can see (``None``: too many to enumerate);
    * ``observation_ids(cells, channels) -> [..., n]`` — the row of
      ``distinct_observation_ones`` of each observation.
    """


def validate_env(env: Any) -> None:
    """Raise ``ValueError`` naming what a protocol environment lacks (before any work)."""
    for name in ("num_agents", "num_actions", "max_steps"):
        value = getattr(env, name, None)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"{name}: the environment must declare a positive integer, got {value!r}"
            )
    if env.num_agents < 2:
        raise ValueError(
            f"num_agents: contracts for a team need at least 2 agents, got {env.num_agents}"
        )
    if env.num_actions < 2:
        raise ValueError(f"num_actions: at least 2 discrete actions needed, got {env.num_actions}")
    shape = getattr(env, "observation_shape", None)
    if (
        not isinstance(shape, tuple | list)
        or not shape
        or not all(isinstance(d, numbers.Integral) and d >= 1 for d in shape)
    ):
        raise ValueError(f"observation_shape: a tuple of positive integers needed, got {shape!r}")
    for name in ("reset", "step"):
        if not callable(getattr(env, name, None)):
            raise ValueError(f"{name}: the environment has no {name}(...) method")
    if isinstance(env, SparseObservations) and len(shape) != 3:
        raise ValueError(f"observation_shape: sparse observations need [H, W, C], got {shape}")
    check_outputs(env)


def check_outputs(env: Any) -> None:
    """Raise ``ValueError`` if ``reset``/``step`` return other shapes than the protocol's.

    Traced abstractly (``jax.eval_shape``: nothing runs), so a wrong shape is named before any
    training starts rather than deep inside a compiled program.
    """
    n, shape = env.num_agents, tuple(env.observation_shape)
    try:
        obs, state = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
        actions = jax.ShapeDtypeStruct((n,), jnp.int32)
        out = jax.eval_shape(env.step, jax.random.PRNGKey(0), state, actions)
    except Exception as exc:  # noqa: BLE001 - the env's own code: report it in one line
        raise ValueError(f"reset/step: tracing them failed: {type(exc).__name__}: {exc}") from None
    if tuple(obs.shape) != (n, *shape):
        raise ValueError(f"reset: observations of shape {tuple(obs.shape)}, expected {(n, *shape)}")
    if not isinstance(out, tuple) or len(out) != 6:
        raise ValueError(
            "step: must return (obs, state, rewards, terminated, truncated, info), got "
            f"{type(out).__name__} of {len(out) if isinstance(out, tuple) else '?'} items"
        )
    next_obs, _, rewards, terminated, truncated, info = out
    checks = [
        ("step: observations", tuple(next_obs.shape), (n, *shape)),
        ("step: rewards", tuple(getattr(rewards, "shape", ())), (n,)),
        ("step: terminated", tuple(getattr(terminated, "shape", (-1,))), ()),
        ("step: truncated", tuple(getattr(truncated, "shape", (-1,))), ()),
    ]
    for what, got, want in checks:
        if got != want:
            raise ValueError(f"{what} of shape {got}, expected {want}")
    declared = tuple(getattr(env, "measures", ()) or ())
    if len(set(declared)) < len(declared):
        raise ValueError(f"measures: names must be distinct, got {declared}")
    if declared:
        got = info.get("measures") if isinstance(info, dict) else None
        if not isinstance(got, dict) or set(got) != set(declared):
            raise ValueError(
                f"step: info['measures'] must hold exactly the declared measures {declared}, "
                f"got {sorted(got) if isinstance(got, dict) else got!r}"
            )
        for name in declared:
            if tuple(got[name].shape) != (n,):
                raise ValueError(
                    f"step: info['measures'][{name!r}] of shape {tuple(got[name].shape)}, "
                    f"expected {(n,)}"
                )
    final = info.get("final_obs") if isinstance(info, dict) else None
    if final is None or tuple(final.shape) != (n, *shape):
        raise ValueError(
            f"step: info['final_obs'] of shape {(n, *shape)} needed (the observation "
            "the step reached, before the auto-reset)"
        )


def has_sparse_observations(env: Any) -> bool:
    """Whether ``env`` offers the :class:`SparseObservations` fast path."""
    return isinstance(env, SparseObservations)
