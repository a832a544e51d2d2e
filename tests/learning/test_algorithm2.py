"""Algorithm 2: learning on games with known answers, determinism, exactness of the speed-ups."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contractrl.envs.tabular import tabular_params
from contractrl.games import figure1, random_game, tree_mdp
from contractrl.learning.algorithm2 import DQNConfig, Learner, init_state, learner_spec
from contractrl.learning.evaluation import evaluate_with_oracle, learned_policy
from contractrl.learning.networks import sparse_adam_rows
from contractrl.solver import solve_spe

_LEARNERS = {}


def train(game, cfg, seed=0, chunk=500, batched=False):
    key = (learner_spec(game), cfg)
    if key not in _LEARNERS:  # one compilation per shape and config
        _LEARNERS[key] = Learner(*key)
    learner = _LEARNERS[key]
    env = tabular_params(game)
    state = init_state(learner, env, jax.random.PRNGKey(seed))
    done, metrics = 0, []
    while done < cfg.iterations:
        n = min(chunk, cfg.iterations - done)
        state, m = learner.train_chunk(env, state, n, done, batched)
        metrics.append(m)
        done += n
    return learner, state, metrics


def test_agent_learns_the_exact_best_response_on_a_one_step_game():
    """H = 1: Q̄ = r, so the agent's best response to any fixed contract b is argmax r + P·b."""
    game = random_game(1, 3, 3, horizon=1, seed=3)
    cfg = DQNConfig(iterations=3000, hidden=(64, 64), replay_capacity=10_000, nudge=0.0)
    learner, state, _ = train(game, cfg)
    q_bar = np.asarray(learner.q_tables(state.params, tabular_params(game))[0])[0]
    assert np.allclose(q_bar, game.agent_reward[0], atol=0.02)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        b = rng.uniform(0, 1.5, size=3)
        exact = game.agent_reward[0] + game.outcome_probs[0] @ b
        if np.sort(exact)[-1] - np.sort(exact)[-2] < 0.05:
            continue  # a near tie: either answer is a best response up to the error
        assert np.argmax(q_bar + game.outcome_probs[0] @ b) == np.argmax(exact)
        checked += 1
    assert checked > 200


def test_principal_learns_figure1_within_one_percent():
    game = figure1()
    spe = solve_spe(game)
    cfg = DQNConfig(iterations=3000, hidden=(64, 64), replay_capacity=10_000, nudge=0.002)
    learner, state, _ = train(game, cfg)
    agent_q, principal_q = (
        np.asarray(x) for x in learner.q_tables(state.params, tabular_params(game))
    )
    assert principal_q[0].max() == pytest.approx(spe.initial_principal_value, rel=0.01)
    policy = learned_policy(game, agent_q, principal_q, cfg.nudge, learner.spec.time_input)
    ev = evaluate_with_oracle(game, policy, spe)
    assert ev.accuracy == 1.0 and ev.follow_rate == 1.0
    assert ev.principal_utility == pytest.approx(spe.initial_principal_value, rel=0.01)


def test_same_seed_same_metrics_and_different_seed_differs():
    game = tree_mdp(4, 1)
    cfg = DQNConfig(iterations=600, hidden=(32, 32), replay_capacity=2000)
    runs = [train(game, cfg, seed=s)[2] for s in (7, 7, 8)]
    a, b, c = (np.concatenate([np.asarray(m.agent_loss) for m in r]) for r in runs)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_distinct_input_speedup_is_exact():
    """Running the networks on the batch's distinct inputs only changes nothing but rounding."""
    game = tree_mdp(6, 0)
    base = DQNConfig(iterations=300, hidden=(64, 64), replay_capacity=3000)
    _, fast, _ = train(game, base)
    _, full, _ = train(game, dataclasses.replace(base, dedup_sizes=()))
    for x, y in zip(
        jax.tree_util.tree_leaves(fast.params), jax.tree_util.tree_leaves(full.params), strict=True
    ):
        assert np.allclose(np.asarray(x), np.asarray(y), atol=1e-5)


def test_vmapped_runs_equal_separate_runs():
    game = tree_mdp(5, 2)
    # a few updates: float rounding differs between batched and single matmuls, and training
    # amplifies such differences over many steps
    cfg = DQNConfig(iterations=40, hidden=(32, 32), replay_capacity=2000, dedup_sizes=())
    learner = Learner(learner_spec(game), cfg)
    env = tabular_params(game)
    envs = jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), env)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    batched = init_state(learner, envs, keys, True)
    batched, _ = learner.train_chunk(envs, batched, 40, 0, True)
    for r in range(2):
        single = init_state(learner, env, keys[r])
        single, _ = learner.train_chunk(env, single, 40, 0, False)
        for x, y in zip(
            jax.tree_util.tree_leaves(single.params),
            jax.tree_util.tree_leaves(batched.params),
            strict=True,
        ):
            assert np.allclose(np.asarray(x), np.asarray(y)[r], rtol=1e-4, atol=1e-6)


def test_sparse_adam_equals_adam_on_touched_rows():
    table = jnp.arange(12.0).reshape(4, 3)
    grad = jnp.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    opt = optax.adam(0.1)
    updates, _ = opt.update(grad, opt.init(table))
    dense = optax.apply_updates(table, updates)
    zeros = jnp.zeros_like(table)
    sparse, _, _ = sparse_adam_rows(
        table, zeros, zeros, jnp.array([0, 2, 4]), jnp.array([grad[0], grad[2], grad[0]]), 1, 0.1
    )
    assert np.allclose(np.asarray(sparse)[[0, 2]], np.asarray(dense)[[0, 2]], atol=1e-6)
    assert np.array_equal(np.asarray(sparse)[[1, 3]], np.asarray(table)[[1, 3]])


def test_iterative_schedule_freezes_the_other_network():
    game = tree_mdp(4, 0)
    cfg = DQNConfig(
        iterations=400,
        hidden=(16, 16),
        replay_capacity=2000,
        schedule="iterative",
        phase_length=100,
    )
    learner = Learner(learner_spec(game), cfg)
    # phases are counted from the end: the last one trains the agent
    assert learner.phase_nets(399) == ("agent",) and learner.phase_nets(300) == ("agent",)
    assert learner.phase_nets(299) == ("principal",) and learner.phase_nets(50) == ("principal",)
    assert learner.phase_nets(cfg.learning_starts - 1) == ()
    env = tabular_params(game)
    state = init_state(learner, env, jax.random.PRNGKey(0))
    state, _ = learner.train_chunk(env, state, 100, 0)  # principal phase
    for frozen, trained in (("agent", "principal"), ("principal", "agent")):
        before = state.params
        start = 100 if trained == "agent" else 200
        state, _ = learner.train_chunk(env, state, 100, start)
        same = jax.tree_util.tree_map(
            lambda a, b: bool(jnp.array_equal(a, b)), before[frozen], state.params[frozen]
        )
        assert all(jax.tree_util.tree_leaves(same))
        changed = jax.tree_util.tree_map(
            lambda a, b: not bool(jnp.array_equal(a, b)), before[trained], state.params[trained]
        )
        assert any(jax.tree_util.tree_leaves(changed))


def test_auto_nudge_is_twice_the_accumulated_model_error():
    """The nudge moves at the end of each agent-training period to 2 q sqrt(H), q the quantile
    of the one-step model error over every input (Proposition 4.1 with E = q sqrt(H))."""
    game = tree_mdp(5, 3)
    env = tabular_params(game)
    cfg = DQNConfig(
        iterations=1500,
        hidden=(32, 32),
        replay_capacity=5000,
        auto_nudge=True,
        auto_nudge_period=500,
    )
    learner, state, metrics = train(game, cfg)
    nudges = np.concatenate([np.asarray(m.nudge) for m in metrics])
    # the last iteration ends an agent-training period: the nudge has just moved
    assert float(state.nudge) > 0
    assert float(state.nudge) == pytest.approx(
        cfg.auto_nudge_scale * np.sqrt(5) * float(state.error_estimate), rel=1e-5
    )
    assert len(np.unique(nudges[cfg.learning_starts :])) <= 4  # moves once per period
    tables = learner._refresh(env, state.params, state.nudge)
    agent_q = learner.q_tables(state.params, env)[0]
    errors = np.asarray(learner._model_errors(env, agent_q, tables.agent_value_star))
    assert float(tables.error) == pytest.approx(
        np.quantile(errors, cfg.auto_nudge_quantile), rel=1e-5
    )


@pytest.mark.parametrize(
    "field,value",
    [("iterations", 0), ("loss", "l1"), ("nudge", -1.0), ("schedule", "x"), ("epsilon_start", 2.0)],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DQNConfig(**{field: value}).validate()
