"""Escape Room ER(N, M): the rules by hand, the exact tables, closed forms, facades."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test

from contractrl.core.markov_eval import plan_summary
from contractrl.core.markov_solver import principal_optimum, selfish_q, team_optimum
from contractrl.envs.escape_room import (
    DOOR,
    LEVER,
    PRESETS,
    START,
    EscapeRoom,
    EscapeRoomConfig,
    export_escape_room,
)
from contractrl.envs.protocol import validate_env
from contractrl.envs.registry import EnvUnusableError, make

L, S, D = LEVER, START, DOOR

# ER(2,1) from everyone at the start: (actions) -> (rewards, episode ends), by hand from the
# rules: +10 through the open door, 0 for staying, -1 for moving; the door is open when at
# least one agent goes to the lever; the episode ends when it is open and someone is at it.
ER21_FROM_START = {
    (L, L): ((-1, -1), False),
    (L, S): ((-1, 0), False),
    (L, D): ((-1, 10), True),
    (S, L): ((0, -1), False),
    (S, S): ((0, 0), False),
    (S, D): ((0, -1), False),
    (D, L): ((10, -1), True),
    (D, S): ((-1, 0), False),
    (D, D): ((-1, -1), False),
}


def _step(env, positions, actions):
    state = jnp.asarray(positions, jnp.int32)
    return env.step_env(jax.random.PRNGKey(0), state, jnp.asarray(actions, jnp.int32))


def test_er21_every_joint_action_from_the_start_by_hand():
    env = EscapeRoom(PRESETS["er2-1"])
    for actions, (rewards, ends) in ER21_FROM_START.items():
        obs, nxt, r, terminated, measures = _step(env, (S, S), actions)
        np.testing.assert_array_equal(np.asarray(r), rewards, err_msg=str(actions))
        assert bool(terminated) == ends, actions
        np.testing.assert_array_equal(np.asarray(nxt), actions)
        np.testing.assert_array_equal(measures["lever_pulls"], [a == L for a in actions])


def test_er21_staying_is_free_and_an_open_door_pays_who_stays_at_it():
    env = EscapeRoom(PRESETS["er2-1"])
    _, _, r, term, _ = _step(env, (L, D), (L, D))  # both stay: the door opens, 10 at it
    np.testing.assert_array_equal(np.asarray(r), (0, 10))
    assert bool(term)
    _, _, r, term, _ = _step(env, (S, D), (S, D))  # the door stays shut: staying is free
    np.testing.assert_array_equal(np.asarray(r), (0, 0))
    assert not bool(term)
    _, _, r, term, _ = _step(env, (D, D), (L, L))  # both leave the door for the lever
    np.testing.assert_array_equal(np.asarray(r), (-1, -1))
    assert not bool(term)  # the door is open, but nobody is at it


def _er32_by_hand(positions, actions):
    at_lever = sum(1 for a in actions if a == L)
    door_open = at_lever >= 2
    rewards = []
    for p, a in zip(positions, actions, strict=True):
        if door_open and a == D:
            rewards.append(10.0)
        elif a == p:
            rewards.append(0.0)
        else:
            rewards.append(-1.0)
    return rewards, door_open and D in actions


def test_er32_every_joint_action_from_every_state():
    env = EscapeRoom(PRESETS["er3-2"])
    for positions in itertools.product((L, S, D), repeat=3):
        for actions in itertools.product((L, S, D), repeat=3):
            _, nxt, r, terminated, _ = _step(env, positions, actions)
            rewards, ends = _er32_by_hand(positions, actions)
            np.testing.assert_array_equal(np.asarray(r), rewards)
            assert bool(terminated) == ends
    # one at the lever does not open ER(3,2)'s door
    _, _, r, term, _ = _step(env, (S, S, S), (L, D, D))
    np.testing.assert_array_equal(np.asarray(r), (-1, -1, -1))
    assert not bool(term)


def test_time_limit_truncates_after_five_steps_and_resets_to_the_start():
    env = EscapeRoom(PRESETS["er2-1"])
    obs, state = env.reset(jax.random.PRNGKey(0))
    for t in range(5):
        obs, state, r, term, trunc, info = env.step(jax.random.PRNGKey(t), state, jnp.array([S, S]))
        assert not bool(term)
        assert bool(trunc) == (t == 4)
    np.testing.assert_array_equal(np.asarray(state.inner), (S, S))
    assert int(state.t) == 0


def test_observations_own_position_first_then_others_then_index():
    env = EscapeRoom(PRESETS["er3-2"])
    obs = np.asarray(env.observe(jnp.array([L, S, D])))
    # agent 1: itself at the start, then agent 0 at the lever, agent 2 at the door, index 1
    np.testing.assert_array_equal(obs[1], [0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0])
    np.testing.assert_array_equal(obs[2], [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1])
    plain = EscapeRoom(PRESETS["er3-2"], observe_index=False)
    assert plain.observation_shape == (9,)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_exported_tables_match_env_steps(name):
    env = EscapeRoom(PRESETS[name])
    game = export_escape_room(PRESETS[name])
    n = env.num_agents
    profiles = list(itertools.product(range(3), repeat=n))
    dense = game.transitions.toarray().reshape(game.num_states, game.num_joint, game.num_states)
    for s, positions in enumerate(profiles):
        for j, actions in enumerate(profiles):
            _, nxt, r, terminated, _ = _step(env, positions, actions)
            np.testing.assert_allclose(game.rewards[s, j], np.asarray(r))
            if bool(terminated):
                assert dense[s, j].sum() == 0
            else:
                assert dense[s, j, profiles.index(tuple(np.asarray(nxt)))] == 1.0


@pytest.mark.parametrize(
    ("n", "m", "welfare", "payments"),
    [(2, 1, 9.0, 1.0), (3, 2, 8.0, 2.0), (3, 1, 19.0, 1.0), (4, 2, 18.0, 2.0), (2, 2, 0.0, 0.0)],
)
def test_exact_solver_agrees_with_the_closed_forms(n, m, welfare, payments):
    config = EscapeRoomConfig(num_agents=n, min_at_lever=m)
    game = export_escape_room(config)
    assert team_optimum(game).value == pytest.approx(welfare)
    summary = plan_summary(game, principal_optimum(game, 0.0))
    assert summary["welfare"] == pytest.approx(welfare)
    assert summary["payments"] == pytest.approx(payments)
    assert config.optimum_welfare == welfare and config.min_pay_payments == payments


def test_min_pay_contract_pays_the_lever_agent_its_move_and_the_door_agent_nothing():
    game = export_escape_room(PRESETS["er2-1"])
    solution = principal_optimum(game, 0.0)
    start = int(np.flatnonzero(game.initial)[0])
    joint = int(solution.plan[0, start])
    actions = game.joint_actions[joint]
    assert sorted(actions.tolist()) == [L, D]
    contracts = solution.contracts[0, start]
    lever = int(np.flatnonzero(actions == L)[0])
    np.testing.assert_allclose(contracts[lever], 1.0)
    np.testing.assert_allclose(contracts[1 - lever], 0.0)
    # the lever agent's own Q, the other following: staying (0) beats pulling (-1)
    q = selfish_q(game, solution.plan).q[0, start, lever]
    assert q[S] == pytest.approx(0.0) and q[L] == pytest.approx(-1.0)


def test_an_expensive_lever_makes_staying_optimal():
    config = EscapeRoomConfig(num_agents=2, min_at_lever=1, door_reward=0.5)
    assert team_optimum(export_escape_room(config)).value == pytest.approx(0.0)
    assert config.optimum_welfare == 0.0


def test_exact_references_report_the_closed_form_and_the_solver():
    refs = EscapeRoom(PRESETS["er3-2"]).exact_references()
    assert refs["team_welfare"] == pytest.approx(refs["closed_form"]["team_welfare"]) == 8.0
    assert refs["payments"] == pytest.approx(2.0)
    assert refs["payment_share"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"num_agents": 1}, "num_agents"),
        ({"min_at_lever": 3}, "min_at_lever"),
        ({"horizon": 0}, "horizon"),
        ({"door_reward": float("nan")}, "door_reward"),
        ({"observe_index": 1}, "observe_index"),
        ({"move_cost": -1.0}, "move_cost"),  # the closed forms assume moving costs
    ],
)
def test_bad_fields_are_named(flags, field):
    with pytest.raises(ValueError, match=field):
        EscapeRoom(**flags)


def test_registry_presets_and_protocol():
    env = make("escape_room", preset="er3-2")
    assert (env.num_agents, env.num_actions, env.max_steps) == (3, 3, 5)
    validate_env(env)
    with pytest.raises(EnvUnusableError, match="unknown preset"):
        make("escape_room", preset="er9-9")
    with pytest.raises(EnvUnusableError, match="min_at_lever"):
        make("escape_room", min_at_lever=0)


def test_jit_and_vmap_match_a_python_loop():
    env = EscapeRoom(PRESETS["er3-2"])
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    actions = jax.random.randint(jax.random.PRNGKey(4), (6, 4, 3), 0, 3)
    _, states = jax.vmap(env.reset)(keys)
    step = jax.jit(jax.vmap(env.step))
    for t in range(6):
        _, new_states, r, term, trunc, _ = step(keys, states, actions[t])
        for e in range(4):
            one = jax.tree_util.tree_map(lambda x, e=e: x[e], states)
            _, s1, r1, te1, tr1, _ = env.step(keys[e], one, actions[t, e])
            np.testing.assert_array_equal(np.asarray(r[e]), np.asarray(r1))
            assert bool(term[e]) == bool(te1) and bool(trunc[e]) == bool(tr1)
            np.testing.assert_array_equal(np.asarray(new_states.inner[e]), np.asarray(s1.inner))
        states = new_states


def test_pettingzoo_facade_passes_the_api_and_seed_tests():
    from contractrl.envs.parallel import aec_env, parallel_env

    parallel_api_test(parallel_env("escape_room", preset="er3-2"), num_cycles=30)
    parallel_seed_test(lambda: parallel_env("escape_room", preset="er2-1"))
    api_test(aec_env("escape_room"), num_cycles=30)
    par = parallel_env("escape_room", render_mode="rgb_array")
    par.reset(seed=0)
    obs, rewards, terms, truncs, infos = par.step({"agent_0": L, "agent_1": D})
    assert rewards == {"agent_0": -1.0, "agent_1": 10.0}
    assert all(terms.values()) and par.agents == []
    assert infos["agent_0"] == {"lever_pulls": 1.0, "escapes": 0.0}
    image = par.render()  # the reached state, not the next episode's start
    assert image.shape == (96, 144, 3) and image.dtype == np.uint8
    lever_row = image[8:40, 8:40]  # agent 0's square at the lever
    assert (lever_row != (200, 200, 200)).any()


def test_large_rooms_are_not_exported_and_report_the_closed_form():
    with pytest.raises(ValueError, match="num_agents"):
        export_escape_room(EscapeRoomConfig(num_agents=7, min_at_lever=2))
    refs = EscapeRoom(num_agents=8, min_at_lever=2).exact_references()
    assert refs["team_welfare"] == 10 * 6 - 2 and refs["payments"] == 2
    assert "closed form" in refs["source"]


def test_the_facade_refuses_an_action_outside_the_space():
    from contractrl.envs.parallel import parallel_env

    par = parallel_env("escape_room")
    par.reset(seed=0)
    with pytest.raises(ValueError, match="agent_0"):
        par.step({"agent_0": 7, "agent_1": 0})
