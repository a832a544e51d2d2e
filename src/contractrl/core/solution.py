"""Result types of the exact solvers: :class:`SPESolution` and its iteration trace."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PrincipalPolicy:
    """A principal policy: a recommended action and a contract per ``(t, s)``.

    Tables have ``K`` rows: ``K = H`` (row ``t`` is used at time ``t``) or ``K = 1`` (the same
    decision at every time step).

    Attributes:
        action: ``[K, S]`` recommended action (``-1``: no recommendation; the agent then breaks
            ties toward the lowest index).
        contract: ``[K, S, O]`` payment per outcome, ``>= 0``.
    """

    action: np.ndarray
    contract: np.ndarray

    @property
    def num_rows(self) -> int:
        """``K``: 1 for a stationary policy, ``H`` for a time-indexed one."""
        return self.action.shape[0]

    @classmethod
    def pay_nothing(cls, num_states: int, num_outcomes: int) -> PrincipalPolicy:
        """The zero contract everywhere, no recommendation (Algorithm 1's default ``ρ_0``)."""
        return cls(
            np.full((1, num_states), -1, dtype=np.int64), np.zeros((1, num_states, num_outcomes))
        )


@dataclass(frozen=True)
class IterationRecord:
    """One iteration of an iterative solver (meta-algorithm).

    Attributes:
        iteration: 1-based iteration number.
        principal_value: principal's value at ``(t=0, s0)`` after this iteration.
        agent_value: agent's value at ``(t=0, s0)`` under the previous policy (its best
            response, which this iteration answered).
        decisions_changed: number of ``(t, s)`` whose recommended action or contract changed.
        q_change: sup-norm change of the principal's contractual Q (entries finite before and
            after); ``inf`` on the first iteration.
        principal_q: ``[K, S, A]`` the contractual Q, kept only when asked for.
    """

    iteration: int
    principal_value: float
    agent_value: float
    decisions_changed: int
    q_change: float
    principal_q: np.ndarray | None = None


@dataclass(frozen=True)
class Decision:
    """The equilibrium decision at one ``(t, s)``.

    ``action_name`` and ``contract_by_outcome`` (outcome name -> payment) are filled when the
    solution knows the game's names (every solver sets them).
    """

    action: int
    contract: np.ndarray
    expected_payment: float
    principal_value: float
    agent_value: float
    action_name: str | None = None
    contract_by_outcome: dict[str, float] | None = None


@dataclass(frozen=True)
class GameNames:
    """A game's names, as a solution keeps them.

    ``states`` is ``None`` for the default names ``s0, s1, ...`` (large generated games).
    """

    num_states: int
    states: tuple[str, ...] | None
    actions: tuple[str, ...]
    outcomes: tuple[str, ...]

    @classmethod
    def of(cls, game) -> GameNames:
        """The names of ``game`` (a :class:`~contractrl.core.model.PrincipalAgentMDP`)."""
        return cls(
            game.num_states,
            None if game.state_names is None else tuple(game.state_names),
            tuple(game.action_name(a) for a in range(game.num_actions)),
            tuple(game.outcome_name(o) for o in range(game.num_outcomes)),
        )

    def state_index(self, s: int | str) -> int:
        """The index of state ``s`` (an index or a name).

        Raises:
            ValueError: no such state.
        """
        if isinstance(s, str):
            if self.states is not None and s in self.states:
                return self.states.index(s)
            if self.states is None and s[:1] == "s" and s[1:].isdigit():
                s = int(s[1:])
            else:
                raise ValueError(f"s={s!r}: no state of that name")
        index = int(s)
        if index != s:
            raise ValueError(f"s={s!r}: not a state index")
        if not 0 <= index < self.num_states:
            raise ValueError(f"s={s} outside the states [0, {self.num_states})")
        return index


@dataclass(frozen=True)
class TimeStep:
    """The equilibrium tables at one time step ``t`` (see :meth:`SPESolution.at`).

    Attributes:
        t: the time step.
        action: ``[S]`` recommended action.
        contract: ``[S, O]`` its min-pay contract.
        expected_payment: ``[S]``.
        principal_value: ``[S]`` principal's value at ``(t, s)``.
        agent_value: ``[S]`` agent's value at ``(t, s)``.
        principal_q: ``[S, A]`` contractual Q.
        agent_q: ``[S, A]`` agent's truncated Q.
    """

    t: int
    action: np.ndarray
    contract: np.ndarray
    expected_payment: np.ndarray
    principal_value: np.ndarray
    agent_value: np.ndarray
    principal_q: np.ndarray
    agent_q: np.ndarray


_STEP_FIELDS = (
    "action",
    "contract",
    "expected_payment",
    "principal_value",
    "agent_value",
    "principal_q",
    "agent_q",
)


@dataclass(frozen=True)
class SPESolution:
    """A subgame-perfect equilibrium of a principal-agent MDP (docs/model.md §3).

    Tables have ``K`` rows (see :mod:`contractrl.core.sweep`): ``K = H`` for time-indexed solutions
    of finite-horizon games; ``K = 1`` for stationary ones (infinite horizon, or acyclic games
    solved in one level sweep, whose row is exact at every ``(t, s)`` with
    ``t + heights[s] <= H``). The tables are storage: ask by time step with
    :meth:`decision` ``(t, s)`` and :meth:`at` ``(t)`` (per-time ``[S]`` arrays), which answer
    every ``0 <= t < H`` (every ``t >= 0`` with an infinite horizon) whatever ``K`` is. For a
    stationary finite-horizon solution, the pairs its row does not cover (fewer steps left
    than the state's longest path) are computed on the first request, over those pairs only
    (about ``S`` updates for a tree; never ``H`` full rows); :meth:`time_indexed` materialises
    all ``H`` rows.

    Attributes:
        action: ``[K, S]`` recommended (implemented) action.
        contract: ``[K, S, O]`` min-pay contract for it.
        expected_payment: ``[K, S]`` its expected payment.
        principal_value: ``[K, S]`` principal's value at ``(t, s)`` before acting.
        agent_value: ``[K, S]`` agent's value at ``(t, s)`` before acting.
        principal_q: ``[K, S, A]`` contractual Q ``q(s, a*)``; ``-inf`` where ``a*`` is not
            implementable.
        agent_q: ``[K, S, A]`` agent's truncated Q ``Q̄(s, a)`` (without the current payment).
        initial_state: ``s0``.
        horizon: ``H`` or ``None``.
        method: ``backward``, ``meta`` or ``fixed_point``.
        margin: nudge ``ξ`` used for every contract.
        iterations: backward sweeps (groups or time steps), meta-algorithm iterations, or
            fixed-point iterations.
        converged: ``False`` when an iterative method stopped without reaching an
            equilibrium; ``status`` says why, and the tables then hold its last iterate.
        solve_seconds: wall time inside the solver.
        heights: ``[S]`` for stationary solutions of finite-horizon acyclic games, else ``None``.
        trace: per-iteration records (meta-algorithm).
        residuals: per-iteration sup-norm changes (fixed point).
        short_rows: for stationary finite-horizon solutions that are an equilibrium, the lazy
            computation of the pairs the row does not hold (used by :meth:`decision`,
            :meth:`at`); ``None`` otherwise.
        status: ``converged``, or why an iterative method stopped without converging:
            ``budget`` (``max_iterations`` ran out), ``stalled`` (the fixed point's residual
            stopped shrinking) or ``cycle`` (the meta-algorithm returned to an earlier policy).
            A game may have no stationary SPE at all (``docs/theory-checks.md``). Or
            ``not_implementable``: with a nudge ``ξ > 0``, some ``(t, s)`` has no action that
            can be made to win by ``ξ``; its principal value is ``-inf``. Anything but
            ``converged`` means the tables are not an equilibrium (see :attr:`ok`).
    """

    action: np.ndarray
    contract: np.ndarray
    expected_payment: np.ndarray
    principal_value: np.ndarray
    agent_value: np.ndarray
    principal_q: np.ndarray
    agent_q: np.ndarray
    initial_state: int
    horizon: int | None
    method: str
    margin: float
    iterations: int
    converged: bool
    solve_seconds: float
    heights: np.ndarray | None = None
    trace: tuple[IterationRecord, ...] = ()
    residuals: tuple[float, ...] = ()
    status: str = "converged"
    #: Computes the pairs a stationary finite-horizon row does not cover
    #: (:class:`contractrl.core.stages.ShortHorizonRows`); ``None``: not available.
    short_rows: Any = field(default=None, repr=False, compare=False)
    #: The game's names (:class:`GameNames`), for :meth:`decision`; ``None``: indices only.
    names: GameNames | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Whether the tables are an equilibrium (``status == "converged"``)."""
        return self.status == "converged"

    @property
    def stationary(self) -> bool:
        """Whether one row holds the decision at every time step."""
        return self.action.shape[0] == 1

    @property
    def policy(self) -> PrincipalPolicy:
        """The principal's equilibrium policy."""
        return PrincipalPolicy(self.action, self.contract)

    @property
    def initial_principal_value(self) -> float:
        """Principal's value at ``(t=0, s0)``."""
        return float(self.principal_value[0, self.initial_state])

    @property
    def initial_agent_value(self) -> float:
        """Agent's value at ``(t=0, s0)``."""
        return float(self.agent_value[0, self.initial_state])

    def _check_time(self, t: int) -> None:
        if self.horizon is not None and not 0 <= t < self.horizon:
            raise ValueError(f"t={t} outside the horizon [0, {self.horizon})")
        if t < 0:
            raise ValueError(f"t must be >= 0, got {t}")

    def _covered(self, t: int, s: int) -> bool:
        """Whether the stored row ``row(t, s)`` holds ``(t, s)``."""
        if not self.stationary or self.heights is None or self.horizon is None:
            return True
        return t + int(self.heights[s]) <= self.horizon

    def _short(self):
        if self.short_rows is None:
            raise ValueError(
                "this stationary solution stores no decisions where fewer steps remain than a "
                f"state's longest path (status {self.status!r}); solve with sweep='time'"
            )
        return self.short_rows

    def row(self, t: int, s: int) -> int:
        """Row of the stored tables holding the decision at ``(t, s)``.

        This indexes storage; :meth:`decision` and :meth:`at` answer every ``(t, s)``.

        Raises:
            ValueError: ``t`` is outside the horizon, or the stationary row does not hold
                ``(t, s)`` (``t + heights[s] > H``: fewer steps remain than the state needs).
        """
        self._check_time(t)
        if not self.stationary:
            return t
        if not self._covered(t, s):
            raise ValueError(
                f"(t={t}, s={s}) is not stored: state {s} starts {self.heights[s]} more "
                f"decisions, more than the {self.horizon - t} left at t={t}; "
                "decision(t, s) and at(t) compute it"
            )
        return 0

    def decision(self, t: int, s: int | str) -> Decision:
        """The equilibrium decision at ``(t, s)``, for every ``0 <= t < H``.

        ``s`` is a state index or, when the solution knows the game's names, a state name.

        Raises:
            ValueError: ``t`` is outside the horizon (or negative), or ``s`` is no state.
        """
        self._check_time(t)
        if self.names is not None:
            s = self.names.state_index(s)
        elif isinstance(s, str) or not 0 <= int(s) < self.action.shape[1]:
            raise ValueError(f"s={s!r}: not a state index in [0, {self.action.shape[1]})")
        s = int(s)
        if self._covered(t, s):
            k = self.row(t, s)
            fields = (
                int(self.action[k, s]),
                self.contract[k, s].copy(),
                float(self.expected_payment[k, s]),
                float(self.principal_value[k, s]),
                float(self.agent_value[k, s]),
            )
        else:
            step, i = self._short().position(self.horizon - t, s)
            fields = (
                int(step.action[i]),
                step.contract[i].copy(),
                float(step.expected_payment[i]),
                float(step.principal_value[i]),
                float(step.agent_value[i]),
            )
        if self.names is None:
            return Decision(*fields)
        action, contract = fields[0], fields[1]
        by_outcome = dict(zip(self.names.outcomes, (float(x) for x in contract), strict=True))
        return Decision(*fields, self.names.actions[action], by_outcome)

    def at(self, t: int) -> TimeStep:
        """The tables at time step ``t`` (``[S]``-indexed copies), for every ``0 <= t < H``.

        Unlike ``action[t]`` (a storage row, absent for ``t > 0`` when stationary), this
        answers every time step: a stored row, or the stationary row with the states it does
        not cover filled in (see the class docstring).

        Raises:
            ValueError: ``t`` is outside the horizon (or negative).
        """
        self._check_time(t)
        k = 0 if self.stationary else t
        tables = {name: getattr(self, name)[k].copy() for name in _STEP_FIELDS}
        if self.stationary and self.heights is not None and self.horizon is not None:
            remaining = self.horizon - t
            if remaining < int(self.heights.max(initial=0)):
                found = self._short().lookup(remaining)
                if found is not None:
                    states, step = found
                    for name in _STEP_FIELDS:
                        tables[name][states] = getattr(step, name)
        return TimeStep(t, **tables)

    def time_indexed(self) -> SPESolution:
        """This solution with one stored row per time step (``K = H``; itself if it has them).

        Memory grows with ``H × S``: for inspection and audits of small games.

        Raises:
            ValueError: the horizon is infinite.
        """
        if self.horizon is None:
            raise ValueError("an infinite-horizon solution has no time steps to index")
        if not self.stationary:
            return self
        steps = [self.at(t) for t in range(self.horizon)]
        tables = {name: np.stack([getattr(x, name) for x in steps]) for name in _STEP_FIELDS}
        return dataclasses.replace(self, heights=None, short_rows=None, **tables)


def tables_equal(a: PrincipalPolicy, b: PrincipalPolicy, atol: float = 1e-9) -> np.ndarray:
    """``[K, S]`` mask of ``(t, s)`` where two policies with the same ``K`` agree."""
    scale = 1.0 + np.maximum(np.abs(a.contract).max(axis=-1), np.abs(b.contract).max(axis=-1))
    same_contract = np.abs(a.contract - b.contract).max(axis=-1) <= atol * scale
    return (a.action == b.action) & same_contract
