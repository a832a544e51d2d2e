"""The team experiment in any protocol environment, the Coin Game first (paper Section 5.2).

Paper Figures 2 and 4 in the Coin Game; ``train marl`` in any environment.

Per seed, a *pipeline* task: Algorithm 3's training phase (``principal``), the validation phase
with fresh black-box agents (``validation``), the same with a nudge worth ``nudge_share`` of
welfare (``validation_nudged``), then the budget-matched constant-proportion baseline for each
scheme of ``constant_schemes`` (the first: ``constant`` and ``constant_nudged``; the others:
``constant_<scheme>`` and ``constant_<scheme>_nudged``); and two independent tasks for the
``selfish`` and ``cooperative`` baselines. Every phase has the same budget of iterations,
evaluates every ``eval_every`` iterations over ``eval_episodes`` episodes
(``runs/seed<k>/<phase>.csv``), checkpoints, and can be resumed. ``results.json`` aggregates the
final evaluations over seeds.

Budget matching (paper Section 5.2) is on the **amount** transferred per episode: the constant
baseline's share ``p`` is set so that its transfers (:mod:`contractrl.multiagent.agents`) equal
what the principal paid the validation agents at their final evaluation (for the nudged variant:
what it paid the nudged validation agents, nudge included). ``p`` starts from the amount the
validation agents' welfare would give, ``p_0 = T / (k·W_val)`` (``k = n - 1`` for ``top_up``,
``1 - 1/n`` for ``redistribute`` with one collector per step), and during the first
``budget_calibration`` share of the phase, after every evaluation, moves halfway (geometrically)
to ``T / (amount per unit p measured at that evaluation)``; it is then frozen. The realised
amounts of both are reported (``payments``, ``constant_payments``) and their ratio
(``budget_ratio``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from contractrl import __version__
from contractrl._stats import mean_se
from contractrl._validate import require_positive_ints
from contractrl.envs.coin_game import PRESETS as GAME_PRESETS
from contractrl.envs.coin_game import CoinGameConfig
from contractrl.envs.transfers import FormalContract, Gifting
from contractrl.experiments.config import validate_execution
from contractrl.experiments.exact_audit import audit_rows, exact_export_of, team_references
from contractrl.experiments.executor import (
    Task,
    check_resume_backend,
    run_tasks,
)
from contractrl.experiments.loop import checkpointed_loop
from contractrl.experiments.pipeline import (
    LaneStart,
    Node,
    Phase,
    calibrated_share,
    episode_length,  # noqa: F401  (re-exported: the phase helpers' old home)
    initial_share,  # noqa: F401
    lane_start,
    matched_share,
    phase_graph,
)
from contractrl.experiments.store import (
    DamagedCheckpointError,
    MetricsLog,
    add_wall_time,
    load_state,
    open_experiment,
    read_json,
    save_state,
    write_json,
)
from contractrl.multiagent.common import MAX_JOINT_ACTIONS, DQNConfig

BASELINES = ("selfish", "cooperative", "constant", "formal", "gifting")
#: The baselines a config trains unless it says otherwise (the paper's).
DEFAULT_BASELINES = ("selfish", "cooperative", "constant")
NUDGE_BASES = ("auto", "validation", "plan")
BUDGET_MATCHES = ("auto", "final", "same_evaluation")
CONSTANT_SCHEMES = ("redistribute", "top_up")
PHASE_COLUMNS = [
    "iteration",
    "welfare",
    "payments",
    "payment_share",
    "follow_rate",
    "spe_ratio",
    "ic_ratio",
    "train_welfare",
    "train_payments",
    "loss",
    "train_seconds",
    "share",
]


@dataclasses.dataclass(frozen=True)
class TeamExperimentConfig:
    """The multi-agent experiment in any protocol environment (Algorithm 3 and baselines).

    Subclasses say where the environment comes from (:class:`CoinExperimentConfig`,
    :class:`MarlExperimentConfig`).

    Attributes:
        seeds: independent runs.
        seed: seed of the first run (run ``k`` uses ``seed + k``).
        eval_every: iterations between evaluations.
        eval_episodes: episodes per evaluation (paper: 80).
        nudge_share: the nudged variant adds this share of welfare to payments (0: skip it).
        baselines: which of ``selfish``, ``cooperative``, ``constant``, ``formal`` (the
            formal-contract sweep) and ``gifting`` to train (:mod:`contractrl.envs.transfers`;
            default the first three, the paper's).
        formal_thetas: the formal contract's prices ``θ`` per unit of ``formal_measure``, one
            phase ``formal_<θ>`` each.
        formal_measure: the measure the formal contract pays for (empty: the environment's
            ``contract_measure``).
        gift_amount: reward handed to the others per gift (``gifting``).
        constant_schemes: the constant-proportion schemes to train (``redistribute``,
            ``top_up``; module docstring); the first is the phases ``constant``(``_nudged``).
        budget_calibration: share of a constant phase during which ``p`` is adjusted to the
            target amount (0: keep ``p_0``).
        checkpoint_seconds: minimum wall time between checkpoints of a phase.
        backend: ``local``, ``ray`` or ``inline`` (one process per seed's task, see
            :mod:`.executor`), ``vmap`` (every run a lane of one compiled program per stage,
            :mod:`.coin_lanes`) or ``auto`` (``vmap`` where JAX's default device is an
            accelerator, else ``local``).
        workers: ``local`` worker processes (0: one per core).
        ray_address: Ray cluster address.
        scan_unroll: ``vmap`` backend: iterations unrolled per step of the compiled loop.
        nudge_base: the welfare the nudged validation's nudge is a share of: ``validation``
            (the validation agents' final evaluation; the nudged phase starts after it) or
            ``plan`` (the principal's plan at the end of training; both validation phases
            start together). ``auto``: what configs written before the field meant (``plan``
            on ``vmap``, else ``validation``).
        budget_match: what a constant phase's transfers are matched to: ``final`` (the matched
            validation phase's final payments; it starts after that phase) or
            ``same_evaluation`` (starting from the plan's payments, after each evaluation the
            amount the matched validation phase paid at the same iteration; on ``vmap`` the
            two train side by side). ``auto``: as for ``nudge_base`` (``same_evaluation`` on
            ``vmap``, else ``final``). Every backend runs every combination, with the same
            numbers (:mod:`.pipeline`); ``plan`` with ``same_evaluation`` needs the fewest
            ``vmap`` stages (two).
        dqn: the learners' hyper-parameters (every phase uses the same).
    """

    #: The experiment's name in ``config.json`` and ``results.json``.
    EXPERIMENT: ClassVar[str] = ""

    seeds: int = 5
    seed: int = 0
    eval_every: int = 10_000
    eval_episodes: int = 80
    nudge_share: float = 0.1
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    formal_thetas: tuple[float, ...] = (0.5, 1.0, 2.0)
    formal_measure: str = ""
    gift_amount: float = 1.0
    constant_schemes: tuple[str, ...] = ("redistribute",)
    budget_calibration: float = 0.5
    checkpoint_seconds: float = 60.0
    backend: str = "auto"
    workers: int = 0
    ray_address: str | None = None
    scan_unroll: int = 1
    nudge_base: str = "validation"
    budget_match: str = "final"
    dqn: DQNConfig = dataclasses.field(default_factory=DQNConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        require_positive_ints(self, ("seeds", "eval_every", "eval_episodes", "scan_unroll"))
        if not 0 <= self.nudge_share < 1:
            raise ValueError(f"nudge_share: must lie in [0, 1), got {self.nudge_share}")
        unknown = [b for b in self.baselines if b not in BASELINES]
        if unknown:
            raise ValueError(f"baselines: unknown {unknown[0]!r} (choose from {BASELINES})")
        bad = [c for c in self.constant_schemes if c not in CONSTANT_SCHEMES]
        if (
            bad
            or not self.constant_schemes
            or len(set(self.constant_schemes)) < len(self.constant_schemes)
        ):
            what = f"unknown {bad[0]!r}" if bad else "one or more distinct schemes needed"
            raise ValueError(f"constant_schemes: {what} (choose from {CONSTANT_SCHEMES})")
        if not 0 <= self.budget_calibration <= 1:
            raise ValueError(
                f"budget_calibration: must lie in [0, 1], got {self.budget_calibration}"
            )
        validate_execution(self)
        if self.nudge_base not in NUDGE_BASES:
            raise ValueError(f"nudge_base: must be one of {NUDGE_BASES}, got {self.nudge_base!r}")
        if self.budget_match not in BUDGET_MATCHES:
            raise ValueError(
                f"budget_match: must be one of {BUDGET_MATCHES}, got {self.budget_match!r}"
            )
        self.dqn.validate()
        env = self.make_env()
        self._validate_transfers_and_head(env)
        if self.backend == "vmap" and getattr(env, "runs_on_host", False):
            raise ValueError(
                "backend: 'vmap' cannot run an environment stepped on the host (PettingZoo); "
                "use local or inline"
            )
        from contractrl.multiagent.torso import make_encoder

        # the network this environment's observations get (e.g. a grid too small for 'valid')
        make_encoder(env, self.dqn.conv_padding, self.dqn.conv_channels, self.dqn.hidden)

    def _validate_transfers_and_head(self, env) -> None:
        """The transfer baselines' fields and the principal head's size, for ``env``."""
        for theta in self.formal_thetas:
            if not isinstance(theta, int | float) or not math.isfinite(theta) or theta < 0:
                raise ValueError(f"formal_thetas: prices must be finite and >= 0, got {theta}")
        names = [formal_phase(theta) for theta in self.formal_thetas]
        if "formal" in self.baselines and (not names or len(set(names)) < len(names)):
            raise ValueError(
                "formal_thetas: one or more distinct prices needed (prices that print alike "
                f"at 6 significant digits name the same phase), got {list(self.formal_thetas)}"
            )
        if not isinstance(self.gift_amount, int | float) or not self.gift_amount > 0:
            raise ValueError(f"gift_amount: a positive number needed, got {self.gift_amount}")
        if "formal" in self.baselines:
            for theta in self.formal_thetas:
                FormalContract(env, float(theta), self.formal_measure or None)
        if "gifting" in self.baselines:
            Gifting(env, self.gift_amount)
        joint = env.num_actions**env.num_agents
        if self.dqn.principal_head == "joint" and joint > MAX_JOINT_ACTIONS:
            raise ValueError(
                f"principal_head: 'joint' enumerates num_actions**num_agents = {joint} joint "
                f"actions, more than {MAX_JOINT_ACTIONS}; use 'vdn'"
            )

    def effective_nudge_base(self) -> str:
        """``nudge_base`` with (legacy) ``auto`` resolved for the (resolved) backend."""
        if self.nudge_base != "auto":
            return self.nudge_base
        return "plan" if self.backend == "vmap" else "validation"

    def effective_budget_match(self) -> str:
        """``budget_match`` with (legacy) ``auto`` resolved for the (resolved) backend."""
        if self.budget_match != "auto":
            return self.budget_match
        return "same_evaluation" if self.backend == "vmap" else "final"

    def make_env(self):
        """The protocol environment (one per process and config; subclasses)."""
        raise NotImplementedError

    def label(self) -> str:
        """A short name of the experiment for progress bars."""
        return self.EXPERIMENT

    def phases(self) -> tuple[str, ...]:
        """The pipeline's phases, in order."""
        out = ["principal", "validation"]
        if self.nudge_share > 0:
            out.append("validation_nudged")
        if "constant" in self.baselines:
            for scheme in self.constant_schemes:
                name = constant_phase(self, scheme)
                out.append(name)
                if self.nudge_share > 0:
                    out.append(f"{name}_nudged")
        return tuple(out)

    def independent_phases(self) -> tuple[str, ...]:
        """The baselines that need no other phase: selfish, cooperative, formal, gifting."""
        out = [name for name in ("selfish", "cooperative") if name in self.baselines]
        if "formal" in self.baselines:
            out += [formal_phase(theta) for theta in self.formal_thetas]
        if "gifting" in self.baselines:
            out.append("gifting")
        return tuple(out)

    def scheme_of(self, phase: str) -> str | None:
        """The constant-proportion scheme a phase trains (``None``: not a constant phase)."""
        for scheme in self.constant_schemes:
            if phase in (constant_phase(self, scheme), f"{constant_phase(self, scheme)}_nudged"):
                return scheme
        return None

    def phase(self, name: str) -> Phase:
        """The :class:`~.pipeline.Phase` called ``name`` (the one place names are parsed).

        Raises:
            ValueError: ``name`` is no phase of this experiment.
        """
        if name in ("principal", "selfish", "cooperative", "gifting"):
            return Phase(name, name)
        if "formal" in self.baselines:
            for theta in self.formal_thetas:
                if name == formal_phase(theta):
                    return Phase(name, "formal", price=float(theta))
        if name in ("validation", "validation_nudged"):
            return Phase(name, "validation", nudged=name != "validation")
        nudged = name.endswith("_nudged")
        scheme = self.scheme_of(name)
        if scheme is None:
            raise ValueError(f"phase: unknown {name!r}")
        return Phase(name, "constant", scheme, nudged)


@dataclasses.dataclass(frozen=True)
class CoinExperimentConfig(TeamExperimentConfig):
    """The Coin Game experiment (paper Section 5.2, Figures 2 and 4).

    Attributes:
        game: the Coin Game rules.
    """

    EXPERIMENT: ClassVar[str] = "coin"
    game: CoinGameConfig = dataclasses.field(default_factory=CoinGameConfig)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        self.game.validate()
        super().validate()

    def make_env(self):
        """The Coin Game with these rules."""
        return _coin_env(self.game)

    def label(self) -> str:
        """``coin GxG``."""
        return f"coin {self.game.grid_size}x{self.game.grid_size}"


@dataclasses.dataclass(frozen=True)
class MarlExperimentConfig(TeamExperimentConfig):
    """The multi-agent experiment in any environment (docs/your-environment.md).

    Attributes:
        env: a built-in environment (``coin_game``, ``iterated_dilemma``), ``jaxmarl:<id>``,
            ``<module>:<factory>`` or ``<file.py>:<factory>`` (a JAX env, a JaxMARL env or a
            PettingZoo ParallelEnv; :mod:`contractrl.envs.registry`, docs/your-environment.md).
        env_kwargs: the environment's keyword arguments, a JSON object (e.g.
            ``{"horizon": 20}``).
    """

    EXPERIMENT: ClassVar[str] = "marl"
    env: str = "iterated_dilemma"
    env_kwargs: str = "{}"

    def make_env(self):
        """``make(env, **env_kwargs)``; ``ValueError`` naming the field when it cannot."""
        return _marl_env(self.env, self.env_kwargs)

    def label(self) -> str:
        """``marl <env>``."""
        return f"marl {self.env}"


def env_kwargs_dict(text: str) -> dict[str, Any]:
    """The ``env_kwargs`` JSON object as a dict (``ValueError`` naming the field)."""
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"env_kwargs: not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"env_kwargs: a JSON object is needed, got {text!r}")
    return value


@functools.cache
def _marl_env(name: str, kwargs_text: str):
    from contractrl.envs.registry import make

    return make(name, **env_kwargs_dict(kwargs_text))


def experiment_env(config: TeamExperimentConfig):
    """The protocol environment the experiment trains in (one per process and config)."""
    return config.make_env()


@functools.cache
def _coin_env(game: CoinGameConfig):
    from contractrl.envs.coin_game import CoinGame

    return CoinGame(game)


def formal_phase(theta: float) -> str:
    """Phase name of the formal contract with price ``θ``: ``formal_<θ>`` (``formal_0.5``)."""
    return f"formal_{float(theta) + 0.0:g}"  # + 0.0: -0.0 names formal_0


def constant_phase(config: TeamExperimentConfig, scheme: str) -> str:
    """Phase name of a constant scheme: ``constant`` for the first, else ``constant_<scheme>``."""
    return "constant" if scheme == config.constant_schemes[0] else f"constant_{scheme}"


def _budget(iterations: int, eval_every: int, **game) -> CoinExperimentConfig:
    return CoinExperimentConfig(
        eval_every=eval_every,
        game=CoinGameConfig(**game),
        dqn=DQNConfig(iterations=iterations),
    )


_3X3 = dataclasses.asdict(GAME_PRESETS["paper-3x3"])


COIN_PRESETS: dict[str, CoinExperimentConfig] = {
    # The paper's budgets (App. D.2): 1M iterations per phase.
    "paper-3x3": _budget(1_000_000, 20_000, **_3X3),
    "paper-7x7": _budget(1_000_000, 20_000, **dataclasses.asdict(GAME_PRESETS["paper-7x7"])),
    # What fits in about an hour on a 2-core machine (docs/coin.md).
    "budget-3x3": _budget(50_000, 5_000, **_3X3),
    # docs/coin.md's headline 3x3 result: 200,000 iterations per phase (add
    # `--constant-schemes redistribute,top_up` for both constant-proportion schemes).
    "headline-3x3": _budget(200_000, 20_000, **_3X3),
    "budget-7x7": _budget(20_000, 5_000, **dataclasses.asdict(GAME_PRESETS["paper-7x7"])),
    # Three agents on a 4x4 grid (beyond the paper).
    "three-agents": _budget(30_000, 5_000, grid_size=4, horizon=20, num_agents=3),
    # The whole pipeline in a couple of minutes (tests, demo).
    "smoke": dataclasses.replace(
        _budget(1_000, 500, **_3X3),
        seeds=2,
        eval_episodes=20,
        dqn=DQNConfig(iterations=1_000, replay_capacity=5_000, learning_starts=200),
    ),
}


def _marl_budget(iterations: int, eval_every: int, **fields) -> MarlExperimentConfig:
    return MarlExperimentConfig(
        eval_every=eval_every, dqn=DQNConfig(iterations=iterations), **fields
    )


#: Presets of ``train marl``: budgets, for any environment (``--env``).
MARL_PRESETS: dict[str, MarlExperimentConfig] = {
    # The paper's budget (Appendix D.2): 1M iterations per phase.
    "paper": _marl_budget(1_000_000, 20_000),
    # Minutes to an hour on 2 cores for a small environment.
    "budget": _marl_budget(50_000, 5_000),
    # The iterated dilemma's contracts and welfare near their closed forms (tests, docs).
    "dilemma": dataclasses.replace(
        _marl_budget(6_000, 2_000, seeds=2, eval_episodes=40),
        dqn=DQNConfig(iterations=6_000, replay_capacity=6_000, learning_starts=500),
    ),
    # The incentive-design benchmarks (docs/escape-room.md, docs/cleanup.md): 20k iterations
    # per phase, every baseline including the formal-contract sweep and gifting (which need an
    # environment with a contract measure and a no-op: Escape Room, the default, or Cleanup),
    # both constant schemes, 5 seeds.
    "incentives": dataclasses.replace(
        _marl_budget(
            20_000,
            2_000,
            env="escape_room",
            eval_episodes=40,
            baselines=BASELINES,
            constant_schemes=CONSTANT_SCHEMES,
        ),
        dqn=DQNConfig(iterations=20_000, replay_capacity=20_000, learning_starts=500),
    ),
    # The whole pipeline in a few minutes on 2 cores (tests, demo).
    "smoke": dataclasses.replace(
        _marl_budget(1_000, 500, seeds=2, eval_episodes=20),
        dqn=DQNConfig(iterations=1_000, replay_capacity=5_000, learning_starts=200),
    ),
}


def run_name(seed_index: int) -> str:
    """Directory of a seed's runs."""
    return f"seed{seed_index}"


# ------------------------------------------------------------------------------ one phase
#: Phase kinds whose trained parameters are kept (``runs/seed<k>/<phase>.params.msgpack``).
KEPT_PARAMS = ("principal", "validation")


def load_agents(exp: Path, config: TeamExperimentConfig, seed_index: int, phase: str):
    """``(learner, params)`` of a seed's trained validation agents (``<phase>.params.msgpack``).

    Raises ``FileNotFoundError`` when they were not kept (runs made before they were).
    """
    import jax
    from flax import serialization

    learner = _phase_learner(config, config.phase(phase))
    template = learner.init(jax.random.PRNGKey(0)).params
    saved = load_state(exp / "runs" / run_name(seed_index) / f"{phase}.params.msgpack")
    return learner, serialization.from_state_dict(template, saved)


def _phase_learner(config: TeamExperimentConfig, kind: Phase):
    from contractrl.multiagent.agents import agents_learner
    from contractrl.multiagent.algorithm3 import principal_learner

    env = experiment_env(config)
    if kind.kind == "principal":
        return principal_learner(env, config.dqn)
    if kind.kind == "constant":
        return agents_learner(env, config.dqn, "constant", kind.scheme)
    if kind.kind == "formal":
        wrapped = FormalContract(env, kind.price, config.formal_measure or None)
        return agents_learner(wrapped, config.dqn, "selfish")
    if kind.kind == "gifting":
        return agents_learner(Gifting(env, config.gift_amount), config.dqn, "selfish")
    return agents_learner(env, config.dqn, kind.kind)


@functools.cache
def _rollout_fn(learner, episodes: int):
    """A compiled rollout of ``learner``'s greedy policy mixed with following.

    Agent ``i`` plays its own action where ``mask[i]``, else its recommendation.
    """
    import jax
    import jax.numpy as jnp

    from contractrl.multiagent.agents import AgentsLearner
    from contractrl.multiagent.evaluation import mix, rollout

    def run(state, principal, mask, key):
        transfers = None
        if getattr(learner, "mode", None) == "constant":

            def transfers(rewards):
                return learner.transfers(rewards, jnp.zeros_like(rewards), state.share)

        if isinstance(learner, AgentsLearner):
            policy = mix(learner.policy(state, principal), mask)
        else:  # the principal's plan: everyone follows
            policy = mix(learner.policy(state), mask)
        return rollout(learner.env, learner.encoder, policy, key, episodes, transfers)

    return jax.jit(run)


def evaluation_masks(phase: Phase, num_agents: int) -> np.ndarray:
    """The rollouts an evaluation of ``phase`` needs, as masks ``[M, n]`` (1: plays its own).

    Row 0: every agent plays its own policy. Validation phases add row 1: all follow; then,
    per agent ``i``, ``i`` alone plays its own (SPE) and ``i`` alone follows (IC).
    """
    n = num_agents
    masks = [np.ones(n)]
    if phase.kind == "validation":
        masks.append(np.zeros(n))
        for i in range(n):
            alone = np.eye(n)[i]
            masks += [alone, 1 - alone]
    return np.asarray(masks, np.float32)


def evaluation_row(phase: Phase, metrics) -> dict[str, float]:
    """One evaluation row from the metrics of the rollouts of :func:`evaluation_masks`."""
    from contractrl.multiagent.evaluation import ratio

    base = metrics[0]
    row = {
        "welfare": base.welfare,
        "episode_length": base.episode_length,
        "payments": base.payments,
        "payment_share": base.payment_share,
        # only a principal recommends: elsewhere the "recommendation" is a placeholder
        "follow_rate": base.follow_rate if phase.has_principal else float("nan"),
        "spe_ratio": float("nan"),
        "ic_ratio": float("nan"),
    }
    if "transfer_received" in base.measures:  # formal contracts, gifting: what changed hands
        row["payments"] = float(sum(base.measures["transfer_received"]))
        row["payment_share"] = row["payments"] / row["welfare"] if row["welfare"] > 0 else math.nan
    if base.measures:  # per agent, per episode: who did what (the division of labour)
        row["measures"] = {name: list(v) for name, v in base.measures.items()}
    if phase.kind == "validation":
        n = len(base.agent_utility)
        follow_all = metrics[1].agent_utility
        own_all = base.agent_utility
        spe = [ratio(metrics[2 + 2 * i].agent_utility[i], follow_all[i]) for i in range(n)]
        ic = [ratio(own_all[i], metrics[3 + 2 * i].agent_utility[i]) for i in range(n)]
        row["spe_ratio"], row["ic_ratio"] = float(np.mean(spe)), float(np.mean(ic))
        # the same comparisons as differences (above 0: deviating pays), defined whatever the
        # sign of the utilities (a ratio is not, where following earns 0 or less)
        spe_gain = [metrics[2 + 2 * i].agent_utility[i] - follow_all[i] for i in range(n)]
        ic_gain = [own_all[i] - metrics[3 + 2 * i].agent_utility[i] for i in range(n)]
        row["spe_gain"], row["ic_gain"] = float(np.mean(spe_gain)), float(np.mean(ic_gain))
    return row


def _evaluate(config, kind: Phase, learner, state, principal, key) -> dict[str, float]:
    """One evaluation row: metrics (a), (c), (d) and, for validation, (e) and (f)."""
    from contractrl.multiagent.evaluation import summarise

    fn = _rollout_fn(learner, config.eval_episodes)
    masks = evaluation_masks(kind, experiment_env(config).num_agents)
    return evaluation_row(kind, [summarise(fn(state, principal, mask, key)) for mask in masks])


def train_phase(
    exp: Path,
    config: TeamExperimentConfig,
    seed_index: int,
    kind: Phase,
    principal,
    start: LaneStart,
    progress,
) -> dict[str, Any]:
    """Train (or resume) one phase of a seed; returns its summary (the final evaluation).

    ``start`` (:func:`.pipeline.lane_start`): the share ``p`` and nudge it starts from and,
    for a constant phase, what its transfers are matched to: a final amount per episode
    (``target``) or the matched phase's evaluation at each iteration (``matched``, read from
    its finished log ``runs/seed<k>/<matched>.csv``; module docstring).
    """
    import jax
    from flax import serialization

    phase = kind.name
    run_dir = exp / "runs" / run_name(seed_index)
    done_path = run_dir / f"{phase}.json"
    if done_path.exists():
        return read_json(done_path)
    learner = _phase_learner(config, kind)
    seed = config.seed + seed_index
    key = jax.random.fold_in(jax.random.PRNGKey(seed), phase_stream(config, phase))
    if kind.kind == "principal":
        state = learner.init(key)
    else:
        state = learner.init(key, start.share, start.nudge)
    total = config.dqn.iterations
    cal_until = config.budget_calibration * total
    matched_log = (
        MetricsLog(run_dir / f"{start.matched}.csv", PHASE_COLUMNS) if start.matched else None
    )
    num_agents = experiment_env(config).num_agents

    def train_chunk(state, begin, steps):
        if kind.kind == "principal":
            return learner.train_chunk(state, begin, steps)
        return learner.train_chunk(state, principal, begin, steps)

    def evaluate(state, stats, iteration, seconds):
        eval_key = jax.random.fold_in(jax.random.PRNGKey(seed + 10_000), iteration)
        row = _evaluate(config, kind, learner, state, principal, eval_key)
        episodes = max(float(np.asarray(stats.done).sum()), 1.0)
        loss = getattr(stats, "loss", None)
        loss = loss if loss is not None else stats.agent_loss + stats.principal_loss
        row.update(
            iteration=iteration,
            train_seconds=seconds,
            train_welfare=float(np.asarray(stats.rewards).sum()) / episodes,
            train_payments=float(np.asarray(stats.payments).sum()) / episodes,
            loss=float(np.mean(np.asarray(loss))),
        )
        row["share"] = float(np.asarray(getattr(state, "share", 0.0)))
        # adjust p after every evaluation in the calibration window, never after the last one
        matched = start.target is not None or matched_log is not None
        if matched and iteration < total and iteration <= cal_until:
            if matched_log is None:
                share = calibrated_share(row["share"], row["payments"], start.target)
            else:
                at = _row_at(matched_log, iteration)
                share = matched_share(row["share"], row["payments"], at, num_agents, kind.scheme)
            state = state.replace(share=np.float32(share))
        return state, {phase: row}

    ckpt = run_dir / f"{phase}.checkpoint.msgpack"
    result = checkpointed_loop(
        state,
        total=total,
        eval_every=config.eval_every,
        checkpoint=ckpt,
        checkpoint_seconds=config.checkpoint_seconds,
        logs={phase: MetricsLog(run_dir / f"{phase}.csv", PHASE_COLUMNS)},
        train_chunk=train_chunk,
        evaluate=evaluate,
        progress=lambda iteration, _steps: progress(iteration),
    )
    state, iteration, seconds = result.state, result.iteration, result.train_seconds
    row = result.rows[phase]
    target = start.target
    if start.matched:  # the matched phase's final amount, as for ``final``
        target = read_json(run_dir / f"{start.matched}.json")["payments"]
    summary = dict(
        row,
        phase=phase,
        seed=seed_index,
        nudge=start.nudge,
        share=float(np.asarray(getattr(state, "share", start.share))),
        share_initial=start.share,
        target_payments=target,
        iterations=iteration,
        iterations_per_second=iteration / max(seconds, 1e-9),
    )
    if kind.kind in KEPT_PARAMS:  # the trained principal, and validation agents to audit
        save_state(run_dir / f"{phase}.params.msgpack", serialization.to_state_dict(state.params))
    write_json(done_path, summary)
    if ckpt.exists():  # the final summary and parameters replace the (large) checkpoint
        ckpt.unlink()
    return summary


def _row_at(log: MetricsLog, iteration: int) -> dict:
    """The row of ``log`` at ``iteration`` (``ValueError`` if the matched phase has none)."""
    rows = [r for r in log.read() if int(r["iteration"]) == iteration]
    if not rows:
        raise ValueError(f"{log.path}: no evaluation at iteration {iteration} to match")
    return rows[0]


def phase_stream(config: CoinExperimentConfig, phase: str) -> int:
    """The PRNG stream of a phase.

    Its position in the pipeline, 100 + its index among the baselines, or (any other phase
    name) 1000 + a CRC-32 of the name.
    """
    if phase in config.phases():
        return config.phases().index(phase)
    if phase in BASELINES:
        return 100 + BASELINES.index(phase)
    return 1000 + zlib.crc32(phase.encode()) % 1_000_000


def load_principal(exp: Path, config: CoinExperimentConfig, seed_index: int):
    """The trained principal's parameters of a seed (``runs/seed<k>/principal.params.msgpack``)."""
    import jax
    from flax import serialization

    from contractrl.multiagent.algorithm3 import principal_learner

    learner = principal_learner(experiment_env(config), config.dqn)
    template = learner.init(jax.random.PRNGKey(0)).params
    saved = load_state(exp / "runs" / run_name(seed_index) / "principal.params.msgpack")
    return serialization.from_state_dict(template, saved)


def discard_damaged_principal(exp: Path, seed_index: int) -> bool:
    """Delete a seed's damaged trained principal and its summary, so its phase trains again.

    Prints one line on stderr when it does; returns whether the principal was damaged.
    """
    import sys

    run_dir = exp / "runs" / run_name(seed_index)
    params = run_dir / "principal.params.msgpack"
    if not (run_dir / "principal.json").exists():
        return False
    try:
        if not params.exists():
            raise DamagedCheckpointError(f"{params} is missing")
        load_state(params)
        return False
    except DamagedCheckpointError as exc:
        print(
            f"contractrl: {exc}; training the principal of seed {seed_index} again",
            file=sys.stderr,
        )
        params.unlink(missing_ok=True)
        (run_dir / "principal.json").unlink()
        return True


def run_lane_task(exp_dir: str, seed_index: int, phase: str) -> dict[str, Any]:
    """Train one lane (a seed's phase) from its dependencies' final summaries.

    Returns ``{"seed": k, "phases": {phase: summary}}``. The phases of :attr:`Node.needs`
    have finished (the driver orders the tasks by the graph).
    """
    exp = Path(exp_dir)
    config = _config(exp)
    node = _node(config, phase)
    run_dir = exp / "runs" / run_name(seed_index)
    finished = {name: read_json(run_dir / f"{name}.json") for name in node.after}
    start = lane_start(config, node, finished, experiment_env(config))
    principal = load_principal(exp, config, seed_index) if node.phase.kind == "validation" else {}
    total = config.dqn.iterations

    def progress(i):
        write_json(run_dir / f"progress-{phase}.json", {"iteration": i, "total": total})

    summary = train_phase(exp, config, seed_index, node.phase, principal, start, progress)
    progress(total)
    return {"seed": seed_index, "phases": {phase: summary}}


def _node(config: TeamExperimentConfig, phase: str) -> Node:
    for node in phase_graph(config):
        if node.phase.name == phase:
            return node
    raise ValueError(f"phase: unknown {phase!r}")


# ------------------------------------------------------------------------------ experiment
#: The team experiments by the name ``config.json`` records.
TEAM_EXPERIMENTS: dict[str, type[TeamExperimentConfig]] = {
    "coin": CoinExperimentConfig,
    "marl": MarlExperimentConfig,
}


def _config(exp: Path) -> TeamExperimentConfig:
    from contractrl.experiments.config import from_dict

    manifest = read_json(exp / "config.json")
    cls = TEAM_EXPERIMENTS.get(manifest.get("experiment"), CoinExperimentConfig)
    return from_dict(cls, manifest["config"])


def prepare(config: CoinExperimentConfig, out: Path, resume: bool, command: str) -> dict:
    """Create (or reopen) the experiment directory (see :func:`.store.open_experiment`)."""
    return open_experiment(out, config.EXPERIMENT, config, resume, command, __version__)


def run_processes(
    config: TeamExperimentConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    """Run the experiment with one process per lane (``local``, ``ray``, ``inline``).

    Every (seed, phase) is a task that starts once the lanes it needs have finished
    (:func:`.pipeline.phase_graph`). ``config`` is validated and its backend resolved
    (:func:`.team.run_team` does both).
    Returns (and writes) ``results.json``.
    """
    out = Path(out)
    start = time.perf_counter()
    manifest = prepare(config, out, resume, command)
    check_resume_backend(manifest, config.backend, out)
    for k in range(config.seeds):  # a damaged principal (and its summary): trained again
        discard_damaged_principal(out, k)
    tasks = []
    position: dict[tuple[int, str], int] = {}
    for node in phase_graph(config):  # a topological order: every lane after its needs
        for k in range(config.seeds):
            name = node.phase.name
            position[k, name] = len(tasks)
            tasks.append(
                Task(
                    run_lane_task,
                    {"exp_dir": str(out), "seed_index": k, "phase": name},
                    out / "runs" / run_name(k),
                    config.dqn.iterations,
                    f"progress-{name}.json",
                    after=tuple(position[k, need] for need in node.needs),
                )
            )
    outputs = run_tasks(
        tasks,
        config.backend,
        config.workers,
        config.ray_address,
        progress,
        description=config.label(),
    )
    wall = add_wall_time(out, time.perf_counter() - start)
    results = aggregate(manifest, config, outputs, wall, exp=out)
    write_json(out / "results.json", results)
    return results


def aggregate(
    manifest, config: CoinExperimentConfig, outputs, wall: float, exp: Path | None = None
) -> dict[str, Any]:
    """``results.json``: the final evaluation of every phase, mean ± standard error over seeds.

    With ``exp`` (the experiment directory) and an environment small enough to solve exactly
    (:mod:`.exact_audit`), each seed's trained principal is audited exactly (``audit_*``).
    """
    per_seed: dict[int, dict[str, dict]] = {}
    for out in outputs:
        per_seed.setdefault(out["seed"], {}).update(out["phases"])
    env = experiment_env(config)
    n = env.num_agents
    export = exact_export_of(env, config.dqn.gamma) if exp is not None else None
    # the environment's own exact references, else the export's (solved once either way)
    exact = env.exact_references(config.dqn.gamma) if hasattr(env, "exact_references") else None
    if exact is None and export is not None:
        exact = team_references(export)
    audits = {}
    if export is not None:
        from contractrl.multiagent.algorithm3 import principal_learner

        audits = audit_rows(
            export,
            exact["team_welfare"],
            principal_learner(env, config.dqn),
            sorted(per_seed),
            lambda seed: load_principal(exp, config, seed),
            lambda seed, phase: load_agents(exp, config, seed, phase),
            per_seed,
        )
    rows = []
    for seed, phases in sorted(per_seed.items()):
        val = phases.get("validation", {})
        val_nudged = phases.get("validation_nudged", {})
        coop = phases.get("cooperative", {})
        row = {
            "seed": seed,
            "welfare": val.get("welfare"),
            "welfare_nudged": val_nudged.get("welfare"),
            "welfare_selfish": phases.get("selfish", {}).get("welfare"),
            "welfare_cooperative": coop.get("welfare"),
            "payment_share": val.get("payment_share"),
            "payment_ratio": (
                val["payments"] / ((n - 1) * coop["welfare"])
                if val and coop and coop.get("welfare")
                else None
            ),
            "follow_rate": val.get("follow_rate"),
            "follow_rate_nudged": val_nudged.get("follow_rate"),
            "spe_ratio": val.get("spe_ratio"),
            "spe_gain": val.get("spe_gain"),
            "ic_gain": val.get("ic_gain"),
            "ic_ratio": val.get("ic_ratio"),
            "spe_ratio_nudged": val_nudged.get("spe_ratio"),
            "ic_ratio_nudged": val_nudged.get("ic_ratio"),
            "payments": val.get("payments"),
            "payments_nudged": val_nudged.get("payments"),
            "iterations_per_second": phases.get("principal", {}).get("iterations_per_second"),
            "principal_plan_welfare": phases.get("principal", {}).get("welfare"),
            **audits.get(seed, {}),
        }
        for name in config.independent_phases():
            if name.startswith("formal_") or name == "gifting":
                phase = phases.get(name, {})
                row[f"welfare_{name}"] = phase.get("welfare")
                row[f"{name}_payments"] = phase.get("payments")
        for scheme in config.constant_schemes if "constant" in config.baselines else ():
            name = constant_phase(config, scheme)
            for suffix, paid_key in (("", "payments"), ("_nudged", "payments_nudged")):
                phase = phases.get(f"{name}{suffix}", {})
                paid = phase.get("payments")  # realised transfers at the final evaluation
                row[f"welfare_{name}{suffix}"] = phase.get("welfare")
                row[f"{name}{suffix}_share"] = phase.get("share")
                row[f"{name}{suffix}_payments"] = paid
                row[f"{name}{suffix}_budget_ratio"] = (
                    paid / row[paid_key] if paid is not None and row[paid_key] else None
                )
        rows.append(row)
    keys = [k for k in rows[0] if k != "seed"] if rows else []
    mean: dict[str, Any] = {}
    for key in keys:
        mean[key], mean[f"{key}_se"] = mean_se(r[key] for r in rows)
    mean.update(wall_seconds=wall, seeds=len(rows), iterations_per_phase=config.dqn.iterations)
    if exact and exact.get("team_welfare"):  # judged against the exact solution, not baselines
        for key in ("welfare", "welfare_nudged", "welfare_cooperative", "welfare_selfish"):
            if mean.get(key) is not None:
                mean[f"{key}_of_optimum"] = mean[key] / exact["team_welfare"]
    return {
        "experiment": config.EXPERIMENT,
        "config": manifest["config"],
        "version": manifest["version"],
        "git_sha": manifest["git_sha"],
        "command": manifest.get("command", ""),
        "constant_schemes": list(config.constant_schemes),
        "nudge_base": config.effective_nudge_base(),
        "budget_match": config.effective_budget_match(),
        "mean": mean,
        "seeds": rows,
        **({"exact": exact} if exact else {}),
        **_measures_block(per_seed),
    }


def _measures_block(per_seed: dict[int, dict[str, dict]]) -> dict[str, Any]:
    """``{"measures": …}`` of environments that declare measures (else nothing).

    ``per_seed``: each seed's ``{phase: {measure: [per agent, per episode]}}``; ``total``:
    the mean over seeds of ``Σ_i``; ``top_share``: of ``max_i / Σ_i`` (1: one agent does all
    of it, ``1/n``: an even split; which agent is a seed's own, so seeds are not averaged per
    agent).
    """
    seeds = {
        str(seed): {p: s["measures"] for p, s in sorted(phases.items()) if s.get("measures")}
        for seed, phases in sorted(per_seed.items())
    }
    if not any(seeds.values()):
        return {}
    total: dict[str, dict[str, float]] = {}
    top: dict[str, dict[str, float]] = {}
    for phases in seeds.values():
        for phase, measures in phases.items():
            for name, values in measures.items():
                total.setdefault(phase, {}).setdefault(name, []).append(sum(values))
                share = max(values) / sum(values) if sum(values) > 0 else math.nan
                top.setdefault(phase, {}).setdefault(name, []).append(share)
    mean = {p: {k: float(np.nanmean(v)) for k, v in m.items()} for p, m in total.items()}
    tops = {
        p: {k: float(np.nanmean(v)) if not np.all(np.isnan(v)) else None for k, v in m.items()}
        for p, m in top.items()
    }
    return {"measures": {"total": mean, "top_share": tops, "per_seed": seeds}}
