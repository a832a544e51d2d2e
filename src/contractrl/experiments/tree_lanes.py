"""The Tree MDP experiment with every run a lane of one compiled program (``backend = "vmap"``).

Every (instance, seed) run of :mod:`.tree` advances in one ``vmap``-ed loop
(``Learner.train_chunk(..., batched=True)``): the instances are different games of the same
shapes, stacked on the lane axis. Each lane starts from the key of the same run under the
process backend and is evaluated against its instance's exact SPE the same way, so it is the
same run up to float rounding of batched operations (and the batched learner's single replay
batch size for its distinct-input evaluation). Output: the process backend's layout
(``runs/<run>/metrics.csv``, ``final.json``) and ``results.json``; one checkpoint for all lanes
(``stages/tree.checkpoint.msgpack``) so ``--resume`` continues from it.

On one CPU core this is slower than a process per core (``benchmarks/RESULTS.md``); it is for
accelerators, where one program keeps the device busy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from contractrl.experiments.loop import checkpointed_loop
from contractrl.experiments.store import (
    MetricsLog,
    add_wall_time,
    read_json,
    write_json,
)


def run_tree_lanes(
    config,
    out: Path,
    manifest: dict,
    progress: bool,
    experiment: str,
    begin: float,
    label: str | None = None,
) -> dict[str, Any]:
    """Run a prepared experiment (``tree`` or ``game``) as one program.

    ``manifest`` is the prepared directory's (:func:`.tree.prepare`, :func:`.game.prepare`);
    ``begin`` the ``perf_counter`` time the experiment started. Returns (and writes)
    ``results.json``.
    """
    from contractrl.experiments.tree_runs import aggregate, run_name

    runs = [(i, s) for i in range(len(manifest["instances"])) for s in range(config.seeds)]
    finals = [out / "runs" / run_name(i, s) / "final.json" for i, s in runs]
    if all(path.exists() for path in finals):
        summaries = [read_json(path) for path in finals]
    else:
        label = label or (f"tree d{config.depth}" if experiment == "tree" else experiment)
        summaries = _train(config, out, manifest, runs, finals, progress, label)
    wall = add_wall_time(out, time.perf_counter() - begin)
    results = aggregate(manifest, summaries, wall)
    results["experiment"] = experiment
    results["backend"] = "vmap"
    if experiment == "game":
        results["instance"] = manifest["instances"][0]["source"]
        results["reference"] = manifest["instances"][0].get("reference", "spe")
    write_json(out / "results.json", results)
    return results


def _train(config, out: Path, manifest, runs, finals, progress: bool, name: str) -> list[dict]:
    """Train every lane (from the checkpoint if any); write and return the summaries."""
    import jax
    import jax.numpy as jnp

    from contractrl.core.instance import load_instance
    from contractrl.envs.tabular import tabular_params
    from contractrl.experiments.executor import _bar, advance
    from contractrl.experiments.tree_runs import (
        METRIC_COLUMNS,
        SUMMARY_KEYS,
        _evaluate,
        _learner,
        final_policy_table,
        reference_solution,
        run_name,
    )
    from contractrl.learning.algorithm2 import init_state, learner_spec

    dqn = config.dqn
    games = [load_instance(out / entry["path"]) for entry in manifest["instances"]]
    specs = {learner_spec(game) for game in games}
    if len(specs) != 1:
        raise ValueError("backend: vmap needs instances of the same shapes")
    spes = [reference_solution(game)[0] for game in games]
    learner = _learner(games[0], dqn)
    envs_one = [tabular_params(game) for game in games]
    envs = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[envs_one[i] for i, _ in runs])
    keys = jnp.stack([jax.random.PRNGKey(s) for _, s in runs])
    nudges = None
    if getattr(config, "nudge_rule", "fixed") == "exact_price":
        from contractrl.experiments.tree_runs import nudge_for

        per_game = [nudge_for(game) for game in games]
        nudges = [per_game[i] for i, _ in runs]
    states = init_state(learner, envs, keys, batched=True, nudge=nudges)
    logs = {
        k: MetricsLog(out / "runs" / run_name(i, s) / "metrics.csv", METRIC_COLUMNS)
        for k, (i, s) in enumerate(runs)
    }
    bar = _bar(dqn.iterations, progress, f"{name} (vmap)")

    def evaluate(states, metrics, iteration, seconds):
        rows = {}
        for k, (i, _) in enumerate(runs):
            lane_state = jax.tree_util.tree_map(lambda x, k=k: x[k], states)
            lane_metrics = jax.tree_util.tree_map(lambda x, k=k: x[:, k], metrics)
            row = _evaluate(
                learner, games[i], envs_one[i], spes[i], lane_state, lane_metrics, iteration
            )
            row["train_seconds"] = seconds
            rows[k] = row
        return states, rows

    result = checkpointed_loop(
        states,
        total=dqn.iterations,
        eval_every=config.eval_every,
        checkpoint=out / "stages" / "tree.checkpoint.msgpack",
        checkpoint_seconds=config.checkpoint_seconds,
        logs=logs,
        train_chunk=lambda states, start, steps: learner.train_chunk(
            envs, states, steps, start, True
        ),
        evaluate=evaluate,
        progress=lambda iteration, steps: (
            advance(bar, steps) if steps else advance(bar, iteration, resumed=True)
        ),
    )
    if bar is not None:
        bar.close()
    rows, iteration, seconds = result.rows, result.iteration, result.train_seconds
    summaries = []
    for k, (i, s) in enumerate(runs):
        lane_state = jax.tree_util.tree_map(lambda x, k=k: x[k], result.state)
        table = final_policy_table(learner, games[i], envs_one[i], spes[i], lane_state)
        write_json(finals[k].parent / "policy.json", table)
        summary = {key: rows[k][key] for key in SUMMARY_KEYS}
        summary.update(
            instance=i,
            seed=s,
            iterations=iteration,
            train_seconds=seconds,
            # every lane shares the program's wall time
            iterations_per_second=iteration / max(seconds, 1e-9),
            backend="vmap",
        )
        write_json(finals[k], summary)
        summaries.append(summary)
    ckpt = out / "stages" / "tree.checkpoint.msgpack"
    if ckpt.exists():
        ckpt.unlink()
    return summaries
