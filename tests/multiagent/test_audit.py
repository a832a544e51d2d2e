"""The learned principal read off on the exact export's states equals what the evaluation
policy does on the environment's own states (Coin Game 3×3, Escape Room), and the audit's
numbers hold their invariants."""

import jax
import numpy as np
import pytest

from contractrl.envs.coin_exact import state_index
from contractrl.envs.coin_game import CoinGame
from contractrl.envs.escape_room import EscapeRoom
from contractrl.envs.exact import exact_export, has_exact_export
from contractrl.multiagent.algorithm3 import PrincipalLearner
from contractrl.multiagent.audit import audit_learned_principal, principal_tables
from contractrl.multiagent.common import DQNConfig

CONFIG = DQNConfig(
    iterations=400, learning_starts=50, replay_capacity=400, hidden=(16, 16), nudge=0.05
)


def _learner(env, seed=0):
    learner = PrincipalLearner(env, CONFIG)
    return learner, learner.init(jax.random.PRNGKey(seed))


def test_coin_tables_equal_the_evaluation_policy_on_reset_states():
    env = CoinGame(grid_size=3, horizon=20)
    assert has_exact_export(env)
    learner, state = _learner(env)
    export = exact_export(env)
    plan, contracts = principal_tables(learner, state.params, export)
    assert plan.shape == (1, 1458) and contracts.shape == (1, 1458, 2)
    _, states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(1), 64))
    _, recs, paid = learner.policy(state)(states)
    idx = state_index(
        env.config, np.asarray(states.positions), np.asarray(states.coin), np.asarray(states.colour)
    )
    np.testing.assert_array_equal(plan[0, idx], np.asarray(learner.joint_index(recs)))
    np.testing.assert_allclose(contracts[0, idx], np.asarray(paid), rtol=1e-6, atol=1e-6)
    assert np.all(contracts >= CONFIG.nudge - 1e-6)


def test_escape_room_tables_equal_the_evaluation_policy():
    env = EscapeRoom(num_agents=2, min_at_lever=1)
    learner, state = _learner(env, seed=2)
    export = exact_export(env)
    plan, contracts = principal_tables(learner, state.params, export)
    positions = np.stack(np.unravel_index(np.arange(9), (3, 3)), axis=1)
    _, recs, paid = learner.policy(state)(
        learner.encoder.view(learner.encoder.keep(export.obs), export.states)
    )
    np.testing.assert_array_equal(plan[0], np.asarray(learner.joint_index(recs)))
    np.testing.assert_allclose(contracts[0], np.asarray(paid), rtol=1e-6, atol=1e-6)
    assert positions.shape == (9, 2)


def test_audit_of_an_untrained_principal_is_consistent():
    env = EscapeRoom(num_agents=2, min_at_lever=1)
    learner, state = _learner(env, seed=3)
    export = exact_export(env)
    team = env.exact_references()["team_welfare"]
    audit = audit_learned_principal(learner, state.params, export, team)
    assert audit.plan_welfare <= team + 1e-9  # no plan beats the team optimum
    assert audit.welfare_of_optimum == pytest.approx(audit.plan_welfare / team)
    assert audit.contract_rmse >= abs(audit.contract_bias)
    assert 0.0 <= audit.underpaid_share <= audit.contested_share + 1e-12 <= 1.0 + 1e-12
    for response in audit.best_response:
        assert 0.0 <= response.follow_rate <= 1.0
    out = audit.to_dict()
    assert set(out["best_response"]) == {"follow", "uniform"}


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"replay_capacity": 100}, "replay_capacity: must be >= batch_size \\(128\\), got 100"),
        ({"learning_starts": 500, "iterations": 400}, "0 <= learning_starts < iterations"),
    ],
)
def test_a_refusal_names_the_field_a_user_set(fields, needle):
    with pytest.raises(ValueError, match=needle):
        DQNConfig(**fields).validate()


def test_agent_tables_equal_the_agents_evaluation_policy():
    from contractrl.multiagent.agents import AgentsLearner
    from contractrl.multiagent.audit import agents_tables

    env = CoinGame(grid_size=3, horizon=20)
    principal, p_state = _learner(env)
    agents = AgentsLearner(env, CONFIG, "validation")
    a_state = agents.init(jax.random.PRNGKey(4))
    export = exact_export(env)
    policies = agents_tables(agents, a_state.params, p_state.params, export)
    assert len(policies) == 2 and policies[0].shape == (1, 1458, env.num_actions)
    _, states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(5), 64))
    actions, _, _ = agents.policy(a_state, p_state.params)(states)
    idx = state_index(
        env.config,
        np.asarray(states.positions),
        np.asarray(states.coin),
        np.asarray(states.colour),
    )
    for i in range(2):
        np.testing.assert_array_equal(policies[i][0, idx].argmax(-1), np.asarray(actions)[:, i])
