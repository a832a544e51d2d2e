"""The outcome-value principal network (``principal_model="outcome_value"``): its contractual Q
from the principal's value after each outcome equals the exact solver's (paper Eq. 3)."""

import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.core.games import random_game
from contractrl.core.solver import solve_spe
from contractrl.learning.algorithm2 import DQNConfig, contractual_q
from contractrl.learning.contracts import min_pay_all_targets


def test_q_from_outcome_values_equals_the_exact_contractual_q():
    game = random_game(4, 3, 3, horizon=None, discount=0.8, seed=2)
    spe = solve_spe(game)
    assert spe.ok
    q_bar = spe.agent_q[0]  # [S, A] exact truncated Q
    u = game.continuation(spe.principal_value[0])  # [S, O] exact value after each outcome
    contracts, _, ok = min_pay_all_targets(
        jnp.asarray(q_bar, jnp.float32), jnp.asarray(game.outcome_probs, jnp.float32), 0.0
    )
    q = contractual_q(
        jnp.asarray(u, jnp.float32),
        "outcome_value",
        contracts,
        jnp.asarray(game.principal_reward, jnp.float32),
        jnp.asarray(game.outcome_probs, jnp.float32),
        game.discount,
    )
    exact = np.asarray(spe.principal_q[0])
    finite = np.isfinite(exact)
    assert np.array_equal(np.asarray(ok), finite)
    assert np.asarray(q)[finite] == pytest.approx(exact[finite], abs=1e-4)


def test_principal_model_is_validated_with_its_choices():
    with pytest.raises(ValueError, match=r"principal_model.*valid: contractual_q, outcome_value"):
        DQNConfig(principal_model="q").validate()
