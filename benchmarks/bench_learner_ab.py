"""Benchmark: Algorithm 2's speed in two source trees, measured alternately in one session.

For a refactoring of the learner: ``--before`` and ``--after`` are ``src`` directories (e.g. a
``git worktree`` of the old commit and this checkout). Each configuration runs before, after,
before, after, … in fresh processes pinned to one core with single-threaded XLA, so that drifts
of a shared machine hit both sides alike. Prints each round and the ratio of the means.

Usage: ``python benchmarks/bench_learner_ab.py --before OLD/src --after src
[--configs single baseline vmapped] [--rounds 3] [--iterations 1000]``
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
import dataclasses, json, os, sys, time
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
import jax, jax.numpy as jnp
try:
    from contractrl.core.games import tree_mdp
except ImportError:  # source trees from before the core package
    from contractrl.games import tree_mdp
from contractrl.envs.tabular import tabular_params
from contractrl.learning.algorithm2 import DQNConfig, Learner, init_state, learner_spec
which, iterations = sys.argv[1], int(sys.argv[2])
if which == "baseline":  # the speed features off
    dqn, seeds, batched = DQNConfig(nudge=0.01, sparse_input_adam=False, dedup_sizes=()), 1, False
else:  # the paper preset's learner
    dqn = DQNConfig(schedule="iterative", phase_length=2000, agent_model="outcome_value",
                    nudge=0.005)
    seeds, batched = (5, True) if which == "vmapped" else (1, False)
game = tree_mdp(10, 0)
learner = Learner(learner_spec(game), dataclasses.replace(dqn, iterations=10 * iterations))
env = tabular_params(game)
keys = jax.random.split(jax.random.PRNGKey(0), seeds)
if batched:
    envs = jax.tree_util.tree_map(lambda x: jnp.stack([x] * seeds), env)
    state = init_state(learner, envs, keys, True)
else:
    envs, state = env, init_state(learner, env, keys[0])
state = learner.train_chunk(envs, state, iterations, 0, batched)[0]
warm = learner.train_chunk(envs, state, iterations, iterations, batched)[0]
jax.block_until_ready(warm)
start = time.perf_counter()
timed = learner.train_chunk(envs, state, iterations, iterations, batched)[0]
jax.block_until_ready(timed)
print(json.dumps(iterations / (time.perf_counter() - start)))
"""


def rate(src: str, which: str, iterations: int) -> float:
    """Iterations per second of configuration ``which`` with the code in ``src``."""
    env = {**os.environ, "PYTHONPATH": src, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", CODE, which, str(iterations)],
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
    parser.add_argument("--configs", nargs="+", default=["single", "baseline", "vmapped"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=1000)
    args = parser.parse_args()
    alternate(
        lambda src, which: rate(src, which, args.iterations),
        args.before,
        args.after,
        args.configs,
        args.rounds,
    )


if __name__ == "__main__":
    main()
