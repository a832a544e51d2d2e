"""Cleanup, the public-goods sequential social dilemma, at LIO's small sizes, in pure JAX.

The game of Hughes et al. 2018 ("Inequity aversion improves cooperation in intertemporal social
dilemmas") as the Sequential Social Dilemma (SSD) code defines it (Vinitsky et al.,
``sequential_social_dilemma_games``: ``social_dilemmas/envs/cleanup.py``, ``map_env.py``,
``agent.py``), with the constants and small maps of LIO (Yang et al. 2020, "Learning to
Incentivize Other Learning Agents", ``lio/alg/config_ssd_lio.py``, ``lio/env/maps.py``,
``lio/env/ssd.py``). Apples grow on the apple field only while the river is clean enough; waste
accumulates in the river; a cleaning beam removes it. Cleaning pays nothing, so the cleaner gives
its harvest to whoever stands by the apples: selfish learners collapse to near-zero return.

**Rules** (every constant is a :class:`CleanupConfig` field; sources there):

* Map (``layout``, characters of ``lio/env/maps.py``): ``@`` wall, ``H`` river cell with waste
  at the start, ``R`` river cell clean at the start, ``S`` stream (water that never holds waste),
  ``B`` apple cell, ``P`` agent spawn point, space floor. The *waste area* is the ``H`` and ``R``
  cells. Agents start on the spawn points: without ``shuffle_spawn`` agent 0 on the last ``P``
  in reading order, agent 1 on the one before, ... (SSD's ``spawn_point`` takes the last free
  one; LIO's small map comments "Agent 0 on river side, Agent 1 on apple side"). No apples at
  the start.
* Actions (LIO's ``disable_rotation_action=True``, left/right kept, no penalty beam):
  0 left, 1 right, 2 up, 3 down, 4 stay, 5 clean. Every agent faces up (row 0) for the whole
  episode (no rotation actions, ``random_orientation=False``), so moves are absolute and the beam
  fires towards row 0.
* Movement (SSD ``MapEnv.update_moves``): a move into a wall (or off the map) is a stay. Agents
  walk over waste, river and apples. Several agents moving to the same cell: one of them, drawn
  uniformly from the step's key, gets it and the others stay. An agent cannot move into the cell
  of an agent that stays (or cleans), two agents cannot swap cells, an agent may follow one that
  moves away, and longer cycles all move. (For two agents this is SSD's rule exactly; for more,
  the contest winner is drawn first and then blocked like any other mover if the cell's
  occupant does not leave, where SSD can move the winner into an occupied cell.)
* Harvest (SSD ``CleanupAgent.consume``): an agent on an apple after moving collects it,
  ``apple_reward`` (+1), and the cell empties.
* Cleaning beam (SSD ``MapEnv.update_map_fire``, in the SSD fork LIO uses, with ``beam_width``): the
  clean action fires ``beam_width`` parallel lanes upwards; the centre lane starts in the cell in
  front of the agent, each side lane in the agent's own row (so the centre reaches one row
  further), each at most ``beam_length`` cells. A lane stops before a wall or the map's edge;
  it stops *on* the first waste cell (which it cleans: the cell becomes clean river) and on the
  first agent (cleaning waste under it). So each lane removes at most one waste cell. Beams fire
  in agent order, each on the waste the previous ones left (SSD applies each agent's beam before
  the next). ``cleaning_cost`` (LIO's ``cleaning_penalty``, 0) is charged per clean action.
* Regrowth (SSD ``CleanupEnv.compute_probabilities``), from the waste density ``d`` (waste
  cells / waste area) after cleaning: if ``d >= depletion_threshold`` no apple and no waste
  spawns; otherwise waste spawns with ``waste_spawn_probability`` and apples with
  ``apple_respawn_probability`` if ``d <= restoration_threshold``, else with that times
  ``1 - (d - restoration) / (depletion - restoration)``. ``d`` is compared with the thresholds
  exactly (as fractions), so ``d`` equal to a threshold counts as reaching it.
* Spawning (SSD ``CleanupEnv.spawn_apples_and_waste``): every apple cell without an apple and
  without an agent grows one with the apple probability, independently; at most one waste cell
  appears per step: the clean waste-area cells are visited in a random order, each turns to waste
  with the waste probability, and the first that does ends the visit (so a step adds waste with
  probability ``1 - (1 - p)^k`` for ``k`` clean cells, on a uniformly drawn one of them; under an
  agent too). The same spawning runs once at reset.
* The episode lasts ``horizon`` steps (a time limit: :class:`MultiAgentEnv` reports it as
  truncation); nothing terminates it.

Order of one step (SSD ``MapEnv.step``): last step's beams vanish, agents move, harvest,
cleaning beams, regrowth and spawning, observation.

**Observations** ``float32 [n, V, V, 7]``, ``V = 2 view_size + 1``, egocentric (the agent in the
centre; or every agent centred on ``global_ref_point``), channels last, each a 0/1 indicator:
0 wall or outside the map, 1 apple, 2 waste, 3 clean water (a waste-area cell without waste, or a
stream cell), 4 the agent itself, 5 the other agents, 6 a cell a cleaning beam covered this step.
(SSD gives RGB views, where outside the map looks like floor; here it reads as wall, which is
what it is to a mover.)

**Measures** (``info["measures"]``, per agent and step): ``waste_cleaned`` (waste cells its beam
removed), ``apples_collected``, ``cleaning_beams`` (1 when it fired the beam).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from contractrl._validate import is_finite_number, is_int, require
from contractrl.envs.protocol import MultiAgentEnv

#: LIO's ``CLEANUP_SMALL_SYM`` (``lio/env/maps.py``): 7x7, waste at the top left, apples right.
SMALL_MAP = (
    "@@@@@@@",
    "@H  PB@",
    "@H   B@",
    "@    B@",
    "@    B@",
    "@ P  B@",
    "@@@@@@@",
)

#: LIO's ``CLEANUP_10x10_SYM`` (``lio/env/maps.py``).
MAP_10X10 = (
    "@@@@@@@@@@",
    "@HH   P B@",
    "@RR    BB@",
    "@HH     B@",
    "@RR    BB@",
    "@HH P   B@",
    "@RR    BB@",
    "@HH     B@",
    "@RRP   BB@",
    "@@@@@@@@@@",
)

LAYOUT_CHARS = "@HRSBP "
#: Action names, by index (LIO's order with rotation disabled: ``lio/env/ssd.py``).
ACTIONS = ("left", "right", "up", "down", "stay", "clean")
CLEAN = 5
#: Row/column offset of each action (SSD ``ACTIONS`` with every agent facing up).
MOVES = ((0, -1), (0, 1), (-1, 0), (1, 0), (0, 0), (0, 0))
CHANNELS = ("wall", "apple", "waste", "clean_water", "self", "others", "beam")


@dataclasses.dataclass(frozen=True)
class CleanupConfig:
    """Rules of Cleanup (module docstring); defaults: LIO's ``cleanup_small_sym``.

    Attributes:
        layout: the map, one string per row (characters in the module docstring); LIO's
            ``CLEANUP_SMALL_SYM`` (``lio/env/maps.py``).
        view_size: cells seen on each side of the agent, window ``2 view_size + 1``; LIO
            ``view_size = 4`` (9x9, ``obs_height = obs_width = 9``; 7 for the 10x10 map).
        num_agents: LIO ``n_agents = 2``.
        horizon: steps per episode; LIO ``max_steps = 50``.
        apple_respawn_probability: per apple cell and step at a clean river; LIO
            ``appleRespawnProbability = 0.5`` (0.3 for the 10x10 map; SSD's own 0.05).
        depletion_threshold: waste density at which apples and waste stop spawning; LIO
            ``thresholdDepletion = 0.6`` (0.4 for 10x10; SSD 0.4).
        restoration_threshold: waste density at or below which apples grow at the full rate;
            LIO ``thresholdRestoration = 0.0`` (SSD 0.0).
        waste_spawn_probability: per clean river cell visited (at most one new waste cell per
            step); LIO ``wasteSpawnProbability = 0.5`` (SSD 0.5).
        beam_width: parallel lanes of the cleaning beam (odd); LIO ``beam_width = 3``. LIO's
            SSD fork fires the centre and the two outermost lanes; here every lane fires (the
            same for widths 1 and 3).
        beam_length: cells per lane; SSD ``ACTIONS['CLEAN'] = 5``.
        apple_reward: reward per apple collected; SSD ``CleanupAgent.consume``: 1.
        cleaning_cost: subtracted from the cleaner's reward per clean action; LIO
            ``cleaning_penalty = 0.0`` (SSD's cleaning beam costs nothing).
        shuffle_spawn: agents start on uniformly drawn distinct spawn points; LIO
            ``shuffle_spawn = False``.
        global_ref_point: ``(row, col)`` every agent's window is centred on, or ``None`` for
            egocentric views; LIO ``global_ref_point = None``.
    """

    layout: tuple[str, ...] = SMALL_MAP
    view_size: int = 4
    num_agents: int = 2
    horizon: int = 50
    apple_respawn_probability: float = 0.5
    depletion_threshold: float = 0.6
    restoration_threshold: float = 0.0
    waste_spawn_probability: float = 0.5
    beam_width: int = 3
    beam_length: int = 5
    apple_reward: float = 1.0
    cleaning_cost: float = 0.0
    shuffle_spawn: bool = False
    global_ref_point: tuple[int, int] | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        rows = self.layout
        rectangular = (
            isinstance(rows, tuple)
            and len(rows) >= 1
            and all(isinstance(r, str) for r in rows)
            and len({len(r) for r in rows}) == 1
            and len(rows[0]) >= 1
        )
        require(self, [("layout", rectangular)])
        chars = set("".join(rows))
        spawns = sum(r.count("P") for r in rows)
        ref = self.global_ref_point
        require(
            self,
            [
                ("layout", chars <= set(LAYOUT_CHARS), tuple(LAYOUT_CHARS)),
                ("view_size", _positive_int(self.view_size)),
                ("num_agents", _positive_int(self.num_agents) and self.num_agents >= 2),
                ("num_agents", self.num_agents <= spawns),
                ("horizon", _positive_int(self.horizon)),
                ("apple_respawn_probability", _probability(self.apple_respawn_probability)),
                ("waste_spawn_probability", _probability(self.waste_spawn_probability)),
                (
                    "restoration_threshold",
                    is_finite_number(self.restoration_threshold)
                    and self.restoration_threshold >= 0,
                ),
                ("depletion_threshold", is_finite_number(self.depletion_threshold)),
                (
                    "depletion_threshold",
                    self.depletion_threshold >= self.restoration_threshold,
                ),
                ("beam_width", _positive_int(self.beam_width) and self.beam_width % 2 == 1),
                ("beam_length", _positive_int(self.beam_length)),
                ("apple_reward", is_finite_number(self.apple_reward)),
                ("cleaning_cost", is_finite_number(self.cleaning_cost)),
                ("shuffle_spawn", isinstance(self.shuffle_spawn, bool)),
                (
                    "global_ref_point",
                    ref is None
                    or (
                        isinstance(ref, tuple)
                        and len(ref) == 2
                        and all(is_int(x) for x in ref)
                        and 0 <= ref[0] < len(rows)
                        and 0 <= ref[1] < len(rows[0])
                    ),
                ),
            ],
        )

    @property
    def window(self) -> int:
        """``V = 2 view_size + 1``, the side of an observation."""
        return 2 * self.view_size + 1


def _positive_int(value) -> bool:
    return is_int(value) and value >= 1


def _probability(value) -> bool:
    return is_finite_number(value) and 0 <= value <= 1


#: LIO's two maps (``lio/alg/config_ssd_lio.py``, the values its comments give per map).
PRESETS = {
    "small": CleanupConfig(),
    "10x10": CleanupConfig(
        layout=MAP_10X10,
        view_size=7,
        apple_respawn_probability=0.3,
        depletion_threshold=0.4,
    ),
}


@struct.dataclass
class CleanupState:
    """One environment.

    Attributes:
        positions: ``int32 [n, 2]`` each agent's ``(row, col)``.
        apples: ``bool [H, W]`` cells with an apple.
        waste: ``bool [H, W]`` cells with waste.
        beams: ``bool [n, H, W]`` the cells each agent's cleaning beam covered this step.
    """

    positions: jax.Array
    apples: jax.Array
    waste: jax.Array
    beams: jax.Array


def spawn_tables(config: CleanupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Apple and waste spawn probabilities by the number of waste cells.

    Returns:
        ``(apple [K + 1], waste [K + 1])`` float32 for ``k = 0 .. K`` waste cells, ``K`` the waste
        area (SSD ``compute_probabilities``; module docstring). With no waste area the density is
        0.
    """
    area = sum(r.count("H") + r.count("R") for r in config.layout)
    depletion = Fraction(str(config.depletion_threshold))
    restoration = Fraction(str(config.restoration_threshold))
    apple = np.zeros(area + 1)
    waste = np.zeros(area + 1)
    for k in range(area + 1):
        density = Fraction(k, area) if area else Fraction(0)
        if density >= depletion:
            continue
        waste[k] = config.waste_spawn_probability
        if density <= restoration:
            apple[k] = config.apple_respawn_probability
        else:
            share = 1 - (density - restoration) / (depletion - restoration)
            apple[k] = float(share) * config.apple_respawn_probability
    return apple.astype(np.float32), waste.astype(np.float32)


class Cleanup(MultiAgentEnv):
    """Cleanup as an environment of the protocol (:mod:`contractrl.envs.protocol`).

    Args:
        config: the rules (default: LIO's small map); or give its fields as keywords.
    """

    num_actions = len(ACTIONS)
    observation_bounds = (0.0, 1.0)
    measures = ("waste_cleaned", "apples_collected", "cleaning_beams")
    #: What a formal contract pays for (:mod:`.transfers`): waste cells cleaned.
    contract_measure = "waste_cleaned"
    #: What a gifting agent does in the environment (:mod:`.transfers`): stay.
    noop_action = ACTIONS.index("stay")

    def __init__(self, config: CleanupConfig | None = None, **flags):
        if config is None:
            config = CleanupConfig(**flags)
        elif flags:
            config = dataclasses.replace(config, **flags)
        config.validate()
        self.config = config
        self.num_agents = config.num_agents
        self.max_steps = config.horizon
        self.observation_shape = (config.window, config.window, len(CHANNELS))
        grid = np.array([list(r) for r in config.layout])
        self.shape = grid.shape
        self.walls = grid == "@"
        self.waste_area = (grid == "H") | (grid == "R")
        self.stream = grid == "S"
        self.apple_cells = grid == "B"
        self.initial_waste = grid == "H"
        self.spawn_points = np.argwhere(grid == "P").astype(np.int32)  # reading order
        self.apple_table, self.waste_table = spawn_tables(config)

    def __eq__(self, other) -> bool:
        return isinstance(other, Cleanup) and other.config == self.config

    def __hash__(self) -> int:
        return hash(("cleanup", self.config))

    def __repr__(self) -> str:
        return f"Cleanup({self.config})"

    # ----------------------------------------------------------------- states by hand

    def make_state(
        self,
        positions: Iterable[Iterable[int]],
        waste: Iterable[Iterable[int]] | np.ndarray | None = None,
        apples: Iterable[Iterable[int]] | np.ndarray | None = None,
    ) -> CleanupState:
        """A state from agent cells and the cells holding waste and apples.

        Args:
            positions: ``[n, 2]`` each agent's ``(row, col)``.
            waste: cells ``(row, col)`` or a ``bool [H, W]`` mask (default: the layout's ``H``).
            apples: cells or a mask (default: none).

        Raises:
            ValueError: waste off the waste area, apples off apple cells, agents on walls or
                sharing a cell.
        """
        positions = np.asarray(positions, np.int32).reshape(self.num_agents, 2)
        waste = self.initial_waste if waste is None else self._mask(waste)
        apples = np.zeros(self.shape, bool) if apples is None else self._mask(apples)
        if np.any(waste & ~self.waste_area):
            raise ValueError("waste: only on the waste area (H or R cells of the layout)")
        if np.any(apples & ~self.apple_cells):
            raise ValueError("apples: only on apple cells (B cells of the layout)")
        inside = np.all((positions >= 0) & (positions < self.shape), axis=1)
        if not np.all(inside) or np.any(self.walls[tuple(positions.T)]):
            raise ValueError("positions: agents stand inside the map, off the walls")
        if len({tuple(p) for p in positions.tolist()}) < self.num_agents:
            raise ValueError("positions: agents on distinct cells")
        return CleanupState(
            positions=jnp.asarray(positions),
            apples=jnp.asarray(apples),
            waste=jnp.asarray(waste),
            beams=jnp.zeros((self.num_agents, *self.shape), bool),
        )

    def state_from_picture(self, picture: Iterable[str]) -> CleanupState:
        """A state drawn like the layout: ``H`` waste, ``A`` apple, digit ``i`` agent ``i``.

        Every other character only has to agree with the layout's walls. (An agent on waste or on
        an apple: use :meth:`make_state`.)
        """
        rows = tuple(picture)
        if len(rows) != self.shape[0] or any(len(r) != self.shape[1] for r in rows):
            raise ValueError(f"picture: {self.shape[0]} rows of {self.shape[1]} needed")
        grid = np.array([list(r) for r in rows])
        if np.any((grid == "@") != self.walls):
            raise ValueError("picture: its walls differ from the layout's")
        positions = []
        for i in range(self.num_agents):
            cells = np.argwhere(grid == str(i))
            if len(cells) != 1:
                raise ValueError(f"picture: agent {i} must appear once")
            positions.append(cells[0])
        return self.make_state(positions, waste=grid == "H", apples=grid == "A")

    def picture(self, state: CleanupState) -> tuple[str, ...]:
        """The inverse of :meth:`state_from_picture` (agents drawn over what they stand on).

        Clean waste-area cells read ``R``, stream ``S``, empty apple cells and floor a space.
        """
        grid = np.full(self.shape, " ")
        grid[self.waste_area] = "R"
        grid[self.stream] = "S"
        grid[self.walls] = "@"
        grid[np.asarray(state.waste)] = "H"
        grid[np.asarray(state.apples)] = "A"
        for i, (r, c) in enumerate(np.asarray(state.positions)):
            grid[r, c] = str(i)
        return tuple("".join(row) for row in grid)

    def _mask(self, cells) -> np.ndarray:
        array = np.asarray(cells)
        if array.dtype == bool:
            if array.shape != self.shape:
                raise ValueError(f"mask of shape {array.shape}, expected {self.shape}")
            return array
        mask = np.zeros(self.shape, bool)
        for r, c in np.asarray(cells, int).reshape(-1, 2):
            mask[r, c] = True
        return mask

    # ----------------------------------------------------------------- dynamics

    def reset_env(self, key: jax.Array):
        """A new episode: agents on spawn points, the layout's waste, one round of spawning."""
        k_spawn, k_grow = jax.random.split(key)
        points = jnp.asarray(self.spawn_points)
        if self.config.shuffle_spawn:
            order = jax.random.permutation(k_spawn, len(self.spawn_points))
        else:  # SSD: each agent takes the last free spawn point in reading order
            order = jnp.arange(len(self.spawn_points))[::-1]
        positions = points[order[: self.num_agents]]
        occupied = self._occupancy(positions)
        waste = jnp.asarray(self.initial_waste)
        apples, waste = self._grow(k_grow, jnp.zeros(self.shape, bool), waste, occupied)
        state = CleanupState(
            positions=positions,
            apples=apples,
            waste=waste,
            beams=jnp.zeros((self.num_agents, *self.shape), bool),
        )
        return self.observe(state), state

    def step_env(self, key: jax.Array, state: CleanupState, actions: jax.Array):
        """One step (module docstring): move, harvest, clean, spawn.

        Returns:
            ``(obs [n, V, V, 7], state, rewards [n], terminated (False), measures)``.
        """
        k_move, k_grow = jax.random.split(key)
        actions = jnp.asarray(actions, jnp.int32)
        positions = self.move(k_move, state.positions, actions)
        occupied = self._occupancy(positions)
        rows, cols = positions[:, 0], positions[:, 1]
        collected = state.apples[rows, cols]
        apples = state.apples.at[rows, cols].set(False)
        firing = actions == CLEAN
        waste, beams, cleaned = self.clean(state.waste, occupied, positions, firing)
        apples, waste = self._grow(k_grow, apples, waste, occupied)
        next_state = CleanupState(positions=positions, apples=apples, waste=waste, beams=beams)
        c = self.config
        rewards = c.apple_reward * collected - c.cleaning_cost * firing
        measures = {
            "waste_cleaned": cleaned.astype(jnp.float32),
            "apples_collected": collected.astype(jnp.float32),
            "cleaning_beams": firing.astype(jnp.float32),
        }
        terminated = jnp.zeros((), bool)
        return (
            self.observe(next_state),
            next_state,
            rewards.astype(jnp.float32),
            terminated,
            measures,
        )

    def move(self, key: jax.Array, positions: jax.Array, actions: jax.Array) -> jax.Array:
        """New positions ``[n, 2]`` under SSD's movement rules (module docstring)."""
        n = self.num_agents
        target = positions + jnp.asarray(MOVES, jnp.int32)[actions]
        inside = jnp.all((target >= 0) & (target < jnp.asarray(self.shape)), axis=1)
        clipped = jnp.clip(target, 0, jnp.asarray(self.shape) - 1)
        free = inside & ~jnp.asarray(self.walls)[clipped[:, 0], clipped[:, 1]]
        target = jnp.where(free[:, None], target, positions)
        moving = jnp.any(target != positions, axis=1)
        # contests: of the movers to one cell, the one of lowest random rank keeps its move
        rank = jax.random.permutation(key, n)
        same = jnp.all(target[:, None] == target[None], axis=-1) & moving[:, None] & moving[None]
        beaten = jnp.any(same & (rank[None, :] < rank[:, None]), axis=1)
        target = jnp.where(beaten[:, None], positions, target)
        # a mover is blocked by an occupant that stays or moves into the mover's cell (a swap);
        # n rounds reach the fixed point (each round that changes anything adds a stayer)
        into = jnp.all(target[:, None] == positions[None], axis=-1) & ~jnp.eye(n, dtype=bool)
        for _ in range(n):
            stays = jnp.all(target == positions, axis=1)
            swaps = jnp.all(target[None] == positions[:, None], axis=-1)  # [i, j]: j into i's
            blocked = jnp.any(into & (stays[None] | swaps), axis=1)
            target = jnp.where(blocked[:, None], positions, target)
            into = jnp.all(target[:, None] == positions[None], axis=-1) & ~jnp.eye(n, dtype=bool)
        return target

    def clean(self, waste, occupied, positions, firing):
        """The cleaning beams of the firing agents, in agent order.

        Args:
            waste: ``bool [H, W]``.
            occupied: ``bool [H, W]`` cells with an agent (after moving).
            positions: ``int32 [n, 2]``.
            firing: ``bool [n]`` agents that fire.

        Returns:
            ``(waste [H, W], beams [n, H, W], cleaned [n])``: the waste left, each beam's cells,
            the waste cells each agent removed.
        """
        h, w = self.shape
        length, half = self.config.beam_length, self.config.beam_width // 2
        offsets = np.arange(-half, half + 1)
        # lane cells relative to the agent: the centre lane starts one row further up
        steps = np.arange(length)
        d_rows = -(steps[None, :] + (offsets[:, None] == 0))  # [lanes, L]
        d_cols = np.broadcast_to(offsets[:, None], d_rows.shape)
        walls = jnp.asarray(self.walls)
        beams, cleaned = [], []
        for i in range(self.num_agents):
            rows = positions[i, 0] + jnp.asarray(d_rows)
            cols = positions[i, 1] + jnp.asarray(d_cols)
            inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
            r, c = jnp.clip(rows, 0, h - 1), jnp.clip(cols, 0, w - 1)
            open_ = inside & ~walls[r, c]
            stop = ((waste[r, c] | occupied[r, c]) & open_).astype(jnp.int32)
            reached = jnp.cumprod(open_.astype(jnp.int32), axis=1) == 1  # no wall so far
            before = jnp.cumsum(stop, axis=1) - stop  # cells it stopped on, strictly before
            covered = reached & (before == 0) & firing[i]
            hit = covered & waste[r, c]
            beam = jnp.zeros((h, w), jnp.int32).at[r, c].add(covered) > 0
            removed = jnp.zeros((h, w), jnp.int32).at[r, c].add(hit) > 0
            waste = waste & ~removed
            beams.append(beam)
            cleaned.append(jnp.sum(removed))
        return waste, jnp.stack(beams), jnp.stack(cleaned)

    def _grow(self, key, apples, waste, occupied):
        """Apples and at most one waste cell spawn (module docstring)."""
        k_apple, k_waste, k_order = jax.random.split(key, 3)
        count = jnp.sum(waste)
        p_apple = jnp.asarray(self.apple_table)[count]
        p_waste = jnp.asarray(self.waste_table)[count]
        grow = jnp.asarray(self.apple_cells) & ~apples & ~occupied
        apples = apples | (grow & (jax.random.uniform(k_apple, self.shape) < p_apple))
        # visiting the clean cells in a random order, the first success: the success of
        # smallest random priority
        candidates = jnp.asarray(self.waste_area) & ~waste
        success = candidates & (jax.random.uniform(k_waste, self.shape) < p_waste)
        priority = jnp.where(success, jax.random.uniform(k_order, self.shape), 2.0)
        first = jnp.argmin(priority.reshape(-1))
        new = jnp.zeros(self.shape[0] * self.shape[1], bool).at[first].set(True)
        waste = waste | (new.reshape(self.shape) & success)
        return apples, waste

    def _occupancy(self, positions: jax.Array) -> jax.Array:
        return jnp.zeros(self.shape, bool).at[positions[:, 0], positions[:, 1]].set(True)

    # ----------------------------------------------------------------- observations

    def observe(self, state: CleanupState) -> jax.Array:
        """``float32 [n, V, V, 7]``: each agent's window (channels in the module docstring)."""
        n, v = self.num_agents, self.config.view_size
        h, w = self.shape
        agents = jnp.zeros((n, h, w), jnp.float32)
        agents = agents.at[jnp.arange(n), state.positions[:, 0], state.positions[:, 1]].set(1.0)
        clean_water = (jnp.asarray(self.waste_area) & ~state.waste) | jnp.asarray(self.stream)
        shared = jnp.stack(
            [
                jnp.asarray(self.walls),
                state.apples,
                state.waste,
                clean_water,
                jnp.any(state.beams, axis=0),
            ],
            -1,
        ).astype(jnp.float32)
        shared = jnp.pad(shared, ((v, v), (v, v), (0, 0)))
        shared = shared.at[:, :, 0].set(jnp.pad(jnp.asarray(self.walls), v, constant_values=True))
        agents = jnp.pad(agents, ((0, 0), (v, v), (v, v)))
        others = jnp.sum(agents, axis=0)[None] - agents
        if self.config.global_ref_point is None:
            centres = state.positions
        else:
            centres = jnp.broadcast_to(jnp.asarray(self.config.global_ref_point), (n, 2))

        def window(grid, r, c):  # padded index r is map row r - v: the window centred on r
            return jax.lax.dynamic_slice(grid, (r, c, 0), (2 * v + 1, 2 * v + 1, grid.shape[2]))

        def view(i):
            r, c = centres[i, 0], centres[i, 1]
            own = jnp.stack([agents[i], others[i]], -1)
            s, a = window(shared, r, c), window(own, r, c)
            return jnp.concatenate([s[..., :4], a, s[..., 4:]], -1)

        return jax.vmap(view)(jnp.arange(n))

    # ----------------------------------------------------------------- pictures

    def render(self, state, cell: int = 16) -> np.ndarray:
        """``uint8 [H cell, W cell, 3]`` of a :class:`TimeLimitState` (or a ``CleanupState``).

        Walls grey, floor black, clean water blue, waste brown, apples green discs, agents squares
        of their colours, this step's beams tinted with the firing agent's colour.
        """
        inner = getattr(state, "inner", state)
        h, w = self.shape
        base = np.zeros((h, w, 3), np.uint8)
        base[self.waste_area | self.stream] = WATER
        base[np.asarray(inner.waste)] = WASTE
        base[self.walls] = WALL
        beams = np.asarray(inner.beams)
        for i in range(self.num_agents):
            tint = np.asarray(AGENT_COLOURS[i % len(AGENT_COLOURS)], float)
            base[beams[i]] = (0.5 * base[beams[i]] + 0.5 * (0.4 * tint + 0.6 * 255)).astype(
                np.uint8
            )
        image = np.repeat(np.repeat(base, cell, 0), cell, 1)
        image[::cell, :] = np.maximum(image[::cell, :], 40)
        image[:, ::cell] = np.maximum(image[:, ::cell], 40)
        yy, xx = np.mgrid[:cell, :cell]
        disc = (yy - (cell - 1) / 2) ** 2 + (xx - (cell - 1) / 2) ** 2 <= (cell / 3) ** 2
        for r, c in np.argwhere(np.asarray(inner.apples)):
            image[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell][disc] = APPLE
        pad = max(1, cell // 6)
        for i, (r, c) in enumerate(np.asarray(inner.positions)):
            image[r * cell + pad : (r + 1) * cell - pad, c * cell + pad : (c + 1) * cell - pad] = (
                AGENT_COLOURS[i % len(AGENT_COLOURS)]
            )
        return image


WALL = (180, 180, 180)
WATER = (99, 156, 194)
WASTE = (113, 75, 24)
APPLE = (0, 200, 0)
AGENT_COLOURS = ((159, 67, 255), (254, 151, 0), (216, 30, 54), (2, 81, 154), (238, 223, 16))
