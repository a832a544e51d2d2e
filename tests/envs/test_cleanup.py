"""Cleanup's rules, each against a grid built by hand (expected values worked out by hand)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.envs.adapters import EnvUnusableError
from contractrl.envs.cleanup import (
    AGENT_COLOURS,
    APPLE,
    CHANNELS,
    CLEAN,
    PRESETS,
    WALL,
    WASTE,
    Cleanup,
    CleanupConfig,
    spawn_tables,
)
from contractrl.envs.protocol import TimeLimitState, validate_env
from contractrl.envs.registry import make

LEFT, RIGHT, UP, DOWN, STAY = 0, 1, 2, 3, 4
CH = {name: i for i, name in enumerate(CHANNELS)}

# a tall river above a floor row: beams fired from row 8 reach rows 3..7 (centre), 4..8 (sides)
RIVER = (
    "@@@@@@@",
    "@RRRRR@",
    "@RRRRR@",
    "@RRRRR@",
    "@RRRRR@",
    "@RRRRR@",
    "@RRRRR@",
    "@RRRRR@",
    "@ P P @",
    "@@@@@@@",
)

# an open field with apple cells and no waste area
FIELD = (
    "@@@@@@",
    "@PBBP@",
    "@PBB @",
    "@    @",
    "@@@@@@",
)


def field_env():
    return Cleanup(layout=FIELD, apple_respawn_probability=0.0, cleaning_cost=0.25)


@functools.cache
def stepper(env):
    return jax.jit(env.step_env)


@functools.cache
def resetter(env):
    return jax.jit(jax.vmap(env.reset_env))


def reset(env, seeds):
    return resetter(env)(jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds)))


@functools.cache
def batched_stepper(env):
    return jax.jit(jax.vmap(env.step_env, in_axes=(0, None, None)))


def step(env, state, actions, seed=0):
    obs, state, rewards, terminated, measures = stepper(env)(
        jax.random.PRNGKey(seed), state, jnp.asarray(actions, jnp.int32)
    )
    return (
        obs,
        state,
        np.asarray(rewards),
        bool(terminated),
        {k: np.asarray(v) for k, v in measures.items()},
    )


def cells(mask):
    return sorted(map(tuple, np.argwhere(np.asarray(mask)).tolist()))


# --------------------------------------------------------------------------- config


def test_defaults_are_lios_small_map_and_the_10x10_preset():
    env = Cleanup()
    assert env.config == PRESETS["small"]
    assert (env.num_agents, env.num_actions, env.max_steps) == (2, 6, 50)
    assert env.observation_shape == (9, 9, 7)
    c = env.config
    assert (c.apple_respawn_probability, c.depletion_threshold, c.restoration_threshold) == (
        0.5,
        0.6,
        0.0,
    )
    assert (c.waste_spawn_probability, c.beam_width, c.beam_length, c.cleaning_cost) == (
        0.5,
        3,
        5,
        0.0,
    )
    big = Cleanup(PRESETS["10x10"])
    assert big.observation_shape == (15, 15, 7) and big.max_steps == 50
    assert (big.config.apple_respawn_probability, big.config.depletion_threshold) == (0.3, 0.4)
    assert big.shape == (10, 10)


def test_reset_puts_agent_0_on_the_river_side_and_grows_nothing_on_a_full_river():
    env = Cleanup()
    _, states = reset(env, [0, 1, 2])
    for b in range(3):
        state = jax.tree_util.tree_map(lambda x, b=b: x[b], states)
        assert env.picture(state) == (
            "@@@@@@@",
            "@H  1 @",
            "@H    @",
            "@     @",
            "@     @",
            "@ 0   @",
            "@@@@@@@",
        )
    big = Cleanup(PRESETS["10x10"])
    _, state = reset(big, [0])
    assert np.asarray(state.positions[0]).tolist() == [[8, 3], [5, 4]]
    assert int(state.waste[0].sum()) == 8 and not state.apples.any()  # 8 / 16 >= 0.4: depleted


def test_shuffled_spawn_draws_distinct_spawn_points():
    env = Cleanup(PRESETS["10x10"], shuffle_spawn=True)
    _, states = reset(env, list(range(12)))
    seen = set()
    for p in np.asarray(states.positions).tolist():
        p = [tuple(x) for x in p]
        assert len(set(p)) == 2 and set(p) <= {(1, 6), (5, 4), (8, 3)}
        seen.add(tuple(p))
    assert len(seen) > 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("layout", ("@@@", "@@")),
        ("layout", ("@X@", "@P@", "@P@")),
        ("layout", ["@P@", "@P@"]),
        ("view_size", 0),
        ("num_agents", 1),
        ("num_agents", 3),
        ("horizon", 0),
        ("apple_respawn_probability", 1.5),
        ("waste_spawn_probability", -0.1),
        ("restoration_threshold", -0.1),
        ("depletion_threshold", -0.5),
        ("beam_width", 2),
        ("beam_length", 0),
        ("apple_reward", float("nan")),
        ("cleaning_cost", "1"),
        ("shuffle_spawn", 1),
        ("global_ref_point", (7, 0)),
    ],
)
def test_validate_names_the_bad_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        CleanupConfig(**{field: value}).validate()
    with pytest.raises(ValueError, match=f"^{field}:"):
        Cleanup(**{field: value})


def test_protocol_registry_and_equality():
    for preset in PRESETS:
        env = make("cleanup", preset=preset)
        validate_env(env)
        assert env == Cleanup(PRESETS[preset]) and hash(env) == hash(Cleanup(PRESETS[preset]))
    assert make("cleanup", horizon=10).max_steps == 10
    assert Cleanup() != Cleanup(horizon=10)
    with pytest.raises(EnvUnusableError, match="unknown preset"):
        make("cleanup", preset="huge")
    with pytest.raises(EnvUnusableError, match="beam_width"):
        make("cleanup", beam_width=4)


# --------------------------------------------------------------------------- regrowth


def test_spawn_tables_by_hand():
    apple, waste = spawn_tables(Cleanup().config)  # waste area 2; density 0, 1/2, 1
    np.testing.assert_allclose(apple, [0.5, 0.5 * (1 - 0.5 / 0.6), 0.0], rtol=1e-6)
    np.testing.assert_allclose(waste, [0.5, 0.5, 0.0])
    apple, waste = spawn_tables(PRESETS["10x10"])  # area 16; 6/16 < 0.4 <= 7/16
    np.testing.assert_allclose(apple[[0, 6, 7, 16]], [0.3, 0.3 * 0.0625, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(waste[[0, 6, 7, 16]], [0.5, 0.5, 0, 0])


def test_thresholds_count_as_reached_exactly_at_them():
    # a waste area of 10 cells; restoration 0.2 (2 cells), depletion 0.4 (4 cells)
    layout = ("@@@@@@@", "@RRRRR@", "@RRRRR@", "@P B P@", "@@@@@@@")
    cfg = CleanupConfig(layout=layout, restoration_threshold=0.2, depletion_threshold=0.4)
    apple, waste = spawn_tables(cfg)
    np.testing.assert_allclose(apple[:6], [0.5, 0.5, 0.5, 0.25, 0.0, 0.0])
    np.testing.assert_allclose(waste[:6], [0.5, 0.5, 0.5, 0.5, 0.0, 0.0])


def grow_frequency(env, state, seeds=1000):
    keys = jax.random.split(jax.random.PRNGKey(7), seeds)
    actions = jnp.full((env.num_agents,), STAY, jnp.int32)
    _, after, *_ = batched_stepper(env)(keys, state, actions)
    return np.asarray(after.apples).mean(0), np.asarray(after.waste).mean(0)


def test_apples_grow_by_the_waste_level_and_never_under_an_agent():
    layout = ("@@@@@@", "@RRRR@", "@PBBP@", "@@@@@@")  # waste area 4, apple cells (2,2), (2,3)
    env = Cleanup(
        layout=layout,
        apple_respawn_probability=1.0,
        restoration_threshold=0.25,
        depletion_threshold=0.75,
    )
    river = [(1, 1), (1, 2), (1, 3), (1, 4)]
    # at the restoration threshold (1 of 4): every free apple cell grows; the agent's does not
    state = env.make_state([[2, 1], [2, 3]], waste=river[:1])
    apples, _ = grow_frequency(env, state)
    assert apples[2, 2] == 1.0 and apples[2, 3] == 0.0
    # halfway between the thresholds (2 of 4): half the rate
    state = env.make_state([[2, 1], [2, 4]], waste=river[:2])
    apples, _ = grow_frequency(env, state)
    assert abs(apples[2, 2] - 0.5) < 0.06 and abs(apples[2, 3] - 0.5) < 0.06
    # at the depletion threshold (3 of 4): nothing grows, and no waste appears either
    state = env.make_state([[2, 1], [2, 4]], waste=river[:3])
    apples, waste = grow_frequency(env, state)
    assert apples.max() == 0.0 and waste[1, 4] == 0.0


def test_at_most_one_waste_cell_appears_uniformly_on_the_clean_river():
    layout = ("@@@@@@", "@RRRH@", "@P  P@", "@@@@@@")  # waste area 4; H starts dirty
    env = Cleanup(layout=layout, waste_spawn_probability=0.5, depletion_threshold=1.0)
    state = env.make_state([[2, 1], [2, 4]])
    keys = jax.random.split(jax.random.PRNGKey(3), 1000)
    _, after, *_ = batched_stepper(env)(keys, state, jnp.asarray([STAY, STAY]))
    waste = np.asarray(after.waste)
    added = waste.sum((1, 2)) - 1
    # three clean cells visited at probability 1/2 each (two or more succeed half the time),
    # but one cell per step: some waste with probability 1 - 1/8, each cell a third of that
    assert set(added.tolist()) == {0, 1} and abs(added.mean() - 7 / 8) < 0.05
    assert np.all(waste[:, 1, 4]) and not waste[:, 2].any()  # old waste stays; never on floor
    np.testing.assert_allclose(waste[:, 1, 1:4].mean(0), [7 / 24] * 3, atol=0.06)
    # two clean cells: some waste with probability 1 - 1/4
    state = env.make_state([[2, 1], [2, 4]], waste=[(1, 1), (1, 4)])
    _, waste = grow_frequency(env, state)
    assert abs(waste[1, 2] + waste[1, 3] - 0.75) < 0.06
    assert abs(waste[1, 2] - waste[1, 3]) < 0.08


# --------------------------------------------------------------------------- the beam


def test_the_beam_reaches_five_cells_three_lanes_wide_and_cleans_nothing_on_a_clean_river():
    env = Cleanup(layout=RIVER, waste_spawn_probability=0.0)
    state = env.make_state([[8, 2], [8, 4]], waste=[])
    obs, after, rewards, _, m = step(env, state, [CLEAN, STAY])
    centre = [(r, 2) for r in range(3, 8)]
    sides = [(r, c) for c in (1, 3) for r in range(4, 9)]
    assert cells(after.beams[0]) == sorted(centre + sides)
    assert not after.beams[1].any()
    assert m["waste_cleaned"].tolist() == [0, 0] and m["cleaning_beams"].tolist() == [1, 0]
    assert rewards.tolist() == [0, 0]
    # agent 1 sees the beam (channel "beam") at the cells left of it: (8, 3) is its (4, 3)
    assert obs[1, 4, 3, CH["beam"]] == 1 and obs[1, 4, 4, CH["beam"]] == 0


def test_each_lane_cleans_the_first_waste_within_reach_and_stops_there():
    env = Cleanup(layout=RIVER, waste_spawn_probability=0.0)
    waste = [(5, 2), (3, 2), (4, 3), (3, 3), (2, 1), (3, 1)]
    state = env.make_state([[8, 2], [8, 5]], waste=waste)
    _, after, _, _, m = step(env, state, [CLEAN, STAY])
    # centre: (5, 2) cleaned, stops; right: (4, 3) is its fifth cell; left: (3, 1) is out of reach
    assert cells(after.waste) == [(2, 1), (3, 1), (3, 2), (3, 3)]
    assert m["waste_cleaned"].tolist() == [2, 0]
    assert (5, 2) in cells(after.beams[0]) and (4, 2) not in cells(after.beams[0])


def test_walls_stop_the_beam_before_them():
    layout = list(RIVER)
    layout[6] = "@RR@RR@"  # a wall at (6, 3) in the right lane
    env = Cleanup(layout=tuple(layout), waste_spawn_probability=0.0)
    state = env.make_state([[8, 2], [8, 4]], waste=[(5, 3)])
    _, after, _, _, m = step(env, state, [CLEAN, STAY])
    assert cells(after.waste) == [(5, 3)] and m["waste_cleaned"][0] == 0
    assert [c for c in cells(after.beams[0]) if c[1] == 3] == [(7, 3), (8, 3)]
    # by the outer wall: the left lane of an agent in column 1 has no cell; near the top wall
    # the centre lane is empty and the side lanes cover the agent's row only
    state = env.make_state([[8, 1], [1, 3]], waste=[])
    _, after, *_ = step(env, state, [CLEAN, CLEAN])
    assert [c for c in cells(after.beams[0]) if c[1] == 0] == []
    assert cells(after.beams[1]) == [(1, 2), (1, 4)]


def test_agents_stop_the_beam_and_waste_under_them_is_cleaned():
    env = Cleanup(layout=RIVER, waste_spawn_probability=0.0)
    state = env.make_state([[8, 2], [6, 2]], waste=[(6, 2), (5, 2)])
    _, after, _, _, m = step(env, state, [CLEAN, STAY])
    assert cells(after.waste) == [(5, 2)]
    assert m["waste_cleaned"].tolist() == [1, 0]
    assert [c for c in cells(after.beams[0]) if c[1] == 2] == [(6, 2), (7, 2)]


def test_beams_fire_in_agent_order_on_the_waste_the_earlier_ones_left():
    env = Cleanup(layout=RIVER, waste_spawn_probability=0.0)
    # agent 0's right lane and agent 1's left lane are both column 3
    state = env.make_state([[8, 2], [8, 4]], waste=[(6, 3), (5, 3)])
    _, after, _, _, m = step(env, state, [CLEAN, CLEAN])
    assert not after.waste.any() and m["waste_cleaned"].tolist() == [1, 1]


def test_a_beam_one_lane_wide():
    env = Cleanup(layout=RIVER, beam_width=1, waste_spawn_probability=0.0)
    state = env.make_state([[8, 2], [8, 4]], waste=[(7, 1), (7, 3), (4, 2)])
    _, after, _, _, m = step(env, state, [CLEAN, STAY])
    assert cells(after.beams[0]) == [(r, 2) for r in range(4, 8)]  # stops on (4, 2)
    assert cells(after.waste) == [(7, 1), (7, 3)] and m["waste_cleaned"][0] == 1


# --------------------------------------------------------------------------- harvest


def test_collecting_an_apple_pays_one_and_cleaning_costs_the_cleaning_cost():
    env = field_env()
    state = env.state_from_picture(("@@@@@@", "@0AA1@", "@ AA @", "@    @", "@@@@@@"))
    _, after, rewards, terminated, m = step(env, state, [RIGHT, CLEAN])
    assert env.picture(after) == ("@@@@@@", "@ 0A1@", "@ AA @", "@    @", "@@@@@@")
    assert rewards.tolist() == [1.0, -0.25] and not terminated
    assert m["apples_collected"].tolist() == [1, 0] and m["cleaning_beams"].tolist() == [0, 1]
    # an agent standing on an apple collects it too
    state = env.make_state([[2, 2], [1, 4]], apples=[(2, 2)])
    _, after, rewards, _, _ = step(env, state, [STAY, STAY])
    assert rewards.tolist() == [1.0, 0.0] and not after.apples.any()


# --------------------------------------------------------------------------- movement


def moved(env, positions, actions, seed=0):
    state = env.make_state(positions, waste=[])
    return np.asarray(step(env, state, actions, seed)[1].positions).tolist()


def test_moves_and_walls():
    env = field_env()
    assert moved(env, [[2, 2], [3, 3]], [UP, RIGHT]) == [[1, 2], [3, 4]]
    assert moved(env, [[2, 2], [3, 3]], [DOWN, UP]) == [[3, 2], [2, 3]]
    assert moved(env, [[1, 1], [3, 4]], [UP, RIGHT]) == [[1, 1], [3, 4]]  # walls
    assert moved(env, [[1, 1], [3, 4]], [LEFT, DOWN]) == [[1, 1], [3, 4]]


def test_agents_walk_over_waste_and_river():
    env = Cleanup(layout=RIVER, waste_spawn_probability=0.0)
    state = env.make_state([[8, 2], [7, 4]], waste=[(7, 2)])
    _, after, *_ = step(env, state, [UP, UP])
    assert np.asarray(after.positions).tolist() == [[7, 2], [6, 4]]
    assert cells(after.waste) == [(7, 2)]  # walking does not clean


def test_two_agents_into_one_cell_one_wins_at_random():
    env = field_env()
    outcomes = {
        tuple(map(tuple, moved(env, [[2, 1], [2, 3]], [RIGHT, LEFT], s))) for s in range(16)
    }
    assert outcomes == {((2, 2), (2, 3)), ((2, 1), (2, 2))}
    assert moved(env, [[2, 1], [2, 3]], [RIGHT, LEFT], 5) == moved(
        env, [[2, 1], [2, 3]], [RIGHT, LEFT], 5
    )


def test_blocked_by_a_staying_or_cleaning_agent_and_no_swaps():
    env = field_env()
    for other in (STAY, CLEAN, UP):  # UP: into the wall, so it stays
        assert moved(env, [[1, 2], [1, 3]], [RIGHT, other]) == [[1, 2], [1, 3]]
    assert moved(env, [[2, 2], [2, 3]], [RIGHT, LEFT]) == [[2, 2], [2, 3]]  # a swap
    assert moved(env, [[2, 2], [2, 3]], [RIGHT, RIGHT]) == [[2, 3], [2, 4]]  # following


def test_chains_wait_for_their_head_and_longer_cycles_move():
    layout = ("@@@@@@", "@PPPP@", "@PP  @", "@@@@@@")
    env = Cleanup(layout=layout, num_agents=4)
    # 0 -> 1's cell -> 2's cell -> 3's cell; 3 stays: nobody moves
    line = [[1, 1], [1, 2], [1, 3], [1, 4]]
    assert moved(env, line, [RIGHT, RIGHT, RIGHT, STAY]) == line
    # 3 moves down: everybody moves
    assert moved(env, line, [RIGHT, RIGHT, RIGHT, DOWN]) == [[1, 2], [1, 3], [1, 4], [2, 4]]
    # four agents turning round a 2x2 block all move
    block = [[1, 1], [1, 2], [2, 2], [2, 1]]
    assert moved(env, block, [RIGHT, DOWN, LEFT, UP]) == [[1, 2], [2, 2], [2, 1], [1, 1]]


# --------------------------------------------------------------------------- observations


def test_the_window_at_the_maps_edge():
    env = Cleanup()
    obs = np.asarray(reset(env, [0])[0][0])
    # agent 0 at (5, 2): window row i is map row i + 1, column j is map column j - 2
    wall = np.zeros((9, 9), int)
    wall[:, :3] = 1  # map columns -2, -1 (outside) and 0 (the wall)
    wall[5, :] = 1  # map row 6, the bottom wall
    wall[6:, :] = 1  # rows 7.. outside
    wall[:, 8] = 1  # map column 6, the right wall
    np.testing.assert_array_equal(obs[0, ..., CH["wall"]], wall)
    assert cells(obs[0, ..., CH["self"]]) == [(4, 4)]
    assert cells(obs[0, ..., CH["others"]]) == [(0, 6)]  # agent 1 at (1, 4)
    assert cells(obs[0, ..., CH["waste"]]) == [(0, 3), (1, 3)]  # (1, 1), (2, 1)
    assert not obs[0, ..., CH["apple"]].any() and not obs[0, ..., CH["clean_water"]].any()
    # agent 1 at (1, 4): the top wall is window row 3, rows above are outside
    assert obs[1, :4, :, CH["wall"]].all() and not obs[1, 4, 1:6, CH["wall"]].any()
    assert cells(obs[1, ..., CH["others"]]) == [(8, 2)]
    assert obs.dtype == np.float32 and set(np.unique(obs)) <= {0.0, 1.0}


def test_a_global_reference_point_centres_every_window_there():
    env = Cleanup(global_ref_point=(3, 3))
    obs = np.asarray(jax.jit(env.observe)(env.make_state([[5, 2], [1, 4]])))
    # the window is map rows/columns -1..7; agent 0 at (5, 2) -> (6, 3), agent 1 at (1, 4) -> (2, 5)
    assert cells(obs[0, ..., CH["self"]]) == [(6, 3)] == cells(obs[1, ..., CH["others"]])
    assert cells(obs[1, ..., CH["self"]]) == [(2, 5)]
    np.testing.assert_array_equal(obs[0, ..., :4], obs[1, ..., :4])


def test_clean_water_and_apples_in_the_window():
    layout = ("@@@@@@@", "@RRHR @", "@P B P@", "@@@@@@@")
    env = Cleanup(layout=layout, view_size=1)
    state = env.make_state([[2, 2], [2, 5]], waste=[(1, 3)], apples=[(2, 3)])
    obs = np.asarray(env.observe(state))
    assert cells(obs[0, ..., CH["clean_water"]]) == [(0, 0), (0, 1)]
    assert cells(obs[0, ..., CH["waste"]]) == [(0, 2)] and cells(obs[0, ..., CH["apple"]]) == [
        (1, 2)
    ]


# --------------------------------------------------------------------------- the whole env


def rollout(reset_fn, step_fn, key, steps, num_actions):
    """``steps`` random actions in one environment; every output stacked over time."""
    keys = jax.random.split(key, steps + 1)
    obs, state = reset_fn(keys[0])
    out = []
    for t in range(steps):
        k_act, k_step = jax.random.split(keys[t + 1])
        actions = jax.random.randint(k_act, (2,), 0, num_actions)
        obs, state, rewards, terminated, truncated, info = step_fn(k_step, state, actions)
        out.append((obs, rewards, terminated, truncated, info["measures"], state.inner.waste))
    return jax.tree_util.tree_map(lambda *x: np.stack(x), *out)


def batched_rollout(env, keys, steps):
    """The same with ``vmap`` and one ``jit`` over a batch of keys: outputs ``[T, B, ...]``."""

    @jax.jit
    def run(keys):
        return jax.vmap(lambda k: rollout_scan(env, k, steps))(keys)

    return jax.tree_util.tree_map(lambda x: np.swapaxes(np.asarray(x), 0, 1), run(keys))


def rollout_scan(env, key, steps):
    keys = jax.random.split(key, steps + 1)
    _, state = env.reset(keys[0])

    def body(state, k):
        k_act, k_step = jax.random.split(k)
        actions = jax.random.randint(k_act, (2,), 0, env.num_actions)
        obs, state, rewards, terminated, truncated, info = env.step(k_step, state, actions)
        return state, (obs, rewards, terminated, truncated, info["measures"], state.inner.waste)

    return jax.lax.scan(body, state, keys[1:])[1]


def test_jit_and_vmap_equal_a_python_loop_and_the_key_fixes_the_rollout():
    env = Cleanup(horizon=6, apple_respawn_probability=1.0, depletion_threshold=1.0)
    keys = jax.random.split(jax.random.PRNGKey(11), 3)
    steps = 8  # crosses one auto-reset
    together = batched_rollout(env, keys, steps)
    single = (jax.jit(env.reset), jax.jit(env.step))
    for b in range(len(keys)):
        alone = rollout(*single, keys[b], steps, env.num_actions)
        leaves = zip(
            jax.tree_util.tree_leaves(alone), jax.tree_util.tree_leaves(together), strict=True
        )
        for x, y in leaves:
            np.testing.assert_array_equal(x, y[:, b])
    obs, rewards, terminated, truncated, measures, waste = together
    assert truncated[:, 0].tolist() == [t == 5 for t in range(steps)] and not terminated.any()
    assert measures["waste_cleaned"].shape == (steps, 3, 2)
    assert rewards.sum() > 0 and measures["waste_cleaned"].sum() > 0  # something happened
    again = rollout(*single, keys[1], steps, env.num_actions)
    for x, y in zip(
        jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(together), strict=True
    ):
        np.testing.assert_array_equal(x, y[:, 1])
    assert not np.array_equal(obs[:, 0], obs[:, 1])  # other keys, other rollouts


def test_render_draws_walls_waste_apples_agents_and_beams():
    env = Cleanup(layout=RIVER, waste_spawn_probability=0.0)
    state = env.make_state([[8, 2], [8, 4]], waste=[(5, 2)])
    _, after, *_ = step(env, state, [CLEAN, STAY])
    cell = 8
    image = env.render(after, cell=cell)
    assert image.shape == (10 * cell, 7 * cell, 3) and image.dtype == np.uint8

    def centre(r, c):
        return image[r * cell + cell // 2, c * cell + cell // 2].tolist()

    assert centre(0, 0) == list(WALL)
    assert centre(8, 2) == list(AGENT_COLOURS[0]) and centre(8, 4) == list(AGENT_COLOURS[1])
    assert centre(2, 2) != centre(6, 2)  # (6, 2) is under agent 0's beam
    untouched = env.render(env.make_state([[8, 2], [8, 4]], waste=[(2, 2)], apples=None), cell)
    assert untouched[2 * cell + 4, 2 * cell + 4].tolist() == list(WASTE)
    wrapped = env.render(TimeLimitState(after, jnp.zeros((), jnp.int32)), cell=cell)
    np.testing.assert_array_equal(wrapped, image)  # the protocol's state draws the same
    field = Cleanup(layout=FIELD)
    picture = field.render(field.make_state([[1, 1], [1, 4]], apples=[(2, 2)]), cell=cell)
    assert picture[2 * cell + 4, 2 * cell + 4].tolist() == list(APPLE)
