"""The resumable training loop every experiment shares.

Train a chunk of ``eval_every`` iterations, evaluate, append one CSV row per run, checkpoint
(at most every ``checkpoint_seconds``, and always at the end), report progress; on start, resume
from the checkpoint if there is one (dropping CSV rows written after it) or start the CSVs
afresh. A run interrupted at any point resumes to the same result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from contractrl.experiments.store import MetricsLog, load_checkpoint, save_state


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
            the end).
        logs: the CSV of each run the state holds, by key.
        train_chunk: ``(state, start, steps) -> (state, statistics)``.
        evaluate: ``(state, statistics, iteration, train_seconds) -> (state, rows)`` with one
            row per key of ``logs``; it may change the state (budget calibration).
        progress: ``(iteration, steps)``, called once after loading (``steps = 0``) and after
            every chunk.
        state_key: the checkpoint's key for the state (kept for files of earlier versions).
    """
    import jax
    from flax import serialization

    iteration, seconds = 0, 0.0
    saved = load_checkpoint(checkpoint) if checkpoint.exists() else None
    if saved is not None:
        state = serialization.from_state_dict(state, saved[state_key])
        iteration, seconds = int(saved["iteration"]), float(saved["train_seconds"])
        for log in logs.values():
            log.truncate_after(iteration)
    else:
        for log in logs.values():
            if log.path.exists():
                log.path.unlink()
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress(iteration, 0)
    last_checkpoint = time.monotonic()
    rows: dict[Hashable, dict[str, Any]] = {}
    while iteration < total:
        steps = min(eval_every, total - iteration)
        start = time.perf_counter()
        state, statistics = train_chunk(state, iteration, steps)
        jax.block_until_ready((state, statistics))
        seconds += time.perf_counter() - start
        iteration += steps
        state, rows = evaluate(state, statistics, iteration, seconds)
        for key, row in rows.items():
            logs[key].append(row)
        if iteration >= total or time.monotonic() - last_checkpoint >= checkpoint_seconds:
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
