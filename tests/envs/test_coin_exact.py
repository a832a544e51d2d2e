"""The exported Coin Game tables against rollouts of the JAX environment (envs/coin_exact.py).

Every (state, joint action) row is stepped with independent keys: every sampled next state
must have positive probability in the table, the counts must fit the table's distribution
(a chi-square test aggregated over all rows), rewards must equal the table where no tie is
drawn and average to it where one is. The reset distribution is checked the same way, and the
team optimum's welfare against Monte Carlo episodes of its plan in the env.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.core.markov_eval import evaluate_profile, follow_policy
from contractrl.core.markov_solver import selfish_q, team_optimum
from contractrl.envs import coin_game
from contractrl.envs.coin_exact import export_coin_game

PAPER = coin_game.CoinGameConfig(grid_size=3, horizon=20)
VARIANTS = {
    "paper-3x3": PAPER,
    "other-rules": dataclasses.replace(
        PAPER,
        tie_rule="all_collect",
        colour_rule="random",
        spawn_rule="anywhere",
        other_reward=1.0,
        owner_penalty=-2.0,
    ),
    "classic-random-one-2x2": coin_game.CoinGameConfig(
        grid_size=2, horizon=5, other_reward=1.0, owner_penalty=-2.0, num_actions=5
    ),
}
#: Samples per (state, joint action) row.
SAMPLES = 24
#: Largest |z| of the aggregated tests (normal approximations; a false alarm ~1e-6).
Z_MAX = 5.0


def _chi_square_z(counts: dict, probs, num_samples) -> float:
    """z-score of Pearson's statistic over all rows (``counts[(row, col)]``, ``probs`` CSR)."""
    stat, dof = 0.0, 0
    for row in range(probs.shape[0]):
        lo, hi = probs.indptr[row], probs.indptr[row + 1]
        if hi - lo < 2:
            continue
        expected = num_samples * probs.data[lo:hi]
        seen = np.array([counts.get((row, int(c)), 0) for c in probs.indices[lo:hi]])
        stat += float(((seen - expected) ** 2 / expected).sum())
        dof += hi - lo - 1
    return (stat - dof) / np.sqrt(2 * dof) if dof else 0.0


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def sampled(request):
    tables = export_coin_game(VARIANTS[request.param])
    game = tables.game
    rows = np.arange(game.num_states * game.num_joint)
    s_idx, j_idx = np.divmod(rows, game.num_joint)
    state = coin_game.CoinState(
        positions=jnp.asarray(tables.positions[s_idx], jnp.int32),
        coin=jnp.asarray(tables.coin[s_idx], jnp.int32),
        colour=jnp.asarray(tables.colour[s_idx], jnp.int32),
        t=jnp.zeros(len(rows), jnp.int32),
    )
    actions = jnp.asarray(game.joint_actions[j_idx], jnp.int32)
    step = jax.jit(lambda keys: coin_game.step_batch(tables.config, state, actions, keys)[2])
    key = jax.random.PRNGKey(request.param.__len__())
    next_states, rewards = [], []
    for k in jax.random.split(key, SAMPLES):
        info = step(jax.random.split(k, len(rows)))
        final = info.final_state
        next_states.append(tables.index(final.positions, final.coin, final.colour))
        rewards.append(np.asarray(info.rewards, np.float64))
    return tables, rows, np.stack(next_states), np.stack(rewards)  # [M, R], [M, R, n]


def test_state_space_is_every_cell_coin_and_colour():
    tables = export_coin_game(PAPER)
    assert tables.game.num_states == 9 * 9 * 9 * 2 == 1458
    assert tables.game.num_joint == 16 and tables.game.horizon == 20
    s = np.arange(tables.game.num_states)
    assert np.array_equal(tables.index(tables.positions, tables.coin, tables.colour), s)


def test_transitions_match_env_steps(sampled):
    tables, rows, next_states, _ = sampled
    probs = tables.game.transitions
    # every sampled successor is possible under the table
    assert np.all(probs[np.tile(rows, SAMPLES), next_states.ravel()] > 0)
    counts = {}
    for row, col in zip(np.tile(rows, SAMPLES), next_states.ravel(), strict=True):
        counts[row, int(col)] = counts.get((row, int(col)), 0) + 1
    assert abs(_chi_square_z(counts, probs, SAMPLES)) < Z_MAX


def test_rewards_match_env_steps(sampled):
    tables, rows, _, rewards = sampled
    expected = tables.game.rewards.reshape(-1, tables.config.num_agents)[rows]  # [R, n]
    drawn = np.ptp(rewards, axis=0).max(axis=1) > 1e-6  # rows where the tie draw mattered
    np.testing.assert_allclose(
        rewards[:, ~drawn], np.broadcast_to(expected[~drawn], rewards[:, ~drawn].shape), atol=1e-6
    )
    if tables.config.tie_rule == "all_collect":
        assert not drawn.any()
        return
    assert drawn.any()
    error = rewards[:, drawn] - expected[drawn]  # [M, R', n], mean zero if the table is right
    z = error.sum(axis=(0, 1)) / np.sqrt((error**2).sum(axis=(0, 1)))
    assert np.all(np.abs(z) < Z_MAX)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_initial_distribution_matches_env_resets(name):
    tables = export_coin_game(VARIANTS[name])
    episodes = 60_000
    _, states = coin_game.reset_batch(
        tables.config, jax.random.split(jax.random.PRNGKey(1), episodes)
    )
    idx = tables.index(states.positions, states.coin, states.colour)
    initial = tables.game.initial
    assert np.all(initial[idx] > 0)
    support = np.flatnonzero(initial > 0)
    counts = np.bincount(idx, minlength=len(initial))[support]
    expected = episodes * initial[support]
    stat, dof = float(((counts - expected) ** 2 / expected).sum()), len(support) - 1
    assert abs((stat - dof) / np.sqrt(2 * dof)) < Z_MAX


def test_team_plan_welfare_matches_env_episodes():
    """The exact team plan played in the env for whole episodes: the mean welfare per episode
    agrees with the exact per-episode welfare (expected over ties and spawns)."""
    tables = export_coin_game(PAPER)
    game = tables.game
    team = team_optimum(game)
    contracts = selfish_q(game, team.plan).contracts
    follow = [follow_policy(game, team.plan, i) for i in range(2)]
    exact = evaluate_profile(game, team.plan, contracts, follow)
    episodes = 4000
    key = jax.random.PRNGKey(7)
    _, state = coin_game.reset_batch(tables.config, jax.random.split(key, episodes))
    step = jax.jit(lambda s, a, k: coin_game.step_batch(tables.config, s, a, k))
    totals = np.zeros((episodes, 2))
    for t in range(game.horizon):
        s = tables.index(state.positions, state.coin, state.colour)
        actions = jnp.asarray(game.joint_actions[team.plan[t, s]], jnp.int32)
        key, sub = jax.random.split(key)
        _, state, info = step(state, actions, jax.random.split(sub, episodes))
        totals += np.asarray(info.rewards)
    welfare = totals.sum(axis=1)
    se = welfare.std() / np.sqrt(episodes)
    assert abs(welfare.mean() - exact.welfare) < Z_MAX * se
    per_agent_se = totals.std(axis=0) / np.sqrt(episodes)
    assert np.all(np.abs(totals.mean(axis=0) - exact.rewards) < Z_MAX * per_agent_se)
