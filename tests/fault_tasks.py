"""A tiny resumable experiment for the fault-injection tests (seconds, not minutes).

``counting_run`` is a run of :func:`~contractrl.experiments.loop.checkpointed_loop` over a toy
state (a count and a sum of chunk starts), slow enough to be interrupted mid-way; its result
is known in closed form. Run as a script it is the driver: ``python fault_tasks.py OUT TASKS
WORKERS [BACKEND]`` runs (or resumes) ``TASKS`` runs under :func:`.stop.handle_signals` and
exits as ``contractrl train`` does (130/143 interrupted, 7 a dead worker).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

TOTAL, EVAL_EVERY = 40, 5
COLUMNS = ["iteration", "value", "train_seconds"]


def expected_value(total: int = TOTAL, eval_every: int = EVAL_EVERY) -> float:
    """The toy state's ``sum`` after ``total`` iterations: the sum of the chunk starts."""
    return float(sum(range(0, total, eval_every)))


def counting_run(run_dir: str, sleep: float = 0.25, total: int = TOTAL) -> dict:
    """One toy run in ``run_dir`` (resumable); returns ``{"value", "iterations"}``."""
    import jax.numpy as jnp

    from contractrl.experiments.loop import checkpointed_loop
    from contractrl.experiments.store import MetricsLog, read_json, write_json

    run = Path(run_dir)
    final = run / "final.json"
    if final.exists():
        return read_json(final)

    # FAULT_STALL_AT=N: every chunk from iteration N on takes a minute, so a test can signal a
    # driver whose workers are certainly mid-chunk (inside the stop grace) for as long as needed.
    stall_at = int(os.environ.get("FAULT_STALL_AT", total + 1))

    def train_chunk(state, start, steps):
        time.sleep(60.0 if start >= stall_at else sleep)
        return {"count": state["count"] + steps, "sum": state["sum"] + start}, None

    def evaluate(state, _stats, iteration, seconds):
        row = {"iteration": iteration, "value": float(state["sum"]), "train_seconds": seconds}
        return state, {"run": row}

    def progress(iteration, _steps):
        write_json(run / "progress.json", {"iteration": iteration, "total": total})

    result = checkpointed_loop(
        {"count": jnp.zeros(()), "sum": jnp.zeros(())},
        total=total,
        eval_every=EVAL_EVERY,
        checkpoint=run / "checkpoint.msgpack",
        checkpoint_seconds=0.0,
        logs={"run": MetricsLog(run / "metrics.csv", COLUMNS)},
        train_chunk=train_chunk,
        evaluate=evaluate,
        progress=progress,
    )
    summary = {"value": float(result.state["sum"]), "iterations": result.iteration}
    write_json(final, summary)
    return summary


def main(argv: list[str]) -> int:
    """The driver (see the module docstring)."""
    from contractrl.experiments import stop
    from contractrl.experiments.executor import Task, WorkerDiedError, run_tasks

    out, tasks, workers = Path(argv[0]), int(argv[1]), int(argv[2])
    backend = argv[3] if len(argv) > 3 else "local"
    todo = [
        Task(counting_run, {"run_dir": str(out / f"run{k}")}, out / f"run{k}", TOTAL)
        for k in range(tasks)
    ]
    try:
        with stop.handle_signals():
            results = run_tasks(todo, backend, workers, None, progress=False)
    except stop.Interrupted as exc:
        print(f"interrupted {exc.name} done={exc.done} forced={exc.forced}", file=sys.stderr)
        return exc.exit_code
    except WorkerDiedError as exc:
        print(f"worker died: {exc}", file=sys.stderr)
        return 7
    except OSError as exc:  # as the command line reports it
        from contractrl.experiments.failures import explain

        failure = explain(exc, None, [])
        if failure is None:
            raise
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code
    print(" ".join(str(r["value"]) for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
