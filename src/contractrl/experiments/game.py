"""Learn contracts for your own game: Algorithm 2 on any instance file (``contractrl train game``).

The game (any horizon, finite or infinite; any numbers of states, actions and outcomes; see
``docs/instance-format.md``) is copied into the experiment directory and solved exactly, then
``seeds`` runs of the learner train on it exactly as the Tree MDP experiment's runs do
(:func:`contractrl.experiments.tree_runs.train_tree_run`: checkpoints, resume, progress, the
learned principal coupled with the oracle best-responding agent at every evaluation).
``results.json`` has the Tree experiment's layout (``mean``: ``principal_utility_ratio``,
``accuracy``, ...; one entry in ``instances``) with ``"experiment": "game"``.

The random Tree MDP experiment is the same pipeline over generated instances.

Python::

    from contractrl import load_instance
    from contractrl.experiments.game import auto_config, run_game

    config = auto_config(load_instance("my_game.json"))
    results = run_game(config, "my_game.json", "runs/my-game")
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from contractrl import __version__
from contractrl._validate import require_positive_ints
from contractrl.experiments.config import validate_execution
from contractrl.experiments.executor import (
    Task,
    check_resume_backend,
    resolve_backend,
    run_tasks,
)
from contractrl.experiments.store import add_wall_time, open_experiment, write_json
from contractrl.experiments.tree import CONTRACTRL_DQN
from contractrl.experiments.tree_runs import nudge_for
from contractrl.learning.algorithm2 import DQNConfig


@dataclasses.dataclass(frozen=True)
class GameExperimentConfig:
    """Algorithm 2 on one game of the user's.

    Attributes:
        seeds: training runs (run ``k`` uses seed ``k``).
        eval_every: iterations between evaluations against the oracle agent.
        checkpoint_seconds: minimum wall time between checkpoints of a run.
        backend: ``auto``, ``local``, ``ray``, ``inline`` or ``vmap`` (as the Tree experiment).
        workers: worker processes for ``local`` (0: one per available core).
        ray_address: Ray cluster address.
        dqn: learner hyper-parameters.
    """

    seeds: int = 3
    eval_every: int = 500
    checkpoint_seconds: float = 30.0
    backend: str = "auto"
    workers: int = 0
    ray_address: str | None = None
    dqn: DQNConfig = dataclasses.field(default_factory=lambda: CONTRACTRL_DQN)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        require_positive_ints(self, ("seeds", "eval_every"))
        validate_execution(self)
        self.dqn.validate()

    # what the Tree experiment's runs read
    @property
    def instances(self) -> int:
        """One game."""
        return 1


#: contractrl's learner on own games: the Tree experiment's (:data:`.tree.CONTRACTRL_DQN`) with
#: the principal network predicting its value after each outcome, so that a recommendation's
#: cost is always the current min-pay contract (``principal_model="outcome_value"``: on small
#: random games the paper's contractual-Q network kept 0.45-0.95 of the SPE where this one
#: keeps 0.99; docs/own-games.md).
GAME_DQN = dataclasses.replace(CONTRACTRL_DQN, principal_model="outcome_value")

#: ``auto``'s phase length per network input and action (see :func:`auto_config`).
AUTO_ITERATIONS_PER_PAIR = 1000


def auto_config(game, base: GameExperimentConfig | None = None) -> GameExperimentConfig:
    """The ``auto`` preset for ``game``: a budget sized from its states, actions and horizon.

    Algorithm 1 needs about one agent-then-principal pair of phases per step of the horizon
    to carry values back (paper Theorem 3.3: ``H + 1`` iterations; Theorem 3.4: a contraction
    at rate ``γ``, so an effective horizon ``1/(1-γ)``), and each phase needs enough
    transitions per network input and action to fit them. So: ``pairs = clamp(ceil(H_eff /
    2), 4, 10)`` phase pairs of ``phase_length = 500 · max(1, ceil(I·A / 16))`` iterations
    (``I`` network inputs: states, or ``H·S`` with time as an input), capped at the paper's
    20,000 iterations in all; the nudge from :func:`nudge_for`. Everything else is ``base``
    (default: :data:`GAME_DQN`, 3 seeds).
    """
    import math

    from contractrl.learning.algorithm2 import learner_spec

    base = base or GAME_PRESETS["auto"]
    spec = learner_spec(game)
    pairs = min(max(math.ceil(round(spec.effective_horizon / 2, 9)), 4), 10)
    phase = 500 * max(1, math.ceil(spec.num_inputs * spec.num_actions / 16))
    phase = min(phase, 20_000 // (2 * pairs) // 100 * 100)
    dqn = dataclasses.replace(
        base.dqn,
        nudge=nudge_for(game, base.dqn.nudge),
        iterations=2 * pairs * phase,
        phase_length=phase,
        replay_capacity=min(base.dqn.replay_capacity, max(20_000, 2 * pairs * phase)),
    )
    return dataclasses.replace(base, dqn=dqn)


def auto_note(game, config: GameExperimentConfig) -> str:
    """One line: how ``auto`` sized the run (printed when a run starts)."""
    from contractrl.learning.algorithm2 import learner_spec

    spec = learner_spec(game)
    horizon = (
        f"horizon {game.horizon}"
        if game.horizon is not None
        else f"effective horizon 1/(1-γ) = {spec.effective_horizon:.3g}"
    )
    dqn = config.dqn
    return (
        f"preset auto, sized from the game ({spec.num_inputs} network inputs, "
        f"{spec.num_actions} actions, {horizon}): {dqn.iterations:,} iterations in "
        f"{dqn.iterations // dqn.phase_length} phases of {dqn.phase_length:,}, nudge "
        f"{dqn.nudge:.3g} (its exact price <= 1% of the SPE), {config.seeds} seeds"
    )


SMOKE_NOTE = (
    "preset smoke: a plumbing check of the pipeline (4,000 iterations), not a measure of what "
    "the learner reaches; the default preset auto sizes the run from the game"
)

GAME_PRESETS: dict[str, GameExperimentConfig] = {
    # The default: sized from the game by auto_config (this entry is its base and what
    # --help shows; `contractrl train game FILE` replaces it with the game's).
    "auto": GameExperimentConfig(
        dqn=dataclasses.replace(GAME_DQN, iterations=8000, phase_length=500, replay_capacity=20_000)
    ),
    # The paper's hyper-parameters for Algorithm 2 (App. D.1), contractrl's learner.
    "paper": GameExperimentConfig(dqn=GAME_DQN),
    # A plumbing check of the whole pipeline (tests, demo): minutes on a laptop.
    "smoke": GameExperimentConfig(
        seeds=2,
        eval_every=500,
        dqn=dataclasses.replace(
            GAME_DQN, iterations=4000, phase_length=500, replay_capacity=20_000
        ),
    ),
}


def game_presets(game) -> dict[str, GameExperimentConfig]:
    """:data:`GAME_PRESETS` with ``auto`` sized for ``game`` (:func:`auto_config`)."""
    return {**GAME_PRESETS, "auto": auto_config(game)}


def prepare(
    config: GameExperimentConfig, instance: Path, out: Path, resume: bool, command: str = ""
) -> dict[str, Any]:
    """Create (or reopen) the experiment directory: the game, copied, and its exact SPE.

    A game without a stationary SPE (an infinite-horizon game may have none:
    docs/theory-checks.md) still trains; its learner is compared with the reference of
    :func:`.tree_runs.reference_solution` (the SPE of the game cut at a long horizon, labelled
    in ``reference``), or with nothing (ratios and accuracy NaN).

    Raises:
        InvalidGameError: the instance file cannot be read (the message names the problem).
        ExperimentExistsError: see :func:`.store.open_experiment`; also, on ``resume``, a
            ``FILE`` whose game differs from the one the experiment holds.
    """
    import json
    import tempfile

    from contractrl.core.instance import load_instance, save_instance
    from contractrl.experiments.store import ExperimentExistsError
    from contractrl.experiments.tree_runs import check_resume_config, reference_solution

    game = load_instance(instance)
    saved = Path(out) / "instances" / "instance0.json"
    if resume and saved.exists():
        with tempfile.TemporaryDirectory() as tmp:
            save_instance(game, Path(tmp) / "game.json")
            given = json.loads((Path(tmp) / "game.json").read_text())
        if given != json.loads(saved.read_text()):
            raise ExperimentExistsError(
                f"--resume: {instance} is not the game {out} was started with ({saved})"
            )
    if resume:  # after the game: the auto preset is sized from it
        check_resume_config(Path(out), config)
    spe, reference = (None, None) if resume else reference_solution(game)

    def build(out: Path) -> dict[str, Any]:
        path = out / "instances" / "instance0.json"
        save_instance(game, path)
        return {
            "instances": [
                {
                    "index": 0,
                    "seed": None,
                    "source": str(instance),
                    "path": str(path.relative_to(out)),
                    # the reference's values (the SPE's, unless ``reference`` says otherwise)
                    "reference": reference,
                    "spe_principal_value": spe.initial_principal_value if spe else None,
                    "spe_agent_value": spe.initial_agent_value if spe else None,
                }
            ]
        }

    return open_experiment(Path(out), "game", config, resume, command, __version__, build)


def reference_note(reference: str | None) -> str:
    """What the progress line says about the comparison (empty for the game's SPE)."""
    if reference == "spe":
        return ""
    if reference is None:
        return " (no SPE found: training without a comparison)"
    horizon = reference.rsplit("H", 1)[1]
    return (
        f" (no stationary SPE: ratios against the SPE of the game cut at {horizon} steps; "
        "set `horizon: N` in the file for a finite game)"
    )


def run_game(
    config: GameExperimentConfig,
    instance: str | Path,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Train ``config.seeds`` runs of Algorithm 2 on the game in ``instance``.

    Returns (and writes) ``results.json``. With ``resume``, ``instance`` is ignored: the
    experiment directory holds its copy of the game.
    """
    from contractrl.experiments.tree_runs import (
        aggregate,
        run_name,
        runs_label,
        train_tree_run,
    )

    config.validate()
    config = dataclasses.replace(config, backend=resolve_backend(config.backend))
    out = Path(out)
    start = time.perf_counter()
    manifest = prepare(config, Path(instance), out, resume, command)
    check_resume_backend(manifest, config.backend, out)
    label = "game" + reference_note(manifest["instances"][0].get("reference", "spe"))
    if config.backend == "vmap":
        from contractrl.experiments.tree_lanes import run_tree_lanes

        return run_tree_lanes(config, out, manifest, progress, "game", start, label)
    tasks = [
        Task(
            train_tree_run,
            {
                "exp_dir": str(out),
                "instance": 0,
                "seed": s,
                "config_class": GameExperimentConfig,
            },
            out / "runs" / run_name(0, s),
            config.dqn.iterations,
        )
        for s in range(config.seeds)
    ]
    summaries = run_tasks(
        tasks,
        config.backend,
        config.workers,
        config.ray_address,
        progress,
        description=runs_label(label, len(tasks), config.dqn.iterations),
    )
    wall = add_wall_time(out, time.perf_counter() - start)
    results = aggregate(manifest, summaries, wall)
    results["experiment"] = "game"
    results["instance"] = manifest["instances"][0]["source"]
    results["reference"] = manifest["instances"][0].get("reference", "spe")
    write_json(out / "results.json", results)
    return results
