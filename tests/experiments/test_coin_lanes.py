"""The Coin Game's ``vmap`` backend: lanes equal runs alone, the fusion boundary survives vmap,
the experiment end to end, and an interrupted stage resumes to the same results."""

import dataclasses
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.envs.coin_game import PRESETS, CoinGame
from contractrl.experiments import coin_lanes
from contractrl.experiments.coin import COIN_PRESETS
from contractrl.experiments.team import run_coin
from contractrl.learning import replay
from contractrl.multiagent.agents import AgentsLearner
from contractrl.multiagent.algorithm3 import PrincipalLearner
from contractrl.multiagent.common import DQNConfig

DQN = DQNConfig(iterations=1000, replay_capacity=3000, learning_starts=20)
GAME = PRESETS["paper-3x3"]


def _lanes_run(learner, states, principal, length):
    def chunk(state, start):
        body = lambda carry, i: learner.step(carry, principal, i)  # noqa: E731
        return jax.lax.scan(body, state, start + jnp.arange(length))[0]

    return jax.jit(jax.vmap(chunk, in_axes=(0, None)))(states, 0)


@pytest.mark.parametrize("kind", [pytest.param("principal", marks=pytest.mark.slow), "validation"])
def test_a_lane_is_the_same_run_as_alone(kind):
    """100 iterations: same actions stored; parameters equal up to float rounding.

    Not bitwise: a batched matrix product may sum in another order, and Adam's step (divided
    by the root of a tiny second moment early on) magnifies the difference (measured here:
    up to 1.3e-4 apart after 200 iterations, on weights ~0.1); identical actions show the
    runs did not diverge.
    """
    length = 100
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    if kind == "principal":
        learner = PrincipalLearner(CoinGame(GAME), DQN)
        init, principal, axis = learner.init, {}, None
    else:
        learner = AgentsLearner(CoinGame(GAME), DQN, kind)
        init = lambda k: learner.init(k, 0.0, 0.05)  # noqa: E731
        principal, axis = {}, None
        if kind == "validation":
            trained = PrincipalLearner(CoinGame(GAME), DQN)
            principal = jax.vmap(lambda k: trained.init(k).params)(keys)
            axis = 0
    lanes = jax.vmap(init)(keys)
    if axis is None:
        batched = _lanes_run(learner, lanes, principal, length)
    else:

        def chunk(state, pr, start):
            body = lambda carry, i: learner.step(carry, pr, i)  # noqa: E731
            return jax.lax.scan(body, state, start + jnp.arange(length))[0]

        batched = jax.jit(jax.vmap(chunk, in_axes=(0, 0, None)))(lanes, principal, 0)
    for index in (0, 2):
        own = principal if axis is None else coin_lanes._lane(principal, index)
        if kind == "principal":
            alone = learner.train_chunk(init(keys[index]), 0, length)[0]
        else:
            alone = learner.train_chunk(init(keys[index]), own, 0, length)[0]
        lane = coin_lanes._lane(batched, index)
        np.testing.assert_array_equal(alone.buffer.data.actions, lane.buffer.data.actions)
        for a, b in zip(
            jax.tree_util.tree_leaves(alone.params),
            jax.tree_util.tree_leaves(lane.params),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)


def test_fusion_boundary_stays_a_conditional_under_vmap():
    """The replay draw's conditional survives ``vmap`` (a mapped predicate makes it a select)."""
    learner = PrincipalLearner(CoinGame(GAME), DQN)
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), 2))

    def chunk(state, start):
        return jax.lax.scan(lambda c, i: learner.step(c, {}, i), state, start + jnp.arange(2))[0]

    jaxpr = str(jax.make_jaxpr(jax.vmap(chunk, in_axes=(0, None)))(states, 0))
    assert len(re.findall(r"\bcond\[", jaxpr)) >= 1
    # the mapped predicate of before: the conditional is gone
    buffer = states.buffer
    mapped = jax.make_jaxpr(jax.vmap(lambda b, k: replay.sample(b, k, 4, True)[1]))(
        buffer, jax.random.split(jax.random.PRNGKey(1), 2)
    )
    assert "cond[" not in str(mapped)


def test_prefix_sum_sampler_draws_the_prioritised_distribution():
    """Both samplers draw slot i with probability p_i^α / Σ p^α (chi-square-free check)."""
    buffer = replay.init_buffer(jnp.zeros(()), 8, alpha=1.0)
    buffer = replay.add_batch(buffer, jnp.arange(6.0))
    pri = jnp.asarray([1.0, 2.0, 3.0, 4.0, 0.5, 9.5])
    for tree in (True, False):
        b = replay.update_priorities(buffer, jnp.arange(6), pri, 0.0, tree=tree)
        draw = replay.sample_prefix_sum if not tree else replay.sample_prioritized
        _, idx, _ = draw(b, jax.random.PRNGKey(3), 200_000, 0.0)
        freq = np.bincount(np.asarray(idx), minlength=6) / 200_000
        np.testing.assert_allclose(freq, np.asarray(pri) / 20.0, atol=4e-3)


def _tiny(seeds=1, **kw):
    smoke = COIN_PRESETS["smoke"]
    return dataclasses.replace(
        smoke,
        seeds=seeds,
        backend="vmap",
        eval_every=200,
        eval_episodes=8,
        checkpoint_seconds=0.0,
        dqn=dataclasses.replace(
            smoke.dqn, iterations=400, replay_capacity=1000, learning_starts=100
        ),
        **kw,
    )


@pytest.mark.slow  # ~2-3 min on 2 cores (three compiled programs); `make test-all`
def test_vmap_backend_runs_the_experiment_and_resumes_exactly(tmp_path, monkeypatch):
    """End to end on CPU; an interrupted stage 2 resumes to bit-identical results."""
    config = _tiny(seeds=2, nudge_base="plan", budget_match="same_evaluation")  # two stages
    full = run_coin(config, tmp_path / "full", progress=False)
    assert full["backend"] == "vmap"
    for key in ("welfare", "welfare_selfish", "welfare_cooperative", "welfare_constant"):
        assert np.isfinite(full["mean"][key]), key
    seed0 = full["seeds"][0]
    val = json.loads((tmp_path / "full/runs/seed0/validation.json").read_text())
    const = json.loads((tmp_path / "full/runs/seed0/constant.json").read_text())
    assert const["target_payments"] == val["payments"] == seed0["payments"]
    assert 0 <= const["share"] <= 1 and val["lanes_in_stage"] == 8
    assert (tmp_path / "full/runs/seed1/principal.params.msgpack").exists()
    assert not list((tmp_path / "full/stages").iterdir())  # checkpoints removed when done
    # interrupt stage 2 at its last evaluation (its checkpoint of iteration 200 kept), resume
    real = coin_lanes.evaluate_group
    calls = {"n": 0}

    def interrupted(config, group, states, principal, iteration):
        if group.name == "validation" and iteration == 400:
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt
        return real(config, group, states, principal, iteration)

    monkeypatch.setattr(coin_lanes, "evaluate_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_coin(config, tmp_path / "cut", progress=False)
    assert (tmp_path / "cut/stages/stage2.checkpoint.msgpack").exists()
    resumed = run_coin(config, tmp_path / "cut", resume=True, progress=False)
    for key, value in full["mean"].items():
        if key != "wall_seconds" and not key.startswith("iterations_per_second"):
            assert resumed["mean"][key] == pytest.approx(value, rel=0, abs=0, nan_ok=True), key
    for phase in ("validation", "constant_nudged"):
        a = (tmp_path / f"full/runs/seed1/{phase}.csv").read_text().splitlines()
        b = (tmp_path / f"cut/runs/seed1/{phase}.csv").read_text().splitlines()
        strip = lambda rows: [r.split(",")[:8] for r in rows]  # noqa: E731
        assert strip(a) == strip(b)


def test_auto_backend_is_local_on_cpu():
    from contractrl.experiments.executor import resolve_backend

    assert resolve_backend("auto") == "local"
    assert resolve_backend("vmap") == "vmap"


def test_a_constant_lane_at_share_zero_restarts_from_the_amount_paid():
    """The plan paid nothing (share 0): the first calibration starts from initial_share."""
    import flax.struct

    from contractrl.experiments.coin_lanes import _calibrate
    from contractrl.experiments.pipeline import (
        Lane,
        LaneStart,
        initial_share,
        stage_groups,
        stages,
    )

    @flax.struct.dataclass
    class Shares:
        share: np.ndarray

    config = dataclasses.replace(
        COIN_PRESETS["smoke"],
        seeds=1,
        nudge_share=0.0,
        nudge_base="plan",
        budget_match="same_evaluation",
    )
    groups = stage_groups(config, stages(config)[1])
    assert [g.name for g in groups] == ["validation", "constant"]
    starts = {Lane(0, "constant"): LaneStart(share=0.0, matched="validation")}
    rows = {
        Lane(0, "validation"): {"payments": 2.0, "welfare": 10.0},
        Lane(0, "constant"): {"payments": 0.0, "welfare": 9.0},
    }
    states = (Shares(np.zeros(1)), Shares(np.zeros(1, np.float32)))
    out = _calibrate(config, groups, states, rows, starts)
    assert float(out[1].share[0]) == pytest.approx(initial_share(2.0, 10.0, 2, "redistribute"))
    assert float(out[1].share[0]) > 0


def test_resume_accepts_older_configs_and_refuses_another_backend_family(tmp_path):
    from contractrl.experiments.config import to_dict
    from contractrl.experiments.executor import check_resume_backend
    from contractrl.experiments.store import ExperimentExistsError, open_experiment

    config = dataclasses.replace(COIN_PRESETS["smoke"], backend="local")
    saved = to_dict(config)
    del saved["scan_unroll"], saved["dqn"]["replay_sampler"]  # written before these existed
    (tmp_path / "config.json").write_text(json.dumps({"experiment": "coin", "config": saved}))
    manifest = open_experiment(tmp_path, "coin", config, True, "", "0")
    check_resume_backend(manifest, "inline", tmp_path)  # same family: fine
    with pytest.raises(ExperimentExistsError, match="--backend local"):
        check_resume_backend(manifest, "vmap", tmp_path)
    changed = dataclasses.replace(config, seeds=3)
    with pytest.raises(ExperimentExistsError, match="another config: seeds 3 \\(saved: 2\\)"):
        open_experiment(tmp_path, "coin", changed, True, "", "0")


def test_local_and_vmap_train_the_same_runs_with_the_same_protocol(tmp_path):
    """With the nudge based on the plan and budgets matched evaluation by evaluation (the
    protocol both backends can run), the process and lane backends give the same metrics for
    every phase: bitwise where the lane is the same program, else up to float rounding of
    batched operations (``vmap`` reorders reductions)."""
    vmap = _tiny(baselines=("constant",), nudge_base="plan", budget_match="same_evaluation")
    inline = dataclasses.replace(vmap, backend="inline")
    a = run_coin(inline, tmp_path / "inline", progress=False)
    b = run_coin(vmap, tmp_path / "vmap", progress=False)
    assert a["nudge_base"] == b["nudge_base"] == "plan"
    assert a["budget_match"] == b["budget_match"] == "same_evaluation"
    phases = ("principal", "validation", "validation_nudged", "constant", "constant_nudged")
    keys = ("welfare", "payments", "follow_rate", "share", "nudge", "target_payments")
    _assert_same_summaries(tmp_path / "inline", tmp_path / "vmap", phases, keys)


def _assert_same_summaries(a: Path, b: Path, phases, keys) -> None:
    """Seed 0's phase summaries agree between two runs (up to batched float rounding)."""
    for phase in phases:
        x = json.loads((a / f"runs/seed0/{phase}.json").read_text())
        y = json.loads((b / f"runs/seed0/{phase}.json").read_text())
        for key in keys:
            if x.get(key) is None:
                assert y.get(key) is None, (phase, key)
                continue
            assert y[key] == pytest.approx(x[key], rel=1e-4, abs=1e-5, nan_ok=True), (phase, key)


@pytest.mark.parametrize(
    ("nudge_base", "budget_match"),
    [("validation", "final"), ("plan", "final")],
)
@pytest.mark.slow  # ~2 min each on 2 cores; `make test-all`
def test_vmap_runs_every_protocol_as_the_processes_do(tmp_path, nudge_base, budget_match):
    """A protocol whose phases need another's final evaluation: the lane backend cuts the
    graph into more stages and still trains the process backend's runs."""
    from contractrl.experiments.pipeline import stages

    vmap = _tiny(baselines=("constant",), nudge_base=nudge_base, budget_match=budget_match)
    vmap.validate()
    assert len(stages(vmap)) == (4 if nudge_base == "validation" else 3)
    inline = dataclasses.replace(vmap, backend="inline")
    run_coin(inline, tmp_path / "inline", progress=False)
    b = run_coin(vmap, tmp_path / "vmap", progress=False)
    assert b["nudge_base"] == nudge_base and b["budget_match"] == budget_match
    phases = ("validation_nudged", "constant", "constant_nudged")
    keys = ("welfare", "payments", "share", "share_initial", "nudge", "target_payments")
    _assert_same_summaries(tmp_path / "inline", tmp_path / "vmap", phases, keys)
    assert not list((tmp_path / "vmap/stages").iterdir())
