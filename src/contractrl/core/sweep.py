"""Backward recursions over a game's states: the one driver behind every exact algorithm.

A *stage function* maps continuation values to new values and a per-state record for a set of
states; a :class:`Schedule` decides how the states are visited:

* ``levels`` — acyclic games whose longest path fits in the horizon (trees and other games
  where states are tied to time steps): one sweep in reverse topological order, states grouped
  by height and each group vectorised. The result is *stationary* (one row, ``K = 1``), and is
  exact at every ``(t, s)`` with ``t + height[s] <= H`` — every pair play can reach from the
  initial state. (:class:`~contractrl.core.solution.SPESolution` answers the other pairs on demand,
  see :class:`~contractrl.core.stages.ShortHorizonRows`.)
* ``time`` — finite horizon in general: ``H`` vectorised sweeps over all states,
  ``t = H-1 ... 0``. The result has one row per time step (``K = H``).
* ``fixed_point`` — infinite horizon with cycles: iterate the stage function on all states
  until the sup-norm change is at most ``tol``. Stationary (``K = 1``).

Tables indexed ``[K, S, ...]`` therefore mean: row ``t`` at time ``t`` when ``K = H``, the
same row at every time step when ``K = 1`` (numpy-style broadcasting over time).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from contractrl.core.model import PrincipalAgentMDP

#: Stage function: ``(k, states, continuations) -> (values, record)``. ``k`` is the row of any
#: time-indexed input to read (``t`` in time sweeps, 0 otherwise); ``states`` indexes the states
#: being updated; ``continuations[i]`` is ``[n, O]``, the expected next value of value vector
#: ``i`` after each outcome. It returns new ``[n]`` values and a record: a frozen dataclass
#: whose fields are all ``[n, ...]`` arrays (or ``None``: nothing to record). The stages are
#: frozen dataclasses too (:mod:`contractrl.core.stages`).
StageFn = Callable[[int, np.ndarray | slice, list[np.ndarray]], tuple[list[np.ndarray], Any]]

SWEEPS = ("auto", "levels", "time")
#: A ``time`` sweep stores ``[H, S, ...]`` tables; beyond this many numbers (8 GB) it is refused
#: (the benchmark's depth-20 tree in 20 time sweeps needs 2.1e8).
MAX_TIME_TABLE_ENTRIES = 10**9


@dataclass(frozen=True)
class Schedule:
    """How a backward recursion visits ``(t, s)``; see the module docstring.

    Attributes:
        kind: ``levels``, ``time`` or ``fixed_point``.
        horizon: the game's horizon (``None`` when infinite).
        groups: for ``levels``, state-index arrays by increasing height.
        heights: ``[S]`` number of decisions left on the longest path from each state, for
            acyclic games (``None`` otherwise).
    """

    kind: str
    horizon: int | None
    groups: tuple[np.ndarray, ...] = ()
    heights: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        """``K``: rows of the tables this schedule produces."""
        return self.horizon if self.kind == "time" else 1


@dataclass(frozen=True)
class SweepResult:
    """Values and records of a backward recursion.

    Attributes:
        values: one ``[K, S]`` array per value vector.
        records: the stage's record type with ``[K, S, ...]`` arrays (``None`` if it records
            nothing).
        iterations: sweeps performed (groups for ``levels``, steps for ``time``, iterations
            for ``fixed_point``).
        residuals: for ``fixed_point``, the sup-norm change of each iteration.
        converged: ``False`` only when a fixed point was not reached.
        status: ``converged``; for ``fixed_point`` also ``budget`` (``max_iterations`` ran
            out) or ``stalled`` (the residual stopped shrinking: see :func:`stall_window`).
    """

    values: list[np.ndarray]
    records: Any
    iterations: int
    residuals: tuple[float, ...] = field(default=())
    converged: bool = True
    status: str = "converged"


def state_heights(game: PrincipalAgentMDP) -> tuple[np.ndarray, tuple[np.ndarray, ...]] | None:
    """Height of every state in an acyclic game, by peeling states whose successors are done.

    ``height[s] = 1 + max(height[s'])`` over successors ``s'`` (1 for a state all of whose
    outcomes end the episode). Cost ``O(S + edges)``.

    Returns:
        ``(heights [S], groups)`` with ``groups[h-1]`` the states of height ``h``, or ``None``
        when the game has a cycle.
    """
    if "heights" in game._cache:
        return game._cache["heights"]
    graph = game.successor_graph
    num_states = game.num_states
    remaining = np.diff(graph.indptr).astype(np.int64)  # successors not yet assigned
    reverse = sp.csr_array(graph.T)  # row s' lists the predecessors of s'
    heights = np.zeros(num_states, dtype=np.int64)
    frontier = np.flatnonzero(remaining == 0)
    groups: list[np.ndarray] = []
    height = 0
    while frontier.size:
        height += 1
        heights[frontier] = height
        groups.append(frontier)
        starts, ends = reverse.indptr[frontier], reverse.indptr[frontier + 1]
        lengths = ends - starts
        if lengths.sum() == 0:
            break
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        preds = reverse.indices[offsets + np.arange(lengths.sum())]
        remaining -= np.bincount(preds, minlength=num_states)
        candidates = np.unique(preds)
        frontier = candidates[remaining[candidates] == 0]
    result = (heights, tuple(groups)) if (heights > 0).all() else None
    game._cache["heights"] = result
    return result


def make_schedule(
    game: PrincipalAgentMDP, sweep: str = "auto", stationary_inputs: bool = True
) -> Schedule:
    """Choose how to visit states.

    Args:
        game: the game.
        sweep: ``auto`` (levels when possible), ``levels`` (required; error if impossible) or
            ``time`` (finite horizon: ``H`` sweeps over all states even for acyclic games).
        stationary_inputs: whether every time-dependent input (policies, Q tables) has a single
            row; time-indexed inputs need ``time`` sweeps.

    Raises:
        ValueError: ``sweep`` is unknown or cannot apply to this game, or a ``time`` sweep's
            tables would exceed :data:`MAX_TIME_TABLE_ENTRIES` (a long horizon on a cyclic game).
    """
    if sweep not in SWEEPS:
        raise ValueError(f"sweep must be one of {SWEEPS}, got {sweep!r}")
    if sweep == "time" and game.horizon is None:
        raise ValueError("sweep 'time' needs a finite horizon")
    structure = state_heights(game) if sweep != "time" and stationary_inputs else None
    heights = None if structure is None else structure[0]
    fits = structure is not None and (game.horizon is None or int(heights.max()) <= game.horizon)
    if sweep == "levels" and not fits:
        raise ValueError(
            "sweep 'levels' needs an acyclic game whose longest path fits in the horizon, "
            "and stationary inputs"
        )
    if fits:
        return Schedule("levels", game.horizon, structure[1], heights)
    if game.horizon is None:
        return Schedule("fixed_point", None)
    _check_time_tables(game)
    return Schedule("time", game.horizon)


def _check_time_tables(game: PrincipalAgentMDP) -> None:
    """Refuse a ``time`` sweep whose ``[H, S, ...]`` tables would exceed the entry limit."""
    per_cell = 2 * game.num_actions + game.num_outcomes + 4  # Q tables, contract, values, ...
    entries = game.horizon * game.num_states * per_cell
    if entries > MAX_TIME_TABLE_ENTRIES:
        raise ValueError(
            f"horizon: {game.horizon:,} time steps x {game.num_states:,} states need "
            f"time-indexed tables of {entries:.3g} numbers (limit {MAX_TIME_TABLE_ENTRIES:.0e}, "
            f"about {MAX_TIME_TABLE_ENTRIES * 8 / 1e9:.1f} GB) because the game has cycles "
            "(or its longest path exceeds the horizon); use a shorter horizon, or horizon null "
            "(infinite) with a discount < 1 for a stationary answer"
        )


def run_backward(
    game: PrincipalAgentMDP,
    schedule: Schedule,
    stage: StageFn,
    num_values: int,
    tol: float = 1e-10,
    max_iterations: int = 100_000,
    initial_values: Sequence[np.ndarray] | None = None,
) -> SweepResult:
    """Run a backward recursion of ``stage`` under ``schedule``.

    Args:
        game: the game (supplies the transitions).
        schedule: from :func:`make_schedule`.
        stage: the stage function (see :data:`StageFn`).
        num_values: number of value vectors the stage function carries.
        tol: ``fixed_point`` stopping tolerance on the sup-norm change of the values.
        max_iterations: ``fixed_point`` iteration budget.
        initial_values: ``fixed_point`` starting values (default zeros).

    Returns:
        A :class:`SweepResult`.
    """
    if schedule.kind == "levels":
        return _run_levels(game, schedule, stage, num_values)
    if schedule.kind == "time":
        return _run_time(game, schedule, stage, num_values)
    return _run_fixed_point(game, stage, num_values, tol, max_iterations, initial_values)


class _Tables:
    """``[K, S, ...]`` tables filled from a stage's per-batch records (frozen dataclasses)."""

    def __init__(self, rows: int, num_states: int) -> None:
        self.rows, self.num_states = rows, num_states
        self.kind: type | None = None
        self.tables: dict[str, np.ndarray] = {}

    def put(self, k: int | slice, index: np.ndarray | slice, rec: Any) -> None:
        if rec is None:
            return
        if self.kind is None:
            self.kind = type(rec)
            for f in dataclasses.fields(rec):
                arr = getattr(rec, f.name)
                shape = (self.rows, self.num_states, *arr.shape[1:])
                self.tables[f.name] = np.zeros(shape, dtype=arr.dtype)
        for name, table in self.tables.items():
            table[k, index] = getattr(rec, name)

    def result(self) -> Any:
        return None if self.kind is None else self.kind(**self.tables)


def _run_levels(game, schedule, stage, num_values) -> SweepResult:
    num_states, num_outcomes = game.num_states, game.num_outcomes
    values = [np.zeros(num_states) for _ in range(num_values)]
    records = _Tables(1, num_states)
    outcomes = np.arange(num_outcomes)
    for group in schedule.groups:
        if group.size == group[-1] - group[0] + 1:  # contiguous: slice rows cheaply
            block = game.transitions[group[0] * num_outcomes : (group[-1] + 1) * num_outcomes]
            index: np.ndarray | slice = slice(int(group[0]), int(group[-1]) + 1)
        else:
            block = game.transitions[(group[:, None] * num_outcomes + outcomes).ravel()]
            index = group
        conts = [(block @ v).reshape(-1, num_outcomes) for v in values]
        new_values, rec = stage(0, index, conts)
        for v, nv in zip(values, new_values, strict=True):
            v[index] = nv
        records.put(0, index, rec)
    return SweepResult([v[None] for v in values], records.result(), len(schedule.groups))


def _run_time(game, schedule, stage, num_values) -> SweepResult:
    horizon, num_states = schedule.horizon, game.num_states
    values = [np.zeros((horizon, num_states)) for _ in range(num_values)]
    records = _Tables(horizon, num_states)
    nxt = [np.zeros(num_states) for _ in range(num_values)]
    for t in range(horizon - 1, -1, -1):
        conts = [game.continuation(v) for v in nxt]
        new_values, rec = stage(t, slice(None), conts)
        for i, nv in enumerate(new_values):
            values[i][t] = nv
        records.put(t, slice(None), rec)
        nxt = [values[i][t] for i in range(num_values)]
    return SweepResult(values, records.result(), horizon)


def stall_window(discount: float) -> int:
    """Iterations without progress after which a fixed-point iteration counts as stalled.

    A ``γ``-contraction halves its residual every ``log 2 / -log γ`` iterations; the window
    allows ten times that (at least 100), so only an iteration that is not contracting at all
    (a cycle: no stationary fixed point) is stopped.
    """
    halving = math.log(2.0) / -math.log(discount) if discount < 1.0 else math.inf
    return max(100, math.ceil(10 * halving)) if math.isfinite(halving) else 1_000_000_000


def _run_fixed_point(game, stage, num_values, tol, max_iterations, initial) -> SweepResult:
    num_states = game.num_states
    values = (
        [np.zeros(num_states) for _ in range(num_values)]
        if initial is None
        else [np.array(v, dtype=np.float64) for v in initial]
    )
    residuals: list[float] = []
    rec: Any = None
    status = "budget"
    window = stall_window(game.discount)
    best, best_at = math.inf, 0
    for it in range(max_iterations):
        conts = [game.continuation(v) for v in values]
        new_values, rec = stage(0, slice(None), conts)
        residual = max(_sup_change(n, v) for n, v in zip(new_values, values, strict=True))
        residuals.append(residual)
        values = list(new_values)
        if residual <= tol:
            status = "converged"
            break
        if residual < 0.5 * best or best == math.inf:
            best, best_at = residual, it
        elif it - best_at >= window:
            status = "stalled"  # no halving of the residual in `window` iterations: a cycle
            break
    records = None if rec is None else type(rec)(**{k: v[None] for k, v in vars(rec).items()})
    return SweepResult(
        [v[None] for v in values],
        records,
        len(residuals),
        tuple(residuals),
        status == "converged",
        status,
    )


def _sup_change(new: np.ndarray, old: np.ndarray) -> float:
    """Sup-norm change; entries equal on both sides (``-inf`` included) count as no change."""
    with np.errstate(invalid="ignore"):
        diff = np.abs(new - old)
    diff[new == old] = 0.0
    return float(np.max(diff, initial=0.0))
