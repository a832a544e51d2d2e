"""The resumable training loop every experiment shares.

Train a chunk of ``eval_every`` iterations, evaluate, append one CSV row per run, checkpoint
(at most every ``checkpoint_seconds``, and always at the end), report progress; on start, resume
from the checkpoint if there is one (dropping CSV rows written after it) or start the CSVs
afresh. A run interrupted at any point resumes to the same result.

Faults (docs/faults.md):

* a stop request (SIGINT/SIGTERM, :mod:`.stop`) is honoured between chunks: the loop writes a
  checkpoint of what it has trained and raises :class:`~.stop.Interrupted`;
* on resume, a CSV that lacks rows up to the checkpoint (deleted, truncated, damaged) is
  reported in one line and the run trains again from the start, so its log is whole;
* a row whose values blow up (infinite, NaN losses, or beyond :data:`DIVERGENCE_BOUND` in
  magnitude) is reported once per run and recorded beside its CSV
  (``<log>.diverged.json``), which the command line adds to ``results.json`` and its exit code.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from contractrl.experiments import stop
from contractrl.experiments.store import (
    DamagedFileError,
    MetricsLog,
    expected_iterations,
    load_checkpoint,
    read_json,
    save_state,
    write_json,
)

#: A metric beyond this magnitude (in the game's reward units) means training diverged.
DIVERGENCE_BOUND = 1e6


class TrainingDivergedError(RuntimeError):
    """Training produced non-finite values it cannot go on from (e.g. NaN Q-values)."""


@dataclasses.dataclass(frozen=True)
class LoopResult:
    """Where a :func:`checkpointed_loop` ended.

    Attributes:
        state: the final training state.
        iteration: iterations done (the total).
        train_seconds: wall time inside training chunks, over every session of the run.
        rows: the last evaluation row of each log (read back from the CSV when the run was
            resumed after its final checkpoint).
    """

    state: Any
    iteration: int
    train_seconds: float
    rows: dict[Hashable, dict[str, Any]]


def last_row(log: MetricsLog) -> dict[str, Any]:
    """The last row of ``log`` as numbers (empty cells are NaN, ``iteration`` an int)."""
    row = {k: float(v) if v not in ("", "nan") else float("nan") for k, v in log.read()[-1].items()}
    row["iteration"] = int(row["iteration"])
    return row


def diverged_marker(log: MetricsLog) -> Path:
    """The file recording that the run of ``log`` diverged (``<log>.diverged.json``)."""
    return log.path.with_name(f"{log.path.stem}.diverged.json")


def divergence(row: Mapping[str, Any]) -> tuple[str, float] | None:
    """The first value of ``row`` that says training diverged, as ``(column, value)``.

    Infinite values, NaN losses, and values beyond :data:`DIVERGENCE_BOUND` in magnitude. Other
    NaN values are not divergence (a ratio over a non-positive SPE value, a rate with no
    follower).
    """
    for key, value in row.items():
        if key in ("iteration", "train_seconds") or isinstance(value, bool):
            continue
        try:
            x = float(value)
        except (TypeError, ValueError):
            continue
        if math.isinf(x) or abs(x) > DIVERGENCE_BOUND or (math.isnan(x) and "loss" in key):
            return key, x
    return None


def _log_name(log: MetricsLog) -> str:
    return f"{log.path.parent.name}/{log.path.name}"


def _complete(logs: Mapping[Hashable, MetricsLog], iteration: int, eval_every: int, total: int):
    """The first log lacking rows up to ``iteration``, with a description, or ``None``."""
    want = expected_iterations(iteration, eval_every, total)
    for log in logs.values():
        if not log.path.exists():
            return log, "is missing"
        try:
            have = [int(float(r["iteration"])) for r in log.read()]
        except (DamagedFileError, KeyError, TypeError, ValueError):
            return log, "is damaged"
        if have != want:
            return log, f"has {len(have)} of the {len(want)} rows up to iteration {iteration}"
    return None


def _resume(state, checkpoint: Path, logs, eval_every: int, total: int, state_key: str):
    """Load the checkpoint (if any, and if the logs agree with it); ``(state, it, seconds)``."""
    from flax import serialization

    saved = load_checkpoint(checkpoint) if checkpoint.exists() else None
    if saved is not None:
        iteration = int(saved["iteration"])
        for log in logs.values():
            if log.path.exists():
                try:
                    log.truncate_after(iteration)
                except DamagedFileError:
                    pass  # reported below
        gap = _complete(logs, iteration, eval_every, total)
        if gap is None:
            state = serialization.from_state_dict(state, saved[state_key])
            for log in logs.values():  # a divergence recorded after the checkpoint is undone
                marker = diverged_marker(log)
                try:
                    if marker.exists() and read_json(marker)["iteration"] > iteration:
                        marker.unlink()
                except (OSError, ValueError, KeyError, TypeError):
                    marker.unlink(missing_ok=True)
            return state, iteration, float(saved["train_seconds"])
        log, what = gap
        print(
            f"contractrl: {log.path} {what} (deleted, truncated or damaged): training "
            f"{_log_name(log)} again from the start so that its log is whole",
            file=sys.stderr,
        )
        checkpoint.unlink(missing_ok=True)
    for log in logs.values():
        log.path.unlink(missing_ok=True)
        diverged_marker(log).unlink(missing_ok=True)
    return state, 0, 0.0


def _report_divergence(logs, rows, iteration: int, flagged: set) -> None:
    for key, row in rows.items():
        found = divergence(row)
        if found is None or key in flagged:
            continue
        flagged.add(key)
        column, value = found
        log = logs[key]
        write_json(
            diverged_marker(log),
            {"iteration": iteration, "column": column, "value": value, "log": log.path.name},
        )
        print(
            f"contractrl: {_log_name(log)}: training diverged at iteration {iteration} "
            f"({column} = {value:.3g}; bound ±{DIVERGENCE_BOUND:g}); the run goes on and its "
            "results are flagged",
            file=sys.stderr,
        )


def checkpointed_loop(
    state: Any,
    *,
    total: int,
    eval_every: int,
    checkpoint: Path,
    checkpoint_seconds: float,
    logs: Mapping[Hashable, MetricsLog],
    train_chunk: Callable[[Any, int, int], tuple[Any, Any]],
    evaluate: Callable[[Any, Any, int, float], tuple[Any, dict[Hashable, dict[str, Any]]]],
    progress: Callable[[int, int], None] | None = None,
    state_key: str = "state",
) -> LoopResult:
    """Run ``total`` iterations in chunks, resumable from ``checkpoint``.

    Args:
        state: the fresh training state (its structure receives a saved checkpoint).
        total: iterations of the run.
        eval_every: iterations per chunk (one evaluation after each).
        checkpoint: the checkpoint file.
        checkpoint_seconds: minimum wall time between checkpoints (one is always written at
            the end, and when a stop is requested).
        logs: the CSV of each run the state holds, by key.
        train_chunk: ``(state, start, steps) -> (state, statistics)``.
        evaluate: ``(state, statistics, iteration, train_seconds) -> (state, rows)`` with one
            row per key of ``logs``; it may change the state (budget calibration).
        progress: ``(iteration, steps)``, called once after loading (``steps = 0``) and after
            every chunk.
        state_key: the checkpoint's key for the state (kept for files of earlier versions).

    Raises:
        Interrupted: a stop was requested (:mod:`.stop`); the checkpoint holds every
            iteration trained.
    """
    import jax
    from flax import serialization

    with stop.checkpointable():
        state, iteration, seconds = _resume(state, checkpoint, logs, eval_every, total, state_key)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        if progress is not None:
            progress(iteration, 0)
        last_checkpoint = time.monotonic()
        rows: dict[Hashable, dict[str, Any]] = {}
        flagged: set = set()
        while iteration < total:
            stop.check()  # everything trained so far is in the checkpoint
            steps = min(eval_every, total - iteration)
            start = time.perf_counter()
            state, statistics = train_chunk(state, iteration, steps)
            jax.block_until_ready((state, statistics))
            seconds += time.perf_counter() - start
            iteration += steps
            state, rows = evaluate(state, statistics, iteration, seconds)
            for key, row in rows.items():
                logs[key].append(row)
            _report_divergence(logs, rows, iteration, flagged)
            due = time.monotonic() - last_checkpoint >= checkpoint_seconds
            if iteration >= total or due or stop.requested() is not None:
                payload = {
                    "iteration": iteration,
                    "train_seconds": seconds,
                    state_key: serialization.to_state_dict(state),
                }
                save_state(checkpoint, payload)
                last_checkpoint = time.monotonic()
            if progress is not None:
                progress(iteration, steps)
    if not rows:  # resumed after the final checkpoint, before the summaries were written
        rows = {key: last_row(log) for key, log in logs.items()}
    return LoopResult(state, iteration, seconds, rows)
