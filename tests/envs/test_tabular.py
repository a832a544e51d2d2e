"""The batched JAX environment against the model: distributions, rewards, resets."""

import jax
import jax.numpy as jnp
import numpy as np

from contractrl.core.games import figure1, random_game, tree_mdp
from contractrl.envs import tabular


def test_outcomes_and_transitions_follow_the_model():
    game = random_game(3, 2, 3, horizon=5, seed=1)
    params = tabular.tabular_params(game)
    n = 100_000
    state = tabular.TabularState(jnp.full(n, 1, jnp.int32), jnp.zeros(n, jnp.int32))
    action = jnp.ones(n, jnp.int32)
    contract = jnp.tile(jnp.array([0.5, 0.0, 2.0]), (n, 1))
    _, _, rep = jax.jit(tabular.step)(params, state, action, contract, jax.random.PRNGKey(0))
    outcome = np.asarray(rep.outcome)
    freq = np.bincount(outcome, minlength=3) / n
    assert np.allclose(freq, game.outcome_probs[1, 1], atol=0.01)
    dense = game.transitions.toarray().reshape(3, 3, 3)
    for o in range(3):
        nxt = np.asarray(rep.next_state)[outcome == o]
        assert np.allclose(np.bincount(nxt, minlength=3) / len(nxt), dense[1, o], atol=0.02)
    assert np.allclose(np.asarray(rep.payment), np.array([0.5, 0.0, 2.0])[outcome])
    assert np.allclose(np.asarray(rep.agent_reward), game.agent_reward[1, 1])
    assert np.allclose(np.asarray(rep.principal_reward), game.principal_reward[1, outcome])


def test_tree_episode_walks_down_and_resets():
    game = tree_mdp(4, 0)
    params = tabular.tabular_params(game)
    _, env_state = tabular.reset(params, jax.random.PRNGKey(0), 2)
    key = jax.random.PRNGKey(3)
    visited = []
    for _ in range(4):
        key, sub = jax.random.split(key)
        s = np.asarray(env_state.state)
        step = tabular.step(params, env_state, jnp.array([1, 0]), jnp.zeros((2, 2)), sub)
        _, env_state, rep = step
        visited.append(s)
        nxt, o = np.asarray(rep.next_state), np.asarray(rep.outcome)
        if not np.asarray(rep.done).any():
            assert (nxt == 2 * s + 1 + o).all()
    assert np.asarray(rep.terminal).all() and np.asarray(rep.done).all()
    assert (np.asarray(env_state.state) == 0).all() and (np.asarray(env_state.t) == 0).all()


def test_horizon_ends_cyclic_games():
    game = random_game(3, 2, 2, horizon=3, seed=0)
    params = tabular.tabular_params(game)
    _, env_state = tabular.reset(params, jax.random.PRNGKey(0), 4)
    for t in range(3):
        obs, env_state, rep = tabular.step(
            params, env_state, jnp.zeros(4, jnp.int32), jnp.zeros((4, 2)), jax.random.PRNGKey(t)
        )
        assert bool(np.asarray(rep.done).all()) == (t == 2)
        # the observation is the state each environment is now in (s0 after the reset)
        expected = game.initial_state if t == 2 else np.asarray(rep.next_state)
        np.testing.assert_array_equal(np.asarray(obs), expected)
    assert not np.asarray(rep.terminal).any()


def test_figure1_terminal_rows():
    params = tabular.tabular_params(figure1())
    assert np.asarray(params.terminal).tolist() == [[False, False], [True, True], [True, True]]
