"""Exact evaluation, best response and audit against naive references."""

import dataclasses
import itertools

import numpy as np
import pytest

from contractrl.core.evaluate import agent_best_response, audit, evaluate_policies
from contractrl.core.games import figure1, random_game, tree_mdp
from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.solution import PrincipalPolicy
from contractrl.core.solver import solve_spe
from reference import all_agent_policies, evaluate_naive


def random_policy(rng, game, rows):
    action = rng.integers(0, game.num_actions, size=(rows, game.num_states))
    contract = rng.random((rows, game.num_states, game.num_outcomes))
    return PrincipalPolicy(action, contract)


@pytest.mark.parametrize("rows", [1, 3])
def test_evaluation_matches_naive_loops(rng, rows):
    game = random_game(5, 3, 2, horizon=3, discount=0.9, seed=2, terminal_prob=0.3)
    policy = random_policy(rng, game, rows)
    agent_action = rng.integers(0, 3, size=(rows, 5))
    values = evaluate_policies(game, policy, agent_action)
    ref_agent, ref_principal = evaluate_naive(game, policy.contract, agent_action)
    assert np.allclose(values.agent, ref_agent, atol=1e-12)
    assert np.allclose(values.principal, ref_principal, atol=1e-12)
    # welfare identity: agent + principal = rewards, payments cancel
    no_pay = evaluate_policies(
        game, PrincipalPolicy(policy.action, 0 * policy.contract), agent_action
    )
    assert np.allclose(values.agent + values.principal, no_pay.agent + no_pay.principal)
    assert np.allclose(values.agent - no_pay.agent, values.payment)


def test_infinite_horizon_evaluation_matches_linear_solve(rng):
    game = random_game(6, 2, 3, horizon=None, discount=0.9, seed=4)
    policy = random_policy(rng, game, 1)
    agent_action = rng.integers(0, 2, size=(1, 6))
    values = evaluate_policies(game, policy, agent_action)
    ref_agent, ref_principal = evaluate_naive(game, policy.contract, agent_action)
    assert np.allclose(values.agent, ref_agent, atol=1e-9)
    assert np.allclose(values.principal, ref_principal, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_best_response_beats_every_deterministic_policy(rng, seed):
    game = random_game(3, 2, 2, horizon=2, discount=1.0, seed=seed)
    policy = random_policy(np.random.default_rng(seed), game, 2)
    response = agent_best_response(game, policy)
    best_values = evaluate_policies(game, policy, response.action).agent
    assert np.allclose(best_values, response.value, atol=1e-12)
    for candidate in all_agent_policies(game):
        other = evaluate_policies(game, policy, candidate).agent
        assert (best_values >= other - 1e-12).all()


def test_ties_are_broken_toward_the_recommendation():
    """At the min-pay contract the agent is indifferent; it follows (paper Lemma B.12)."""
    game = figure1()
    policy = PrincipalPolicy(np.zeros((1, 3), dtype=np.int64), np.tile([1.0, 0.0], (1, 3, 1)))
    assert (agent_best_response(game, policy).action == 0).all()
    recommend_r = PrincipalPolicy(np.ones((1, 3), dtype=np.int64), policy.contract)
    assert (agent_best_response(game, recommend_r).action == 1).all()
    no_rec = PrincipalPolicy(np.full((1, 3), -1), policy.contract)
    assert (agent_best_response(game, no_rec).action == 0).all()  # lowest index


def test_audit_passes_on_spe_and_flags_underpayment():
    game = tree_mdp(6, 0)
    sol = solve_spe(game)
    report = audit(game, sol)
    assert report.ok and report.max_ic_violation <= 1e-9 and report.min_payment >= 0
    cheap = dataclasses.replace(sol, contract=sol.contract * 0.9)
    bad = audit(game, cheap)
    assert not bad.ok
    assert bad.max_ic_violation > 1e-3
    assert any("IC violated" in v[2] for v in bad.violations)


def test_audit_flags_wrong_values():
    game = figure1()
    sol = solve_spe(game)
    wrong = dataclasses.replace(sol, principal_value=sol.principal_value + 0.1)
    report = audit(game, wrong)
    assert not report.ok and report.max_value_error == pytest.approx(0.1)


@pytest.mark.parametrize(
    "policy,match",
    [
        (PrincipalPolicy(np.zeros((1, 2), dtype=int), np.zeros((1, 2, 2))), "policy.action"),
        (PrincipalPolicy(np.zeros((1, 3), dtype=int), np.zeros((1, 3, 3))), "policy.contract"),
        (PrincipalPolicy(np.full((1, 3), 5), np.zeros((1, 3, 2))), "entries"),
        (PrincipalPolicy(np.zeros((4, 3), dtype=int), np.zeros((4, 3, 2))), "K must be"),
        (PrincipalPolicy(np.zeros((1, 3), dtype=int), np.full((1, 3, 2), np.nan)), "finite"),
    ],
)
def test_bad_policies_are_refused(policy, match):
    with pytest.raises(ValueError, match=match):
        agent_best_response(figure1(), policy)


@pytest.mark.parametrize("delta", [5e-10, 1e-11, 0.0])
def test_best_response_backs_up_the_max_under_near_ties(delta):
    """Issue 10 item 3: the recommendation a1 is within the tie tolerance of the best action a0
    but ``delta`` below it. The agent reports a1 (ties favour the principal) but its value is
    the max: one state that always returns to itself, so V = max_a r(a) / (1 - γ). Backing up
    the recommendation's value instead made values jitter by ~1e-9 on larger games, so value
    iteration never met a 1e-12 tolerance."""
    gamma = 0.95
    game = PrincipalAgentMDP(
        outcome_probs=np.array([[[0.5, 0.5], [0.5, 0.5]]]),
        agent_reward=np.array([[0.3, 0.3 - delta]]),
        principal_reward=np.zeros((1, 2)),
        transitions=np.ones((1, 2, 1)),
        horizon=None,
        discount=gamma,
    )
    policy = PrincipalPolicy(np.array([[1]]), np.zeros((1, 1, 2)))
    response = agent_best_response(game, policy, tol=1e-13)
    assert response.converged
    assert response.action[0, 0] == 1
    # value iteration stops at a change <= 1e-13: within 1e-13 γ / (1 - γ) of the limit
    assert response.value[0, 0] == pytest.approx(0.3 / (1 - gamma), rel=0, abs=1e-11)


def test_best_response_converges_at_an_spe():
    """At the SPE's min-pay contracts the agent is indifferent everywhere; its value iteration
    to 1e-12 converges and agrees with the brute-force best response (every deterministic
    stationary policy, dense linear solves)."""
    game = random_game(4, 2, 2, horizon=None, discount=0.95, seed=2)
    sol = solve_spe(game)
    assert sol.converged
    response = agent_best_response(game, sol.policy, tol=1e-12)
    assert response.converged
    exact = None
    for choice in itertools.product(range(2), repeat=4):
        v = evaluate_naive(game, sol.contract, np.array([choice]))[0]
        exact = v if exact is None else np.maximum(exact, v)
    assert np.allclose(response.value, exact, rtol=0, atol=1e-9)
