"""The in-loop (JAX) min-pay solver equals the HiGHS LP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contractrl.core.contracts import min_pay_contracts
from contractrl.learning.contracts import min_pay_all_targets


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("num_actions,num_outcomes", [(2, 2), (2, 5), (3, 3), (4, 3), (3, 5)])
def test_equals_lp_in_float64(x64, rng, num_actions, num_outcomes):
    probs = rng.dirichlet(np.ones(num_outcomes), size=(150, num_actions))
    q_bar = rng.normal(size=(150, num_actions))
    lp = min_pay_contracts(q_bar, probs, 0.02, method="lp")
    contract, payment, ok = jax.jit(min_pay_all_targets)(
        jnp.asarray(q_bar), jnp.asarray(probs), 0.02
    )
    ok, payment, contract = np.asarray(ok), np.asarray(payment), np.asarray(contract)
    assert (ok == lp.implementable).all()
    m = lp.implementable
    assert np.all(
        np.abs(payment[m] - lp.expected_payment[m])
        <= 1e-9 * np.maximum(1, np.abs(lp.expected_payment[m]))
    )
    assert (contract >= 0).all()


def test_float32_tree_cases(rng):
    """Training precision on the Tree MDP's outcome model: within 1e-5 of the LP."""
    probs = np.broadcast_to(np.array([[0.9, 0.1], [0.1, 0.9]]), (500, 2, 2))
    q_bar = rng.uniform(-1, 1, size=(500, 2))
    lp = min_pay_contracts(q_bar, probs, 0.01, method="lp")
    _, payment, ok = min_pay_all_targets(
        jnp.asarray(q_bar, jnp.float32), jnp.asarray(probs, jnp.float32), 0.01
    )
    assert np.asarray(ok).all()
    assert np.allclose(np.asarray(payment), lp.expected_payment, atol=1e-5)


def test_batched_leading_axes_and_vmap(rng):
    probs = rng.dirichlet(np.ones(3), size=(4, 5, 3))
    q_bar = rng.normal(size=(4, 5, 3))
    flat = min_pay_all_targets(
        jnp.asarray(q_bar.reshape(20, 3)), jnp.asarray(probs.reshape(20, 3, 3))
    )
    nested = jax.vmap(min_pay_all_targets, in_axes=(0, 0, None))(
        jnp.asarray(q_bar), jnp.asarray(probs), 0.0
    )
    assert np.allclose(np.asarray(nested[1]).reshape(20, 3), np.asarray(flat[1]))
