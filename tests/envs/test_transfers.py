"""Formal contracts and gifting: budget balance, θ = 0 is the selfish game, the gift action."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.envs.escape_room import DOOR, LEVER, PRESETS, START, EscapeRoom
from contractrl.envs.protocol import validate_env
from contractrl.envs.transfers import FormalContract, Gifting


def _random_steps(env, steps: int, seed: int, actions_high: int):
    """Play random actions; yields ``(actions, step outputs)``."""
    key = jax.random.PRNGKey(seed)
    _, state = env.reset(key)
    step = jax.jit(env.step)
    for t in range(steps):
        k_act, k_step = jax.random.split(jax.random.fold_in(key, t))
        actions = jax.random.randint(k_act, (env.num_agents,), 0, actions_high)
        out = step(k_step, state, actions)
        state = out[1]
        yield actions, out


@pytest.mark.parametrize("preset", ["er2-1", "er3-2"])
@pytest.mark.parametrize("theta", [0.5, 3.0])
def test_formal_contract_transfers_sum_to_zero_and_pay_theta_per_pull(preset, theta):
    inner = EscapeRoom(PRESETS[preset])
    env = FormalContract(inner, theta)
    validate_env(env)
    n = inner.num_agents
    plain = _random_steps(inner, 40, 1, 3)
    for (_, wrapped), (_, base) in zip(_random_steps(env, 40, 1, 3), plain, strict=True):
        transfer = np.asarray(wrapped[2]) - np.asarray(base[2])
        assert abs(transfer.sum()) < 1e-5
        pulls = np.asarray(base[5]["measures"]["lever_pulls"])
        # by hand: θ for each own pull, minus θ/(n-1) for each pull of another agent
        expected = [theta * (pulls[i] - (pulls.sum() - pulls[i]) / (n - 1)) for i in range(n)]
        np.testing.assert_allclose(transfer, expected, atol=1e-6)
        np.testing.assert_allclose(
            wrapped[5]["measures"]["transfer_received"], np.maximum(expected, 0), atol=1e-6
        )


def test_theta_zero_is_the_selfish_game_exactly():
    inner = EscapeRoom(PRESETS["er3-2"])
    env = FormalContract(inner, 0.0)
    for (_, a), (_, b) in zip(
        _random_steps(env, 30, 2, 3), _random_steps(inner, 30, 2, 3), strict=True
    ):
        for x, y in zip(a[:5], b[:5], strict=True):
            for u, v in zip(
                jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y), strict=True
            ):
                np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_gifting_adds_an_action_that_stays_put_and_moves_reward():
    inner = EscapeRoom(PRESETS["er3-2"])
    env = Gifting(inner, 1.5)
    validate_env(env)
    assert env.num_actions == 4 and env.gift_action == 3
    _, state = env.reset(jax.random.PRNGKey(0))
    # agent 0 gifts (stays at the start: 0), agent 1 goes to the lever (-1), agent 2 stays
    _, state, rewards, *_rest, info = env.step(
        jax.random.PRNGKey(1), state, jnp.array([3, LEVER, START])
    )
    np.testing.assert_allclose(np.asarray(rewards), [0 - 1.5, -1 + 0.75, 0 + 0.75])
    np.testing.assert_array_equal(np.asarray(state.inner), [START, LEVER, START])
    np.testing.assert_array_equal(info["measures"]["gifts"], [1, 0, 0])
    np.testing.assert_allclose(info["measures"]["transfer_received"], [0, 0.75, 0.75])
    # a gift from an agent at the door keeps it there
    _, state, rewards, *_ = env.step(jax.random.PRNGKey(2), state, jnp.array([DOOR, 3, 3]))
    np.testing.assert_array_equal(np.asarray(state.inner), [DOOR, LEVER, START])


def test_gifting_transfers_sum_to_zero_and_match_the_gifts():
    inner = EscapeRoom(PRESETS["er3-2"])
    env = Gifting(inner, 1.0)
    _, state = env.reset(jax.random.PRNGKey(0))
    step, inner_step = jax.jit(env.step), jax.jit(inner.step)
    for t in range(40):
        key = jax.random.PRNGKey(100 + t)
        actions = jax.random.randint(jax.random.fold_in(key, 1), (3,), 0, 4)
        gifts = np.asarray(actions) == 3
        played = jnp.where(jnp.asarray(gifts), state.inner, actions)  # a gift stays put
        out = step(key, state, actions)
        ref = inner_step(key, state, played)
        transfer = np.asarray(out[2]) - np.asarray(ref[2])
        assert abs(transfer.sum()) < 1e-5
        expected = [-(gifts[i] - (gifts.sum() - gifts[i]) / 2) for i in range(3)]
        np.testing.assert_allclose(transfer, expected, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(out[1].inner), np.asarray(ref[1].inner))
        state = out[1]


def test_bad_prices_amounts_and_measures_are_named():
    inner = EscapeRoom()
    with pytest.raises(ValueError, match="formal_thetas"):
        FormalContract(inner, float("inf"))
    with pytest.raises(ValueError, match="formal_measure"):
        FormalContract(inner, 1.0, "apples")
    with pytest.raises(ValueError, match="gift_amount"):
        Gifting(inner, 0.0)

    class NoNoop:
        num_agents, num_actions, observation_shape, max_steps = 2, 2, (1,), 3

    with pytest.raises(ValueError, match="gifting"):
        Gifting(NoNoop(), 1.0)
    with pytest.raises(ValueError, match="contract_measure"):
        FormalContract(NoNoop(), 1.0)


def test_wrappers_pass_on_what_another_wrapper_needs_and_refuse_stacking_the_same_measure():
    inner = EscapeRoom()
    formal = FormalContract(inner, 1.0)
    assert formal.observation_bounds == (0.0, 1.0) and formal.contract_measure == "lever_pulls"
    assert formal.noop_actions == inner.noop_actions
    for stacked in (lambda: FormalContract(formal, 1.0), lambda: Gifting(formal, 1.0)):
        with pytest.raises(ValueError, match="transfer_received"):
            stacked()
