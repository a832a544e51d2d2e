"""Result types of the exact solvers: :class:`SPESolution` and its iteration trace."""

from __future__ import annotations

from dataclasses import dataclass

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
    """The equilibrium decision at one ``(t, s)``."""

    action: int
    contract: np.ndarray
    expected_payment: float
    principal_value: float
    agent_value: float


@dataclass(frozen=True)
class SPESolution:
    """A subgame-perfect equilibrium of a principal-agent MDP (SPEC §3).

    Tables have ``K`` rows (see :mod:`contractrl.sweep`): ``K = H`` for time-indexed solutions
    of finite-horizon games; ``K = 1`` for stationary ones (infinite horizon, or acyclic games
    solved in one level sweep, exact at every ``(t, s)`` with ``t + heights[s] <= H``).

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

    def row(self, t: int, s: int) -> int:
        """Row of the tables holding the decision at ``(t, s)``.

        Raises:
            ValueError: ``t`` is outside the horizon, or ``(t, s)`` cannot occur (a stationary
                solution of a finite-horizon game covers ``t + heights[s] <= H``).
        """
        if self.horizon is not None and not 0 <= t < self.horizon:
            raise ValueError(f"t={t} outside the horizon [0, {self.horizon})")
        if t < 0:
            raise ValueError(f"t must be >= 0, got {t}")
        if not self.stationary:
            return t
        if self.heights is not None and self.horizon is not None:
            if t + int(self.heights[s]) > self.horizon:
                raise ValueError(
                    f"(t={t}, s={s}) cannot be reached: state {s} starts {self.heights[s]} more "
                    f"decisions, which do not fit in the horizon {self.horizon} from t={t}"
                )
        return 0

    def decision(self, t: int, s: int) -> Decision:
        """The equilibrium decision at ``(t, s)``."""
        k = self.row(t, s)
        return Decision(
            int(self.action[k, s]),
            self.contract[k, s].copy(),
            float(self.expected_payment[k, s]),
            float(self.principal_value[k, s]),
            float(self.agent_value[k, s]),
        )


def tables_equal(a: PrincipalPolicy, b: PrincipalPolicy, atol: float = 1e-9) -> np.ndarray:
    """``[K, S]`` mask of ``(t, s)`` where two policies with the same ``K`` agree."""
    scale = 1.0 + np.maximum(np.abs(a.contract).max(axis=-1), np.abs(b.contract).max(axis=-1))
    same_contract = np.abs(a.contract - b.contract).max(axis=-1) <= atol * scale
    return (a.action == b.action) & same_contract
