"""The Coin Game experiment with every run a lane of one compiled program (``backend = "vmap"``).

On an accelerator a Coin Game iteration is a few hundred tiny kernels, bound by their launches,
so running one process per seed leaves the device mostly idle. This backend runs the experiment
in two *stages*, each one compiled program in one process; within a stage every (seed, phase)
run is a *lane*: runs that share a learner are ``vmap``-ed together and every learner of the
stage advances in the same ``lax.scan`` (one environment step and one gradient step per lane per
iteration).

* Stage 1: ``principal``, ``selfish`` and ``cooperative`` for every seed.
* Stage 2: ``validation`` and ``validation_nudged`` (one learner, the nudge a lane value), and
  each constant-proportion scheme's ``constant`` and ``constant_nudged`` lanes (the share a
  lane value), for every seed, against the seed's stage-1 principal.

Every lane starts from the key the process backend gives the same (seed, phase) and evaluates
with the same keys, so stage-1 lanes and the ``validation`` lane are the same runs as the
process backend's (up to float rounding of batched operations; ``tests/experiments``). Two
quantities the process backend takes from the *final* ``validation`` evaluation are not known
when stage 2 starts, because validation runs beside the phases that need them:

* the nudged lanes' nudge is worth ``nudge_share`` of the welfare of the **principal's plan**
  (stage 1's final evaluation of ``principal``) instead of the validation agents' welfare;
* a constant lane's budget target is the amount the matched validation lane paid at the **same
  evaluation**: ``p`` starts from the plan's amount (:func:`.coin.initial_share`) and after every
  evaluation of the calibration window moves halfway to the share that would transfer what the
  validation lane just paid (:func:`.coin.calibrated_share`; from 0, where the plan paid
  nothing, it restarts from :func:`.coin.initial_share` of that amount). ``target_payments`` and the
  budget ratio in ``results.json`` are still against the validation lane's final amount.

Output: the process backend's layout and ``results.json`` (per lane
``runs/seed<k>/<phase>.csv`` and ``.json``, ``principal.params.msgpack``); checkpoints per
stage (``stages/stage<k>.checkpoint.msgpack``) so ``--resume`` continues a stage from its last
checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

import numpy as np

from contractrl.experiments.coin import (
    PHASE_COLUMNS,
    CoinExperimentConfig,
    aggregate,
    calibrated_share,
    constant_phase,
    discard_damaged_principal,
    episode_length,
    evaluation_masks,
    evaluation_row,
    initial_share,
    load_principal,
    phase_stream,
    prepare,
    run_name,
)
from contractrl.experiments.executor import advance
from contractrl.experiments.loop import checkpointed_loop
from contractrl.experiments.store import (
    MetricsLog,
    add_wall_time,
    read_json,
    save_state,
    write_json,
)


@dataclasses.dataclass(frozen=True)
class Lane:
    """One run: a seed's phase."""

    seed_index: int
    phase: str


@dataclasses.dataclass(frozen=True)
class Group:
    """Lanes that share a learner: one ``vmap``-ed learner inside the stage's program.

    Attributes:
        name: the learner's role (``principal``, ``selfish``, ``cooperative``, ``validation``,
            or a constant phase's name).
        lanes: the runs, in lane order.
    """

    name: str
    lanes: tuple[Lane, ...]

    @property
    def uses_principal(self) -> bool:
        """Whether the lanes face a trained principal (each lane its seed's)."""
        return self.name == "validation"


def stage_groups(config: CoinExperimentConfig, stage: int) -> tuple[Group, ...]:
    """The groups of stage 1 or 2 (module docstring)."""
    seeds = range(config.seeds)
    if stage == 1:
        names = ["principal"] + [b for b in ("selfish", "cooperative") if b in config.baselines]
        return tuple(Group(b, tuple(Lane(k, b) for k in seeds)) for b in names)
    suffixes = ("", "_nudged") if config.nudge_share > 0 else ("",)
    groups = [
        Group("validation", tuple(Lane(k, "validation" + s) for k in seeds for s in suffixes))
    ]
    if "constant" in config.baselines:
        for scheme in config.constant_schemes:
            name = constant_phase(config, scheme)
            groups.append(Group(name, tuple(Lane(k, name + s) for k in seeds for s in suffixes)))
    return tuple(groups)


def group_learner(config: CoinExperimentConfig, group: Group):
    """The learner of a group (cached per process, like the process backend's)."""
    from contractrl.experiments.coin import _phase_learner

    return _phase_learner(config, group.lanes[0].phase)


# ------------------------------------------------------------------------ compiled programs
@functools.cache
def stage_program(config: CoinExperimentConfig, stage: int, length: int):
    """``run(states, principals, start) -> (states, totals)``: ``length`` iterations of a stage.

    ``states`` and ``principals`` are tuples with one entry per group (lanes on the leading
    axis; ``{}`` for a group without a principal). ``totals`` per group: ``[L]`` arrays of the
    chunk's environment rewards, transfers, finished episodes and mean loss.
    """
    import jax
    import jax.numpy as jnp

    groups = stage_groups(config, stage)
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
def group_evaluator(config: CoinExperimentConfig, group: Group):
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
@dataclasses.dataclass(frozen=True)
class LaneStart:
    """What a lane starts from: its share ``p`` and nudge, and its budget-matching partner."""

    share: float = 0.0
    nudge: float = 0.0
    matched: str | None = None


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
    config: CoinExperimentConfig,
    stage: int,
    principals: tuple,
    starts: dict[Lane, LaneStart],
    bar,
) -> dict[Lane, dict[str, Any]]:
    """Train (or resume) every lane of a stage; returns each lane's summary."""
    import jax

    groups = stage_groups(config, stage)
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
    """Move every constant lane's share towards its matched validation lane's amount.

    A share of 0 (the principal's plan paid nothing) cannot move geometrically: it restarts
    from :func:`.coin.initial_share` of the validation lane's amount and welfare.
    """
    out = list(states)
    for g, group in enumerate(groups):
        if group.lanes[0] not in starts or starts[group.lanes[0]].matched is None:
            continue
        lane_scheme = [config.phase(lane.phase).scheme for lane in group.lanes]
        shares = np.asarray(states[g].share, np.float32).copy()
        for index, lane in enumerate(group.lanes):
            matched = rows[Lane(lane.seed_index, starts[lane].matched)]
            target = max(float(matched["payments"]), 0.0)
            if shares[index] <= 0 and target > 0:  # started at 0 (the plan paid nothing)
                shares[index] = initial_share(
                    target,
                    float(matched["welfare"]),
                    config.make_env().num_agents,
                    lane_scheme[index],
                )
                continue
            shares[index] = calibrated_share(float(shares[index]), rows[lane]["payments"], target)
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
            matched = start.matched and rows[Lane(lane.seed_index, start.matched)]["payments"]
            summaries[lane] = dict(
                rows[lane],
                phase=lane.phase,
                seed=lane.seed_index,
                nudge=start.nudge,
                share=float(shares[index]),
                share_initial=start.share,
                target_payments=matched if start.matched else None,
                iterations=iteration,
                # every lane of the stage shares the program's wall time
                iterations_per_second=iteration / max(seconds, 1e-9),
                backend="vmap",
                lanes_in_stage=sum(len(gr.lanes) for gr in groups),
            )
            if lane.phase == "principal":
                params = jax.device_get(_lane(states[g].params, index))
                save_state(
                    exp / "runs" / run_name(lane.seed_index) / "principal.params.msgpack",
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


def stage2_starts(config: CoinExperimentConfig, stage1: dict[Lane, dict]) -> dict[Lane, LaneStart]:
    """Stage 2's lane values from the principals' final evaluations (module docstring)."""
    env = config.make_env()
    n = env.num_agents
    starts: dict[Lane, LaneStart] = {}
    for group in stage_groups(config, 2):
        for lane in group.lanes:
            plan = stage1[Lane(lane.seed_index, "principal")]
            welfare = max(float(plan["welfare"]), 0.0)
            length = episode_length(plan, env)
            extra = config.nudge_share * welfare / (length * n)
            phase = config.phase(lane.phase)
            nudged = phase.nudged
            nudge = config.dqn.nudge + (extra if nudged else 0.0)
            if group.name == "validation":
                starts[lane] = LaneStart(nudge=nudge)
                continue
            scheme = phase.scheme
            # the plan's amount, with the nudge paid on every step of every agent
            amount = float(plan["payments"]) + (extra * length * n if nudged else 0.0)
            share = initial_share(max(amount, 0.0), welfare, n, scheme)
            matched = "validation_nudged" if nudged else "validation"
            starts[lane] = LaneStart(share=share, nudge=config.dqn.nudge, matched=matched)
    return starts


def run_coin_lanes(
    config: CoinExperimentConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run the whole experiment as two compiled stages; returns (and writes) ``results.json``."""
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
    bar = _bar(2 * config.dqn.iterations, progress, f"{config.label()} (vmap)") or _NoBar()
    with bar:
        for k in range(config.seeds):  # a damaged principal: stage 1 runs again
            discard_damaged_principal(out, k)
        groups1 = stage_groups(config, 1)
        stage1 = run_stage(out, config, 1, tuple({} for _ in groups1), {}, bar)
        starts = stage2_starts(config, stage1)
        groups2 = stage_groups(config, 2)
        principals = []
        for group in groups2:
            if not group.uses_principal:
                principals.append({})
                continue
            params = [load_principal(out, config, lane.seed_index) for lane in group.lanes]
            principals.append(jax.tree_util.tree_map(lambda *x: jax.numpy.stack(x), *params))
        stage2 = run_stage(out, config, 2, tuple(principals), starts, bar)
    outputs: dict[int, dict] = {}
    for lane, summary in {**stage1, **stage2}.items():
        outputs.setdefault(lane.seed_index, {})[lane.phase] = summary
    wall = add_wall_time(out, time.perf_counter() - begin)
    results = aggregate(
        manifest,
        config,
        [{"seed": k, "phases": phases} for k, phases in sorted(outputs.items())],
        wall,
    )
    results["backend"] = "vmap"
    write_json(out / "results.json", results)
    return results
