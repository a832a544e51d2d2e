"""The Tree MDP experiment (paper App. D.1, Figure 3): Algorithm 2 on random binary trees.

:func:`run_tree` prepares an experiment directory (resolved config, each instance in the
instance format, its exact SPE), trains ``instances x seeds`` runs through
:mod:`contractrl.experiments.executor`, and aggregates ``results.json``. Each run is resumable
from its last checkpoint and deterministic given its seed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from contractrl import __version__
from contractrl._validate import require_positive_ints
from contractrl.experiments.config import validate_execution
from contractrl.experiments.executor import (
    Task,
    check_resume_backend,
    resolve_backend,
    run_tasks,
)
from contractrl.experiments.store import (
    add_wall_time,
    open_experiment,
    write_json,
)
from contractrl.experiments.tree_runs import (
    aggregate,
    check_resume_config,
    run_name,
    runs_label,
    train_tree_run,
)
from contractrl.learning.algorithm2 import DQNConfig


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

    if resume:
        check_resume_config(Path(out), config)
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
        nudge_rule: ``fixed`` (every run uses ``dqn.nudge``) or ``exact_price`` (beyond the
            paper: each instance's runs use the largest ``ξ = 0.01 · 2^-k`` whose exact price,
            the SPE with margin ``ξ`` against the SPE, is at most 1% of the SPE value — the
            rule of ``train game``'s ``auto`` preset, :func:`.tree_runs.nudge_for`; trees are
            solved exactly for the evaluation anyway).
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
    nudge_rule: str = "fixed"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        require_positive_ints(self, ("depth", "instances", "seeds", "eval_every"))
        if self.nudge_rule not in NUDGE_RULES:
            raise ValueError(
                f"nudge_rule: invalid value {self.nudge_rule!r} (valid: {', '.join(NUDGE_RULES)})"
            )
        if self.nudge_rule == "exact_price" and self.dqn.auto_nudge:
            raise ValueError("nudge_rule: exact_price sets the nudge; drop auto_nudge")
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

#: How a tree run's nudge is chosen (:attr:`TreeExperimentConfig.nudge_rule`).
NUDGE_RULES = ("fixed", "exact_price")

TREE_PRESETS: dict[str, TreeExperimentConfig] = {
    # The protocol of paper App. D.1, contractrl's learner, the best fixed nudge chosen on
    # held-out instances (--instance-seed 100; scripts/tree_nudge_study.py, docs/tree.md:
    # 0.0025 -> 0.930, 0.005 -> 0.987, 0.01 -> 0.980, 0.02 -> 0.964 of the SPE there).
    "paper": TreeExperimentConfig(dqn=dataclasses.replace(CONTRACTRL_DQN, nudge=0.005)),
    "paper-no-nudge": TreeExperimentConfig(dqn=dataclasses.replace(CONTRACTRL_DQN, nudge=0.0)),
    "paper-auto-nudge": TreeExperimentConfig(
        dqn=dataclasses.replace(CONTRACTRL_DQN, nudge=0.0, auto_nudge=True)
    ),
    # Beyond the paper, as train game's default: the outcome-value principal network and each
    # instance's exact-price nudge (docs/tree.md: 0.993 on held-out instances).
    "auto": TreeExperimentConfig(
        dqn=dataclasses.replace(CONTRACTRL_DQN, principal_model="outcome_value"),
        nudge_rule="exact_price",
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
            {
                "exp_dir": str(out),
                "instance": i,
                "seed": s,
                "config_class": TreeExperimentConfig,
            },
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
        description=runs_label(f"tree d{config.depth}", len(tasks), config.dqn.iterations),
    )
    wall = add_wall_time(out, time.perf_counter() - start)
    results = aggregate(manifest, summaries, wall)
    write_json(out / "results.json", results)
    return results
