"""Benchmark: Algorithm 3's training phase in a JAX environment and in the same game written as
a PettingZoo ``ParallelEnv`` (stepped on the host through callbacks), in the same run.

The game: the iterated prisoner's dilemma (``contractrl.envs.dilemma`` and
``examples/pettingzoo_dilemma.py``, identical rules and numbers). One seed per process on one
core (single-threaded XLA), timed after compilation and warm-up.
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

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pettingzoo_dilemma.py"


def _measure(args: tuple[str, int]) -> float:
    which, iterations = args
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    import jax

    from contractrl.envs.dilemma import IteratedDilemma
    from contractrl.envs.registry import make
    from contractrl.multiagent.algorithm3 import PrincipalLearner
    from contractrl.multiagent.common import DQNConfig

    env = IteratedDilemma(horizon=10) if which == "jax" else make(f"{EXAMPLE}:make", max_steps=10)
    learner = PrincipalLearner(env, DQNConfig(iterations=10 * iterations))
    state = learner.init(jax.random.PRNGKey(0))
    state = learner.train_chunk(state, 0, iterations)[0]  # compile and warm up
    jax.block_until_ready(state)
    start = time.perf_counter()
    state = learner.train_chunk(state, iterations, iterations)[0]
    jax.block_until_ready(state)
    return iterations / (time.perf_counter() - start)


def measure(which: str, iterations: int) -> float:
    """Iterations per second, in a fresh single-core process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.map(_measure, [(which, iterations)])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"jax": [], "host": []}
    for _ in range(args.rounds):
        for which in rates:
            rates[which].append(measure(which, args.iterations))
            print(f"{which}: {rates[which][-1]:.0f} it/s", file=sys.stderr)
    jax_rate = sum(rates["jax"]) / len(rates["jax"])
    host_rate = sum(rates["host"]) / len(rates["host"])
    table = "\n".join(
        [
            "| environment | training phase, it/s (each round) | mean | vs JAX |",
            "|---|---|---|---|",
            f"| JAX (`iterated_dilemma`) | {', '.join(f'{r:.0f}' for r in rates['jax'])} "
            f"| {jax_rate:.0f} | 1.00x |",
            f"| PettingZoo `ParallelEnv`, host callbacks | "
            f"{', '.join(f'{r:.0f}' for r in rates['host'])} | {host_rate:.0f} "
            f"| {host_rate / jax_rate:.2f}x |",
        ]
    )
    print(table)
    if not args.no_record:
        record_section(
            "bench_host",
            "A PettingZoo environment stepped on the host vs the same game in JAX",
            f"{machine_summary()}\n\nCommand: `python benchmarks/bench_host.py --iterations "
            f"{args.iterations} --rounds {args.rounds}`; Algorithm 3's training phase (one "
            "environment step and one gradient step per iteration), one seed per process on one "
            "core (single-threaded XLA), after compilation; the two alternate.\n\n" + table,
        )


if __name__ == "__main__":
    main()
