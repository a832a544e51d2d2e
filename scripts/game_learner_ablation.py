"""Algorithm 2 variants on games of the tuning set (issue 22; docs/own-games.md).

Each variant is contractrl's learner (``CONTRACTRL_DQN``) with some fields replaced; every game
trains 2 seeds with ``contractrl.learning.algorithm2.train`` and prints each run's exact ratio
(the learned principal against the exact best-responding agent, over the SPE value).

Usage: python scripts/game_learner_ablation.py SEEDS NAME:FIELD=VALUE,... [NAME:...]
SEEDS: comma-separated seeds of ``scripts/game_study.random_game`` (-1: the delegation game,
-2: its retry variant). Example (the principal-model comparison of docs/own-games.md):

    python scripts/game_learner_ablation.py 11,7 \
        paper:iterations=20000 \
        pov:iterations=4000,phase_length=500,replay_capacity=20000,principal_model=outcome_value
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    """Train every variant on every game; print one line per (game, variant)."""
    from game_study import random_game

    from contractrl.core.delegation import delegation_game
    from contractrl.core.solver import solve_spe
    from contractrl.envs.tabular import tabular_params
    from contractrl.experiments.tree import CONTRACTRL_DQN
    from contractrl.learning.algorithm2 import train
    from contractrl.learning.evaluation import evaluate_with_oracle, learned_policy

    variants = {}
    for spec in sys.argv[2:]:
        name, _, fields = spec.partition(":")
        changes = dict(x.split("=") for x in fields.split(",") if x)
        variants[name] = dataclasses.replace(
            CONTRACTRL_DQN, **{k: _value(v) for k, v in changes.items()}
        )
    for seed in (int(s) for s in sys.argv[1].split(",")):
        game = {-1: delegation_game, -2: lambda: delegation_game(deadline=None)}.get(
            seed, lambda seed=seed: random_game(seed)
        )()
        spe = solve_spe(game)
        for name, dqn in variants.items():
            start, ratios = time.perf_counter(), []
            for run in range(2):
                res = train(game, dqn, seed=run, chunk=dqn.iterations)
                env = tabular_params(game)
                agent_q, principal_q = (
                    np.asarray(x)
                    for x in res.learner.q_tables(res.state.params, env, res.state.nudge)
                )
                policy = learned_policy(
                    game, agent_q, principal_q, float(res.state.nudge), res.learner.spec.time_input
                )
                ev = evaluate_with_oracle(game, policy, spe)
                ratios.append(ev.principal_utility / spe.initial_principal_value)
            print(
                f"game {seed} ({game.name}, S{game.num_states} A{game.num_actions} "
                f"O{game.num_outcomes} H{game.horizon} γ{game.discount}) {name}: "
                f"{np.round(ratios, 3).tolist()} in {time.perf_counter() - start:.0f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
