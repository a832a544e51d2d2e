"""Check that two source trees train Algorithm 2 bit-identically (for refactorings).

Trains five small configurations (simultaneous/iterative schedules, truncated-Q/outcome-value
agent networks, the automatic nudge, prioritised replay with dense Adam and the MSE loss, two
runs vmapped, a game with time as an input) with the code in ``--before`` and in ``--after``, and
compares every array of the final learner states, of the per-iteration metrics and of the
networks' tables. Exit code 0 when all are equal.

Usage: python scripts/learner_identity_check.py --before OLD/src --after src
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: Runs in a fresh process with one source tree; writes every array to ``argv[1]`` (npz).
CODE = r"""
import dataclasses, sys
import jax, numpy as np
try:
    from contractrl.core.games import random_game, tree_mdp
except ImportError:  # source trees from before the core package
    from contractrl.games import random_game, tree_mdp
from contractrl.envs.tabular import tabular_params
from contractrl.learning.algorithm2 import DQNConfig, Learner, init_state, learner_spec

base = DQNConfig(iterations=600, hidden=(32, 32), replay_capacity=5000, nudge=0.01)
cases = {
    "A": (tree_mdp(5, 1), base, False),
    "B": (tree_mdp(5, 2), dataclasses.replace(base, schedule="iterative", phase_length=150,
          agent_model="outcome_value", auto_nudge=True, nudge=0.0), False),
    "C": (tree_mdp(5, 3), dataclasses.replace(base, prioritized=True, priority_beta=0.4,
          sparse_input_adam=False, loss="mse", max_grad_norm=None), False),
    "D": (tree_mdp(5, 1), base, True),
    "E": (random_game(3, 3, 3, horizon=4, seed=5), dataclasses.replace(
          base, schedule="iterative", phase_length=100, agent_model="outcome_value"), False),
}
out = {}
for name, (game, cfg, batched) in cases.items():
    learner = Learner(learner_spec(game), cfg)
    env = tabular_params(game)
    if batched:
        envs = jax.tree_util.tree_map(lambda x: np.stack([x, x]), env)
        state = init_state(learner, envs, jax.random.split(jax.random.PRNGKey(3), 2), True)
    else:
        envs, state = env, init_state(learner, env, jax.random.PRNGKey(3))
    done, logs = 0, []
    while done < cfg.iterations:
        n = min(250, cfg.iterations - done)
        state, metrics = learner.train_chunk(envs, state, n, done, batched)
        logs.append(metrics)
        done += n
    for i, leaf in enumerate(jax.tree_util.tree_leaves(state)):
        out[f"{name}/state/{i}"] = np.asarray(leaf)
    for i, leaf in enumerate(jax.tree_util.tree_leaves(logs)):
        out[f"{name}/metrics/{i}"] = np.asarray(leaf)
    if not batched:
        agent_q, principal_q = learner.q_tables(state.params, env)
        out[f"{name}/agent_q"] = np.asarray(agent_q)
        out[f"{name}/principal_q"] = np.asarray(principal_q)
np.savez(sys.argv[1], **out)
"""


def arrays(src: str, path: Path) -> dict[str, np.ndarray]:
    """Every array of the five runs with the code in ``src``."""
    env = {**os.environ, "PYTHONPATH": src, "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", CODE, str(path)], check=True, env=env)
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def main() -> None:
    """Compare; print the count and the first mismatches."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = arrays(args.before, Path(tmp) / "before.npz")
        after = arrays(args.after, Path(tmp) / "after.npz")
    keys = sorted(set(before) | set(after))
    bad = [
        k
        for k in keys
        if k not in before or k not in after or not np.array_equal(before[k], after[k], True)
    ]
    print(f"{len(keys)} arrays compared, {len(bad)} differ" + (f": {bad[:10]}" if bad else ""))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
