"""The shared resumable training loop: interrupted anywhere, it resumes to the same result."""

import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.experiments.loop import checkpointed_loop
from contractrl.experiments.store import MetricsLog

COLUMNS = ["iteration", "value", "train_seconds"]


class Interrupted(Exception):
    pass


def run(tmp, total=50, eval_every=10, stop_after=None):
    """A toy run: the state counts iterations and sums ``start`` of every chunk."""
    calls = []

    def train_chunk(state, start, steps):
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupted
        calls.append((start, steps))
        return {"count": state["count"] + steps, "sum": state["sum"] + start}, steps

    def evaluate(state, steps, iteration, seconds):
        row = {"iteration": iteration, "value": float(state["sum"]), "train_seconds": seconds}
        return state, {"run": row}

    seen = []
    result = checkpointed_loop(
        {"count": jnp.zeros(()), "sum": jnp.zeros(())},
        total=total,
        eval_every=eval_every,
        checkpoint=tmp / "ckpt.msgpack",
        checkpoint_seconds=0.0,
        logs={"run": MetricsLog(tmp / "metrics.csv", COLUMNS)},
        train_chunk=train_chunk,
        evaluate=evaluate,
        progress=lambda iteration, steps: seen.append((iteration, steps)),
    )
    return result, calls, seen


def test_fresh_run_chunks_logs_and_progress(tmp_path):
    result, calls, seen = run(tmp_path, total=25, eval_every=10)
    assert calls == [(0, 10), (10, 10), (20, 5)]
    assert result.iteration == 25 and float(result.state["count"]) == 25
    assert float(result.state["sum"]) == 30  # 0 + 10 + 20
    assert seen == [(0, 0), (10, 10), (20, 10), (25, 5)]
    rows = MetricsLog(tmp_path / "metrics.csv", COLUMNS).read()
    assert [int(r["iteration"]) for r in rows] == [10, 20, 25]
    assert result.rows["run"]["value"] == 30


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    whole, _, _ = run(tmp_path / "whole")
    with pytest.raises(Interrupted):
        run(tmp_path / "cut", stop_after=3)
    # a row written after the last checkpoint (a crash between the two) is dropped on resume
    MetricsLog(tmp_path / "cut" / "metrics.csv", COLUMNS).append(
        {"iteration": 40, "value": -1.0, "train_seconds": 0.0}
    )
    resumed, calls, seen = run(tmp_path / "cut")
    assert calls == [(30, 10), (40, 10)]  # only what was left
    assert seen[0] == (30, 0)
    assert float(resumed.state["sum"]) == float(whole.state["sum"])
    a = MetricsLog(tmp_path / "whole" / "metrics.csv", COLUMNS).read()
    b = MetricsLog(tmp_path / "cut" / "metrics.csv", COLUMNS).read()
    assert [(r["iteration"], r["value"]) for r in a] == [(r["iteration"], r["value"]) for r in b]


def test_resumed_after_the_final_checkpoint_reads_the_last_row_back(tmp_path):
    first, _, _ = run(tmp_path)
    again, calls, _ = run(tmp_path)
    assert calls == []  # nothing left to train
    assert again.iteration == 50
    assert again.rows["run"]["iteration"] == 50
    assert again.rows["run"]["value"] == first.rows["run"]["value"]
    assert np.isclose(again.train_seconds, first.train_seconds)


def test_a_fresh_start_replaces_an_old_log(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv", COLUMNS)
    log.append({"iteration": 999, "value": 1.0, "train_seconds": 0.0})
    run(tmp_path, total=10)
    assert [int(r["iteration"]) for r in log.read()] == [10]
