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
from contractrl.experiments.loop import TrainingDivergedError, checkpointed_loop
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
    "deviation_gain",
    "train_seconds",
]
SUMMARY_KEYS = (
    "principal_utility_ratio",
    "accuracy",
    "agent_utility",
    "principal_utility",
    "follow_rate",
    "nudge",
    "deviation_gain",
)


def reference_solution(game, tail: float = 1e-4):
    """The exact solution the learner is compared with: ``(solution or None, label)``.

    The game's SPE (label ``"spe"``) when the exact solver finds one. An infinite-horizon game
    may have no stationary SPE (docs/theory-checks.md); then the SPE of the same game cut at
    ``H = ceil(log(tail) / log(γ))`` steps (label ``"finite_horizon_spe_H<H>"``; it exists
    always, time-indexed, and the cut changes values by at most ``tail`` times the per-step
    range over ``1 - γ``), or ``None`` (label ``None``) when neither can be computed.
    """
    import dataclasses
    import math

    from contractrl.core.solver import solve_spe

    spe = solve_spe(game)
    if spe.ok:
        return spe, "spe"
    if game.horizon is None:
        horizon = math.ceil(math.log(tail) / math.log(game.discount))
        cut = solve_spe(dataclasses.replace(game, horizon=horizon))
        if cut.ok:
            return cut, f"finite_horizon_spe_H{horizon}"
    return None, None


def run_name(instance: int, seed: int) -> str:
    """Directory name of a run."""
    return f"instance{instance}-seed{seed}"


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(field, saved, given)`` for every leaf where two config dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{key}")
        return out
    return [] if old == new else [(prefix, old, new)]


def check_resume_config(out: Path, config: Any) -> None:
    """Before a ``--resume``: refuse a config that differs from the saved one, naming fields.

    Execution fields (backend, workers, ...) may differ. A larger ``iterations`` for a run
    that finished (or is under way) is refused with the way to get a longer run: the run's
    ε, learning-rate and phase schedules are laid out over its ``iterations``, so more
    iterations make another run, not a continuation of this one.

    Raises:
        ExperimentExistsError: naming each differing field, saved and given values.
    """
    import dataclasses
    import json

    from contractrl.experiments.store import ExperimentExistsError, _identity

    path = Path(out) / "config.json"
    if not path.exists():
        return
    try:
        saved = read_json(path)
        before = _identity(config, saved["config"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return  # the store reports an unreadable or foreign directory
    after = _identity(config, json.loads(json.dumps(dataclasses.asdict(config))))
    diffs = _differences(before, after)
    if not diffs:
        return
    named = ", ".join(f"{name.split('.')[-1]} {new!r} (saved: {old!r})" for name, old, new in diffs)
    message = f"--resume: {out} was started with another config: {named}"
    if [d[0] for d in diffs] == ["iterations"]:
        old, new = diffs[0][1], diffs[0][2]
        message += (
            f". A run cannot be extended from {old:,} to {new:,} iterations: its ε, "
            "learning-rate and phase schedules end at --iterations, so a longer run is another "
            f"run; start one with --iterations {new} and a new --out (or resume this one "
            "without --iterations)"
        )
    else:
        message += "; resume without these flags, or start a new experiment with a new --out"
    raise ExperimentExistsError(message)


def runs_label(name: str, runs: int, iterations: int) -> str:
    """The progress label of ``runs`` runs in parallel processes.

    Their bar counts the runs' iterations together (``runs x iterations``); the figures'
    axis counts one run's, so the label says both.
    """
    if runs == 1:
        return name
    return f"{name}, {runs} runs x {iterations:,} iterations (counted together)"


# ----------------------------------------------------------------------------- one run
def _learner(game, dqn):
    """The process's compiled learner for ``game``'s shapes and ``dqn``."""
    from contractrl.learning.algorithm2 import cached_learner, learner_spec

    return cached_learner(learner_spec(game), dqn)


def nudge_for(game, largest: float = 0.01, cost: float = 0.01, halvings: int = 10) -> float:
    """The largest nudge ``ξ = largest · 2^-k`` whose exact price is at most ``cost``.

    A nudge (paper App. B.9.2, Proposition 4.1) protects the principal against the agent
    network's errors, but it is paid at every step: ``ξ`` over the likelihood gap of the
    outcomes paid on, so its price depends on the game's scale (in the delegation game,
    docs/delegation.md, ``ξ = 0.01`` costs 10% of the SPE value; in a random 4-state game
    0.6%). The price of ``ξ`` is read off the exact solver: the SPE with margin ``ξ`` (Eq. 3
    with ``ξ``) against the SPE, on the game or, without a stationary SPE, on its long-horizon
    cut (:func:`reference_solution`). ``largest`` when the SPE principal value is
    not positive (no price to compare with); the smallest tried when none is cheap enough.
    """
    import dataclasses as dc

    from contractrl.core.solver import solve_spe

    ref, label = reference_solution(game)
    if ref is None or ref.initial_principal_value <= 0:
        return largest
    if label != "spe":
        game = dc.replace(game, horizon=int(label.rsplit("H", 1)[1]))
    tried = [largest / 2**k for k in range(max(halvings, 1))]
    for xi in tried:
        priced = solve_spe(game, margin=xi)
        if priced.ok and priced.initial_principal_value >= (1 - cost) * ref.initial_principal_value:
            return xi
    return tried[-1]


def train_tree_run(exp_dir: str, instance: int, seed: int, config_class: type) -> dict[str, Any]:
    """Train (or resume) one run of the experiment in ``exp_dir``; returns its final summary.

    ``config_class`` reads the directory's config (``TreeExperimentConfig`` or
    ``GameExperimentConfig``: both have ``dqn``, ``eval_every`` and ``checkpoint_seconds``).

    Writes ``runs/<run>/metrics.csv`` (one row per evaluation), checkpoints, progress and
    ``final.json``. Determinism: the run depends only on the config, the instance and ``seed``.
    """
    import jax

    from contractrl.core.instance import load_instance
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
    spe, _label = reference_solution(game)
    learner = _learner(game, dqn)
    env = tabular_params(game)
    exact_price = getattr(config, "nudge_rule", "fixed") == "exact_price"
    state = init_state(
        learner, env, jax.random.PRNGKey(seed), nudge=nudge_for(game) if exact_price else None
    )

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
    write_json(run_dir / "policy.json", final_policy_table(learner, game, env, spe, result.state))
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


def final_policy_table(learner, game, env, spe, state) -> dict[str, Any]:
    """``policy.json`` of a run: the learned principal per state beside the reference's."""
    from contractrl.learning.evaluation import learned_policy, policy_table

    agent_q, principal_q = (np.asarray(x) for x in learner.q_tables(state.params, env, state.nudge))
    policy = learned_policy(game, agent_q, principal_q, float(state.nudge), learner.spec.time_input)
    return {"nudge": float(state.nudge), "rows": policy_table(game, policy, spe)}


def q_tables_finite(
    agent_q: np.ndarray, principal_q: np.ndarray, nudge: float, unimplementable: bool = True
) -> bool:
    """Whether a learner's tables are usable (not diverged).

    ``agent_q``: the agent network's Q, any shape; every entry must be finite.
    ``principal_q``: ``[..., A]``; ``-inf`` marks a target no contract implements (the
    outcome-value principal, :meth:`.Learner.q_tables`), which is legitimate as long as every
    state keeps one finite action; NaN or ``+inf`` anywhere is divergence. With
    ``unimplementable`` false (the contractual-Q principal, whose tables never mark targets)
    every entry must be finite.
    """
    principal_q = np.asarray(principal_q)
    if not unimplementable:
        return bool(
            np.isfinite(agent_q).all() and np.isfinite(nudge) and np.isfinite(principal_q).all()
        )
    return bool(
        np.isfinite(agent_q).all()
        and np.isfinite(nudge)
        and not np.isnan(principal_q).any()
        and not np.isposinf(principal_q).any()
        and np.isfinite(principal_q).any(axis=-1).all()
    )


def _evaluate(learner, game, env, spe, state, metrics, iteration: int) -> dict[str, float]:
    """Couple the learned principal with the oracle agent; one metrics row."""
    from contractrl.learning.evaluation import (
        evaluate_with_oracle,
        learned_policy,
        principal_deviation_gain,
    )

    agent_q, principal_q = (np.asarray(x) for x in learner.q_tables(state.params, env, state.nudge))
    nudge = float(state.nudge)
    marks = learner.config.principal_model == "outcome_value"
    if not q_tables_finite(agent_q, principal_q, nudge, unimplementable=marks):
        raise TrainingDivergedError(
            f"training diverged by iteration {iteration}: non-finite Q-values "
            f"or nudge ({nudge}); lower the learning rate or the nudge"
        )
    policy = learned_policy(
        game, np.asarray(agent_q), np.asarray(principal_q), nudge, learner.spec.time_input
    )
    ev = evaluate_with_oracle(game, policy, spe)
    reference = spe.initial_principal_value if spe is not None else float("nan")
    return {
        "iteration": iteration,
        "principal_utility": ev.principal_utility,
        "agent_utility": ev.agent_utility,
        "accuracy": ev.accuracy,
        # a ratio reads only against a positive SPE value (own games may have 0 or less)
        "principal_utility_ratio": (
            ev.principal_utility / reference if reference > 0 else float("nan")
        ),
        "follow_rate": ev.follow_rate,
        "nudge": nudge,
        "epsilon": float(learner.epsilon(iteration)),
        "learning_rate": float(learner.lr(iteration)),
        "agent_loss": float(np.mean(metrics.agent_loss)),
        "principal_loss": float(np.mean(metrics.principal_loss)),
        "payment": float(np.mean(metrics.payment)),
        # > 0: not subgame-perfect; its value may then exceed the SPE's (commitment)
        "deviation_gain": principal_deviation_gain(game, policy),
    }


RATIO_NOTE = (
    "each run's ratio is exact (the learned principal against the exact best-responding "
    "agent, no sampling); the ± and ci95 are over training seeds. A run above 1 is not "
    "subgame-perfect (its deviation_gain > 0): the principal would deviate from it in some "
    "subgame, and it earns the value of committing to the whole policy, which no SPE can"
)


def _ci95(values: list[float]) -> list[float] | None:
    """The 95% Student-t interval of the mean over runs (``None`` for fewer than 2)."""
    from scipy import stats

    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if arr.size < 2:
        return None
    half = stats.t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / np.sqrt(arr.size)
    return [float(arr.mean() - half), float(arr.mean() + half)]


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
            "reference": inst.get("reference", "spe"),
            "runs": runs,
            # per instance: the training time of its runs (they ran in parallel)
            "wall_seconds": sum(r["train_seconds"] for r in runs),
        }
        for key in SUMMARY_KEYS:
            entry[key], entry[f"{key}_se"] = mean_se([r.get(key) for r in runs])
        entry["principal_utility_ratio_ci95"] = _ci95([r["principal_utility_ratio"] for r in runs])
        per_instance.append(entry)
    overall: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        overall[key], overall[f"{key}_se"] = mean_se([r.get(key) for r in summaries])
    ratios = [r["principal_utility_ratio"] for r in summaries]
    overall["principal_utility_ratio_ci95"] = _ci95(ratios)
    overall["ratio_note"] = RATIO_NOTE
    for key in ("spe_principal_value", "spe_agent_value"):
        known = [i[key] for i in per_instance if i[key] is not None]
        overall[key] = float(np.mean(known)) if known else None
    references = {i.get("reference", "spe") for i in manifest["instances"]}
    overall["reference"] = references.pop() if len(references) == 1 else "mixed"
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
        "command": manifest.get("command", ""),
        "mean": overall,
        "instances": per_instance,
        "python": sys.version.split()[0],
    }
