"""Min-pay contracts: LP reference vs closed form vs batched vertex enumeration, invariants."""

import numpy as np
import pytest

from contractrl.core.contracts import min_pay_contracts
from contractrl.core.lp import ContractSolverError, ContractStatus, min_pay_contract
from reference import exact_min_pay

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


def test_closed_form_matches_the_lp_and_exact_reference():
    """The closed form against two independent solvers (not its own formula): the HiGHS LP of
    one (state, target), and the LP solved in exact rational arithmetic over every basis."""
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.1, 0.7]])
    q_bar = np.array([-1.0, 0.0])
    for xi in (0.0, 0.1):
        table = min_pay_contracts(q_bar[None], probs[None], xi, method="closed_form")
        for target in range(2):
            lp = min_pay_contract(q_bar, probs, target, margin=xi)
            exact = exact_min_pay(q_bar, probs, target, xi)
            assert table.implementable[0, target] and lp.implementable and exact is not None
            assert table.expected_payment[0, target] == pytest.approx(float(exact), rel=1e-12)
            assert table.expected_payment[0, target] == pytest.approx(lp.expected_payment, rel=1e-9)
            # the LP's optimum is unique here: the contracts themselves agree
            assert np.allclose(table.contract[0, target], lp.contract, rtol=1e-9, atol=1e-12)
        assert_ic_ll(q_bar[None], probs[None], table, xi)
    assert table.expected_payment[0, 1] == 0  # the agent's own best action is free
    assert table.expected_payment[0, 0] > 0


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


def close_cases(rng, num, num_actions, num_outcomes, gap):
    """Outcome distributions within ``~gap`` of each other; Q̄ gaps ``~gap`` (payments ~1)."""
    base = rng.dirichlet(np.ones(num_outcomes), size=num)
    step = rng.normal(size=(num, num_actions, num_outcomes))
    step -= step.mean(axis=2, keepdims=True)
    probs = np.clip(base[:, None, :] + gap * step, 0.0, None)
    probs /= probs.sum(axis=2, keepdims=True)
    return rng.normal(size=(num, num_actions)) * gap, probs


@pytest.mark.parametrize("gap", [1e-2, 1e-4, 1e-5, 1e-6, 1e-8])
@pytest.mark.parametrize("num_actions,num_outcomes", [(3, 3), (3, 4), (4, 3)])
def test_vertex_and_lp_agree_with_exact_arithmetic_on_close_distributions(
    gap, num_actions, num_outcomes
):
    """Issue 10 item 1: a k x k vertex system of rows ~gap has determinant ~gap^k; an absolute
    singularity test (|det| <= 1e-12) dropped the optimal vertex for gaps <= 1e-5. Reference:
    the LP solved in exact rational arithmetic (tests/reference.py). The LP is homogeneous in
    (Q̄, b), so at scales 1e-8, 1e8 and 1e20 of Q̄ every payment must scale alike.

    Tolerances: relative 1e-7 on the expected payment. Where the exact optimum costs more than
    1e6 times the payment scale ``|ΔQ̄| / gap`` its vertex system is so ill-conditioned that
    float64 cannot place it (its payments carry errors larger than the IC gaps): there both
    float solvers may call the action not implementable, or agree to 1e-6."""
    rng = np.random.default_rng(int(-np.log10(gap)) * 100 + num_actions * 10 + num_outcomes)
    q_bar, probs = close_cases(rng, 40, num_actions, num_outcomes, gap)
    exact = [
        [exact_min_pay(q_bar[n], probs[n], t) for t in range(num_actions)]
        for n in range(probs.shape[0])
    ]
    for scale in (1.0, 1e-8, 1e8, 1e20):
        tables = {m: min_pay_contracts(q_bar * scale, probs, method=m) for m in ("vertex", "auto")}
        for n in range(probs.shape[0]):
            for target in range(num_actions):
                ref = exact[n][target]
                lp = lp_or_none(q_bar[n] * scale, probs[n], target)
                if lp is not None:
                    tables_n = [("lp", lp.implementable, lp.expected_payment)]
                else:
                    tables_n = []
                tables_n += [
                    (m, t.implementable[n, target], t.expected_payment[n, target])
                    for m, t in tables.items()
                ]
                # Payments are O(1) by construction: Q̄ gaps and distribution gaps are both ~gap.
                ill = ref is not None and ref > 1e6
                for method, ok, payment in tables_n:
                    where = (method, scale, n, target, ref, payment)
                    if ref is None:
                        assert not ok, where
                    elif ill:
                        assert not ok or payment / scale == pytest.approx(float(ref), rel=1e-6), (
                            where
                        )
                    else:
                        assert ok, where
                        assert payment / scale == pytest.approx(float(ref), rel=1e-7, abs=1e-300), (
                            where
                        )
        assert_ic_ll(q_bar * scale, probs, tables["vertex"], 0.0)


def lp_or_none(q_bar, probs, target):
    """The reference LP; ``None`` where HiGHS reports numerical trouble (a solver failure)."""
    try:
        return min_pay_contract(q_bar, probs, target)
    except ContractSolverError:
        return None
