"""Benchmark: iterations per second of the Coin Game learners (Algorithm 3), 3x3 and 7x7.

Per seed (one process on one core, single-threaded XLA, after compilation), for the training
phase (principal + agents, both networks updated every iteration) and for the validation agents;
in the same run, a baseline: the same learner with 'same'-style circular padding of the
convolution (the straightforward layout: 49 positions on 7x7; on 3x3 it is the layout 'auto'
picks anyway), to compare FLOPs and time. Both compute the convolution from the observations'
few ones. Ratios are against that baseline, measured in the same run; no rate measured on
another machine is compared with. Prints a table and records it in ``benchmarks/RESULTS.md``.

Usage: ``python benchmarks/bench_coin.py [--iterations 2000]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_summary, record_section  # noqa: E402


def _measure(args):
    grid, padding, phase, iterations = args
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import jax

    from contractrl.envs.coin_game import PRESETS, CoinGame
    from contractrl.multiagent.agents import AgentsLearner
    from contractrl.multiagent.algorithm3 import PrincipalLearner
    from contractrl.multiagent.common import DQNConfig

    game = PRESETS[f"paper-{grid}x{grid}"]
    config = DQNConfig(iterations=10 * iterations, conv_padding=padding)
    key = jax.random.PRNGKey(0)
    if phase == "training":
        learner = PrincipalLearner(CoinGame(game), config)
        state = learner.init(key)

        def run(st, start, n):
            return learner.train_chunk(st, start, n)[0]
    else:
        principal = PrincipalLearner(CoinGame(game), config).init(key).params
        learner = AgentsLearner(CoinGame(game), config, "validation")
        state = learner.init(key)

        def run(st, start, n):
            return learner.train_chunk(st, principal, start, n)[0]

    state = run(state, 0, iterations)  # compile and warm up
    jax.block_until_ready(state)
    start = time.perf_counter()
    state = run(state, iterations, iterations)
    jax.block_until_ready(state)
    return iterations / (time.perf_counter() - start)


def measure(grid: int, padding: str, phase: str, iterations: int) -> float:
    """Iterations per second, in a fresh single-core process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.map(_measure, [(grid, padding, phase, iterations)])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rows = []
    for grid in (3, 7):
        ours = measure(grid, "auto", "training", args.iterations)
        dense = measure(grid, "circular", "training", args.iterations)
        validation = measure(grid, "auto", "validation", args.iterations)
        rows.append((grid, ours, dense, validation))
        print(f"{grid}x{grid}: {ours:.0f} it/s", file=sys.stderr)
    lines = [
        "| grid | training phase, it/s per seed | 'same'/circular layout, it/s (same run) | "
        "vs circular | validation agents, it/s |",
        "|---|---|---|---|---|",
    ]
    for grid, ours, dense, validation in rows:
        lines.append(
            f"| {grid}x{grid} | {ours:.0f} | {dense:.0f} | {ours / dense:.2f}x | {validation:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_record:
        record_section(
            "bench_coin",
            "Coin Game learners (Algorithm 3)",
            f"{machine_summary()}\n\nCommand: `python benchmarks/bench_coin.py --iterations "
            f"{args.iterations}`; one seed per process on one core (single-threaded XLA), "
            "after compilation. 'auto' layout: `valid` convolution on 7x7 (16 positions), "
            "circular on 3x3; both computed from the observations' few ones (sparse "
            "observations). The 'same'/circular column forces 49 positions on 7x7.\n\n" + table,
        )


if __name__ == "__main__":
    main()
