"""The budget frontier: welfare against the amount paid, in any environment (beyond the paper).

One comparison point hides the answer to "do contracts beat sharing at the same budget?"; a
frontier shows it. Points, each trained for ``seeds`` seeds with the same per-phase budget:

* **contracts**: for every ``α`` of ``alphas``, Algorithm 3's training phase, then a validation
  phase per nudge of ``nudge_shares`` (0: the plain contracts; ``x``: a nudge worth ``x`` of the
  plain validation agents' welfare per step and agent, as in :mod:`.coin`). The amount paid is the
  principal's payments per episode at the final evaluation.
* **constant proportion**: for every scheme of ``schemes`` and share ``p`` of ``shares``, the
  constant-proportion baseline with ``p`` fixed; the amount paid is its transfers per episode
  (:mod:`contractrl.multiagent.agents`).

Layout: ``<out>/contracts-alpha<α>/runs/seed<k>/{principal,validation,validation_nudge<x>}.*``
and ``<out>/constant-<scheme>-p<p>/runs/seed<k>/constant.*`` (each a phase as in :mod:`.coin`,
resumable). ``results.json`` lists every point with welfare and amount, mean ± s.e. over seeds.

The environment is the Coin Game (``env = "coin_game"``, its rules the ``game`` fields) or any
environment ``train marl`` takes (``env``, ``env_kwargs``; docs/your-environment.md).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from contractrl import __version__
from contractrl._stats import mean_se
from contractrl._validate import require_positive_ints
from contractrl.envs.coin_game import PRESETS as GAME_PRESETS
from contractrl.envs.coin_game import CoinGameConfig
from contractrl.experiments.coin import (
    CONSTANT_SCHEMES,
    CoinExperimentConfig,
    MarlExperimentConfig,
    discard_damaged_principal,
    env_kwargs_dict,
    experiment_env,
    load_principal,
    run_name,
    train_phase,
)
from contractrl.experiments.executor import Task, run_tasks
from contractrl.experiments.pipeline import LaneStart, Phase, episode_length
from contractrl.experiments.store import add_wall_time, open_experiment, write_json
from contractrl.multiagent.common import DQNConfig


@dataclasses.dataclass(frozen=True)
class FrontierConfig:
    """The budget frontier.

    Attributes:
        seeds: seeds per point.
        seed: seed of the first run.
        alphas: payment weights ``α`` of the contract points.
        nudge_shares: nudges of the validation phases, as shares of the plain validation
            agents' welfare (0: no nudge).
        schemes: constant-proportion schemes (``redistribute``, ``top_up``).
        shares: the fixed shares ``p`` of the constant points.
        eval_every: iterations between evaluations.
        eval_episodes: episodes per evaluation.
        checkpoint_seconds: minimum wall time between checkpoints of a phase.
        backend: ``local``, ``ray`` or ``inline``.
        workers: ``local`` worker processes (0: one per core).
        ray_address: Ray cluster address.
        env: ``coin_game`` (the rules: ``game``) or any environment of ``train marl --env``
            (a built-in name, ``jaxmarl:<id>``, ``<module>:<factory>``, ``<file.py>:<factory>``).
        env_kwargs: the environment's keyword arguments, a JSON object (not with
            ``coin_game``, whose rules are the ``game`` fields).
        game: the Coin Game rules (``env = "coin_game"``).
        dqn: the learners' hyper-parameters (``alpha`` is replaced by each of ``alphas``).
    """

    seeds: int = 3
    seed: int = 0
    alphas: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    nudge_shares: tuple[float, ...] = (0.0, 0.05, 0.1)
    schemes: tuple[str, ...] = CONSTANT_SCHEMES
    shares: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.8)
    eval_every: int = 5_000
    eval_episodes: int = 80
    checkpoint_seconds: float = 60.0
    backend: str = "local"
    workers: int = 0
    ray_address: str | None = None
    env: str = "coin_game"
    env_kwargs: str = "{}"
    game: CoinGameConfig = dataclasses.field(default_factory=lambda: GAME_PRESETS["paper-3x3"])
    dqn: DQNConfig = dataclasses.field(default_factory=lambda: DQNConfig(iterations=20_000))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        require_positive_ints(self, ("seeds", "eval_every", "eval_episodes"))
        checks = [
            ("alphas", all(np.isfinite(a) and a > 0 for a in self.alphas)),
            ("nudge_shares", all(0 <= x < 1 for x in self.nudge_shares)),
            ("nudge_shares", 0.0 in self.nudge_shares),
            ("schemes", all(s in CONSTANT_SCHEMES for s in self.schemes)),
            ("shares", all(0 <= p <= 1 for p in self.shares)),
            ("alphas", len(self.alphas) + len(self.schemes) * len(self.shares) > 0),
            ("backend", self.backend in ("local", "ray", "inline")),
        ]
        # one directory per point: values must differ in their tags (no duplicates either)
        for name in ("alphas", "nudge_shares", "schemes", "shares"):
            values = getattr(self, name)
            tags = [v if isinstance(v, str) else _tag(v) for v in values]
            checks.append((name, len(set(tags)) == len(tags)))
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name}: invalid value {getattr(self, name)!r}")
        if self.env == "coin_game" and env_kwargs_dict(self.env_kwargs):
            raise ValueError(
                "env_kwargs: the Coin Game's rules are the game fields (--grid-size, "
                "--horizon, ...); env_kwargs is for the other environments"
            )
        self.game.validate()
        self.dqn.validate()
        self.team_config().validate()  # the environment: one line if it cannot be used

    def team_config(self, alpha: float | None = None, scheme: str | None = None):
        """The team experiment config of one point's phases (:mod:`.coin`)."""
        dqn = self.dqn if alpha is None else dataclasses.replace(self.dqn, alpha=alpha)
        if self.env == "coin_game":
            where = {"game": self.game}
            cls = CoinExperimentConfig
        else:
            where = {"env": self.env, "env_kwargs": self.env_kwargs}
            cls = MarlExperimentConfig
        return cls(
            **where,
            seeds=self.seeds,
            seed=self.seed,
            eval_every=self.eval_every,
            eval_episodes=self.eval_episodes,
            nudge_share=0.0,
            constant_schemes=(scheme or CONSTANT_SCHEMES[0],),
            budget_calibration=0.0,
            checkpoint_seconds=self.checkpoint_seconds,
            backend="inline",  # each point's phases run in the frontier's own tasks
            dqn=dqn,
        )


FRONTIER_PRESETS: dict[str, FrontierConfig] = {
    # docs/coin.md: 3x3 random_one, 3 seeds, 20,000 iterations per phase (~1 h on 2 cores).
    "budget-3x3": FrontierConfig(),
    # The whole frontier in a minute or two (tests).
    "smoke": FrontierConfig(
        seeds=1,
        alphas=(0.1,),
        nudge_shares=(0.0, 0.1),
        shares=(0.5,),
        eval_every=500,
        eval_episodes=10,
        dqn=DQNConfig(iterations=500, replay_capacity=1000, learning_starts=100),
    ),
}


def _tag(value: float) -> str:
    return f"{value:g}"


def contract_dir(out: Path, alpha: float) -> Path:
    """Directory of the contract point ``α``."""
    return out / f"contracts-alpha{_tag(alpha)}"


def constant_dir(out: Path, scheme: str, share: float) -> Path:
    """Directory of the constant point ``(scheme, p)``."""
    return out / f"constant-{scheme}-p{_tag(share)}"


def nudge_phase(nudge_share: float) -> str:
    """The name of the validation phase of a nudge share."""
    return "validation" if nudge_share == 0 else f"validation_nudge{_tag(nudge_share)}"


def validation_phase(nudge_share: float) -> Phase:
    """The validation phase of a nudge share."""
    return Phase(nudge_phase(nudge_share), "validation", nudged=nudge_share > 0)


def _progress(run_dir: Path, task: str, total: int):
    def report(i):
        write_json(run_dir / f"progress-{task}.json", {"iteration": i, "total": total})

    return report


def run_contract_point(out: str, alpha: float, seed_index: int, frontier: dict) -> dict:
    """Train the principal at ``α`` and its validation phases; returns their summaries."""
    from contractrl.experiments.config import from_dict

    config = from_dict(FrontierConfig, frontier)
    coin = config.team_config(alpha=alpha)
    env = experiment_env(coin)
    exp = contract_dir(Path(out), alpha)
    run_dir = exp / "runs" / run_name(seed_index)
    per_phase = coin.dqn.iterations
    total = (1 + len(config.nudge_shares)) * per_phase
    task = f"alpha{_tag(alpha)}"
    summaries = {}
    done = 0

    def progress(i):
        _progress(run_dir, task, total)(done + i)

    discard_damaged_principal(exp, seed_index)  # a damaged file: train it again
    summaries["principal"] = train_phase(
        exp,
        coin,
        seed_index,
        Phase("principal", "principal"),
        {},
        LaneStart(nudge=coin.dqn.nudge),
        progress,
    )
    principal = load_principal(exp, coin, seed_index)
    plain = None
    for x in sorted(config.nudge_shares):
        done += per_phase
        nudge = coin.dqn.nudge
        if x > 0:  # per step and agent of the plain validation's episodes, never negative
            welfare = max(plain["welfare"], 0.0)
            per_step = welfare / (episode_length(plain, env) * env.num_agents)
            nudge += x * per_step
        phase = nudge_phase(x)
        summaries[phase] = train_phase(
            exp, coin, seed_index, validation_phase(x), principal, LaneStart(nudge=nudge), progress
        )
        if x == 0:
            plain = summaries[phase]
    _progress(run_dir, task, total)(total)
    return {"kind": "contracts", "alpha": alpha, "seed": seed_index, "phases": summaries}


def run_constant_point(
    out: str, scheme: str, share: float, seed_index: int, frontier: dict
) -> dict:
    """Train the constant-proportion baseline with the share ``p`` fixed."""
    from contractrl.experiments.config import from_dict

    config = from_dict(FrontierConfig, frontier)
    coin = config.team_config(scheme=scheme)
    exp = constant_dir(Path(out), scheme, share)
    run_dir = exp / "runs" / run_name(seed_index)
    total = coin.dqn.iterations
    summary = train_phase(
        exp,
        coin,
        seed_index,
        Phase("constant", "constant", scheme),
        {},
        LaneStart(share=share, nudge=coin.dqn.nudge),
        _progress(run_dir, "constant", total),
    )
    return {
        "kind": "constant",
        "scheme": scheme,
        "share": share,
        "seed": seed_index,
        "phases": {"constant": summary},
    }


def aggregate(manifest: dict, config: FrontierConfig, outputs: list[dict], wall: float) -> dict:
    """``results.json``: every point's welfare and amount paid, mean ± s.e. over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for out in outputs:
        if out["kind"] == "contracts":
            for x in config.nudge_shares:
                phase = out["phases"][nudge_phase(x)]
                groups.setdefault(("contracts", out["alpha"], x), []).append(phase)
        else:
            groups.setdefault(("constant", out["scheme"], out["share"]), []).append(
                out["phases"]["constant"]
            )
    points = []
    for (kind, a, b), phases in groups.items():
        point: dict[str, Any] = {"kind": kind, "seeds": len(phases)}
        if kind == "contracts":
            point.update(alpha=a, nudge_share=b)
        else:
            point.update(scheme=a, share=b)
        keys = ["welfare", "payments"]
        if kind == "contracts":
            keys += ["follow_rate", "spe_ratio", "ic_ratio"]
        for key in keys:
            point[key], point[f"{key}_se"] = mean_se(p.get(key) for p in phases)
        point["per_seed_welfare"] = [p["welfare"] for p in phases]
        point["per_seed_payments"] = [p["payments"] for p in phases]
        points.append(point)
    return {
        "experiment": "frontier",
        "config": manifest["config"],
        "version": manifest["version"],
        "git_sha": manifest["git_sha"],
        "wall_seconds": wall,
        "iterations_per_phase": config.dqn.iterations,
        "points": points,
    }


def run_frontier(
    config: FrontierConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run every point of the frontier; returns (and writes) ``results.json``."""
    from contractrl.experiments.config import to_dict

    config.validate()
    out = Path(out)
    start = time.perf_counter()
    manifest = open_experiment(out, "frontier", config, resume, command, __version__)
    as_dict = to_dict(config)
    per_phase = config.dqn.iterations
    tasks = []
    for k in range(config.seeds):
        for alpha in config.alphas:
            run_dir = contract_dir(out, alpha) / "runs" / run_name(k)
            tasks.append(
                Task(
                    run_contract_point,
                    {"out": str(out), "alpha": alpha, "seed_index": k, "frontier": as_dict},
                    run_dir,
                    (1 + len(config.nudge_shares)) * per_phase,
                    f"progress-alpha{_tag(alpha)}.json",
                )
            )
        for scheme in config.schemes:
            for share in config.shares:
                tasks.append(
                    Task(
                        run_constant_point,
                        {
                            "out": str(out),
                            "scheme": scheme,
                            "share": share,
                            "seed_index": k,
                            "frontier": as_dict,
                        },
                        constant_dir(out, scheme, share) / "runs" / run_name(k),
                        per_phase,
                        "progress-constant.json",
                    )
                )
    outputs = run_tasks(
        tasks, config.backend, config.workers, config.ray_address, progress, "frontier"
    )
    wall = add_wall_time(out, time.perf_counter() - start)
    results = aggregate(manifest, config, outputs, wall)
    write_json(out / "results.json", results)
    return results
