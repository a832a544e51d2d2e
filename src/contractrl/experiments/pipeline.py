"""The team experiment's phases as a dependency graph, run as lane groups (paper Section 5.2).

Every backend runs the same graph (:func:`phase_graph`) and starts each (seed, phase) run — a
*lane* — from the same values (:func:`lane_start`), computed from the final summaries of the
phases it depends on. Where they differ is only how lanes are scheduled:

* one process per lane (``local``, ``ray``, ``inline``; :func:`.coin.run_processes`): a lane
  starts as soon as the lanes it needs have finished;
* ``vmap`` (:mod:`.coin_lanes`): the graph is cut into *stages* (:func:`stages`), each one
  compiled program in which the lanes of one learner form a *group* (:func:`stage_groups`).

Edges are of two kinds. ``after``: the lane's start needs another lane's final summary (the
principal's parameters, the nudge's welfare, the budget target). ``beside``
(``budget_match = "same_evaluation"``): a constant-proportion lane is calibrated, after each
evaluation, to the amount its matched validation lane paid at the *same* evaluation; a process
reads those rows from the matched lane's finished log, a ``vmap`` stage trains both side by
side. Both read the same numbers, so the values do not depend on the backend.

How the nudge is based (``nudge_base``) and what a constant phase is matched to
(``budget_match``) are config fields; they only change the graph's edges.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class Phase:
    """One phase of the team protocol.

    Attributes:
        name: its name, the stem of its files (``principal``, ``validation_nudged``,
            ``constant_top_up``, ``selfish``…; the budget frontier's validation phases are
            ``validation_nudge<share>``).
        kind: ``principal`` (Algorithm 3's training phase), ``validation`` (fresh agents
            facing the trained principal), ``constant`` (constant-proportion sharing),
            ``selfish``, ``cooperative``, ``formal`` (selfish agents under a formal contract
            with price ``price``) or ``gifting`` (selfish agents that may gift;
            :mod:`contractrl.envs.transfers`).
        scheme: the constant-proportion scheme (``constant`` phases only).
        nudged: the phase adds the welfare-proportional nudge (or is matched to a phase that
            does).
        price: the formal contract's price ``θ`` (``formal`` phases only).
    """

    name: str
    kind: str
    scheme: str | None = None
    nudged: bool = False
    price: float | None = None

    @property
    def has_principal(self) -> bool:
        """Whether the phase's agents face the principal's recommendations."""
        return self.kind in ("principal", "validation")

    @property
    def learner(self) -> tuple[str, str | None]:
        """Which learner trains it: phases with the same value share one (lane values differ)."""
        return (self.kind, self.scheme, self.price)


@dataclasses.dataclass(frozen=True)
class Node:
    """A phase in the dependency graph.

    Attributes:
        phase: the phase.
        after: phases (of the same seed) whose final summaries its start needs.
        beside: the validation phase whose evaluation at each iteration a constant phase's
            share is calibrated to (``budget_match = "same_evaluation"``), else ``None``.
    """

    phase: Phase
    after: tuple[str, ...] = ()
    beside: str | None = None

    @property
    def needs(self) -> tuple[str, ...]:
        """Every phase that must have finished before a process may start this one."""
        return self.after + ((self.beside,) if self.beside else ())


def phase_graph(config) -> tuple[Node, ...]:
    """The experiment's phases with their dependencies, in a topological order.

    ``config`` is a :class:`.coin.TeamExperimentConfig`. Order: the pipeline's phases
    (``config.phases()``), then the independent baselines (``config.independent_phases()``:
    ``selfish``, ``cooperative``, the formal-contract sweep, ``gifting``).
    """
    nudge_from = "principal" if config.effective_nudge_base() == "plan" else "validation"
    same_evaluation = config.effective_budget_match() == "same_evaluation"
    nodes = []
    for name in config.phases():
        phase = config.phase(name)
        if phase.kind == "principal":
            nodes.append(Node(phase))
        elif phase.kind == "validation":
            after = ("principal", nudge_from) if phase.nudged else ("principal",)
            nodes.append(Node(phase, tuple(dict.fromkeys(after))))
        else:  # constant: matched to the validation phase with the same nudge
            matched = "validation_nudged" if phase.nudged else "validation"
            if same_evaluation:
                after = ("principal", nudge_from) if phase.nudged else ("principal",)
                nodes.append(Node(phase, tuple(dict.fromkeys(after)), beside=matched))
            else:
                nodes.append(Node(phase, (matched,)))
    for name in config.independent_phases():
        nodes.append(Node(config.phase(name)))
    return tuple(nodes)


def stages(config) -> tuple[tuple[Node, ...], ...]:
    """The graph cut into stages for the ``vmap`` backend.

    A phase's stage is one after the latest of its ``after`` phases, and (at least) that of its
    ``beside`` phase, with which it trains side by side. Defaults (``nudge_base = "plan"``,
    ``budget_match = "same_evaluation"``): two stages, the principal and the independent
    baselines, then every validation and constant phase. ``validation`` and ``final`` add
    stages (the nudged validation after the plain one, a constant phase after its match).
    """
    nodes = phase_graph(config)
    level: dict[str, int] = {}
    for node in nodes:
        deps = [level[a] + 1 for a in node.after]
        if node.beside:
            deps.append(level[node.beside])
        level[node.phase.name] = max(deps, default=0)
    return tuple(
        tuple(n for n in nodes if level[n.phase.name] == s) for s in range(max(level.values()) + 1)
    )


@dataclasses.dataclass(frozen=True)
class Lane:
    """One run: a seed's phase."""

    seed_index: int
    phase: str


@dataclasses.dataclass(frozen=True)
class Group:
    """Lanes that share a learner: one ``vmap``-ed learner inside a stage's program.

    Attributes:
        name: the learner's role (``principal``, ``selfish``, ``cooperative``, ``validation``,
            or a constant scheme's first phase name, e.g. ``constant``).
        lanes: the runs, in lane order (seed-major).
    """

    name: str
    lanes: tuple[Lane, ...]

    @property
    def uses_principal(self) -> bool:
        """Whether the lanes face a trained principal (each lane its seed's)."""
        return self.name == "validation"


def stage_groups(config, stage: tuple[Node, ...]) -> tuple[Group, ...]:
    """The groups of a stage: its phases by learner, each over every seed."""
    by_learner: dict[tuple, list[str]] = {}
    for node in stage:
        by_learner.setdefault(node.phase.learner, []).append(node.phase.name)
    groups = []
    for names in by_learner.values():
        lanes = tuple(Lane(k, name) for k in range(config.seeds) for name in names)
        groups.append(Group(_group_name(config.phase(names[0])), lanes))
    return tuple(groups)


def _group_name(phase: Phase) -> str:
    if phase.kind == "constant":
        return phase.name.removesuffix("_nudged")
    if phase.kind == "formal":
        return phase.name
    return phase.kind


# ------------------------------------------------------------------------ a lane's start
@dataclasses.dataclass(frozen=True)
class LaneStart:
    """What a lane starts from.

    Attributes:
        share: the constant-proportion share ``p`` it starts with.
        nudge: the payment added per followed step (validation phases).
        target: the amount per episode its transfers are matched to, when known at the start
            (``budget_match = "final"``).
        matched: the phase whose evaluations at each iteration it is calibrated to
            (``budget_match = "same_evaluation"``).
    """

    share: float = 0.0
    nudge: float = 0.0
    target: float | None = None
    matched: str | None = None


def lane_start(config, node: Node, finished: Mapping[str, dict], env) -> LaneStart:
    """The start of ``node``'s lane from the final summaries of its ``after`` phases.

    Args:
        config: the experiment's config.
        node: the lane's phase.
        finished: phase name -> final summary (at least ``node.after``) of the same seed.
        env: the environment (its ``num_agents`` and ``max_steps``).

    The nudge (paper Proposition 4.1) is ``nudge_share`` of the welfare per step and agent of
    the nudge base (never negative). A constant phase starts from :func:`initial_share` of the
    amount it is matched to: the matched validation phase's final payments (``final``), or the
    principal plan's payments with the nudge on every step (``same_evaluation``).
    """
    phase = node.phase
    n = env.num_agents
    base_nudge = config.dqn.nudge
    plan = finished.get("principal")
    extra = 0.0  # the nudge per step and agent: of a nudged validation phase, or the amount
    # a nudged constant phase starts from under same_evaluation (``final`` needs none)
    if phase.nudged and (phase.kind == "validation" or node.beside):
        # the two expressions are kept as they were written, so every result stays bitwise
        if config.effective_nudge_base() == "plan":
            extra = config.nudge_share * max(plan["welfare"], 0.0) / (episode_length(plan, env) * n)
        else:
            validation = finished["validation"]
            steps = episode_length(validation, env) * n
            extra = config.nudge_share * (max(validation["welfare"], 0.0) / steps)
    if phase.kind == "validation":
        return LaneStart(nudge=base_nudge + extra)
    if phase.kind != "constant":
        return LaneStart(nudge=base_nudge)
    if node.beside is None:  # final: the matched validation phase's final amount
        matched = finished[node.after[0]]
        target = matched["payments"]
        share = initial_share(target, matched["welfare"], n, phase.scheme)
        return LaneStart(share=share, nudge=base_nudge, target=target)
    length = episode_length(plan, env)
    amount = plan["payments"] + (extra * length * n if phase.nudged else 0.0)
    share = initial_share(max(amount, 0.0), max(plan["welfare"], 0.0), n, phase.scheme)
    return LaneStart(share=share, nudge=base_nudge, matched=node.beside)


def episode_length(summary: dict, env) -> float:
    """Steps per evaluation episode of a phase's summary (``episode_length``).

    The nudge is a share of welfare *per step and agent*: episodes that end early count only
    their steps. Summaries from before the field: the environment's limit.
    """
    length = summary.get("episode_length")
    if length is None or not np.isfinite(length) or length <= 0:
        return env.max_steps
    return length


def initial_share(target: float, welfare: float, num_agents: int, scheme: str) -> float:
    """The starting share ``p_0 = T / (k W)``, clipped to [0, 1].

    The share whose transfers at welfare ``W`` would amount to ``T`` per episode: ``k = n - 1``
    for ``top_up``; ``1 - 1/n`` for ``redistribute`` (exact when one agent collects per step).
    1 (or 0 when ``T = 0``) if ``W <= 0``.
    """
    if not (np.isfinite(target) and target >= 0):
        raise ValueError(f"budget matching needs a finite amount >= 0, got {target}")
    if not welfare > 0:  # nothing collected yet: start high, the calibration brings it down
        return 1.0 if target > 0 else 0.0
    per_unit = (num_agents - 1) if scheme == "top_up" else 1.0 - 1.0 / num_agents
    return float(min(1.0, target / (per_unit * welfare)))


def calibrated_share(share: float, amount: float, target: float) -> float:
    """One calibration step of the constant baseline's share.

    Halfway (geometrically) from ``share`` to the share that would transfer ``target`` if the
    amount stayed proportional to ``p`` (``amount`` was measured at ``share``); clipped to
    [0, 1]. Unchanged when nothing was transferred or ``share`` is 0.
    """
    if share <= 0 or amount <= 0 or not np.isfinite(amount):
        return share if target > 0 else 0.0
    wanted = min(1.0, share * target / amount)
    return float(min(1.0, math.sqrt(share * wanted)))


def matched_share(share: float, amount: float, matched: dict, num_agents: int, scheme: str):
    """One ``same_evaluation`` calibration step: towards what the matched lane paid now.

    ``matched``: the matched lane's evaluation row at this iteration (``payments``,
    ``welfare``). A share of 0 (the plan paid nothing) cannot move geometrically: it restarts
    from :func:`initial_share` of the matched amount and welfare.
    """
    target = max(float(matched["payments"]), 0.0)
    if share <= 0 and target > 0:
        return initial_share(target, float(matched["welfare"]), num_agents, scheme)
    return calibrated_share(share, amount, target)
