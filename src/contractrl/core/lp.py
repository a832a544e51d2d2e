r"""The min-pay contract LP for one state and one target action (paper Eq. 3, docs/model.md §2).

Given the agent's truncated Q-values ``Q̄[A]`` (its value of each action *excluding* the current
payment), the outcome distributions ``P[A, O]``, a target action ``a*`` and a nudge margin
``ξ >= 0``:

.. math::

    \min_{b \in \mathbb{R}^O} \; P[a^*] \cdot b
    \quad \text{s.t.} \quad
    \bar Q[a^*] + P[a^*] \cdot b \;\ge\; \bar Q[a] + P[a] \cdot b + \xi \;\; \forall a \ne a^*,
    \qquad b \ge 0.

This module is the *reference*: one HiGHS LP (through :func:`scipy.optimize.linprog`). The fast
paths in :mod:`contractrl.core.contracts` (closed form, batched vertex enumeration) are tested
against it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

#: HiGHS primal/dual feasibility tolerance used for the reference LP.
LP_TOL = 1e-10


class ContractStatus(enum.Enum):
    """Outcome of a min-pay contract problem."""

    OPTIMAL = "optimal"
    NOT_IMPLEMENTABLE = "not_implementable"


class ContractSolverError(RuntimeError):
    """The LP solver failed (numerical trouble, iteration limit): not an infeasibility."""


@dataclass(frozen=True)
class ContractResult:
    """Min-pay contract for one target action.

    Attributes:
        status: ``OPTIMAL`` or ``NOT_IMPLEMENTABLE`` (the LP is infeasible).
        contract: ``[O]`` payments per outcome (zeros when not implementable).
        expected_payment: ``P[a*] · b`` under the target action (``inf`` when not
            implementable).
        target: the target action ``a*``.
        margin: the nudge ``ξ`` used.
    """

    status: ContractStatus
    contract: np.ndarray
    expected_payment: float
    target: int
    margin: float

    @property
    def implementable(self) -> bool:
        """Whether the target action can be made a best response."""
        return self.status is ContractStatus.OPTIMAL


def validate_contract_inputs(
    q_truncated: np.ndarray, outcome_probs: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and values of min-pay inputs (batched or not); raise ``ValueError``.

    Args:
        q_truncated: ``[..., A]`` truncated Q-values.
        outcome_probs: ``[..., A, O]`` outcome distributions.
        margin: nudge ``ξ >= 0``.

    Returns:
        Both arrays as float64.
    """
    q = np.asarray(q_truncated, dtype=np.float64)
    p = np.asarray(outcome_probs, dtype=np.float64)
    if p.ndim < 2 or q.shape != p.shape[:-1]:
        raise ValueError(
            f"q_truncated shape {q.shape} must equal outcome_probs shape {p.shape} without its "
            "last (outcome) axis"
        )
    if not (np.isfinite(q).all() and np.isfinite(p).all()):
        raise ValueError("q_truncated and outcome_probs must be finite")
    if (p < 0).any():
        raise ValueError("outcome_probs must be non-negative")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    return q, p


def min_pay_contract(
    q_truncated: np.ndarray, outcome_probs: np.ndarray, target: int, margin: float = 0.0
) -> ContractResult:
    """Solve the min-pay contract LP (paper Eq. 3) for one state with HiGHS.

    Args:
        q_truncated: ``[A]`` the agent's truncated Q-values at the state.
        outcome_probs: ``[A, O]`` outcome distribution of each action.
        target: the action ``a*`` to implement.
        margin: nudge ``ξ >= 0``; the target must beat every other action by ``ξ``.

    Returns:
        A :class:`ContractResult`; ``NOT_IMPLEMENTABLE`` when the LP is infeasible.

    Raises:
        ValueError: malformed input.
        ContractSolverError: HiGHS stopped without proving optimality or infeasibility.

    Example (paper Figure 1, last step: ``aL`` costs 0.8, L w.p. 0.9 vs 0.1):
        >>> res = min_pay_contract([-0.8, 0.0], [[0.9, 0.1], [0.1, 0.9]], target=0)
        >>> res.status.value, np.round(res.contract, 9).tolist(), round(res.expected_payment, 9)
        ('optimal', [1.0, 0.0], 0.9)
    """
    q, p = validate_contract_inputs(q_truncated, outcome_probs, margin)
    if q.ndim != 1:
        raise ValueError(
            f"min_pay_contract solves one state: q_truncated must be [A], got {q.shape}"
        )
    num_actions, num_outcomes = p.shape
    if not 0 <= target < num_actions:
        raise ValueError(f"target {target} out of range [0, {num_actions})")
    others = np.arange(num_actions) != target
    # IC rows: (P[a] - P[a*]) · b <= Q̄[a*] - Q̄[a] - ξ  for a != a*.
    a_ub = p[others] - p[target]
    with np.errstate(over="ignore"):  # checked below: an overflow is a solver limit
        b_ub = q[target] - q[others] - margin
    # Scale each IC row to a largest coefficient of 1: HiGHS's tolerances are absolute, and rows
    # of close outcome distributions (differences ~1e-6) would otherwise be met only loosely.
    # A row of zeros (identical distributions) stays as it is: feasible iff its rhs is >= 0.
    row_scale = np.abs(a_ub).max(axis=1, initial=0.0)
    row_scale = np.where(row_scale > 0, row_scale, 1.0)
    with np.errstate(over="ignore"):
        a_ub, b_ub = a_ub / row_scale[:, None], b_ub / row_scale
    # The LP is homogeneous in (rhs, b): solve it for rhs / M and multiply the payments by M. This
    # keeps every magnitude HiGHS sees at most 1, far below its "infinite bound" of 1e20 (which
    # would otherwise drop a row or report infeasibility) and makes its tolerances relative.
    magnitude = float(np.abs(b_ub).max(initial=0.0))
    if not np.isfinite(magnitude):
        raise ContractSolverError(
            "min-pay LP: the incentive constraints overflow float64 after scaling (Q-value "
            "differences too large for these outcome distributions)"
        )
    magnitude = magnitude if magnitude > 0 else 1.0
    res = linprog(
        c=p[target],
        A_ub=a_ub if a_ub.size else None,
        b_ub=b_ub / magnitude if a_ub.size else None,
        bounds=[(0.0, None)] * num_outcomes,
        method="highs",
        options={"primal_feasibility_tolerance": LP_TOL, "dual_feasibility_tolerance": LP_TOL},
    )
    if res.status == 2:
        return ContractResult(
            ContractStatus.NOT_IMPLEMENTABLE, np.zeros(num_outcomes), np.inf, target, margin
        )
    if res.status != 0:
        raise ContractSolverError(
            f"HiGHS failed on the min-pay LP (status {res.status}): {res.message}"
        )
    contract = np.maximum(res.x, 0.0) * magnitude
    if not np.isfinite(contract).all():
        raise ContractSolverError("min-pay LP: the optimal payments overflow float64")
    return ContractResult(
        ContractStatus.OPTIMAL, contract, float(p[target] @ contract), target, margin
    )
