"""Algorithm 3 and the Coin Game agents: formulas on hand-made batches, metrics on scripted
policies, exactness of the fast paths, determinism."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.envs import coin_game
from contractrl.envs.coin_game import PRESETS, CoinGame, CoinGameConfig
from contractrl.experiments.coin import calibrated_share, initial_share
from contractrl.multiagent.agents import AgentsLearner
from contractrl.multiagent.algorithm3 import (
    PrincipalLearner,
    follower_contracts,
    principal_cost_terms,
    vdn_targets,
)
from contractrl.multiagent.common import DQNConfig, others
from contractrl.multiagent.evaluation import mix, ratio, summarise
from contractrl.multiagent.evaluation import rollout as protocol_rollout
from contractrl.multiagent.networks import (
    apply_conv_q,
    conv_features,
    init_conv_q,
    patch_indices,
    resolve_padding,
    response_table,
    sparse_conv_features,
    window_counts,
)
from contractrl.multiagent.torso import make_encoder

SMALL = DQNConfig(
    iterations=300, replay_capacity=1000, hidden=(16, 16), conv_channels=8, learning_starts=50
)


def _dense_obs(game, states):
    """The env's own dense observations ``[B, n, G, G, 4]`` of stored states (the reference)."""
    return jax.vmap(lambda s: coin_game.observe(game, s))(states)


def _dense_q(learner, net, obs, extra=None):
    """Q-values from the dense conv network on dense observations (the reference path)."""
    padding = learner.encoder.padding
    return apply_conv_q(net, obs, patch_indices(learner.env.config.grid_size, padding), extra)


def rollout(game, policy, key, episodes):
    """The protocol rollout in the Coin Game with the sparse encoder."""
    env = CoinGame(game)
    encoder = make_encoder(env, "auto", 8, (16, 16))
    return protocol_rollout(env, encoder, policy, key, episodes)


def test_contract_formula():
    """b_i = max_a Q_i((s, f_-i = 1), a) - Q_i((s, f_-i = 1), a_i) + nudge (Section 5.1)."""
    q = jnp.array([[1.0, 3.0, 2.0, 0.0], [0.0, 0.0, 5.0, 1.0]])
    b = follower_contracts(q, jnp.array([0, 2]), 0.1)
    assert np.allclose(np.asarray(b), [2.1, 0.1])


def test_vdn_targets_on_a_hand_made_batch():
    rewards = jnp.array([[1.0, 0.2], [0.0, 1.0]])
    payments = jnp.array([[0.5, 2.0], [1.0, 1.0]])
    follow = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    next_q = jnp.array([[3.0, 4.0], [10.0, 20.0]])
    terminal = jnp.array([0.0, 1.0])
    # charge_all: the non-follower (row 0, agent 1) pays its contract 2.0 too
    charged, mask = principal_cost_terms(payments, follow, "charge_all")
    y, total = vdn_targets(rewards, charged, next_q, terminal, 0.1, 0.9, mask)
    expected = np.array([[1 - 0.05 + 2.7, 0.2 - 0.2 + 3.6], [0 - 0.1, 1 - 0.1]])
    assert np.allclose(np.asarray(y), expected)
    assert np.allclose(np.asarray(total), expected.sum(axis=1))
    # unpaid_deviations (the former target): the non-follower's action is free
    charged, mask = principal_cost_terms(payments, follow, "unpaid_deviations")
    _, total = vdn_targets(rewards, charged, next_q, terminal, 0.1, 0.9, mask)
    assert np.allclose(np.asarray(total), [1 - 0.05 + 2.7 + 0.2 + 3.6, -0.1 + 0.9])
    # followers_only: the non-follower's term leaves the sum
    charged, mask = principal_cost_terms(payments, follow, "followers_only")
    _, total = vdn_targets(rewards, charged, next_q, terminal, 0.1, 0.9, mask)
    assert np.allclose(np.asarray(total), [1 - 0.05 + 2.7, -0.1 + 0.9])


def test_principal_loss_matches_an_independent_computation():
    """The VDN TD error from the learner equals Σ_i q(s_i, a_i) - Σ_i y_i computed by hand from
    the dense networks on the observations."""
    game = PRESETS["paper-3x3"]
    learner = PrincipalLearner(CoinGame(game), SMALL)
    state = learner.init(jax.random.PRNGKey(0))
    state, _ = learner.train_chunk(state, 0, 200)
    batch, _, weights = learner.sample(state.buffer, jax.random.PRNGKey(1), 0)
    _, (_, priority) = learner._losses(state.params, state.target, batch, weights)
    obs = _dense_obs(game, batch.obs)
    next_obs = _dense_obs(game, batch.next_obs)
    ones = jnp.ones((*batch.actions.shape, 1))
    q_follow = _dense_q(learner, state.params["agent"], obs, ones)
    pay = np.asarray(follower_contracts(q_follow, batch.actions, SMALL.nudge))
    next_qp = np.asarray(_dense_q(learner, state.target["principal"], next_obs)).max(-1)
    y = (
        np.asarray(batch.rewards)
        - SMALL.alpha * pay  # charge_all: every agent's action costs its contract
        + SMALL.gamma * (1 - np.asarray(batch.terminal))[:, None] * next_qp
    )
    qp = np.take_along_axis(
        np.asarray(_dense_q(learner, state.params["principal"], obs)),
        np.asarray(batch.actions)[..., None],
        -1,
    )[..., 0]
    delta_vdn = qp.sum(-1) - y.sum(-1)
    q_agent = np.take_along_axis(
        np.asarray(_dense_q(learner, state.params["agent"], obs, others(batch.follow))),
        np.asarray(batch.actions)[..., None],
        -1,
    )[..., 0]
    next_q = np.asarray(
        _dense_q(learner, state.target["agent"], next_obs, others(batch.follow))
    ).max(-1)
    y_agent = (
        np.asarray(batch.rewards) + SMALL.gamma * (1 - np.asarray(batch.terminal))[:, None] * next_q
    )
    expected_priority = np.abs(delta_vdn) + np.abs(q_agent - y_agent).mean(-1)
    assert np.allclose(np.asarray(priority), expected_priority, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "game", [PRESETS["paper-3x3"], PRESETS["paper-7x7"], CoinGameConfig(grid_size=5, num_agents=3)]
)
def test_sparse_observation_conv_equals_dense_conv(game):
    padding = resolve_padding(game.grid_size, "auto")
    _, states = coin_game.reset_batch(game, jax.random.split(jax.random.PRNGKey(0), 32))
    params = init_conv_q(jax.random.PRNGKey(1), game.grid_size, 4, 0, 4, padding, 8)
    dense = conv_features(params, _dense_obs(game, states), patch_indices(game.grid_size, padding))
    table = response_table(params, window_counts(game.grid_size, padding))
    sparse = sparse_conv_features(params, table, *coin_game.observation_ones(game, states))
    assert np.allclose(np.asarray(dense), np.asarray(sparse), atol=1e-6)


def test_valid_padding_wastes_no_positions():
    assert patch_indices(7, "valid").shape == (16, 16)  # 4x4 positions, 16 taps
    assert patch_indices(3, "circular").shape == (9, 16)


def test_initial_share_matches_the_amount():
    # top_up: p (n-1) W = T; 3 paid on welfare 12 -> p = 0.25 (2 agents), 0.125 (3 agents)
    assert initial_share(3.0, 12.0, 2, "top_up") == pytest.approx(0.25)
    assert initial_share(3.0, 12.0, 3, "top_up") == pytest.approx(0.125)
    # redistribute, one collector per step: p (1 - 1/n) W = T -> 0.5 (2 agents), 0.375 (3)
    assert initial_share(3.0, 12.0, 2, "redistribute") == pytest.approx(0.5)
    assert initial_share(3.0, 12.0, 3, "redistribute") == pytest.approx(0.375)
    assert initial_share(30.0, 12.0, 2, "redistribute") == 1.0  # capped
    assert initial_share(0.0, 12.0, 2, "top_up") == 0.0
    assert initial_share(1.0, 0.0, 2, "top_up") == 1.0  # nothing collected yet: start high
    with pytest.raises(ValueError, match="amount"):
        initial_share(float("nan"), 12.0, 2, "top_up")


@pytest.mark.parametrize("elasticity", [0.0, 0.5, -0.5])
def test_calibration_reaches_the_target_amount(elasticity):
    """Amounts that respond to p (agents' welfare changes with the share) still converge."""

    def amount(p):  # transfers = p * welfare(p), welfare rising or falling with p
        return p * 12.0 * (1 + elasticity * p)

    target, p = 3.0, 0.9
    for _ in range(12):
        p = calibrated_share(p, amount(p), target)
    assert amount(p) == pytest.approx(target, rel=0.02)
    assert calibrated_share(0.4, 0.0, 3.0) == 0.4  # nothing measured: no move
    assert calibrated_share(0.4, 2.0, 0.0) == 0.0


def _scheme_learner(scheme, n):
    game = CoinGameConfig(grid_size=3, horizon=5, num_agents=n)
    return AgentsLearner(CoinGame(game), SMALL, "constant", scheme)


def test_constant_schemes_by_hand():
    r2 = jnp.array([1.0, 0.0])
    # redistribute, n = 2, p = 0.5: (1 - p) r_i + p W / 2
    red = _scheme_learner("redistribute", 2)
    assert np.allclose(red.shaped(r2, 0.0, 0.5), [0.75, 0.25])
    assert np.allclose(red.transfers(r2, 0.0, 0.5), [0.0, 0.25])
    # top_up, n = 2, p = 0.5: r_i + p r_other
    top = _scheme_learner("top_up", 2)
    assert np.allclose(top.shaped(r2, 0.0, 0.5), [1.0, 0.5])
    assert np.allclose(top.transfers(r2, 0.0, 0.5), [0.0, 0.5])
    # n = 3, rewards (1, 0.2, 0), W = 1.2, p = 0.3
    r3 = jnp.array([1.0, 0.2, 0.0])
    red3, top3 = _scheme_learner("redistribute", 3), _scheme_learner("top_up", 3)
    assert np.allclose(red3.shaped(r3, 0.0, 0.3), [0.7 + 0.12, 0.14 + 0.12, 0.12])
    assert np.allclose(red3.transfers(r3, 0.0, 0.3), [0.0, 0.06, 0.12])  # W/n = 0.4
    assert np.allclose(top3.shaped(r3, 0.0, 0.3), [1.0 + 0.06, 0.2 + 0.3, 0.36])
    assert np.allclose(top3.transfers(r3, 0.0, 0.3), [0.06, 0.3, 0.36])
    # p = 0 is selfish and p = 1 cooperative (redistribute: each gets W / n) in both schemes
    assert np.allclose(red3.shaped(r3, 0.0, 0.0), r3) and np.allclose(top3.shaped(r3, 0, 0), r3)
    assert np.allclose(red3.shaped(r3, 0.0, 1.0), [0.4, 0.4, 0.4])
    assert np.allclose(top3.shaped(r3, 0.0, 1.0), [1.2, 1.2, 1.2])


def _scripted(recommend: int, play: int, pay: float):
    """Everyone is recommended ``recommend``, plays ``play``, and is paid ``pay`` per follow."""

    def policy(states, actions=None):
        shape = states.positions.shape[:-1]
        recs = jnp.full(shape, recommend, jnp.int32)
        chosen = jnp.full(shape, play, jnp.int32) if actions is None else actions
        return chosen, recs, pay * (chosen == recs)

    return policy


def test_metrics_on_scripted_agents():
    game = PRESETS["paper-3x3"]
    key = jax.random.PRNGKey(3)
    # always following: follow rate 1, payments = pay x steps x agents
    totals = rollout(game, _scripted(0, 0, 0.5), key, 16)
    m = summarise(totals)
    assert m.follow_rate == 1.0
    assert m.payments == pytest.approx(0.5 * game.horizon * 2)
    assert m.payment_share == pytest.approx(m.payments / m.welfare)
    # never following: no payments
    m2 = summarise(rollout(game, _scripted(0, 1, 0.5), key, 16))
    assert m2.follow_rate == 0.0 and m2.payments == 0.0
    # mixing: agent 0 plays its own action (1), agent 1 follows (0): half the steps followed
    mixed = summarise(rollout(game, mix(_scripted(0, 1, 0.5), np.array([1, 0])), key, 16))
    assert mixed.follow_rate == pytest.approx(0.5)
    assert mixed.agent_utility[1] >= 0.5 * game.horizon
    # an agent that deviates forfeits exactly its payments: recommended "down" (1), paid 0.3
    # per follow; agent 0 plays "up" (0) while agent 1 follows. Utility = rewards + payments.
    stay = _scripted(1, 0, 0.3)
    own = rollout(game, mix(stay, np.array([1, 0])), key, 8)
    fol = rollout(game, mix(stay, np.array([0, 0])), key, 8)
    assert np.allclose(np.asarray(own.payments)[:, 0], 0.0)
    assert np.allclose(np.asarray(own.payments)[:, 1], 0.3 * game.horizon)
    assert np.allclose(np.asarray(fol.payments), 0.3 * game.horizon)
    u_own = summarise(own).agent_utility
    u_fol = summarise(fol).agent_utility
    rewards_own = float(np.asarray(own.rewards)[:, 0].mean())
    rewards_fol = float(np.asarray(fol.rewards)[:, 0].mean())
    assert u_own[0] == pytest.approx(rewards_own)
    assert u_fol[0] == pytest.approx(rewards_fol + 0.3 * game.horizon)
    if u_fol[0] > 0:
        assert ratio(u_own[0], u_fol[0]) == pytest.approx(rewards_own / u_fol[0])


def test_welfare_matches_a_plain_loop():
    """Rollout totals equal a step-by-step loop over the same environment and keys."""
    game = PRESETS["paper-3x3"]
    policy = _scripted(3, 3, 0.0)
    key = jax.random.PRNGKey(5)
    totals = rollout(game, policy, key, 4)
    k_reset, k_steps = jax.random.split(key)
    _, states = coin_game.reset_batch(game, jax.random.split(k_reset, 4))
    rewards = np.zeros((4, 2))
    for step_key in jax.random.split(k_steps, game.horizon):
        actions, _, _ = policy(states)
        _, states, info = coin_game.step_batch(game, states, actions, jax.random.split(step_key, 4))
        rewards += np.asarray(info.rewards)
    assert np.allclose(np.asarray(totals.rewards), rewards)


def test_training_is_deterministic():
    game = PRESETS["paper-3x3"]
    learner = PrincipalLearner(CoinGame(game), SMALL)
    runs = []
    for _ in range(2):
        state = learner.init(jax.random.PRNGKey(7))
        state, stats = learner.train_chunk(state, 0, 250)
        runs.append(np.asarray(stats.agent_loss))
    assert np.array_equal(runs[0], runs[1]) and runs[0][-1] > 0


@pytest.mark.parametrize("grid,agents", [(3, 2), (2, 3)])
def test_distinct_observation_table_equals_direct_evaluation(grid, agents):
    """The first layer looked up per distinct observation equals evaluating it per sample."""
    from contractrl.envs.coin_game import distinct_observations
    from contractrl.multiagent.networks import first_layer, response_table, sparse_conv_features

    game = CoinGameConfig(grid_size=grid, horizon=20, num_agents=agents, spawn_rule="anywhere")
    learner = PrincipalLearner(CoinGame(game), DQNConfig(iterations=100, learning_starts=0))
    assert learner.encoder.distinct is not None
    count = learner.encoder.distinct[0].shape[0]
    assert count == grid ** (2 * agents) * 2
    params = learner.init(jax.random.PRNGKey(0)).params["agent"]
    keys = jax.random.split(jax.random.PRNGKey(1), 400)
    states = jax.vmap(lambda k: coin_game.reset(game, k)[1])(keys)
    # move everyone at random a few times so agents share cells and coins sit anywhere
    for k in jax.random.split(jax.random.PRNGKey(2), 3):
        acts = jax.random.randint(k, (400, agents), 0, 4)
        states = coin_game.step_batch(game, states, acts, jax.random.split(k, 400))[1]
    fast = learner.first_layer(params, states)  # 400 * agents rows >= count: the table path
    cells, channels = coin_game.observation_ones(game, states)
    table = response_table(params, learner.encoder.counts)
    direct = first_layer(params, sparse_conv_features(params, table, cells, channels))
    np.testing.assert_allclose(np.asarray(fast), np.asarray(direct), rtol=1e-5, atol=1e-5)
    assert distinct_observations(7, 2) is None  # too many to enumerate: the direct path


@pytest.mark.parametrize("scope", ["per_network", "global"])
def test_gradient_clipping_per_network_or_global(scope):
    """A large principal gradient does not shrink the agents' one under per-network clipping."""
    config = dataclasses.replace(SMALL, max_grad_norm=10.0, clip_scope=scope)
    learner = PrincipalLearner(CoinGame(PRESETS["paper-3x3"]), config)
    agent = {"w": jnp.array([0.6, 0.8])}  # norm 1
    principal = {"w": jnp.array([60.0, 0.0]), "b": jnp.array([80.0])}  # norm 100
    clipped = learner.clip({"agent": agent, "principal": principal})
    if scope == "per_network":
        np.testing.assert_allclose(clipped["agent"]["w"], [0.6, 0.8], rtol=1e-6)
        np.testing.assert_allclose(clipped["principal"]["w"], [6.0, 0.0], rtol=1e-6)
        np.testing.assert_allclose(clipped["principal"]["b"], [8.0], rtol=1e-6)
    else:
        scale = 10.0 / np.sqrt(1.0 + 100.0**2)
        np.testing.assert_allclose(clipped["agent"]["w"], np.array([0.6, 0.8]) * scale, rtol=1e-6)
        np.testing.assert_allclose(clipped["principal"]["b"], [80.0 * scale], rtol=1e-6)


def test_no_gradient_step_before_learning_starts():
    config = dataclasses.replace(SMALL, learning_starts=60)
    learner = PrincipalLearner(CoinGame(PRESETS["paper-3x3"]), config)
    state = learner.init(jax.random.PRNGKey(0))
    start = [np.array(x) for x in jax.tree_util.tree_leaves(state.params)]
    waited, stats = learner.train_chunk(state, 0, 60)
    same = jax.tree_util.tree_leaves(waited.params)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(start, same, strict=True))
    assert float(np.abs(np.asarray(stats.agent_loss)).sum()) == 0.0
    learnt, _ = learner.train_chunk(waited, 60, 5)
    moved = jax.tree_util.tree_leaves(learnt.params)
    assert any(not np.array_equal(a, np.asarray(b)) for a, b in zip(start, moved, strict=True))


def test_replayed_rewards_are_shaped_with_the_current_share():
    """Budget calibration changes p mid-phase: stored transitions hold unshaped rewards and the
    TD target shapes them with the share in force (no stale p in the replay buffer)."""
    game = PRESETS["paper-3x3"]
    learner = AgentsLearner(CoinGame(game), SMALL, "constant", "redistribute")
    state = learner.init(jax.random.PRNGKey(0), share=0.0)
    state, stats = learner.train_chunk(state, {}, 0, 80)
    batch, _, weights = learner.sample(state.buffer, jax.random.PRNGKey(1), 0)
    raw = np.asarray(batch.rewards)
    obs = _dense_obs(game, batch.obs)
    q = np.asarray(_dense_q(learner, state.params, obs))
    q_taken = np.take_along_axis(q, np.asarray(batch.actions)[..., None], -1)[..., 0]
    next_q = np.asarray(_dense_q(learner, state.target, _dense_obs(game, batch.next_obs))).max(-1)
    assert obs.shape[1] == 2
    for share in (0.0, 1.0):
        shaped = (1 - share) * raw + share * raw.sum(-1, keepdims=True) / 2
        y = shaped + SMALL.gamma * (1 - np.asarray(batch.terminal))[:, None] * next_q
        _, (_, priority) = learner._loss(state.params, state.target, {}, batch, weights, share)
        np.testing.assert_allclose(priority, np.abs(q_taken - y).mean(-1), rtol=1e-5, atol=1e-6)


def test_top_up_transfers_are_never_negative():
    """With the classic game's penalty a top-up share of the others' rewards can be a tax."""
    top = _scheme_learner("top_up", 2)
    theft = jnp.array([1.0, -2.0])  # agent 0 takes agent 1's coin
    assert np.allclose(top.transfers(theft, 0.0, 0.5), [0.0, 0.5])
    assert np.allclose(top.shaped(theft, 0.0, 0.5), [0.0, -1.5])
