"""Re-evaluation of a finished team run's validation agents with more episodes and keys.

A run's summaries hold one evaluation of ``eval_episodes`` episodes per phase, too few to tell
a follow rate of 0.70 from 0.75 or an IC ratio of 1.02 from 1.00. :func:`reevaluate` reloads
each seed's kept parameters (the trained principal and its validation agents,
``runs/seed<k>/<phase>.params.msgpack``) and plays ``batches`` independent batches of
``episodes`` episodes each, with keys no training or evaluation used, through the same
rollouts as training's evaluation (paper Section 5.2 metrics (a), (c)–(f); masks of
:func:`.coin.evaluation_masks`). Per seed and phase it reports each metric's mean over the
batches and a 95% confidence interval (Student t over the batch means, ``batches − 1`` degrees
of freedom); across seeds, the mean of the per-seed means with its own t interval over seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

#: Metrics re-estimated per batch (the validation row of :func:`.coin.evaluation_row`).
METRICS = (
    "welfare",
    "payments",
    "follow_rate",
    "spe_ratio",
    "ic_ratio",
    "spe_gain",
    "ic_gain",
)
#: Validation phases re-evaluated when the run has them.
PHASES = ("validation", "validation_nudged")
#: Offset of the re-evaluation's keys from the seed (training evaluates with ``seed + 10_000``).
KEY_OFFSET = 30_000


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A mean with its 95% Student-t interval ``[low, high]`` over ``count`` samples."""

    mean: float
    low: float
    high: float
    count: int


def estimate(samples) -> Estimate:
    """:class:`Estimate` of ``samples`` (NaN samples are dropped; none left: all NaN)."""
    from scipy import stats

    x = np.asarray(samples, float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return Estimate(mean, mean - half, mean + half, int(x.size))


@dataclasses.dataclass(frozen=True)
class PhaseReevaluation:
    """One seed's validation phase: per metric, its :class:`Estimate` over the batches."""

    seed: int
    phase: str
    nudge: float
    metrics: dict[str, Estimate]


@dataclasses.dataclass(frozen=True)
class Reevaluation:
    """A run's re-evaluation: per seed and phase, and per phase across seeds.

    ``across_seeds[phase][metric]``: the per-seed means' :class:`Estimate` over seeds.
    """

    episodes: int
    batches: int
    rows: tuple[PhaseReevaluation, ...]
    across_seeds: dict[str, dict[str, Estimate]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def _validate(episodes: int, batches: int) -> None:
    if not (isinstance(episodes, int) and episodes >= 1):
        raise ValueError(f"episodes: must be an integer >= 1, got {episodes!r}")
    if not (isinstance(batches, int) and batches >= 2):
        raise ValueError(
            f"batches: must be an integer >= 2 (an interval needs two), got {batches!r}"
        )


def phase_rows(
    exp: Path, config, seed_index: int, phase: str, episodes: int, keys, principal=None
) -> list:
    """Evaluation rows (:func:`.coin.evaluation_row`) of a seed's kept phase, one per key.

    The phase's agents are rebuilt from their kept parameters with the share and nudge their
    summary records, against the seed's kept principal (``principal``: its parameters, when
    the caller has loaded them already); ``episodes`` episodes per key.
    """
    import jax

    from contractrl.experiments.coin import (
        _rollout_fn,
        evaluation_masks,
        evaluation_row,
        experiment_env,
        load_agents,
        load_principal,
        run_name,
    )
    from contractrl.experiments.store import read_json
    from contractrl.multiagent.evaluation import summarise

    summary_path = exp / "runs" / run_name(seed_index) / f"{phase}.json"
    if not summary_path.exists():
        raise FileNotFoundError(f"{summary_path}: the phase has not finished")
    summary = read_json(summary_path)
    kind = config.phase(phase)
    if principal is None:
        principal = load_principal(exp, config, seed_index)
    learner, params = load_agents(exp, config, seed_index, phase)
    state = learner.init(
        jax.random.PRNGKey(0), summary.get("share", 0.0), summary.get("nudge", 0.0)
    ).replace(params=params)
    fn = _rollout_fn(learner, episodes)
    masks = evaluation_masks(kind, experiment_env(config).num_agents)
    return [
        evaluation_row(kind, [summarise(fn(state, principal, mask, key)) for mask in masks])
        for key in keys
    ]


def reevaluate(
    exp: Path,
    episodes: int = 500,
    batches: int = 10,
    progress: Callable[[str], None] | None = None,
) -> Reevaluation:
    """Re-evaluate every seed's validation phases of the finished run in ``exp``.

    Batch ``b`` of seed ``k`` plays with key ``fold_in(PRNGKey(seed + k + 30_000), b)``.
    ``ValueError`` naming the field for bad ``episodes``/``batches``; ``FileNotFoundError``
    when the run kept no validation agents (made before they were kept) or has not finished.
    """
    import jax

    from contractrl.experiments.coin import _config, load_principal
    from contractrl.experiments.store import read_json

    _validate(episodes, batches)
    config = _config(exp)
    phases = [p for p in PHASES if p in config.phases()]
    if not phases:
        raise ValueError(f"{exp}: the run has no validation phase to re-evaluate")
    rows = []
    for seed_index in range(config.seeds):
        seed = config.seed + seed_index
        keys = [
            jax.random.fold_in(jax.random.PRNGKey(seed + KEY_OFFSET), b) for b in range(batches)
        ]
        principal = load_principal(exp, config, seed_index)
        for phase in phases:
            batch_rows = phase_rows(exp, config, seed_index, phase, episodes, keys, principal)
            summary = read_json(exp / "runs" / f"seed{seed_index}" / f"{phase}.json")
            if progress is not None:
                progress(f"seed {seed_index} {phase}")
            rows.append(
                PhaseReevaluation(
                    seed=seed_index,
                    phase=phase,
                    nudge=float(summary.get("nudge", 0.0)),
                    metrics={
                        m: estimate([r.get(m, math.nan) for r in batch_rows]) for m in METRICS
                    },
                )
            )
    across = {
        phase: {m: estimate([r.metrics[m].mean for r in rows if r.phase == phase]) for m in METRICS}
        for phase in phases
    }
    return Reevaluation(episodes, batches, tuple(rows), across)


def format_table(result: Reevaluation) -> str:
    """A plain-text table: one line per seed and phase, then the across-seed means."""

    def cell(e: Estimate) -> str:
        if not math.isfinite(e.low):
            return f"{e.mean:.3f}"
        return f"{e.mean:.3f} [{e.low:.3f}, {e.high:.3f}]"

    shown = ("follow_rate", "spe_ratio", "ic_ratio", "welfare")
    head = f"{'seed':>5} {'phase':<18} " + " ".join(f"{m:<24}" for m in shown)
    lines = [
        f"{result.batches} batches x {result.episodes} episodes per seed and phase; "
        "95% t intervals",
        head,
    ]
    for r in result.rows:
        lines.append(
            f"{r.seed:>5} {r.phase:<18} " + " ".join(f"{cell(r.metrics[m]):<24}" for m in shown)
        )
    for phase, metrics in result.across_seeds.items():
        lines.append(
            f"{'all':>5} {phase:<18} " + " ".join(f"{cell(metrics[m]):<24}" for m in shown)
        )
    return "\n".join(lines)
