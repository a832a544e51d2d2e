"""The team experiment's phase graph: edges per protocol, stages, lane starts, and a scheduler
that starts a task only after the tasks it needs."""

import dataclasses
import json
import time
from pathlib import Path

import pytest

from contractrl.experiments.coin import COIN_PRESETS
from contractrl.experiments.executor import Task, run_tasks
from contractrl.experiments.pipeline import (
    Lane,
    initial_share,
    lane_start,
    phase_graph,
    stage_groups,
    stages,
)


def _config(**kw):
    return dataclasses.replace(
        COIN_PRESETS["smoke"],
        seeds=2,
        nudge_share=0.1,
        constant_schemes=("redistribute", "top_up"),
        backend="local",
        **kw,
    )


def _edges(config):
    return {n.phase.name: (n.after, n.beside) for n in phase_graph(config)}


def test_graph_edges_follow_the_protocol_fields():
    final = _edges(_config(nudge_base="validation", budget_match="final"))
    assert final["principal"] == ((), None)
    assert final["validation"] == (("principal",), None)
    assert final["validation_nudged"] == (("principal", "validation"), None)
    assert final["constant_nudged"] == (("validation_nudged",), None)
    assert final["constant_top_up"] == (("validation",), None)
    assert final["selfish"] == final["cooperative"] == ((), None)
    lockstep = _edges(_config(nudge_base="plan", budget_match="same_evaluation"))
    assert lockstep["validation_nudged"] == (("principal",), None)
    assert lockstep["constant"] == (("principal",), "validation")
    assert lockstep["constant_top_up_nudged"] == (("principal",), "validation_nudged")
    # a nudged constant phase's starting amount includes the nudge, here from validation
    mixed = _edges(_config(nudge_base="validation", budget_match="same_evaluation"))
    assert mixed["constant_nudged"] == (("principal", "validation"), "validation_nudged")


@pytest.mark.parametrize(
    ("nudge_base", "budget_match", "expected"),
    [
        ("plan", "same_evaluation", [["principal", "selfish", "cooperative"], ["rest"]]),
        ("validation", "same_evaluation", None),
        ("plan", "final", None),
        ("validation", "final", None),
    ],
)
def test_stages_respect_every_edge(nudge_base, budget_match, expected):
    config = _config(nudge_base=nudge_base, budget_match=budget_match)
    cut = stages(config)
    level = {n.phase.name: s for s, nodes in enumerate(cut) for n in nodes}
    assert sorted(level) == sorted(n.phase.name for n in phase_graph(config))
    for node in phase_graph(config):
        for need in node.after:
            assert level[need] < level[node.phase.name], (node.phase.name, need)
        if node.beside:  # trained side by side
            assert level[node.beside] == level[node.phase.name]
    if expected:
        assert [n.phase.name for n in cut[0]] == expected[0]
        assert len(cut) == 2
    groups = stage_groups(config, cut[-1])
    for group in groups:  # one learner per group, seed-major lanes over every seed
        assert len({config.phase(lane.phase).learner for lane in group.lanes}) == 1
        seeds = [lane.seed_index for lane in group.lanes]
        assert seeds == sorted(seeds) and set(seeds) == {0, 1}
    lanes = [lane for g in groups for lane in g.lanes]
    assert len(lanes) == len(set(lanes)) and Lane(1, cut[-1][-1].phase.name) in lanes


class _Env:
    num_agents = 2
    max_steps = 20


def test_lane_start_by_hand():
    """The nudge per step and agent and the constant phase's starting share, by hand."""
    plan = {"welfare": 12.0, "payments": 3.0, "episode_length": 15.0}
    val = {"welfare": 10.0, "payments": 2.5, "episode_length": 20.0}
    val_nudged = {"welfare": 11.0, "payments": 4.0, "episode_length": 20.0}
    done = {"principal": plan, "validation": val, "validation_nudged": val_nudged}
    env = _Env()
    base = COIN_PRESETS["smoke"].dqn.nudge

    def start(phase, **kw):
        config = _config(**kw)
        node = next(n for n in phase_graph(config) if n.phase.name == phase)
        return lane_start(config, node, done, env)

    # validation base: 0.1 * 10 / (20 steps * 2 agents)
    s = start("validation_nudged", nudge_base="validation", budget_match="final")
    assert s.nudge == pytest.approx(base + 0.025)
    s = start("validation_nudged", nudge_base="plan", budget_match="final")
    assert s.nudge == pytest.approx(base + 0.1 * 12 / 30)  # the plan's 15-step episodes
    assert start("validation", nudge_base="plan", budget_match="final").nudge == base
    s = start("constant_nudged", nudge_base="validation", budget_match="final")
    assert (s.target, s.matched) == (4.0, None)
    assert s.share == pytest.approx(4.0 / (0.5 * 11.0))  # redistribute: k = 1 - 1/n
    s = start("constant_top_up", nudge_base="plan", budget_match="same_evaluation")
    assert (s.target, s.matched) == (None, "validation")
    assert s.share == pytest.approx(3.0 / 12.0)  # top_up: k = n - 1 = 1
    # the plan's payments plus the nudge on each of its 15 x 2 agent-steps
    s = start("constant_nudged", nudge_base="plan", budget_match="same_evaluation")
    assert s.share == pytest.approx((3.0 + 0.1 * 12 / 30 * 30) / (0.5 * 12.0))
    assert s.share == initial_share(s.share * 6.0, 12.0, 2, "redistribute")


def _record(path: str, name: str, wait: float) -> str:
    time.sleep(wait)
    with open(path, "a") as f:
        f.write(json.dumps(name) + "\n")
    return name


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_task_starts_only_after_the_tasks_it_needs(tmp_path, backend):
    log = tmp_path / "order.jsonl"
    slow, quick = 1.5, 0.0
    specs = [("a", slow, ()), ("b", quick, ()), ("c", quick, (0,)), ("d", quick, (2, 1))]
    tasks = [
        Task(_record, {"path": str(log), "name": n, "wait": w}, tmp_path, 1, after=after)
        for n, w, after in specs
    ]
    out = run_tasks(tasks, backend, workers=2, progress=False)
    assert out == ["a", "b", "c", "d"]
    order = [json.loads(line) for line in Path(log).read_text().splitlines()]
    assert order.index("a") < order.index("c") < order.index("d")
    assert order.index("b") < order.index("d")


def test_a_dependency_on_a_later_task_is_refused(tmp_path):
    tasks = [Task(_record, {}, tmp_path, 1, after=(1,)), Task(_record, {}, tmp_path, 1)]
    with pytest.raises(ValueError, match="after"):
        run_tasks(tasks, "inline", progress=False)


def _er_config(**kw):
    from contractrl.experiments.coin import MARL_PRESETS

    fields = {
        "env": "escape_room",
        "baselines": ("selfish", "formal", "gifting", "constant"),
        "formal_thetas": (0.0, 0.5, 2),
    }
    return dataclasses.replace(MARL_PRESETS["smoke"], **{**fields, **kw})


def test_formal_sweep_and_gifting_are_independent_first_stage_phases():
    config = _er_config()
    config.validate()
    edges = _edges(config)
    for name in ("formal_0", "formal_0.5", "formal_2", "gifting"):
        assert edges[name] == ((), None)
    assert config.phase("formal_0.5").price == 0.5
    assert config.phase("gifting").kind == "gifting"
    first = {n.phase.name for n in stages(config)[0]}
    assert {"principal", "selfish", "formal_0", "formal_0.5", "formal_2", "gifting"} <= first
    # every price is its own learner (its own wrapped environment), so its own vmap group
    groups = {g.name for g in stage_groups(config, stages(config)[0])}
    assert {"formal_0", "formal_0.5", "formal_2", "gifting"} <= groups


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"formal_thetas": ()}, "formal_thetas"),
        ({"formal_thetas": (1.0, 1.0)}, "formal_thetas"),
        ({"formal_thetas": (-1.0,)}, "formal_thetas"),
        ({"formal_measure": "apples"}, "formal_measure"),
        ({"gift_amount": 0.0}, "gift_amount"),
    ],
)
def test_bad_transfer_baseline_fields_are_named(kw, field):
    with pytest.raises(ValueError, match=field):
        _er_config(**kw).validate()


def test_formal_baseline_refused_where_the_env_has_nothing_to_contract_on():
    config = _er_config(env="iterated_dilemma")
    with pytest.raises(ValueError, match="formal_measure"):
        config.validate()


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"formal_thetas": (0.3, 0.30000000000000004)}, "formal_thetas"),  # one phase name
        ({"formal_thetas": (1234567.0, 1234568.0)}, "formal_thetas"),
        ({"baselines": ("selfish",), "formal_thetas": (float("nan"),)}, "formal_thetas"),
        ({"baselines": ("selfish",), "gift_amount": -1.0}, "gift_amount"),
    ],
)
def test_transfer_fields_are_checked_even_where_they_could_collide_or_go_unused(kw, field):
    with pytest.raises(ValueError, match=field):
        _er_config(**kw).validate()


def test_a_joint_principal_too_large_is_refused_before_any_work():
    from contractrl.multiagent.common import DQNConfig

    config = _er_config(
        env_kwargs='{"num_agents": 8, "min_at_lever": 2}',
        dqn=DQNConfig(iterations=1000, learning_starts=200, principal_head="joint"),
    )
    with pytest.raises(ValueError, match="principal_head"):
        config.validate()
