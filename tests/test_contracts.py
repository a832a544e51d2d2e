"""Min-pay contracts: LP reference vs closed form vs batched vertex enumeration, invariants."""

import numpy as np
import pytest

from contractrl.contracts import min_pay_contracts
from contractrl.lp import ContractStatus, min_pay_contract

REL = 1e-9


def close(a, b):
    return np.all(np.abs(a - b) <= REL * np.maximum(1.0, np.abs(b)))


def random_cases(rng, num, num_actions, num_outcomes):
    alpha = rng.choice([0.3, 1.0, 3.0])
    probs = rng.dirichlet(np.full(num_outcomes, alpha), size=(num, num_actions))
    q_bar = rng.normal(size=(num, num_actions))
    return q_bar, probs


def assert_ic_ll(q_bar, probs, table, margin):
    """Every returned contract is non-negative and makes its target a best response."""
    assert (table.contract >= 0).all()
    num, num_actions, _ = probs.shape
    for target in range(num_actions):
        ok = table.implementable[:, target]
        b = table.contract[ok, target]  # [n, O]
        value = q_bar[ok] + np.einsum("nao,no->na", probs[ok], b)
        others = np.delete(value, target, axis=1)
        slack = value[:, target, None] - others - margin
        assert (slack >= -1e-9 * (1 + np.abs(value[:, target, None]))).all()
        assert np.allclose(
            table.expected_payment[ok, target],
            np.einsum("no,no->n", probs[ok, target], b),
            rtol=1e-12,
            atol=0,
        )
        assert np.isinf(table.expected_payment[~ok, target]).all()


@pytest.mark.parametrize(
    "num_actions,num_outcomes",
    [(2, 2), (2, 3), (2, 6), (3, 2), (3, 3), (4, 4), (5, 3), (3, 6)],
)
def test_lp_vertex_and_closed_form_agree(rng, num_actions, num_outcomes):
    q_bar, probs = random_cases(rng, 250, num_actions, num_outcomes)
    for margin in (0.0, 0.07):
        lp = min_pay_contracts(q_bar, probs, margin, method="lp")
        vertex = min_pay_contracts(q_bar, probs, margin, method="vertex")
        auto = min_pay_contracts(q_bar, probs, margin)
        for table in (vertex, auto):
            assert (table.implementable == lp.implementable).all()
            ok = lp.implementable
            assert close(table.expected_payment[ok], lp.expected_payment[ok])
            assert_ic_ll(q_bar, probs, table, margin)
        assert_ic_ll(q_bar, probs, lp, margin)
        if num_actions == 2:
            closed = min_pay_contracts(q_bar, probs, margin, method="closed_form")
            assert (closed.implementable == lp.implementable).all()
            assert close(closed.expected_payment, lp.expected_payment)
            # generic cases have a unique optimum: the contracts themselves agree
            assert close(closed.contract, lp.contract)


def test_thousands_of_cases_two_actions(rng):
    """4,000 two-action cases, closed form vs LP vs vertex, to 1e-9 (relative above 1)."""
    q_bar, probs = random_cases(rng, 1000, 2, 3)
    margin = 0.01
    lp = min_pay_contracts(q_bar, probs, margin, method="lp")
    for method in ("closed_form", "vertex"):
        table = min_pay_contracts(q_bar, probs, margin, method=method)
        assert (table.implementable == lp.implementable).all()
        assert close(table.expected_payment, lp.expected_payment)


def test_figure1_contract():
    res = min_pay_contract([-0.8, 0.0], [[0.9, 0.1], [0.1, 0.9]], target=0)
    assert res.status is ContractStatus.OPTIMAL
    assert np.allclose(res.contract, [1.0, 0.0], atol=1e-12)
    assert res.expected_payment == pytest.approx(0.9, abs=1e-12)


def test_closed_form_formula():
    """Pay only on the outcome with the largest likelihood ratio, max(ΔQ + ξ, 0) / gap."""
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.1, 0.7]])
    q_bar = np.array([-1.0, 0.0])
    xi = 0.1
    ratios = (probs[0] - probs[1]) / probs[0]
    o = int(np.argmax(ratios))
    amount = (q_bar[1] - q_bar[0] + xi) / (probs[0, o] - probs[1, o])
    table = min_pay_contracts(q_bar[None], probs[None], xi, method="closed_form")
    expected = np.zeros(3)
    expected[o] = amount
    assert np.allclose(table.contract[0, 0], expected, rtol=1e-14)
    assert table.expected_payment[0, 0] == pytest.approx(probs[0, o] * amount, rel=1e-14)


def test_best_action_is_free_without_margin(rng):
    q_bar, probs = random_cases(rng, 200, 4, 3)
    best = np.argmax(q_bar, axis=1)
    table = min_pay_contracts(q_bar, probs)
    rows = np.arange(200)
    assert table.implementable[rows, best].all()
    assert (table.expected_payment[rows, best] == 0).all()
    assert (table.contract[rows, best] == 0).all()


@pytest.mark.parametrize("method", ["lp", "vertex", "auto"])
def test_mixture_is_not_implementable(method):
    """An action whose outcome distribution is a mixture of cheaper actions' cannot be induced."""
    p1, p2 = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.1, 0.8])
    mix = 0.5 * p1 + 0.5 * p2
    probs = np.stack([p1, p2, mix])
    q_bar = np.array([0.0, 0.0, -0.3])  # the mixture is costlier than both
    table = min_pay_contracts(q_bar[None], probs[None], method=method)
    assert not table.implementable[0, 2]
    assert table.implementable[0, :2].all()
    res = min_pay_contract(q_bar, probs, target=2)
    assert res.status is ContractStatus.NOT_IMPLEMENTABLE
    assert not res.implementable and np.isinf(res.expected_payment)


def test_identical_distributions_two_actions():
    """Two actions with the same outcome distribution: the costlier one is not implementable."""
    probs = np.array([[[0.4, 0.6], [0.4, 0.6]]])
    table = min_pay_contracts(np.array([[-0.1, 0.0]]), probs, method="closed_form")
    assert table.implementable[0].tolist() == [False, True]
    lp = min_pay_contracts(np.array([[-0.1, 0.0]]), probs, method="lp")
    assert lp.implementable[0].tolist() == [False, True]


def test_single_action_is_free():
    table = min_pay_contracts(np.array([[1.0]]), np.array([[[0.3, 0.7]]]))
    assert table.implementable.all() and (table.expected_payment == 0).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(q_truncated=[[0.0, 1.0]], outcome_probs=[[0.5, 0.5]]), "shape"),
        (dict(q_truncated=[[0.0, np.nan]], outcome_probs=[[[1, 0], [0, 1]]]), "finite"),
        (dict(q_truncated=[[0.0, 1.0]], outcome_probs=[[[1, 0], [0, 1]]], margin=-1), "margin"),
        (dict(q_truncated=[[0.0, 1.0]], outcome_probs=[[[1, 0], [0, 1]]], method="x"), "method"),
        (
            dict(
                q_truncated=[[0.0, 1.0, 2.0]],
                outcome_probs=[[[1, 0], [0, 1], [0, 1]]],
                method="closed_form",
            ),
            "two actions",
        ),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        min_pay_contracts(**kwargs)


def test_lp_bad_target():
    with pytest.raises(ValueError, match="target"):
        min_pay_contract([0.0, 1.0], [[1, 0], [0, 1]], target=2)
