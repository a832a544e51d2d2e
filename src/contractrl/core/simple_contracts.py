"""The contracts people use, optimised exactly and set beside the SPE on the same game.

Each *contract class* fixes how payments may depend on the state and the outcome; the principal
picks the best contract of the class, the agent best-responds in its own MDP (ties broken in the
principal's favour, paper Lemma B.12; docs/model.md §1), and everything is evaluated exactly:

* ``no_contract``: pay nothing;
* ``fixed_price``: a price ``λ`` paid on delivery: on every outcome that earns the principal a
  reward (``r^p(s, o) > 0``; in the delegation game, acceptance of the task);
* ``pay_for_pass``: a bonus ``λ`` on the top outcome, at every state;
* ``linear``: a share ``α ∈ [0, 1]`` of the principal's reward, ``b(s, o) = α · r^p(s, o)``;
* ``stationary``: one outcome contract ``b[O]`` used at every state;
* ``spe``: the exact min-pay SPE contracts, state by state (paper Eq. 3, Section 3;
  :func:`contractrl.core.solver.solve_spe`);
* ``first_best``: the principal picks the action itself and pays exactly its cost (agent
  utility 0, principal utility = the largest welfare). With costs ``>= 0`` and a free cheapest
  action the agent's utility is ``>= 0`` under any contract, so first-best bounds every class.

Optimisers. The one-parameter classes are solved *exactly* by a homotopy in the parameter
``λ``: for a fixed agent policy every value is linear in ``λ``, the agent's optimal value is
convex and piecewise linear, and the principal's value is linear and non-increasing between the
agent's switching points; so the optimum is ``λ = 0`` or a switching point, where the agent is
indifferent and the principal's favourite among the agent's optimal policies is played. The
stationary class (``O`` parameters) is solved by enumerating the agent's stationary policies
(one LP each: IC constraints linear in ``b``) when there are at most ``max_enumeration`` of
them, otherwise by coordinate ascent with exact line searches from several starts (a local
optimum; :attr:`ContractRow.method` says which).

Scope: games whose stationary policies are optimal: infinite horizons, or finite ones whose
states are tied to time (acyclic, every path within the horizon), like
:func:`contractrl.core.delegation.delegation_game`.

Example:
    >>> from contractrl.core.delegation import delegation_game
    >>> cmp = compare_contracts(delegation_game(deadline=None))
    >>> [r.name for r in cmp.rows][:3]
    ['no_contract', 'fixed_price', 'pay_for_pass']
    >>> cmp.row("spe").principal_utility >= cmp.row("stationary").principal_utility
    True
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from contractrl.core.evaluate import evaluate_policies
from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.solution import PrincipalPolicy
from contractrl.core.sweep import make_schedule

#: Relative tolerance within which two agent payoffs tie (as :data:`.evaluate.TIE_TOL`).
TIE_TOL = 1e-9
#: Slopes (payment sensitivities) below this are zero in the homotopy.
SLOPE_TOL = 1e-12
#: The contract classes of :func:`compare_contracts`, in table order.
CONTRACT_CLASSES = (
    "no_contract",
    "fixed_price",
    "pay_for_pass",
    "linear",
    "stationary",
    "spe",
    "first_best",
)
DESCRIPTIONS = {
    "no_contract": "pay nothing",
    "fixed_price": "fixed price on delivery",
    "pay_for_pass": "bonus on the top outcome",
    "linear": "best linear (share of reward)",
    "stationary": "best stationary outcome contract",
    "spe": "exact SPE (min-pay, per state)",
    "first_best": "first-best (tier observed)",
}


@dataclass(frozen=True)
class _Dense:
    """Dense tables of a small game: ``P[S,A,O]``, ``r[S,A]``, ``rp[S,O]``, ``T[S,O,S]``."""

    probs: np.ndarray
    reward: np.ndarray
    rp: np.ndarray
    trans: np.ndarray
    gamma: float
    s0: int

    @classmethod
    def of(cls, game: PrincipalAgentMDP) -> _Dense:
        if make_schedule(game).kind not in ("levels", "fixed_point"):
            raise ValueError(
                f"{game.name}: stationary contracts need an infinite horizon or states tied to "
                "time (acyclic, every path within the horizon)"
            )
        s, o = game.num_states, game.num_outcomes
        trans = game.transitions.toarray().reshape(s, o, s)
        return cls(
            game.outcome_probs,
            game.agent_reward,
            game.principal_reward,
            trans,
            game.discount,
            game.initial_state,
        )

    def evaluate(self, policy: np.ndarray, immediate: np.ndarray) -> np.ndarray:
        """``[S]`` (or ``[S, k]``) values of ``policy[S]`` with per-state reward ``immediate``."""
        states = np.arange(policy.size)
        step = np.einsum("so,sot->st", self.probs[states, policy], self.trans)
        return np.linalg.solve(np.eye(policy.size) - self.gamma * step, immediate)

    def q(self, values: np.ndarray, immediate: np.ndarray) -> np.ndarray:
        """``[S, A]`` ``immediate[s,a] + γ Σ_o P[s,a,o] Σ_s' T[s,o,s'] values[s']``."""
        cont = np.einsum("sot,t->so", self.trans, values)
        return immediate + self.gamma * np.einsum("sao,so->sa", self.probs, cont)

    def agent_immediate(self, contract: np.ndarray) -> np.ndarray:
        """``[S, A]`` the agent's reward plus expected payment under ``contract[S, O]``."""
        return self.reward + np.einsum("sao,so->sa", self.probs, contract)

    def principal_immediate(self, contract: np.ndarray) -> np.ndarray:
        """``[S, A]`` the principal's expected reward minus payment under ``contract[S, O]``."""
        return np.einsum("sao,so->sa", self.probs, self.rp - contract)


def _rows(policy: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[np.arange(policy.size), policy]


def _improve(d: _Dense, immediate: np.ndarray, allowed: np.ndarray | None = None):
    """Policy iteration (exact evaluation): an optimal policy, its values and Q."""
    masked = immediate if allowed is None else np.where(allowed, immediate, -np.inf)
    policy = np.argmax(masked, axis=1)
    for _ in range(10_000):
        values = d.evaluate(policy, _rows(policy, immediate))
        q = d.q(values, immediate)
        if allowed is not None:
            q = np.where(allowed, q, -np.inf)
        better = q.max(axis=1) > values + TIE_TOL * (1.0 + np.abs(values))
        if not better.any():
            return policy, values, q
        policy = np.where(better, np.argmax(q, axis=1), policy)
    raise RuntimeError("policy iteration did not terminate")  # pragma: no cover


def respond(d: _Dense, contract: np.ndarray) -> np.ndarray:
    """``[S]`` the agent's best response to a stationary ``contract[S, O]``.

    Among the agent's optimal actions (within :data:`TIE_TOL`) the principal's favourite policy
    is played (paper Lemma B.12): policy iteration for the principal restricted to them.
    """
    _, values, q = _improve(d, d.agent_immediate(contract))
    allowed = q >= (values - TIE_TOL * (1.0 + np.abs(values)))[:, None]
    policy, _, _ = _improve(d, d.principal_immediate(contract), allowed)
    return policy


def _principal_value(d: _Dense, contract: np.ndarray) -> tuple[float, np.ndarray]:
    policy = respond(d, contract)
    value = d.evaluate(policy, _rows(policy, d.principal_immediate(contract)))[d.s0]
    return float(value), policy


def _right_optimal(d: _Dense, base, direction, lam, policy):
    """The agent's optimal policy at ``λ + ε``: policy iteration on ``(value, slope)``."""
    imm0 = d.agent_immediate(base + lam * direction)
    imm1 = np.einsum("sao,so->sa", d.probs, direction)
    for _ in range(10_000):
        v = d.evaluate(policy, np.stack([_rows(policy, imm0), _rows(policy, imm1)], axis=1))
        gap = d.q(v[:, 0], imm0) - v[:, :1]
        slope = d.q(v[:, 1], imm1) - v[:, 1:]
        tol = (TIE_TOL * (1.0 + np.abs(v[:, 0])))[:, None]
        gains = gap > tol
        tied_up = (np.abs(gap) <= tol) & (slope > SLOPE_TOL)
        if not (gains | tied_up).any():
            return policy, gap, slope, tol
        first = np.where(gains.any(axis=1), np.argmax(gap, axis=1), -1)
        second = np.argmax(np.where(tied_up, slope, -np.inf), axis=1)
        policy = np.where(first >= 0, first, np.where(tied_up.any(axis=1), second, policy))
    raise RuntimeError("homotopy policy iteration did not terminate")  # pragma: no cover


def line_search(
    d: _Dense,
    base: np.ndarray,
    direction: np.ndarray,
    upper: float = np.inf,
    max_breakpoints: int = 100_000,
) -> tuple[float, float]:
    """Exact ``max_{0 <= λ <= upper}`` of the principal's value under ``base + λ·direction``.

    Args:
        d: the game's dense tables.
        base: ``[S, O]`` contract at ``λ = 0``, ``>= 0``.
        direction: ``[S, O]`` ``>= 0``: payments grow with ``λ``.
        upper: largest ``λ``.
        max_breakpoints: safety bound on the agent's switching points visited.

    Returns:
        ``(λ*, principal value at s0)``; the smallest maximiser.
    """
    lam, policy = 0.0, np.argmax(d.agent_immediate(base), axis=1)
    candidates = [0.0]
    for _ in range(max_breakpoints):
        policy, gap, slope, tol = _right_optimal(d, base, direction, lam, policy)
        rising = (slope > SLOPE_TOL) & (gap <= tol)
        if not rising.any():
            break
        step = float(np.min(-gap[rising] / slope[rising]))
        lam += max(step, 1e-12 * (1.0 + lam))
        if lam > upper:
            break
        candidates.append(lam)
    else:  # pragma: no cover
        raise RuntimeError("line search: too many switching points")
    best_lam, best = 0.0, -np.inf
    for cand in candidates:
        value, _ = _principal_value(d, base + cand * direction)
        if value > best + TIE_TOL * (1.0 + abs(best) if np.isfinite(best) else 1.0):
            best_lam, best = cand, value
    return best_lam, best


def best_stationary_enumerated(d: _Dense) -> tuple[np.ndarray, float]:
    """Best stationary contract ``b[O]`` by enumerating the agent's stationary policies.

    For a target policy ``σ`` the agent's values are linear in ``b``, so "``σ`` is a best
    response" is a set of linear inequalities and the principal's value is linear: one LP per
    policy (``A^S`` of them). Returns ``(b, principal value at s0)``.
    """
    num_s, num_a, num_o = d.probs.shape
    best_b, best = np.zeros(num_o), -np.inf
    for sigma in itertools.product(range(num_a), repeat=num_s):
        sigma = np.array(sigma)
        p_sigma = d.probs[np.arange(num_s), sigma]  # [S, O]
        # V(b) = v0 + vb @ b, principal U(b) = u0 - vb[s0] @ b
        sol = d.evaluate(
            sigma, np.column_stack([_rows(sigma, d.reward), p_sigma, (p_sigma * d.rp).sum(1)])
        )
        v0, vb, u0 = sol[:, 0], sol[:, 1 : 1 + num_o], sol[d.s0, -1]
        w0 = np.einsum("sot,t->so", d.trans, v0)
        wb = np.einsum("sot,tk->sok", d.trans, vb)
        q0 = d.reward + d.gamma * np.einsum("sao,so->sa", d.probs, w0)
        qb = d.probs + d.gamma * np.einsum("sao,sok->sak", d.probs, wb)
        others = np.ones((num_s, num_a), dtype=bool)
        others[np.arange(num_s), sigma] = False
        a_ub = (qb - qb[np.arange(num_s), sigma][:, None, :])[others]
        b_ub = -(q0 - q0[np.arange(num_s), sigma][:, None])[others]
        res = linprog(vb[d.s0], A_ub=a_ub, b_ub=b_ub, bounds=[(0, None)] * num_o, method="highs")
        if res.status == 0 and u0 - res.fun > best:
            best_b, best = np.maximum(res.x, 0.0), float(u0 - res.fun)
    return best_b, best


def best_stationary_coordinate(
    d: _Dense, starts: Sequence[np.ndarray], max_sweeps: int = 100
) -> tuple[np.ndarray, float]:
    """Best stationary contract ``b[O]`` by coordinate ascent with exact line searches.

    From each start, sweep the outcomes: set ``b[o]`` to its exact best value with the other
    payments fixed (:func:`line_search`), until a sweep improves nothing. A local optimum.
    """
    num_s, num_o = d.rp.shape
    best_b, best = np.zeros(num_o), -np.inf
    for start in starts:
        b = np.array(start, dtype=np.float64)
        value, _ = _principal_value(d, np.tile(b, (num_s, 1)))
        for _ in range(max_sweeps):
            improved = False
            for o in range(num_o):
                trial = b.copy()
                trial[o] = 0.0
                unit = np.zeros((num_s, num_o))
                unit[:, o] = 1.0
                lam, v = line_search(d, np.tile(trial, (num_s, 1)), unit)
                if v > value + TIE_TOL * (1.0 + abs(value)):
                    b, value, improved = trial + lam * unit[0], v, True
            if not improved:
                break
        if value > best:
            best_b, best = b, value
    return best_b, best


@dataclass(frozen=True)
class ContractRow:
    """One contract class on one game, evaluated exactly from the initial state.

    Attributes:
        name: the class (:data:`CONTRACT_CLASSES`).
        description: a few words for tables.
        principal_utility: the principal's expected discounted reward minus payments.
        agent_utility: the agent's expected discounted payments minus costs.
        welfare: the sum of the two (payments cancel).
        expected_payment: expected discounted payments (first-best: the agent's costs).
        action: ``[S]`` the action (tier) the agent takes in each state.
        contract: ``[S, O]`` payments (``None`` for first-best: it pays on actions).
        parameter: the optimised price, bonus or share (``None`` for the other classes).
        method: ``exact`` or, for the stationary class on large games, ``coordinate ascent``.
    """

    name: str
    description: str
    principal_utility: float
    agent_utility: float
    welfare: float
    expected_payment: float
    action: np.ndarray
    contract: np.ndarray | None
    parameter: float | None
    method: str


@dataclass(frozen=True)
class ContractComparison:
    """The contract classes side by side on one game (:func:`compare_contracts`).

    Attributes:
        game_name: the game's name.
        rows: one :class:`ContractRow` per class, in :data:`CONTRACT_CLASSES` order.
        action_names: the game's action names.
        state_names: the game's state names.
    """

    game_name: str
    rows: tuple[ContractRow, ...]
    action_names: tuple[str, ...]
    state_names: tuple[str, ...]

    def row(self, name: str) -> ContractRow:
        """The row of class ``name``."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no contract class {name!r}; have {[r.name for r in self.rows]}")

    def share_of_spe(self, name: str) -> float:
        """The class's principal utility over the SPE's (NaN without an SPE row)."""
        if not any(r.name == "spe" for r in self.rows):
            return float("nan")
        return self.row(name).principal_utility / self.row("spe").principal_utility

    def markdown(self, states: Sequence[int] | None = None) -> str:
        """A Markdown table; ``states``: whose action (tier) to show (default: all)."""
        states = range(len(self.state_names)) if states is None else states
        head = ["contract", "principal", "agent", "welfare", "payment", "vs SPE", "parameter"]
        head += [self.state_names[s] for s in states]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r.description] + [
                f"{x:.4f}"
                for x in (r.principal_utility, r.agent_utility, r.welfare, r.expected_payment)
            ]
            cells.append(f"{self.share_of_spe(r.name):.3f}")
            cells.append("" if r.parameter is None else f"{r.parameter:.4f}")
            cells += [self.action_names[r.action[s]] for s in states]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


#: Largest-reward magnitudes solved as they are; outside, :func:`compare_contracts` rescales.
UNIT_WINDOW = (0.1, 10.0)


def _scaled(row: ContractRow, scale: float) -> ContractRow:
    """``row`` of a game whose rewards were divided by ``scale``, in the game's own units."""
    amount = row.parameter is not None and row.name in ("fixed_price", "pay_for_pass")
    return dataclasses.replace(
        row,
        principal_utility=row.principal_utility * scale,
        agent_utility=row.agent_utility * scale,
        welfare=row.welfare * scale,
        expected_payment=row.expected_payment * scale,
        contract=None if row.contract is None else row.contract * scale,
        parameter=row.parameter * scale if amount else row.parameter,  # a share stays a share
    )


def _row(game, name, action, contract, parameter=None, method="exact") -> ContractRow:
    policy = PrincipalPolicy(action[None, :], contract[None, :, :])
    values = evaluate_policies(game, policy, action[None, :])
    s0 = game.initial_state
    p, a = float(values.principal[0, s0]), float(values.agent[0, s0])
    return ContractRow(
        name,
        DESCRIPTIONS[name],
        p,
        a,
        p + a,
        float(values.payment[0, s0]),
        action,
        contract,
        parameter,
        method,
    )


def first_best(game: PrincipalAgentMDP) -> ContractRow:
    """The principal picks the action and pays its cost: the welfare-maximising policy.

    Raises:
        ValueError: ``agent_reward`` has a positive entry (not a cost).
    """
    if (game.agent_reward > 0).any():
        s, a = np.argwhere(game.agent_reward > 0)[0]
        raise ValueError(f"first_best: agent_reward[{s}][{a}] > 0 is not a cost")
    d = _Dense.of(game)
    policy, welfare, _ = _improve(d, d.agent_immediate(d.rp))
    cost = -d.evaluate(policy, _rows(policy, d.reward))[d.s0]
    w = float(welfare[d.s0])
    return ContractRow(
        "first_best",
        DESCRIPTIONS["first_best"],
        w,
        0.0,
        w,
        float(cost),
        policy,
        None,
        None,
        "exact",
    )


def compare_contracts(
    game: PrincipalAgentMDP,
    top_outcome: int = -1,
    max_enumeration: int = 729,
    stationary_starts: Sequence[np.ndarray] = (),
    require_spe: bool = True,
) -> ContractComparison:
    """Every contract class of the module docstring, optimised and evaluated on ``game``.

    Args:
        game: a game whose stationary policies are optimal (module docstring).
        top_outcome: the outcome ``pay_for_pass`` pays on (default the last).
        max_enumeration: the stationary class is solved exactly by enumeration when the agent
            has at most this many stationary policies (``A^S``), else by coordinate ascent.
        stationary_starts: extra ``[O]`` starting contracts for the coordinate ascent (it
            always starts from zero, the best bonus and every SPE contract).
        require_spe: if the exact solver finds no SPE (an infinite-horizon game may have no
            stationary SPE), raise; with ``False`` leave the ``spe`` row out instead.

    Raises:
        ValueError: the game does not fit (module docstring), or no SPE with ``require_spe``.

    Returns:
        A :class:`ContractComparison`; every value is an exact evaluation
        (:func:`contractrl.core.evaluate.evaluate_policies`) of the contract and the response.
    """
    from contractrl.core.solver import solve_spe

    num_o = game.num_outcomes
    valid = isinstance(top_outcome, int | np.integer) and not isinstance(top_outcome, bool)
    if not (valid and -num_o <= top_outcome < num_o):
        raise ValueError(
            f"top_outcome: expected an outcome index in [-{num_o}, {num_o}), got {top_outcome!r}"
        )
    scale = max(float(np.abs(game.principal_reward).max()), float(np.abs(game.agent_reward).max()))
    if scale > 0 and not UNIT_WINDOW[0] <= scale <= UNIT_WINDOW[1]:
        # the optimisers' and the solver's tie tolerances are absolute: solve in units of
        # the game's largest reward, where they are tuned, and scale the answer back
        unit = dataclasses.replace(
            game,
            principal_reward=game.principal_reward / scale,
            agent_reward=game.agent_reward / scale,
        )
        starts = [np.asarray(b, np.float64) / scale for b in stationary_starts]
        found = compare_contracts(unit, top_outcome, max_enumeration, starts, require_spe)
        return dataclasses.replace(found, rows=tuple(_scaled(r, scale) for r in found.rows))
    d = _Dense.of(game)
    num_s, num_o = d.rp.shape
    zero = np.zeros((num_s, num_o))
    rows = [_row(game, "no_contract", respond(d, zero), zero)]
    delivery = (d.rp > 0).astype(np.float64)
    top = np.zeros((num_s, num_o))
    top[:, top_outcome] = 1.0
    for name, direction, upper in (
        ("fixed_price", delivery, np.inf),
        ("pay_for_pass", top, np.inf),
        ("linear", np.maximum(d.rp, 0.0), 1.0),
    ):
        lam, _ = line_search(d, zero, direction, upper)
        contract = lam * direction
        rows.append(_row(game, name, respond(d, contract), contract, lam))
    spe = solve_spe(game)
    if not spe.ok and require_spe:
        raise ValueError(
            f"{game.name}: the exact solver finds no SPE to compare with (status {spe.status}; "
            "an infinite-horizon game may have no stationary SPE)"
        )
    if game.num_actions**num_s <= max_enumeration:
        b, _ = best_stationary_enumerated(d)
        method = "exact"
    else:
        starts = [np.zeros(num_o), rows[2].contract[0], *np.unique(spe.contract[0], axis=0)]
        b, _ = best_stationary_coordinate(d, [*starts, *stationary_starts])
        method = "coordinate ascent"
    contract = np.tile(b, (num_s, 1))
    rows.append(_row(game, "stationary", respond(d, contract), contract, None, method))
    if spe.ok:
        rows.append(_row(game, "spe", spe.action[0].copy(), spe.contract[0].copy()))
    rows.append(first_best(game))
    return ContractComparison(
        game.name,
        tuple(rows),
        tuple(game.action_name(a) for a in range(game.num_actions)),
        tuple(game.state_name(s) for s in range(num_s)),
    )
