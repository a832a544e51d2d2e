"""The reference min-pay LP (HiGHS): scale handling and the solver-limit status."""

import numpy as np
import pytest

from contractrl.core.lp import ContractSolverError, ContractStatus, min_pay_contract

FIGURE1_Q = np.array([-0.8, 0.0])  # paper Figure 1, last step: aL costs 0.8
FIGURE1_P = np.array([[0.9, 0.1], [0.1, 0.9]])


@pytest.mark.parametrize("scale", [1e-30, 1e-8, 1.0, 1e8, 1e20, 1e25, 1e100])
def test_huge_and_tiny_right_hand_sides_scale_the_contract(scale):
    """Issue 10 item 6: HiGHS treats |bounds| >= 1e20 as infinite, so a right-hand side of 1e20
    was reported NOT_IMPLEMENTABLE, a solver limit mistaken for infeasibility (model.md §2). The LP
    is homogeneous in (Q̄, b): Figure 1's contract b = (1, 0) must scale to (scale, 0)."""
    res = min_pay_contract(FIGURE1_Q * scale, FIGURE1_P, target=0)
    assert res.status is ContractStatus.OPTIMAL
    assert res.contract == pytest.approx([scale, 0.0], rel=1e-9, abs=1e-9 * scale)
    assert res.expected_payment == pytest.approx(0.9 * scale, rel=1e-9)


@pytest.mark.parametrize("scale", [1.0, 1e20, 1e100])
def test_not_implementable_stays_so_at_any_scale(scale):
    """A target whose outcome distribution is a mixture of cheaper actions' is infeasible."""
    p1, p2 = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.1, 0.8])
    probs = np.stack([p1, p2, 0.5 * p1 + 0.5 * p2])
    res = min_pay_contract(np.array([0.0, 0.0, -0.3]) * scale, probs, target=2)
    assert res.status is ContractStatus.NOT_IMPLEMENTABLE


def test_overflowing_payments_are_a_solver_error_not_infeasibility():
    """Payments beyond float64's range cannot be represented: an error, never 'not
    implementable'."""
    probs = np.array([[0.5 + 1e-9, 0.5 - 1e-9], [0.5, 0.5]])
    with pytest.raises(ContractSolverError, match="overflow"):
        min_pay_contract(np.array([-1e300, 1e300]), probs, target=0)
