"""One run of Algorithm 2 on an instance of a prepared experiment, and the aggregate over runs.

Shared by the Tree MDP experiment (:mod:`.tree`), the own-game experiment (:mod:`.game`) and
their lane backend (:mod:`.tree_lanes`); it imports none of them, so the three import it one way.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from contractrl._stats import mean_se
from contractrl.experiments.config import from_dict
from contractrl.experiments.loop import checkpointed_loop
from contractrl.experiments.store import MetricsLog, read_json, write_json

METRIC_COLUMNS = [
    "iteration",
    "principal_utility",
    "agent_utility",
    "accuracy",
    "principal_utility_ratio",
    "follow_rate",
    "nudge",
    "epsilon",
    "learning_rate",
    "agent_loss",
    "principal_loss",
    "payment",
    "train_seconds",
]
SUMMARY_KEYS = (
    "principal_utility_ratio",
    "accuracy",
    "agent_utility",
    "principal_utility",
    "follow_rate",
    "nudge",
)


def run_name(instance: int, seed: int) -> str:
    """Directory name of a run."""
    return f"instance{instance}-seed{seed}"


# ----------------------------------------------------------------------------- one run
def _learner(game, dqn):
    """The process's compiled learner for ``game``'s shapes and ``dqn``."""
    from contractrl.learning.algorithm2 import cached_learner, learner_spec

    return cached_learner(learner_spec(game), dqn)


def train_tree_run(exp_dir: str, instance: int, seed: int, config_class: type) -> dict[str, Any]:
    """Train (or resume) one run of the experiment in ``exp_dir``; returns its final summary.

    ``config_class`` reads the directory's config (``TreeExperimentConfig`` or
    ``GameExperimentConfig``: both have ``dqn``, ``eval_every`` and ``checkpoint_seconds``).

    Writes ``runs/<run>/metrics.csv`` (one row per evaluation), checkpoints, progress and
    ``final.json``. Determinism: the run depends only on the config, the instance and ``seed``.
    """
    import jax

    from contractrl.core.instance import load_instance
    from contractrl.core.solver import solve_spe
    from contractrl.envs.tabular import tabular_params
    from contractrl.learning.algorithm2 import init_state

    exp = Path(exp_dir)
    manifest = read_json(exp / "config.json")
    config = from_dict(config_class, manifest["config"])
    dqn = config.dqn
    run_dir = exp / "runs" / run_name(instance, seed)
    final_path = run_dir / "final.json"
    if final_path.exists():
        return read_json(final_path)
    game = load_instance(exp / manifest["instances"][instance]["path"])
    spe = solve_spe(game)
    learner = _learner(game, dqn)
    env = tabular_params(game)
    state = init_state(learner, env, jax.random.PRNGKey(seed))

    def evaluate(state, metrics, iteration, seconds):
        row = _evaluate(learner, game, env, spe, state, metrics, iteration)
        row["train_seconds"] = seconds
        return state, {"run": row}

    def progress(iteration, _steps):
        write_json(run_dir / "progress.json", {"iteration": iteration, "total": dqn.iterations})

    result = checkpointed_loop(
        state,
        total=dqn.iterations,
        eval_every=config.eval_every,
        checkpoint=run_dir / "checkpoint.msgpack",
        checkpoint_seconds=config.checkpoint_seconds,
        logs={"run": MetricsLog(run_dir / "metrics.csv", METRIC_COLUMNS)},
        train_chunk=lambda state, start, steps: learner.train_chunk(env, state, steps, start),
        evaluate=evaluate,
        progress=progress,
    )
    row, iteration, train_seconds = result.rows["run"], result.iteration, result.train_seconds
    summary = {k: row[k] for k in SUMMARY_KEYS}
    summary.update(
        instance=instance,
        seed=seed,
        iterations=iteration,
        train_seconds=train_seconds,
        iterations_per_second=iteration / max(train_seconds, 1e-9),
    )
    write_json(final_path, summary)
    return summary


def _evaluate(learner, game, env, spe, state, metrics, iteration: int) -> dict[str, float]:
    """Couple the learned principal with the oracle agent; one metrics row."""
    from contractrl.learning.evaluation import evaluate_with_oracle, learned_policy

    agent_q, principal_q = (np.asarray(x) for x in learner.q_tables(state.params, env))
    nudge = float(state.nudge)
    if not (np.isfinite(agent_q).all() and np.isfinite(principal_q).all() and np.isfinite(nudge)):
        raise RuntimeError(
            f"training diverged by iteration {iteration}: non-finite Q-values "
            f"or nudge ({nudge}); lower the learning rate or the nudge"
        )
    policy = learned_policy(
        game, np.asarray(agent_q), np.asarray(principal_q), nudge, learner.spec.time_input
    )
    ev = evaluate_with_oracle(game, policy, spe)
    return {
        "iteration": iteration,
        "principal_utility": ev.principal_utility,
        "agent_utility": ev.agent_utility,
        "accuracy": ev.accuracy,
        # a ratio reads only against a positive SPE value (own games may have 0 or less)
        "principal_utility_ratio": (
            ev.principal_utility / spe.initial_principal_value
            if spe.initial_principal_value > 0
            else float("nan")
        ),
        "follow_rate": ev.follow_rate,
        "nudge": nudge,
        "epsilon": float(learner.epsilon(iteration)),
        "learning_rate": float(learner.lr(iteration)),
        "agent_loss": float(np.mean(metrics.agent_loss)),
        "principal_loss": float(np.mean(metrics.principal_loss)),
        "payment": float(np.mean(metrics.payment)),
    }


def aggregate(manifest: dict, summaries: list[dict], wall_seconds: float) -> dict[str, Any]:
    """``results.json``: per instance (mean and standard error over seeds) and overall.

    Undefined values (a ``principal_utility_ratio`` of NaN, when a game's SPE value is not
    positive) are left out of means; a mean over no defined value is NaN.
    """
    per_instance = []
    for inst in manifest["instances"]:
        runs = [r for r in summaries if r["instance"] == inst["index"]]
        entry = {
            "index": inst["index"],
            "seed": inst["seed"],
            "spe_principal_value": inst["spe_principal_value"],
            "spe_agent_value": inst["spe_agent_value"],
            "runs": runs,
            # per instance: the training time of its runs (they ran in parallel)
            "wall_seconds": sum(r["train_seconds"] for r in runs),
        }
        for key in SUMMARY_KEYS:
            entry[key], entry[f"{key}_se"] = mean_se([r[key] for r in runs])
        per_instance.append(entry)
    overall: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        overall[key], overall[f"{key}_se"] = mean_se([r[key] for r in summaries])
    for key in ("spe_principal_value", "spe_agent_value"):
        overall[key] = float(np.mean([i[key] for i in per_instance]))
    train = sum(r["train_seconds"] for r in summaries)
    iterations = sum(r["iterations"] for r in summaries)
    overall.update(
        wall_seconds=wall_seconds,
        runs=len(summaries),
        iterations_per_second_per_run=iterations / max(train, 1e-9),
        iterations_per_second_total=iterations / max(wall_seconds, 1e-9),
    )
    return {
        "experiment": "tree",
        "config": manifest["config"],
        "version": manifest["version"],
        "git_sha": manifest["git_sha"],
        "mean": overall,
        "instances": per_instance,
        "python": sys.version.split()[0],
    }
