"""Benchmark: Algorithm 3's speed in two source trees, measured alternately in one session.

For a refactoring of the multi-agent learners: ``--before`` and ``--after`` are ``src``
directories (e.g. a ``git worktree`` of the old commit and this checkout). Each configuration
(grid 3x3 or 7x7; the training phase or the validation phase) runs before, after, before,
after, … in fresh processes pinned to one core with single-threaded XLA, so that drifts of a
shared machine hit both sides alike. Prints each round and the ratio of the means.

Usage: ``python benchmarks/bench_coin_ab.py --before OLD/src --after src [--rounds 3]
[--iterations 1000]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ab import alternate  # noqa: E402

#: Runs in a fresh process: times ``iterations`` iterations after compilation and warm-up.
CODE = r"""
import json, os, sys, time
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
import jax
from contractrl.envs.coin_game import PRESETS
from contractrl.multiagent.agents import AgentsLearner
from contractrl.multiagent.algorithm3 import PrincipalLearner
try:
    from contractrl.multiagent.common import DQNConfig
    from contractrl.envs.coin_game import CoinGame
    def env_of(game):
        return CoinGame(game)
except ImportError:  # source trees from before the environment protocol
    from contractrl.multiagent.common import CoinDQNConfig as DQNConfig
    def env_of(game):
        return game
grid, phase, iterations = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
env = env_of(PRESETS[f"paper-{grid}x{grid}"])
config = DQNConfig(iterations=10 * iterations)
key = jax.random.PRNGKey(0)
if phase == "training":
    learner = PrincipalLearner(env, config)
    state = learner.init(key)
    def run(st, start):
        return learner.train_chunk(st, start, iterations)[0]
else:
    principal = PrincipalLearner(env, config).init(key).params
    learner = AgentsLearner(env, config, "validation")
    state = learner.init(key)
    def run(st, start):
        return learner.train_chunk(st, principal, start, iterations)[0]
state = run(state, 0)
warm = run(state, iterations)
jax.block_until_ready(warm)
start = time.perf_counter()
timed = run(state, iterations)
jax.block_until_ready(timed)
print(json.dumps(iterations / (time.perf_counter() - start)))
"""

CONFIGS = ("3x3 training", "3x3 validation", "7x7 training", "7x7 validation")


def rate(src: str, which: str, iterations: int) -> float:
    """Iterations per second of configuration ``which`` with the code in ``src``."""
    grid, phase = which.split()
    env = {**os.environ, "PYTHONPATH": src, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", CODE, grid.split("x")[0], phase, str(iterations)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    """Measure alternately; print every round and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()
    configs = [c.replace("-", " ") for c in args.configs]
    alternate(
        lambda src, which: rate(src, which, args.iterations),
        args.before,
        args.after,
        configs,
        args.rounds,
    )


if __name__ == "__main__":
    main()
