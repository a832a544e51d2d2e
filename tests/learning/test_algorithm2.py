"""Algorithm 2: learning on games with known answers, determinism, exactness of the speed-ups."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contractrl.core.games import figure1, random_game, tree_mdp
from contractrl.core.solver import solve_spe
from contractrl.envs.tabular import tabular_params
from contractrl.learning.algorithm2 import (
    DQNConfig,
    Learner,
    cached_learner,
    init_state,
    learner_spec,
)
from contractrl.learning.evaluation import evaluate_with_oracle, learned_policy
from contractrl.learning.optim import sparse_adam_rows


def train(game, cfg, seed=0, chunk=500, batched=False):
    learner = cached_learner(learner_spec(game), cfg)  # one compilation per shape and config
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


def _exact_params(spe, num_inputs, num_actions):
    """Networks whose tables are the SPE's: hidden layer = one-hot input, head = the table.

    The agent network outputs the solver's exact truncated Q̄; the principal network's argmax
    is the SPE recommendation.
    """
    eye = jnp.eye(num_inputs)

    def net(head):
        return {
            "table": eye,
            "bias": jnp.zeros(num_inputs),
            "layers": [{"w": jnp.asarray(head, jnp.float32), "b": jnp.zeros(num_actions)}],
        }

    principal_head = np.eye(num_actions)[spe.action[0]]
    return {"agent": net(spe.agent_q[0]), "principal": net(principal_head)}


def test_model_error_is_zero_at_the_exact_agent_q_and_the_perturbation_where_perturbed():
    """The automatic nudge's one-step error, against the solver's exact agent Q̄: zero at the
    SPE (up to float32 round-off), and exactly a perturbation δ of Q̄(x, a) at (x, a)."""
    game = tree_mdp(5, 4)
    spe = solve_spe(game)
    spec = learner_spec(game)
    cfg = DQNConfig(hidden=(spec.num_inputs,), auto_nudge=True, nudge=0.0)
    learner = Learner(spec, cfg)
    env = tabular_params(game)
    params = _exact_params(spe, spec.num_inputs, spec.num_actions)
    q_bar = learner.q_tables(params, env)[0]
    np.testing.assert_allclose(np.asarray(q_bar), spe.agent_q[0], atol=1e-6)
    tables = learner._refresh(env, params, jnp.zeros(()))
    # the agent's value of following the SPE recommendation is the SPE agent value
    np.testing.assert_allclose(np.asarray(tables.agent_value_star), spe.agent_value[0], atol=1e-5)
    errors = np.asarray(learner._model_errors(env, q_bar, tables.agent_value_star))
    assert errors.shape == (spec.num_inputs, spec.num_actions)
    assert errors.max() < 1e-5
    assert float(tables.error) < 1e-5
    # perturb one leaf-parent's non-recommended action: its error is exactly delta there
    x = int(np.flatnonzero(spe.agent_q[0].max(axis=1) != 0)[-1])
    a = 1 - int(spe.action[0, x])
    delta = 0.05
    perturbed = q_bar.at[x, a].add(delta)
    errors = np.asarray(learner._model_errors(env, perturbed, tables.agent_value_star))
    assert errors[x, a] == pytest.approx(delta, abs=1e-5)
    others = np.delete(errors.ravel(), x * spec.num_actions + a)
    assert others.max() < 1e-5


def test_auto_nudge_moves_at_the_end_of_each_agent_phase_to_twice_the_accumulated_error():
    """Iterative schedule: the nudge is constant within phases, changes only on the last
    iteration of agent phases, to 2 q sqrt(H) with q the error measured then."""
    game = tree_mdp(5, 3)
    cfg = DQNConfig(
        iterations=1200,
        hidden=(32, 32),
        replay_capacity=5000,
        schedule="iterative",
        phase_length=300,
        agent_model="outcome_value",
        auto_nudge=True,
        auto_nudge_period=7,  # ignored by the iterative schedule
    )
    learner, state, metrics = train(game, cfg)
    nudges = np.concatenate([np.asarray(m.nudge) for m in metrics])
    estimates = np.concatenate([np.asarray(m.error_estimate) for m in metrics])
    # metrics log the nudge in force during an iteration; it moves after the iteration
    changed_after = np.flatnonzero(np.diff(nudges) != 0)
    agent_phase_ends = [i for i in range(cfg.iterations) if learner.phase_nets(i) == ("agent",)]
    agent_phase_ends = [i for i in agent_phase_ends if i + 1 not in agent_phase_ends]
    assert agent_phase_ends == [599, 1199]
    assert list(changed_after) == [599]  # and at 1199, the last iteration (below)
    assert nudges[600] == pytest.approx(2 * np.sqrt(5) * estimates[599], rel=1e-5)
    assert float(state.nudge) == pytest.approx(2 * np.sqrt(5) * float(state.error_estimate))


def test_auto_nudge_moves_once_per_period_with_the_simultaneous_schedule():
    """Simultaneous schedule: the nudge moves only after iterations ``i`` with
    ``(iterations - 1 - i) % auto_nudge_period == 0``."""
    game = tree_mdp(4, 2)
    cfg = DQNConfig(
        iterations=600,
        hidden=(16, 16),
        replay_capacity=3000,
        auto_nudge=True,
        auto_nudge_period=200,
    )
    _, state, metrics = train(game, cfg)
    nudges = np.concatenate([np.asarray(m.nudge) for m in metrics])
    estimates = np.concatenate([np.asarray(m.error_estimate) for m in metrics])
    changed_after = np.flatnonzero(np.diff(nudges) != 0)
    assert set(changed_after) <= {199, 399} and len(changed_after) >= 1
    for i in changed_after:
        assert nudges[i + 1] == pytest.approx(2 * np.sqrt(4) * estimates[i], rel=1e-5)
    assert float(state.nudge) == pytest.approx(2 * np.sqrt(4) * float(state.error_estimate))


def test_train_entry_point_matches_the_chunked_loop():
    """``algorithm2.train`` (one call) gives the same run as the chunked loop."""
    from contractrl.learning.algorithm2 import train as train_once

    game = tree_mdp(4, 1)
    cfg = DQNConfig(iterations=300, hidden=(16, 16), replay_capacity=2000, nudge=0.01)
    result = train_once(game, cfg, seed=2, chunk=120)
    _, state, metrics = train(game, cfg, seed=2, chunk=300)
    same = jax.tree_util.tree_map(np.array_equal, result.state.params, state.params)
    assert all(jax.tree_util.tree_leaves(same))
    assert result.metrics.nudge.shape == (300,)


@pytest.mark.parametrize(
    "field,value",
    [("iterations", 0), ("loss", "l1"), ("nudge", -1.0), ("schedule", "x"), ("epsilon_start", 2.0)],
)
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        DQNConfig(**{field: value}).validate()
