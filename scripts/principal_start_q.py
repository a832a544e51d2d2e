"""Print the trained principal's per-agent Q-values at the first state of an episode.

Usage: ``python scripts/principal_start_q.py RUN_DIR`` (a ``train marl``/``train coin`` run).
One line per seed: ``q_θ(s_i, a)`` for every agent ``i`` (rows) and action ``a`` — the VDN
terms the principal's recommendations maximise (paper Algorithm 3) — or, for a ``joint``
principal head, ``Q_θ(s, j)`` over joint actions. In Escape Room both rows
rank the actions the same way: docs/escape-room.md explains why that sends both agents to the
lever.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

from contractrl.experiments.coin import _config, experiment_env, load_principal
from contractrl.multiagent.algorithm3 import principal_learner


def main(run_dir: str) -> None:
    """Print the first state's Q-values of every seed's principal."""
    exp = Path(run_dir)
    config = _config(exp)
    env = experiment_env(config)
    learner = principal_learner(env, config.dqn)
    obs, state = env.reset(jax.random.PRNGKey(config.seed))
    view = learner.encoder.view(learner.encoder.keep(obs), state)
    for k in range(config.seeds):
        principal = load_principal(exp, config, k)["principal"]
        recs = np.asarray(learner.principal_recommendations(principal, view)).tolist()
        if config.dqn.principal_head == "joint":  # one Q over joint actions
            q = np.asarray(learner.joint_q(principal, view))
            print(f"seed {k}: joint Q {[round(float(x), 2) for x in q]}; recommends {recs}")
            continue
        q = np.asarray(learner.q_values(principal, view))
        rows = "  ".join(f"agent {i}: {[round(float(x), 2) for x in q[i]]}" for i in range(len(q)))
        print(f"seed {k}: {rows}; recommends {recs}")


if __name__ == "__main__":
    main(sys.argv[1])
