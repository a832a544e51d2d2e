"""The team experiment's entry point: validate, pick the backend, run (``train coin``/``marl``).

``run_team`` runs a :class:`~.coin.CoinExperimentConfig` or :class:`~.coin.MarlExperimentConfig`
on the backend its config names: one task per process (:func:`.coin.run_processes`) or every
run a lane of one compiled program per stage (:func:`.coin_lanes.run_coin_lanes`). Neither
imports this module, so the package's import graph has no cycle.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from contractrl.experiments.coin import TeamExperimentConfig, run_processes
from contractrl.experiments.executor import resolve_backend


def run_team(
    config: TeamExperimentConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run the whole experiment; returns (and writes) ``results.json``."""
    config.validate()
    config = dataclasses.replace(config, backend=resolve_backend(config.backend))
    config.validate()  # again: what the resolved backend can do (nudge_base, budget_match)
    if config.backend == "vmap":
        from contractrl.experiments.coin_lanes import run_coin_lanes

        return run_coin_lanes(config, out, resume, progress, command)
    return run_processes(config, out, resume, progress, command)


#: The Coin Game experiment's name for the same entry point.
run_coin = run_team
