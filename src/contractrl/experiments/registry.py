"""Every experiment once: its config, presets, runner, figures and pictures.

The command line (``contractrl train NAME``, ``plot``, ``render``) reads this registry; an
experiment added here gets its ``train`` subcommand with one flag per config field, its
figures and its picture. The experiment modules are imported on first use (the command line
starts without JAX).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """One experiment.

    Attributes:
        name: the ``train`` subcommand and the ``experiment`` of ``config.json``.
        summary: one line for ``contractrl train --help``.
        description: the subcommand's ``--help`` text.
        config_class: its frozen config dataclass (every field a flag).
        presets: preset name -> config.
        default_preset: the preset without ``--preset``.
        run: ``run(config, out, resume=, progress=, command=) -> results``.
        figures: which figures ``plot`` draws: ``tree`` (paper Figure 3), ``team`` (Figures 2
            and 4; also for a run in progress) or ``frontier``.
        picture: what ``render`` draws: ``coin_episode``, ``team_episode`` (any environment
            with ``render(state)``), ``policy_tree`` or ``None``.
        positional: an extra positional argument ``(names, kwargs)`` of the subcommand.
    """

    name: str
    summary: str
    description: str
    config_class: type
    presets: dict[str, Any]
    default_preset: str
    run: Callable[..., dict[str, Any]]
    figures: str
    picture: str | None = None
    positional: tuple | None = None


@functools.cache
def experiments() -> dict[str, ExperimentSpec]:
    """The registry, ``name -> ExperimentSpec`` (built once per process)."""
    from contractrl.experiments.coin import (
        COIN_PRESETS,
        MARL_PRESETS,
        CoinExperimentConfig,
        MarlExperimentConfig,
    )
    from contractrl.experiments.frontier import FRONTIER_PRESETS, FrontierConfig, run_frontier
    from contractrl.experiments.game import GAME_PRESETS, GameExperimentConfig, run_game
    from contractrl.experiments.team import run_team
    from contractrl.experiments.tree import TREE_PRESETS, TreeExperimentConfig, run_tree

    flags = "Every config field is a flag (tuples: comma-separated); a preset fills the defaults."
    specs = [
        ExperimentSpec(
            "tree",
            "Algorithm 2 on random Tree MDPs (paper Figure 3)",
            f"Train Algorithm 2 on random binary Tree MDPs. {flags}",
            TreeExperimentConfig,
            TREE_PRESETS,
            "paper",
            run_tree,
            "tree",
            "policy_tree",
        ),
        ExperimentSpec(
            "coin",
            "Algorithm 3 in the Coin Game, validation and baselines (Figures 2, 4)",
            "Train the principal (Algorithm 3), validate it with fresh black-box agents and "
            f"train the selfish, cooperative and budget-matched constant baselines. {flags}",
            CoinExperimentConfig,
            COIN_PRESETS,
            "budget-3x3",
            run_team,
            "team",
            "coin_episode",
        ),
        ExperimentSpec(
            "marl",
            "Algorithm 3 in any multi-agent environment (--env), validation and baselines",
            "Train the principal (Algorithm 3) in any environment of the protocol "
            "(docs/your-environment.md): a built-in one (coin_game, iterated_dilemma), "
            "jaxmarl:<id>, <module>:<factory> or <file.py>:<factory> (a JAX env, a JaxMARL env "
            "or a PettingZoo ParallelEnv); then validate it with fresh black-box agents and "
            f"train the selfish, cooperative and budget-matched constant baselines. {flags}",
            MarlExperimentConfig,
            MARL_PRESETS,
            "smoke",
            run_team,
            "team",
            "team_episode",
        ),
        ExperimentSpec(
            "game",
            "Algorithm 2 on your own game (an instance file)",
            "Learn contracts for the game in FILE (the instance format: "
            "docs/instance-format.md) with Algorithm 2: seeds, checkpoints, resume, and at every "
            "evaluation the learned principal against the exact SPE. The default preset, auto, "
            "sizes the run from the game (states, actions, horizon or 1/(1-γ); "
            "docs/own-games.md); smoke is a plumbing check; --print-config shows the result. "
            f"{flags}",
            GameExperimentConfig,
            GAME_PRESETS,
            "auto",
            run_game,
            "tree",
            "policy_tree",
            positional=(
                ("file",),
                {"type": Path, "metavar": "FILE", "help": "the game (.json or .yaml)"},
            ),
        ),
        ExperimentSpec(
            "frontier",
            "budget frontier: welfare against the amount paid (contracts vs sharing), any env",
            "Trace welfare against the amount paid per episode for contracts (several payment "
            "weights alpha and nudges) and for constant-proportion sharing (a grid of shares, "
            "both schemes) in the Coin Game (--env coin_game, the default, with its rules as "
            "flags) or any environment of `train marl` (--env, --env-kwargs). "
            f"{flags}",
            FrontierConfig,
            FRONTIER_PRESETS,
            "budget-3x3",
            run_frontier,
            "frontier",
        ),
    ]
    return {spec.name: spec for spec in specs}


def experiment(name: str | None) -> ExperimentSpec:
    """The spec of ``name``; ``ValueError`` naming the known ones."""
    specs = experiments()
    if name not in specs:
        raise ValueError(f"unknown experiment {name!r} (known: {', '.join(specs)})")
    return specs[name]
