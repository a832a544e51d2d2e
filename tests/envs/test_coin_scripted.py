"""Scripted Coin Game policies: which rule sets pose a social dilemma."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.envs import coin_game
from contractrl.envs.coin_game import MOVES, PRESETS, CoinState
from contractrl.envs.coin_scripted import scripted_actions, scripted_welfare, shortest_move


def torus_distance(a, b, g):
    d = np.abs(np.asarray(a) - np.asarray(b)) % g
    return int(np.minimum(d, g - d).sum())


@pytest.mark.parametrize("g", [3, 4, 7])
def test_shortest_move_shortens_the_torus_distance(g):
    cells = [(r, c) for r in range(g) for c in range(g)]
    for p in cells:
        for t in cells:
            if p == t:
                continue
            a = int(shortest_move(jnp.asarray(p), jnp.asarray(t), g))
            nxt = ((p[0] + MOVES[a][0]) % g, (p[1] + MOVES[a][1]) % g)
            assert torus_distance(nxt, t, g) == torus_distance(p, t, g) - 1


def test_owner_only_non_owners_never_step_on_the_coin():
    cfg = PRESETS["paper-3x3"]
    key = jax.random.PRNGKey(3)
    _, state = coin_game.reset(cfg, key)

    def body(st, k):
        _, st, info = coin_game.step(cfg, st, scripted_actions(cfg, st, "owner_only"), k)
        return st, (info.collected.sum(), info.own_coin.sum())

    _, (collected, own) = jax.jit(lambda s, ks: jax.lax.scan(body, s, ks))(
        state, jax.random.split(key, 200)
    )
    # every coin collected is collected by its owner alone, and coins do get collected
    assert np.array_equal(np.asarray(collected), np.asarray(own))
    assert np.asarray(collected).max() <= 1.0 and np.asarray(collected).sum() > 50


def test_all_collect_removes_the_dilemma_and_random_one_restores_it():
    base = PRESETS["paper-3x3"]
    shared = dataclasses.replace(base, tie_rule="all_collect")
    single = dataclasses.replace(base, tie_rule="random_one")
    chase_shared = scripted_welfare(shared, "chase", 400)
    chase_single = scripted_welfare(single, "chase", 400)
    owner_shared = scripted_welfare(shared, "owner_only", 400)
    owner_single = scripted_welfare(single, "owner_only", 400)
    # without ties the tie rule is irrelevant: identical episodes, identical welfare
    assert owner_shared.mean == owner_single.mean
    # chasing together: both collect every coin (+1.2), more than owner-only play
    assert chase_shared.mean > owner_shared.mean + 10 * chase_shared.standard_error
    # one collector per tie: chasing wastes most coins on +0.2 — a real dilemma
    assert chase_single.mean < owner_single.mean - 10 * chase_single.standard_error


def test_scripted_welfare_is_seeded_and_checks_its_input():
    cfg = PRESETS["paper-3x3"]
    assert scripted_welfare(cfg, "chase", 50, seed=1) == scripted_welfare(cfg, "chase", 50, seed=1)
    with pytest.raises(ValueError, match="policy"):
        scripted_welfare(cfg, "tit_for_tat")
    with pytest.raises(ValueError, match="episodes"):
        scripted_welfare(cfg, "chase", 0)


def test_chase_from_one_cell_collects_every_coin_together():
    # both agents on one cell: they move identically and, under all_collect, share every coin
    # (+1 and +0.2); under random_one (the default) only one of them collects
    cfg = dataclasses.replace(PRESETS["paper-3x3"], distinct_starts=False, tie_rule="all_collect")
    state = start = CoinState(
        positions=jnp.asarray([[1, 1], [1, 1]], jnp.int32),
        coin=jnp.asarray([0, 1], jnp.int32),
        colour=jnp.asarray(0, jnp.int32),
        t=jnp.asarray(0, jnp.int32),
    )
    _, state, info = coin_game.step(
        cfg, state, scripted_actions(cfg, state, "chase"), jax.random.PRNGKey(0)
    )
    np.testing.assert_allclose(np.asarray(info.rewards), [1.0, 0.2], rtol=1e-6)
    assert np.array_equal(np.asarray(state.positions[0]), np.asarray(state.positions[1]))
    single = dataclasses.replace(cfg, tie_rule="random_one")
    _, _, info = coin_game.step(
        single, start, scripted_actions(single, start, "chase"), jax.random.PRNGKey(0)
    )
    assert sorted(np.round(np.asarray(info.rewards, np.float64), 6).tolist()) in (
        [0.0, 0.2],
        [0.0, 1.0],
    )
