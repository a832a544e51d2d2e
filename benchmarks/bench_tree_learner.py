"""Benchmark: iterations per second of the Tree MDP learner (Algorithm 2), depth 10.

Measures, after compilation, in one run on this machine:

* contractrl's learner (the ``paper`` preset's config), 1 seed in one process;
* the same, 5 seeds in 2 worker processes pinned one per core (how ``contractrl train`` runs);
* the same, 5 seeds vmapped in one process (how an accelerator would run them);
* a baseline learner in the same run: the same code with its speed features off (simultaneous
  schedule, truncated-Q agent, dense Adam over the input table, every network evaluated on the
  full batch). Ratios are against that baseline only: no rate measured on another machine is
  compared with.

Each configuration runs in fresh processes pinned one per core with single-threaded XLA, as
``contractrl train`` runs them.

Prints a table and records it in ``benchmarks/RESULTS.md``.
Usage: ``python benchmarks/bench_tree_learner.py [--iterations 2000]``
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_summary, record_section  # noqa: E402


def measure(dqn, iterations: int, seeds: int = 1, batched: bool = False) -> float:
    """Iterations per second per seed (after compiling) of ``seeds`` runs in this process."""
    import jax
    import jax.numpy as jnp

    from contractrl.core.games import tree_mdp
    from contractrl.envs.tabular import tabular_params
    from contractrl.learning.algorithm2 import Learner, init_state, learner_spec

    game = tree_mdp(10, 0)
    learner = Learner(learner_spec(game), dataclasses.replace(dqn, iterations=10 * iterations))
    env = tabular_params(game)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    if batched:
        envs = jax.tree_util.tree_map(lambda x: jnp.stack([x] * seeds), env)
        states = [init_state(learner, envs, keys, True)]
    else:
        envs, states = env, [init_state(learner, env, k) for k in keys]
    # leave the warm-up (replay filling) behind, then compile exactly the timed range: the
    # schedule splits a range into per-phase segments, each its own compiled loop, so a
    # different range would compile inside the timing
    states = [learner.train_chunk(envs, st, iterations, 0, batched)[0] for st in states]
    warm = [learner.train_chunk(envs, st, iterations, iterations, batched)[0] for st in states]
    jax.block_until_ready(warm)
    start = time.perf_counter()
    states = [learner.train_chunk(envs, st, iterations, iterations, batched)[0] for st in states]
    jax.block_until_ready(states)
    return iterations * seeds / (time.perf_counter() - start) / seeds


def _worker(args):
    import os

    from contractrl.experiments.executor import SINGLE_THREAD_XLA

    core, dqn, iterations, seeds, batched = args
    os.sched_setaffinity(0, {core})
    os.environ["XLA_FLAGS"] = SINGLE_THREAD_XLA
    start = time.perf_counter()
    rate = measure(dqn, iterations, seeds, batched)
    return rate, time.perf_counter() - start


def measure_worker(dqn, iterations: int, seeds: int = 1, batched: bool = False) -> float:
    """:func:`measure` in a fresh process pinned to one core (how the experiment runs)."""
    from contractrl.experiments.executor import available_cores

    job = (available_cores()[0], dqn, iterations, seeds, batched)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.map(_worker, [job])[0][0]


def measure_processes(dqn, iterations: int, seeds: int) -> float:
    """Total iterations per second of ``seeds`` runs spread over one process per core."""
    from contractrl.experiments.executor import available_cores

    cores = available_cores()
    share = [seeds // len(cores) + (i < seeds % len(cores)) for i in range(len(cores))]
    jobs = [(c, dqn, iterations, n, False) for c, n in zip(cores, share, strict=True) if n]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.map(_worker, jobs)
    return sum(rate * job[3] for (rate, _), job in zip(results, jobs, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    from contractrl.experiments.tree import TREE_PRESETS
    from contractrl.learning.algorithm2 import DQNConfig

    ours = TREE_PRESETS["paper"].dqn
    baseline = DQNConfig(nudge=0.01, sparse_input_adam=False, dedup_sizes=())
    n = args.iterations
    rows = [
        ("baseline learner (features off), 1 seed", measure_worker(baseline, n), 1),
        ("contractrl, 1 seed", measure_worker(ours, n), 1),
        ("contractrl, 5 seeds, 1 process per core", measure_processes(ours, n, 5) / 5, 5),
        ("contractrl, 5 seeds vmapped, 1 process", measure_worker(ours, n, 5, batched=True), 5),
    ]
    base = rows[0][1]
    lines = [
        "| configuration | it/s per seed | it/s total | vs baseline learner (same run) |",
        "|---|---|---|---|",
    ]
    for name, rate, seeds in rows:
        lines.append(f"| {name} | {rate:.0f} | {rate * seeds:.0f} | {rate / base:.2f}x |")
    table = "\n".join(lines)
    print(table)
    protocol = rows[2][1] * 5
    note = (
        f"\n\nAt {protocol:.0f} it/s in total, the paper's protocol (15 runs x 20,000 "
        f"iterations) needs {15 * 20000 / protocol:.0f} s of training."
    )
    if not args.no_record:
        record_section(
            "bench_tree_learner",
            "Tree MDP learner (Algorithm 2), depth 10",
            f"{machine_summary()}\n\nCommand: `python benchmarks/bench_tree_learner.py "
            f"--iterations {n}` ({n} timed iterations after compilation and warm-up).\n\n"
            + table
            + note,
        )


if __name__ == "__main__":
    main()
