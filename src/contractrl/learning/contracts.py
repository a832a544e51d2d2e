"""Min-pay contracts inside jitted JAX code (paper Eq. 3, docs/model.md §2).

The same exact methods as :mod:`contractrl.core.contracts`, written in ``jax.numpy`` with static
shapes so they run inside ``lax.scan``/``vmap``: the closed form for two actions, and vertex
enumeration (every ``k x k`` system of tight IC rows on a support of ``k`` outcomes, the
cheapest feasible one wins) for more. Works in float32 (training) and float64 (tests, where it
matches the HiGHS LP to 1e-9).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

#: Likelihood gaps at or below this (relative to 1) cannot separate two actions.
GAP_TOL = 1e-6
#: Vertex enumeration is used while it needs at most this many square systems per target.
VERTEX_LIMIT = 2000


def _closed_form(gap, need, cost):
    """Two actions. ``gap [..., O]``, ``need [...]``, ``cost [..., O]`` -> ``(b, ok)``."""
    usable = gap > GAP_TOL
    ratio = jnp.where(usable, gap / jnp.where(usable, cost, 1.0), -jnp.inf)
    best = jnp.argmax(ratio, axis=-1)
    one_hot = jax.nn.one_hot(best, gap.shape[-1], dtype=gap.dtype)
    best_gap = jnp.sum(one_hot * gap, axis=-1)
    can_separate = jnp.any(usable, axis=-1)
    amount = jnp.where(
        (need > 0) & can_separate, need / jnp.where(can_separate, best_gap, 1.0), 0.0
    )
    return one_hot * amount[..., None], (need <= 0) | can_separate


def _systems(num_rows: int, num_outcomes: int):
    """Static index arrays of every square system, grouped by size ``k``."""
    groups = []
    # k = O never helps: every IC row of D sums to zero over outcomes, so D[I, all] is singular.
    for k in range(1, min(num_rows, num_outcomes - 1) + 1):
        rows = list(itertools.combinations(range(num_rows), k))
        cols = list(itertools.combinations(range(num_outcomes), k))
        pairs = list(itertools.product(rows, cols))
        groups.append((np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])))
    return groups


def _solve_small(mats, rhs):
    """Batched ``k x k`` solves with a regularity mask (explicit for ``k <= 2``).

    A system is regular when ``|det| > GAP_TOL^k · Π row norms`` (scale-free; Hadamard's bound
    makes the right-hand side the largest possible determinant up to ``GAP_TOL^k``).
    """
    k = mats.shape[-1]
    bound = GAP_TOL**k * jnp.prod(jnp.linalg.norm(mats, axis=-1), axis=-1)
    if k == 1:
        det = mats[..., 0, 0]
        regular = jnp.abs(det) > GAP_TOL
        return rhs / jnp.where(regular, det, 1.0)[..., None], regular
    if k == 2:
        a, b = mats[..., 0, 0], mats[..., 0, 1]
        c, d = mats[..., 1, 0], mats[..., 1, 1]
        det = a * d - b * c
        regular = jnp.abs(det) > bound
        inv = 1.0 / jnp.where(regular, det, 1.0)
        x0 = (d * rhs[..., 0] - b * rhs[..., 1]) * inv
        x1 = (a * rhs[..., 1] - c * rhs[..., 0]) * inv
        return jnp.stack([x0, x1], axis=-1), regular
    det = jnp.linalg.det(mats)
    regular = jnp.abs(det) > bound
    safe = jnp.where(regular[..., None, None], mats, jnp.eye(k, dtype=mats.dtype))
    return jnp.linalg.solve(safe, rhs[..., None])[..., 0], regular


def _vertex(gap, need, cost):
    """``gap [..., m, O]``, ``need [..., m]``, ``cost [..., O]`` -> ``(b [..., O], ok [...])``."""
    m, num_outcomes = gap.shape[-2:]
    scale = 1.0 + jnp.max(jnp.abs(need), axis=-1)
    tol = (1e-6 if gap.dtype == jnp.float32 else 1e-10) * scale
    zero_ok = jnp.all(need <= 0, axis=-1)
    best_cost = jnp.where(zero_ok, 0.0, jnp.inf).astype(gap.dtype)
    best_b = jnp.zeros(gap.shape[:-2] + (num_outcomes,), gap.dtype)
    for rows, cols in _systems(m, num_outcomes):
        mats = gap[..., rows[:, :, None], cols[:, None, :]]  # [..., C, k, k]
        x, regular = _solve_small(mats, need[..., rows])  # [..., C, k]
        valid = regular & jnp.all(x >= -tol[..., None, None], axis=-1)
        placed = jax.nn.one_hot(cols, num_outcomes, dtype=gap.dtype)  # [C, k, O]
        b = jnp.einsum("...ck,cko->...co", jnp.maximum(x, 0.0), placed)  # [..., C, O]
        slack = jnp.einsum("...mo,...co->...cm", gap, b) - need[..., None, :]
        valid &= jnp.all(slack >= -tol[..., None, None], axis=-1)
        total = jnp.where(valid, jnp.einsum("...o,...co->...c", cost, b), jnp.inf)
        choice = jnp.argmin(total, axis=-1)
        cand = jnp.take_along_axis(total, choice[..., None], axis=-1)[..., 0]
        cand_b = jnp.take_along_axis(b, choice[..., None, None], axis=-2)[..., 0, :]
        better = cand < best_cost
        best_cost = jnp.where(better, cand, best_cost)
        best_b = jnp.where(better[..., None], cand_b, best_b)
    return best_b, jnp.isfinite(best_cost)


def min_pay_all_targets(q_truncated, outcome_probs, margin=0.0):
    """Min-pay contracts for every target action, batched and jittable.

    Args:
        q_truncated: ``[..., A]`` the agent's truncated Q-values.
        outcome_probs: ``[..., A, O]`` outcome distributions.
        margin: nudge ``ξ >= 0`` (scalar or broadcastable to ``[...]``).

    Returns:
        ``(contract [..., A, O], expected_payment [..., A], implementable [..., A])``;
        the payment is ``inf`` where not implementable.
    """
    num_actions, num_outcomes = outcome_probs.shape[-2:]
    if num_actions > 2 and math.comb(num_actions - 1 + num_outcomes, num_outcomes) > VERTEX_LIMIT:
        raise ValueError(
            f"in-loop min-pay solver: {num_actions} actions x {num_outcomes} outcomes needs "
            f"more than {VERTEX_LIMIT} vertex systems per target"
        )
    margin = jnp.asarray(margin, q_truncated.dtype)
    contracts, oks = [], []
    for target in range(num_actions):
        others = [a for a in range(num_actions) if a != target]
        cost = outcome_probs[..., target, :]
        if not others:
            contracts.append(jnp.zeros_like(cost))
            oks.append(jnp.ones(cost.shape[:-1], bool))
            continue
        gap = cost[..., None, :] - outcome_probs[..., others, :]
        need = q_truncated[..., others] - q_truncated[..., target, None] + margin[..., None]
        if num_actions == 2:
            b, ok = _closed_form(gap[..., 0, :], need[..., 0], cost)
        else:
            b, ok = _vertex(gap, need, cost)
        contracts.append(b)
        oks.append(ok)
    contract = jnp.stack(contracts, axis=-2)
    ok = jnp.stack(oks, axis=-1)
    payment = jnp.where(ok, jnp.einsum("...ao,...ao->...a", outcome_probs, contract), jnp.inf)
    return contract, payment, ok
