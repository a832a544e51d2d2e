"""Human- and machine-readable reports of a solved game (what ``contractrl solve`` prints)."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from contractrl.core.model import PrincipalAgentMDP
from contractrl.core.solution import SPESolution


def first_arrival(game: PrincipalAgentMDP) -> np.ndarray:
    """``[S]`` earliest time step at which each state can be reached (``-1``: never)."""
    graph = game.successor_graph
    dist = np.full(game.num_states, -1, dtype=np.int64)
    frontier = np.array([game.initial_state])
    t = 0
    while frontier.size:
        dist[frontier] = t
        nxt = np.unique(graph[frontier].indices) if frontier.size else frontier
        frontier = nxt[dist[nxt] < 0]
        t += 1
    return dist


def on_path(game: PrincipalAgentMDP, solution: SPESolution) -> np.ndarray:
    """``[K, S]`` whether ``(t, s)`` is reached with positive probability in equilibrium."""
    num_s, num_o = game.num_states, game.num_outcomes
    rows = np.arange(num_s)
    reach = np.zeros(solution.action.shape, dtype=bool)
    for k in range(solution.action.shape[0]):
        used = game.outcome_probs[rows, solution.action[k]] > 0  # [S, O]
        weights = sp.diags_array(used.ravel().astype(np.float64))
        step = (weights @ game.transitions).tocsr()  # rows s*O+o kept when o can occur
        induced = sp.csr_array((step.data > 0, step.indices, step.indptr), shape=step.shape)
        collapse = sp.csr_array(
            (np.ones(num_s * num_o), (np.repeat(rows, num_o), np.arange(num_s * num_o)))
        )
        if solution.stationary:
            graph = (collapse @ induced).astype(bool)
            order = csgraph.breadth_first_order(
                graph, game.initial_state, return_predecessors=False
            )
            reach[0, order] = True
            return reach
        if k == 0:
            reach[0, game.initial_state] = True
        if k + 1 < reach.shape[0]:
            occupied = reach[k].astype(np.float64)
            reach[k + 1] = ((collapse @ induced).T @ occupied) > 0
    return reach


def solution_dict(
    game: PrincipalAgentMDP, solution: SPESolution, include_policy: bool = True
) -> dict[str, Any]:
    """The JSON object printed by ``contractrl solve --json``.

    Keys: ``game``, ``principal_value``, ``agent_value`` (at ``t = 0`` in the initial state),
    ``method``, ``iterations``, ``converged``, ``status`` (``converged`` unless the tables are no
    equilibrium, see :attr:`SPESolution.status`), ``solve_seconds``, ``nudge``, ``stationary``,
    and ``policy``: one entry per ``(t, state)`` with the recommended ``action``, the
    ``contract`` by outcome name, ``expected_payment``, both values and ``on_path``. A stationary
    solution lists each state once, with ``t`` its earliest arrival time (``null`` if
    unreachable): its decision is the same whenever the state occurs. Values that are not
    finite (``-inf``: nothing implementable) are ``null``: the object is strict JSON.
    """
    out: dict[str, Any] = {
        "game": {
            "name": game.name,
            "num_states": game.num_states,
            "num_actions": game.num_actions,
            "num_outcomes": game.num_outcomes,
            "horizon": game.horizon,
            "discount": game.discount,
            "initial_state": game.state_name(game.initial_state),
        },
        "principal_value": _json_float(solution.initial_principal_value),
        "agent_value": _json_float(solution.initial_agent_value),
        "method": solution.method,
        "iterations": solution.iterations,
        "converged": solution.converged,
        "status": solution.status,
        "solve_seconds": solution.solve_seconds,
        "nudge": solution.margin,
        "stationary": solution.stationary,
    }
    if include_policy:
        out["policy"] = policy_entries(game, solution)
    return out


def _json_float(x: float) -> float | None:
    """``x``, or ``None`` when it is not finite (strict JSON has no infinities or NaN)."""
    return float(x) if np.isfinite(x) else None


def policy_entries(
    game: PrincipalAgentMDP, solution: SPESolution, limit: int | None = None
) -> list[dict[str, Any]]:
    """One dict per ``(t, state)`` (see :func:`solution_dict`), the first ``limit`` only."""
    reach = on_path(game, solution)
    outcomes = [game.outcome_name(o) for o in range(game.num_outcomes)]
    actions = [game.action_name(a) for a in range(game.num_actions)]
    rows, num_s = solution.action.shape
    times = first_arrival(game) if solution.stationary else None
    contract = solution.contract.tolist()
    action = solution.action.tolist()
    payment = solution.expected_payment.tolist()
    pv, av = solution.principal_value.tolist(), solution.agent_value.tolist()
    entries = []
    for k in range(rows):
        for s in range(num_s):
            if limit is not None and len(entries) >= limit:
                return entries
            t = (None if times[s] < 0 else int(times[s])) if times is not None else k
            entries.append(
                {
                    "t": t,
                    "state": game.state_name(s),
                    "action": actions[action[k][s]],
                    "contract": dict(zip(outcomes, contract[k][s], strict=True)),
                    "expected_payment": _json_float(payment[k][s]),
                    "principal_value": _json_float(pv[k][s]),
                    "agent_value": _json_float(av[k][s]),
                    "on_path": bool(reach[k, s]),
                }
            )
    return entries


def _cell(x: float | None, spec: str, tol: float = 0.0) -> str:
    """``x`` formatted; magnitudes under ``tol`` (solver round-off) print as 0."""
    if x is None:
        return "-"
    return format(0.0 if abs(x) < tol else x, spec)


def solution_table(game: PrincipalAgentMDP, solution: SPESolution, max_rows: int = 40) -> str:
    """A readable summary and policy table (``max_rows <= 0``: every row)."""
    horizon = "infinite" if game.horizon is None else str(game.horizon)
    lines = [
        f"{game.name}: {game.num_states} states, {game.num_actions} actions, "
        f"{game.num_outcomes} outcomes, horizon {horizon}, discount {game.discount:g}",
        f"method {solution.method}, {solution.iterations} iterations"
        f"{'' if solution.ok else f' (NOT an equilibrium: {solution.status})'}, "
        f"nudge {solution.margin:g}, "
        f"solved in {solution.solve_seconds * 1e3:.2f} ms",
        f"principal value {solution.initial_principal_value:.6f}   agent value "
        f"{solution.initial_agent_value:.6f}   (t=0, {game.state_name(game.initial_state)})",
        "",
    ]
    total = solution.action.size
    shown = policy_entries(game, solution, None if max_rows <= 0 else max_rows)
    header = ("t", "state", "action", "contract", "E[pay]", "principal", "agent", "on path")
    # values below 1e-9 of the table's scale are round-off of the LP or the fixed point: shown
    # as 0, as the summary line's fixed-point format shows them
    values = [
        abs(v)
        for e in shown
        for v in (e["principal_value"], e["agent_value"], e["expected_payment"])
        if v is not None and np.isfinite(v)
    ]
    tol = 1e-9 * max([1.0, *values])
    table = [header] + [
        (
            "-" if e["t"] is None else str(e["t"]),
            e["state"],
            e["action"],
            ", ".join(f"{o}={_cell(x, '.4g', tol)}" for o, x in e["contract"].items()),
            _cell(e["expected_payment"], ".4g", tol),
            _cell(e["principal_value"], ".6g", tol),
            _cell(e["agent_value"], ".6g", tol),
            "yes" if e["on_path"] else "no",
        )
        for e in shown
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    if solution.stationary:
        lines.append(
            "(stationary: each state's decision applies whenever it occurs; t = earliest arrival)"
        )
    if len(shown) < total:
        lines.append(
            f"... {total - len(shown)} more rows (--max-rows 0 shows all, --json prints everything)"
        )
    return "\n".join(lines)
