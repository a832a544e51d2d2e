"""The Tree MDP experiment (paper App. D.1, Figure 3): Algorithm 2 on random binary trees.

:func:`run_tree` prepares an experiment directory (resolved config, each instance in the
instance format, its exact SPE), trains ``instances x seeds`` runs through
:mod:`contractrl.experiments.executor`, and aggregates ``results.json``. Each run is resumable
from its last checkpoint and deterministic given its seed.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from contractrl import __version__
from contractrl._stats import mean_se
from contractrl._validate import require_positive_ints
from contractrl.experiments.config import from_dict, validate_execution
from contractrl.experiments.executor import (
    Task,
    check_resume_backend,
    resolve_backend,
    run_tasks,
)
from contractrl.experiments.loop import checkpointed_loop
from contractrl.experiments.store import (
    MetricsLog,
    add_wall_time,
    open_experiment,
    read_json,
    write_json,
)
from contractrl.learning.algorithm2 import DQNConfig

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


def prepare(config: TreeExperimentConfig, out: Path, resume: bool, command: str = "") -> dict:
    """Create (or, with ``resume``, reopen) the experiment directory; returns its manifest.

    On creation, each instance is written in the instance format and solved exactly.

    Raises:
        ExperimentExistsError: see :func:`contractrl.experiments.store.open_experiment`.
    """

    def build(out: Path) -> dict[str, Any]:
        from contractrl.core.games import tree_mdp
        from contractrl.core.instance import save_instance
        from contractrl.core.solver import solve_spe

        instances = []
        for i in range(config.instances):
            seed = config.instance_seed + i
            game = tree_mdp(config.depth, seed)
            path = out / "instances" / f"instance{i}.json"
            save_instance(game, path)
            spe = solve_spe(game)
            instances.append(
                {
                    "index": i,
                    "seed": seed,
                    "path": str(path.relative_to(out)),
                    "spe_principal_value": spe.initial_principal_value,
                    "spe_agent_value": spe.initial_agent_value,
                    "spe_high_effort_share": float(np.mean(spe.action == 1)),
                }
            )
        return {"instances": instances}

    return open_experiment(Path(out), "tree", config, resume, command, __version__, build)


@dataclasses.dataclass(frozen=True)
class TreeExperimentConfig:
    """The Tree MDP experiment (paper App. D.1, Figure 3).

    Attributes:
        depth: tree depth (``2^depth - 1`` decision states).
        instances: number of random tree instances.
        seeds: training runs per instance.
        instance_seed: seed of the first instance (instance ``i`` uses ``instance_seed + i``).
        eval_every: iterations between evaluations against the oracle agent.
        checkpoint_seconds: minimum wall time between checkpoints of a run (one is always
            written at the end).
        backend: ``local`` (worker processes, one per core), ``ray`` (tasks on a Ray cluster),
            ``inline`` (this process, one run after another), ``vmap`` (every run a lane of one
            compiled program, :mod:`.tree_lanes`) or ``auto`` (``vmap`` where JAX's default
            device is an accelerator, else ``local``).
        workers: worker processes for ``local`` (0: one per available core).
        ray_address: Ray cluster address (``None``: start or join a local Ray).
        dqn: learner hyper-parameters.
    """

    depth: int = 10
    instances: int = 3
    seeds: int = 5
    instance_seed: int = 0
    eval_every: int = 500
    checkpoint_seconds: float = 30.0
    backend: str = "auto"
    workers: int = 0
    ray_address: str | None = None
    dqn: DQNConfig = dataclasses.field(default_factory=DQNConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        require_positive_ints(self, ("depth", "instances", "seeds", "eval_every"))
        if not 1 <= self.depth <= 16:
            raise ValueError(f"depth: must lie in [1, 16] for learning, got {self.depth}")
        validate_execution(self)
        self.dqn.validate()


#: contractrl's learner for Algorithm 2: the faithful iterative schedule of Algorithm 1
#: (alternating phases, the last one training the agent) and the outcome-value agent network
#: (see :class:`~contractrl.learning.algorithm2.DQNConfig`), with the paper's hyper-parameters.
#: Its nudge, 0.01, is the default of own games (``train game``) and of the smoke presets; the
#: Tree ``paper`` preset uses 0.005, chosen for depth-10 trees on held-out instances (a nudge is
#: in reward units, so the right one depends on the game's scale).
CONTRACTRL_DQN = DQNConfig(
    schedule="iterative", phase_length=2000, agent_model="outcome_value", nudge=0.01
)

TREE_PRESETS: dict[str, TreeExperimentConfig] = {
    # The protocol of paper App. D.1, contractrl's learner, the best fixed nudge chosen on
    # held-out instances (--instance-seed 100; scripts/tree_nudge_study.py, docs/tree.md:
    # 0.0025 -> 0.930, 0.005 -> 0.987, 0.01 -> 0.980, 0.02 -> 0.964 of the SPE there).
    "paper": TreeExperimentConfig(dqn=dataclasses.replace(CONTRACTRL_DQN, nudge=0.005)),
    "paper-no-nudge": TreeExperimentConfig(dqn=dataclasses.replace(CONTRACTRL_DQN, nudge=0.0)),
    "paper-auto-nudge": TreeExperimentConfig(
        dqn=dataclasses.replace(CONTRACTRL_DQN, nudge=0.0, auto_nudge=True)
    ),
    # The paper's Algorithm 2 as published: simultaneous training, truncated-Q agent network.
    "paper-faithful": TreeExperimentConfig(dqn=DQNConfig(nudge=0.01)),
    # A short run of the whole pipeline (tests, demo).
    "smoke": TreeExperimentConfig(
        depth=6,
        instances=1,
        seeds=2,
        eval_every=500,
        dqn=dataclasses.replace(
            CONTRACTRL_DQN, iterations=4000, phase_length=500, replay_capacity=20_000
        ),
    ),
}


# ----------------------------------------------------------------------------- one run
def _learner(game, dqn):
    """The process's compiled learner for ``game``'s shapes and ``dqn``."""
    from contractrl.learning.algorithm2 import cached_learner, learner_spec

    return cached_learner(learner_spec(game), dqn)


def experiment_config(manifest: dict):
    """The config of a prepared ``tree`` or ``game`` experiment directory."""
    if manifest.get("experiment") == "game":
        from contractrl.experiments.game import GameExperimentConfig

        return from_dict(GameExperimentConfig, manifest["config"])
    return from_dict(TreeExperimentConfig, manifest["config"])


def train_tree_run(exp_dir: str, instance: int, seed: int) -> dict[str, Any]:
    """Train (or resume) one run of the experiment in ``exp_dir``; returns its final summary.

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
    config = experiment_config(manifest)
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


# ----------------------------------------------------------------------------- experiment
def run_tree(
    config: TreeExperimentConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run the whole experiment; returns (and writes) ``results.json``."""
    config.validate()
    out = Path(out)
    start = time.perf_counter()
    config = dataclasses.replace(config, backend=resolve_backend(config.backend))
    manifest = prepare(config, out, resume, command)
    check_resume_backend(manifest, config.backend, out)
    if config.backend == "vmap":
        from contractrl.experiments.tree_lanes import run_tree_lanes

        return run_tree_lanes(config, out, manifest, progress, "tree", start)
    tasks = [
        Task(
            train_tree_run,
            {"exp_dir": str(out), "instance": i, "seed": s},
            out / "runs" / run_name(i, s),
            config.dqn.iterations,
        )
        for i in range(config.instances)
        for s in range(config.seeds)
    ]
    summaries = run_tasks(
        tasks,
        config.backend,
        config.workers,
        config.ray_address,
        progress,
        description=f"tree d{config.depth}",
    )
    wall = add_wall_time(out, time.perf_counter() - start)
    results = aggregate(manifest, summaries, wall)
    write_json(out / "results.json", results)
    return results


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
