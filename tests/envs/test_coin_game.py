"""The batched Coin Game against a plain-Python reference of the rules, and PettingZoo's checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from contractrl.envs import coin_game
from contractrl.envs.coin_game import PRESETS, CoinGameConfig
from contractrl.envs.coin_game_pz import parallel_env

MOVES = [(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)]


def reference_step(cfg, positions, coin, colour, actions, rng):
    """Plain-Python rules: returns (positions, collectors, rewards)."""
    g, n = cfg.grid_size, cfg.num_agents
    new = [
        ((r + MOVES[a][0]) % g, (c + MOVES[a][1]) % g)
        for (r, c), a in zip(positions, actions, strict=True)
    ]
    on = [p == tuple(coin) for p in new]
    if cfg.tie_rule == "random_one" and any(on):
        chosen = [i for i in range(n) if on[i]]
        keep = chosen[rng.integers(len(chosen))]
        on = [i == keep for i in range(n)]
    rewards = [0.0] * n
    for i in range(n):
        if on[i]:
            if i == colour:
                rewards[i] += cfg.own_reward
            else:
                rewards[i] += cfg.other_reward
                rewards[colour] += cfg.owner_penalty
    return new, on, rewards


def reference_obs(cfg, positions, coin, colour):
    g, n = cfg.grid_size, cfg.num_agents
    out = np.zeros((n, g, g, 4), np.float32)
    c = g // 2
    for i, (r0, c0) in enumerate(positions):

        def place(ch, pos, out=out, i=i, r0=r0, c0=c0):
            out[i, (pos[0] - r0 + c) % g, (pos[1] - c0 + c) % g, ch] += 1

        place(0, positions[i])
        for j in range(n):
            if j != i:
                place(1, positions[j])
        place(2 if colour == i else 3, coin)
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        PRESETS["paper-3x3"],
        PRESETS["paper-7x7"],
        PRESETS["classic"],
        CoinGameConfig(
            grid_size=4,
            horizon=15,
            num_agents=3,
            num_actions=5,
            colour_rule="random",
            tie_rule="random_one",
        ),
        CoinGameConfig(grid_size=2, horizon=10, spawn_rule="anywhere", distinct_starts=False),
    ],
)
def test_batched_env_matches_reference_rules(cfg):
    """Random rollouts: moves, collection, rewards, colours, spawns and observations."""
    num_envs, steps = 16, 3 * cfg.horizon
    key = jax.random.PRNGKey(0)
    obs, state = coin_game.reset_batch(cfg, jax.random.split(key, num_envs))
    step = jax.jit(lambda s, a, k: coin_game.step_batch(cfg, s, a, k))
    rng = np.random.default_rng(0)
    collected_any = False
    for _ in range(steps):
        pos = np.asarray(state.positions)
        coin, colour, tt = np.asarray(state.coin), np.asarray(state.colour), np.asarray(state.t)
        for e in range(num_envs):
            assert np.array_equal(
                np.asarray(obs[e]),
                reference_obs(cfg, [tuple(p) for p in pos[e]], coin[e], colour[e]),
            )
            if cfg.distinct_starts and tt[e] == 0:
                assert len({tuple(p) for p in pos[e]}) == cfg.num_agents
        actions = rng.integers(0, cfg.num_actions, size=(num_envs, cfg.num_agents))
        key, sub = jax.random.split(key)
        obs, new_state, info = step(
            state, jnp.asarray(actions, jnp.int32), jax.random.split(sub, num_envs)
        )
        new_pos, new_coin = np.asarray(new_state.positions), np.asarray(new_state.coin)
        for e in range(num_envs):
            ref_pos, on, rewards = reference_step(
                cfg, [tuple(p) for p in pos[e]], coin[e], int(colour[e]), actions[e], rng
            )
            done = bool(info.done[e])
            assert done == (tt[e] + 1 >= cfg.horizon)
            if cfg.tie_rule == "random_one" and sum(on) >= 1:
                # which of the tied agents collects is random: exactly one of the agents that
                # stand on the coin did, with that collector's rewards
                got = np.asarray(info.collected[e]).astype(bool)
                standing = [tuple(p) == tuple(coin[e]) for p in ref_pos]
                assert got.sum() == 1
                k = int(np.argmax(got))
                assert standing[k]
                expected = [0.0] * cfg.num_agents
                if k == int(colour[e]):
                    expected[k] = cfg.own_reward
                else:
                    expected[k] = cfg.other_reward
                    expected[int(colour[e])] += cfg.owner_penalty
                assert np.allclose(np.asarray(info.rewards[e]), expected)
            else:
                assert np.asarray(info.collected[e]).astype(bool).tolist() == on
                assert np.allclose(np.asarray(info.rewards[e]), rewards)
            if done:
                continue
            assert [tuple(p) for p in new_pos[e]] == ref_pos
            if any(on):
                collected_any = True
                if cfg.colour_rule == "alternate":
                    assert new_state.colour[e] == (colour[e] + 1) % cfg.num_agents
                if cfg.spawn_rule == "avoid_agents":
                    assert tuple(new_coin[e]) not in ref_pos
            else:
                assert tuple(new_coin[e]) == tuple(coin[e])
                assert new_state.colour[e] == colour[e]
        state = new_state
    assert collected_any


def test_own_and_other_rewards_and_tie():
    cfg = PRESETS["paper-3x3"]
    state = coin_game.CoinState(
        positions=jnp.array([[0, 0], [1, 1]]),
        coin=jnp.array([0, 1]),
        colour=jnp.array(1),
        t=jnp.array(0),
    )
    # agent 0 moves right onto the coin (agent 1's colour): +0.2, no penalty for agent 1
    _, _, info = coin_game.step(cfg, state, jnp.array([3, 1]), jax.random.PRNGKey(0))
    assert np.allclose(np.asarray(info.rewards), [0.2, 0.0])
    # both reach the coin at once (agent 1 moves up): under random_one (the default) one of
    # them, at random, collects; under all_collect both do
    winners = set()
    for seed in range(20):
        _, _, info = coin_game.step(cfg, state, jnp.array([3, 0]), jax.random.PRNGKey(seed))
        rewards = tuple(float(x) for x in np.round(np.asarray(info.rewards, np.float64), 6))
        assert rewards in {(0.2, 0.0), (0.0, 1.0)}
        winners.add(rewards)
    assert len(winners) == 2
    both = dataclasses.replace(cfg, tie_rule="all_collect")
    _, _, info = coin_game.step(both, state, jnp.array([3, 0]), jax.random.PRNGKey(0))
    assert np.allclose(np.asarray(info.rewards), [0.2, 1.0])
    classic = PRESETS["classic"]  # +1 for any coin, -2 to the owner when another takes it
    _, _, info = coin_game.step(classic, state, jnp.array([3, 1]), jax.random.PRNGKey(0))
    assert np.allclose(np.asarray(info.rewards), [1.0, -2.0])


@pytest.mark.parametrize(
    "flags", [dict(), dict(grid_size=3, horizon=20), dict(num_agents=3, num_actions=5, grid_size=5)]
)
def test_pettingzoo_checkers(flags):
    parallel_api_test(parallel_env(**flags), num_cycles=60)
    parallel_seed_test(lambda: parallel_env(**flags))


def test_time_limit_is_a_truncation():
    """The horizon ends an episode by truncation; the game has no terminal state."""
    cfg = PRESETS["paper-3x3"]
    assert cfg.tie_rule == "random_one"
    _, state = coin_game.reset(cfg, jax.random.PRNGKey(0))
    for t in range(cfg.horizon):
        _, state, info = coin_game.step(cfg, state, jnp.array([0, 1]), jax.random.PRNGKey(t))
        assert not bool(info.terminated)
        assert bool(info.truncated) == bool(info.done) == (t == cfg.horizon - 1)
    env = parallel_env(grid_size=3, horizon=4)
    env.reset(seed=0)
    for t in range(4):
        *_, terminations, truncations, _ = env.step({a: 0 for a in env.agents})
        assert not any(terminations.values())
        assert all(truncations.values()) == (t == 3)


def test_default_parallel_env_is_the_paper_7x7():
    env = parallel_env()
    assert env.config == PRESETS["paper-7x7"]
    obs, _ = env.reset(seed=3)
    assert obs["agent_0"].shape == (7, 7, 4) and obs["agent_0"][3, 3, 0] == 1


@pytest.mark.parametrize(
    "field,value", [("grid_size", 1), ("num_actions", 3), ("colour_rule", "x"), ("num_agents", 1)]
)
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        CoinGameConfig(**{field: value}).validate()


def test_pettingzoo_state_aec_and_render():
    from pettingzoo.test import api_test, parallel_seed_test, render_test

    from contractrl.envs.coin_game_pz import env

    api_test(env(grid_size=3, horizon=10), num_cycles=30)
    render_test(lambda render_mode=None: env(grid_size=3, horizon=10, render_mode=render_mode))
    parallel_seed_test(lambda: parallel_env(grid_size=3, horizon=10, render_mode="ansi"))
    par = parallel_env(grid_size=3, horizon=10, render_mode="ansi")
    par.reset(seed=4)
    state = par.state()
    assert state.shape == (3, 3, 3) and par.state_space.contains(state)
    pos = np.asarray(par._state.positions)
    assert state[pos[0, 0], pos[0, 1], 0] == 1 and state[..., 0].sum() == 1
    coin = np.asarray(par._state.coin)
    assert state[coin[0], coin[1], 2] == 1 + int(par._state.colour)
    text = par.render().splitlines()
    assert len(text) == 3 and f"c{int(par._state.colour)}" in text[coin[0]]
    image = parallel_env(grid_size=3, render_mode="rgb_array")
    image.reset(seed=0)
    assert image.render().shape == (96, 96, 3)


def test_state_and_render_after_the_last_step_show_the_final_state():
    par = parallel_env(grid_size=3, horizon=3, render_mode="ansi")
    par.reset(seed=2)
    for _ in range(2):
        par.step({a: 0 for a in par.agents})
    before = par.state()
    par.step({a: 1 for a in par.agents})  # the last step: the episode ends
    final = par.state()
    assert not par.agents
    # each agent moved down one row (on the torus) from where it stood before the last step
    moved = np.roll(before[..., :2], 1, axis=0)
    assert np.array_equal(final[..., :2], moved)
