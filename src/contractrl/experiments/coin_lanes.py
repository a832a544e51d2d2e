"""The team experiment with every run a lane of one compiled program (``backend = "vmap"``).

On an accelerator an iteration is a few hundred tiny kernels, bound by their launches, so
running one process per seed leaves the device mostly idle. This backend runs the experiment's
phase graph (:mod:`.pipeline`) in *stages*, each one compiled program in one process; within a
stage every (seed, phase) run is a *lane*: lanes that share a learner are ``vmap``-ed together
(a *group*) and every group of the stage advances in the same ``lax.scan`` (one environment step
and one gradient step per lane per iteration). With ``nudge_base = "plan"`` and
``budget_match = "same_evaluation"`` there are two stages:

* stage 1: ``principal``, ``selfish`` and ``cooperative`` for every seed;
* stage 2: ``validation`` and ``validation_nudged`` (one learner, the nudge a lane value), and
  each constant-proportion scheme's ``constant`` and ``constant_nudged`` lanes (the share a
  lane value), for every seed, against the seed's stage-1 principal; a constant lane is
  calibrated after every evaluation to what its validation lane paid at the same evaluation.

``nudge_base = "validation"`` or ``budget_match = "final"`` add stages (a phase after the one
whose final evaluation it needs). Every lane starts from the key and the values
(:func:`.pipeline.lane_start`) the process backend gives the same (seed, phase) and evaluates
with the same keys, so the lanes are the same runs as the process backend's, up to float
rounding of batched operations (``tests/experiments``).

Output: the process backend's layout and ``results.json`` (per lane
``runs/seed<k>/<phase>.csv`` and ``.json``, ``principal.params.msgpack``); checkpoints per
stage (``stages/stage<k>.checkpoint.msgpack``, ``k`` from 1) so ``--resume`` continues a stage
from its last checkpoint.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from contractrl.experiments.coin import (
    KEPT_PARAMS,
    PHASE_COLUMNS,
    TeamExperimentConfig,
    aggregate,
    discard_damaged_principal,
    evaluation_masks,
    evaluation_row,
    load_principal,
    phase_stream,
    prepare,
    run_name,
)
from contractrl.experiments.executor import advance
from contractrl.experiments.loop import checkpointed_loop
from contractrl.experiments.pipeline import (
    Group,
    Lane,
    LaneStart,
    Node,
    calibrated_share,
    lane_start,
    matched_share,
    stage_groups,
    stages,
)
from contractrl.experiments.store import (
    MetricsLog,
    add_wall_time,
    read_json,
    save_state,
    write_json,
)


def group_learner(config: TeamExperimentConfig, group: Group):
    """The learner of a group (cached per process, like the process backend's)."""
    from contractrl.experiments.coin import _phase_learner

    return _phase_learner(config, config.phase(group.lanes[0].phase))


# ------------------------------------------------------------------------ compiled programs
@functools.cache
def stage_program(config: TeamExperimentConfig, stage: int, length: int):
    """``run(states, principals, start) -> (states, totals)``: ``length`` iterations of a stage.

    ``states`` and ``principals`` are tuples with one entry per group (lanes on the leading
    axis; ``{}`` for a group without a principal). ``totals`` per group: ``[L]`` arrays of the
    chunk's environment rewards, transfers, finished episodes and mean loss.
    """
    import jax
    import jax.numpy as jnp

    groups = stage_groups(config, stages(config)[stage - 1])
    steps = []
    for group in groups:
        learner = group_learner(config, group)
        axis = 0 if group.uses_principal else None
        steps.append(jax.vmap(learner.step, in_axes=(0, axis, None)))

    def body(states, i):
        out = [step(st, pr, i) for step, st, pr in zip(steps, *states, strict=True)]
        return tuple(s for s, _ in out), tuple(stats for _, stats in out)

    def run(states, principals, start):
        states, stats = jax.lax.scan(
            lambda carry, i: body((carry, principals), i),
            states,
            start + jnp.arange(length),
            unroll=config.scan_unroll,
        )
        totals = []
        for st in stats:  # leaves [T, L, ...]
            loss = st.loss if hasattr(st, "loss") else st.agent_loss + st.principal_loss
            totals.append(
                {
                    "rewards": st.rewards.sum(axis=(0, 2)),
                    "payments": st.payments.sum(axis=(0, 2)),
                    "episodes": st.done.astype(jnp.float32).sum(axis=0),
                    "loss": loss.mean(axis=0),
                }
            )
        return states, tuple(totals)

    return jax.jit(run)


@functools.cache
def group_evaluator(config: TeamExperimentConfig, group: Group):
    """``evaluate(states, principal, masks [M, n], keys [L]) -> EpisodeTotals [L, M, E, n]``."""
    import jax

    from contractrl.experiments.coin import _rollout_fn

    learner = group_learner(config, group)
    one = _rollout_fn(learner, config.eval_episodes)
    over_masks = jax.vmap(one, in_axes=(None, None, 0, None))
    axis = 0 if group.uses_principal else None
    return jax.jit(jax.vmap(over_masks, in_axes=(0, axis, None, 0)))


def _lane(tree, index: int):
    import jax

    return jax.tree_util.tree_map(lambda x: x[index], tree)


def evaluate_group(config, group: Group, states, principal, iteration: int) -> list[dict]:
    """Evaluation rows of every lane of a group at ``iteration`` (the process backend's keys)."""
    import jax

    from contractrl.multiagent.evaluation import summarise

    keys = jax.numpy.stack(
        [
            jax.random.fold_in(
                jax.random.PRNGKey(config.seed + lane.seed_index + 10_000), iteration
            )
            for lane in group.lanes
        ]
    )
    masks = evaluation_masks(config.phase(group.lanes[0].phase), config.make_env().num_agents)
    totals = jax.device_get(group_evaluator(config, group)(states, principal, masks, keys))
    rows = []
    for index, lane in enumerate(group.lanes):
        metrics = [summarise(_lane(_lane(totals, index), m)) for m in range(len(masks))]
        rows.append(evaluation_row(config.phase(lane.phase), metrics))
    return rows


# ------------------------------------------------------------------------ one stage
def _init_states(config, groups, starts: dict[Lane, LaneStart]):
    import jax
    import jax.numpy as jnp

    states = []
    for group in groups:
        learner = group_learner(config, group)
        keys = jnp.stack(
            [
                jax.random.fold_in(
                    jax.random.PRNGKey(config.seed + lane.seed_index),
                    phase_stream(config, lane.phase),
                )
                for lane in group.lanes
            ]
        )
        if group.name == "principal":
            states.append(jax.vmap(learner.init)(keys))
            continue
        lane_starts = [starts.get(lane, LaneStart(nudge=config.dqn.nudge)) for lane in group.lanes]
        shares = jnp.asarray([s.share for s in lane_starts], jnp.float32)
        nudges = jnp.asarray([s.nudge for s in lane_starts], jnp.float32)
        states.append(jax.vmap(learner.init)(keys, shares, nudges))
    return tuple(states)


def _lane_paths(exp: Path, lane: Lane) -> tuple[Path, Path]:
    run_dir = exp / "runs" / run_name(lane.seed_index)
    return run_dir / f"{lane.phase}.csv", run_dir / f"{lane.phase}.json"


def run_stage(
    exp: Path,
    config: TeamExperimentConfig,
    stage: int,
    principals: tuple,
    starts: dict[Lane, LaneStart],
    bar,
) -> dict[Lane, dict[str, Any]]:
    """Train (or resume) every lane of stage ``stage`` (from 1); returns each lane's summary."""
    import jax

    groups = stage_groups(config, stages(config)[stage - 1])
    lanes = [lane for group in groups for lane in group.lanes]
    done = {lane: _lane_paths(exp, lane)[1] for lane in lanes}
    if all(path.exists() for path in done.values()):
        advance(bar, config.dqn.iterations, resumed=True)
        return {lane: read_json(path) for lane, path in done.items()}
    total = config.dqn.iterations
    states = _init_states(config, groups, starts)
    logs = {lane: MetricsLog(_lane_paths(exp, lane)[0], PHASE_COLUMNS) for lane in lanes}
    cal_until = config.budget_calibration * total

    def evaluate(states, totals, iteration, seconds):
        totals = jax.device_get(totals)
        rows = {}
        for g, group in enumerate(groups):
            evaluated = evaluate_group(config, group, states[g], principals[g], iteration)
            shares = np.asarray(getattr(states[g], "share", np.zeros(len(group.lanes))))
            for index, lane in enumerate(group.lanes):
                episodes = max(float(totals[g]["episodes"][index]), 1.0)
                row = dict(evaluated[index])
                row.update(
                    iteration=iteration,
                    train_seconds=seconds,
                    train_welfare=float(totals[g]["rewards"][index]) / episodes,
                    train_payments=float(totals[g]["payments"][index]) / episodes,
                    loss=float(totals[g]["loss"][index]),
                    share=float(shares[index]),
                )
                rows[lane] = row
        if iteration < total and iteration <= cal_until:
            states = _calibrate(config, groups, states, rows, starts)
        return states, rows

    ckpt = exp / "stages" / f"stage{stage}.checkpoint.msgpack"
    result = checkpointed_loop(
        states,
        total=total,
        eval_every=config.eval_every,
        checkpoint=ckpt,
        checkpoint_seconds=config.checkpoint_seconds,
        logs=logs,
        train_chunk=lambda states, start, steps: stage_program(config, stage, steps)(
            states, principals, start
        ),
        evaluate=evaluate,
        progress=lambda iteration, steps: (
            advance(bar, steps) if steps else advance(bar, iteration, resumed=True)
        ),
        state_key="states",
    )
    states, iteration, seconds, rows = (
        result.state,
        result.iteration,
        result.train_seconds,
        result.rows,
    )
    summaries = _write_summaries(exp, config, groups, states, rows, starts, iteration, seconds)
    if ckpt.exists():
        ckpt.unlink()
    return summaries


def _calibrate(config, groups, states, rows, starts):
    """Move every constant lane's share towards what its matched lane paid at this evaluation.

    :func:`.pipeline.matched_share` per lane (``budget_match = "same_evaluation"``); a lane
    matched to a final amount (``final``) moves towards it with
    :func:`.pipeline.calibrated_share`.
    """
    n = config.make_env().num_agents
    out = list(states)
    for g, group in enumerate(groups):
        lane_starts = [starts.get(lane, LaneStart()) for lane in group.lanes]
        if all(s.matched is None and s.target is None for s in lane_starts):
            continue
        shares = np.asarray(states[g].share, np.float32).copy()
        for index, (lane, start) in enumerate(zip(group.lanes, lane_starts, strict=True)):
            amount = rows[lane]["payments"]
            if start.matched is not None:
                matched = rows[Lane(lane.seed_index, start.matched)]
                scheme = config.phase(lane.phase).scheme
                shares[index] = matched_share(float(shares[index]), amount, matched, n, scheme)
            elif start.target is not None:
                shares[index] = calibrated_share(float(shares[index]), amount, start.target)
        out[g] = states[g].replace(share=shares)
    return tuple(out)


def _write_summaries(exp, config, groups, states, rows, starts, iteration, seconds):
    import jax
    from flax import serialization

    summaries = {}
    for g, group in enumerate(groups):
        shares = np.asarray(getattr(states[g], "share", np.zeros(len(group.lanes))))
        for index, lane in enumerate(group.lanes):
            start = starts.get(lane, LaneStart(nudge=config.dqn.nudge))
            target = start.target
            if start.matched:  # the matched lane's final amount, as for ``final``
                target = rows[Lane(lane.seed_index, start.matched)]["payments"]
            summaries[lane] = dict(
                rows[lane],
                phase=lane.phase,
                seed=lane.seed_index,
                nudge=start.nudge,
                share=float(shares[index]),
                share_initial=start.share,
                target_payments=target,
                iterations=iteration,
                # every lane of the stage shares the program's wall time
                iterations_per_second=iteration / max(seconds, 1e-9),
                backend="vmap",
                lanes_in_stage=sum(len(gr.lanes) for gr in groups),
            )
            if config.phase(lane.phase).kind in KEPT_PARAMS:
                params = jax.device_get(_lane(states[g].params, index))
                save_state(
                    exp / "runs" / run_name(lane.seed_index) / f"{lane.phase}.params.msgpack",
                    serialization.to_state_dict(params),
                )
    for lane, summary in summaries.items():
        write_json(_lane_paths(exp, lane)[1], summary)
    return summaries


# ------------------------------------------------------------------------ the experiment
class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        del n


def run_coin_lanes(
    config: TeamExperimentConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run the whole experiment stage by stage; returns (and writes) ``results.json``."""
    import jax

    from contractrl.experiments.executor import _bar, check_resume_backend

    config.validate()
    out = Path(out)
    begin = time.perf_counter()
    manifest = prepare(config, out, resume, command)
    check_resume_backend(manifest, "vmap", out)
    for k in range(config.seeds):
        (out / "runs" / run_name(k)).mkdir(parents=True, exist_ok=True)
    (out / "stages").mkdir(exist_ok=True)
    plan = stages(config)
    env = config.make_env()
    bar = _bar(len(plan) * config.dqn.iterations, progress, f"{config.label()} (vmap)")
    finished: dict[Lane, dict[str, Any]] = {}
    with bar or _NoBar() as bar:
        for k in range(config.seeds):  # a damaged principal: stage 1 runs again
            discard_damaged_principal(out, k)
        for number, nodes in enumerate(plan, start=1):
            groups = stage_groups(config, nodes)
            starts = _starts(config, nodes, finished, env)
            principals = []
            for group in groups:
                if not group.uses_principal:
                    principals.append({})
                    continue
                params = [load_principal(out, config, lane.seed_index) for lane in group.lanes]
                principals.append(jax.tree_util.tree_map(lambda *x: jax.numpy.stack(x), *params))
            finished.update(run_stage(out, config, number, tuple(principals), starts, bar))
    outputs: dict[int, dict] = {}
    for lane, summary in finished.items():
        outputs.setdefault(lane.seed_index, {})[lane.phase] = summary
    wall = add_wall_time(out, time.perf_counter() - begin)
    results = aggregate(
        manifest,
        config,
        [{"seed": k, "phases": phases} for k, phases in sorted(outputs.items())],
        wall,
        exp=out,
    )
    results["backend"] = "vmap"
    write_json(out / "results.json", results)
    return results


def _starts(config, nodes: tuple[Node, ...], finished: dict[Lane, dict], env):
    """Every lane's start in a stage, from the summaries of earlier stages."""
    starts: dict[Lane, LaneStart] = {}
    for node in nodes:
        for k in range(config.seeds):
            seed_done = {
                name: finished[Lane(k, name)] for name in node.after if Lane(k, name) in finished
            }
            starts[Lane(k, node.phase.name)] = lane_start(config, node, seed_done, env)
    return starts
