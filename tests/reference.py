"""Independent reference implementations, written for clarity, not speed.

Nothing here calls the package's solvers: dense loops over (t, s), grid searches over contracts
and enumeration of policies, so the tests compare two independent computations.
"""

from __future__ import annotations

import itertools

import numpy as np

from contractrl.core.model import PrincipalAgentMDP


def dense_transitions(game: PrincipalAgentMDP) -> np.ndarray:
    return game.transitions.toarray().reshape(game.num_states, game.num_outcomes, game.num_states)


def _grid_best_contract(q_bar, probs, gross, lo, hi, points):
    """Best grid contract in the box [lo, hi]: principal payoff with the agent best-responding,
    ties broken in the principal's favour. Returns (value, b, action)."""
    num_outcomes = probs.shape[1]
    axes = [np.linspace(lo[o], hi[o], points) for o in range(num_outcomes)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, num_outcomes)
    agent = q_bar[None, :] + grid @ probs.T  # [G, A]
    principal = gross[None, :] - grid @ probs.T  # [G, A]
    best_agent = agent.max(axis=1, keepdims=True)
    tied = agent >= best_agent - 1e-12 * (1 + np.abs(best_agent))
    payoff = np.where(tied, principal, -np.inf).max(axis=1)
    g = int(np.argmax(payoff))
    action = int(np.argmax(np.where(tied[g], principal[g], -np.inf)))
    return payoff[g], grid[g], action


def grid_search_contract(q_bar, probs, gross, bound=12.0, points=61, rounds=6):
    """Principal's best contract at one state by a dense grid search with zooming.

    gross[a] = P[a] · (r^p + γ W^p): the principal's payoff of action a before payments.
    """
    num_outcomes = probs.shape[1]
    lo, hi = np.zeros(num_outcomes), np.full(num_outcomes, bound)
    best = _grid_best_contract(q_bar, probs, gross, lo, hi, points)
    for _ in range(rounds):
        step = (hi - lo) / (points - 1)
        lo = np.maximum(best[1] - 3 * step, 0.0)
        hi = best[1] + 3 * step
        cand = _grid_best_contract(q_bar, probs, gross, lo, hi, points)
        if cand[0] >= best[0]:
            best = cand
    return best


def brute_force_spe(game: PrincipalAgentMDP, **grid):
    """Finite-horizon SPE by backward recursion with a grid search over contracts at every
    (t, s); the agent's response is computed directly from its values.

    Returns (principal_value [H, S], agent_value [H, S], action [H, S])."""
    horizon, num_s = game.horizon, game.num_states
    trans = dense_transitions(game)
    gamma = game.discount
    pv = np.zeros((horizon + 1, num_s))
    av = np.zeros((horizon + 1, num_s))
    act = np.zeros((horizon, num_s), dtype=int)
    for t in range(horizon - 1, -1, -1):
        for s in range(num_s):
            probs = game.outcome_probs[s]
            w_agent = trans[s] @ av[t + 1]  # [O]
            w_principal = trans[s] @ pv[t + 1]
            q_bar = game.agent_reward[s] + gamma * probs @ w_agent
            gross = probs @ (game.principal_reward[s] + gamma * w_principal)
            value, b, a = grid_search_contract(q_bar, probs, gross, **grid)
            pv[t, s] = value
            av[t, s] = q_bar[a] + probs[a] @ b
            act[t, s] = a
    return pv[:horizon], av[:horizon], act


def evaluate_naive(game: PrincipalAgentMDP, contract, agent_action):
    """Values of (contract [H,S,O], agent_action [H,S]) by explicit loops (finite horizon), or a
    dense linear solve (infinite horizon; tables with one row). Returns (agent, principal)."""
    trans = dense_transitions(game)
    num_s, gamma = game.num_states, game.discount
    if game.horizon is None:
        a = agent_action[0]
        probs = game.outcome_probs[np.arange(num_s), a]  # [S, O]
        step = np.einsum("so,sox->sx", probs, trans)
        r_agent = game.agent_reward[np.arange(num_s), a] + (probs * contract[0]).sum(1)
        r_principal = (probs * (game.principal_reward - contract[0])).sum(1)
        lhs = np.eye(num_s) - gamma * step
        return np.linalg.solve(lhs, r_agent)[None], np.linalg.solve(lhs, r_principal)[None]
    horizon = game.horizon
    agent = np.zeros((horizon + 1, num_s))
    principal = np.zeros((horizon + 1, num_s))
    for t in range(horizon - 1, -1, -1):
        k_c = min(t, contract.shape[0] - 1)
        k_a = min(t, agent_action.shape[0] - 1)
        for s in range(num_s):
            a = agent_action[k_a, s]
            b = contract[k_c, s]
            for o in range(game.num_outcomes):
                p = game.outcome_probs[s, a, o]
                agent[t, s] += p * (b[o] + gamma * trans[s, o] @ agent[t + 1])
                principal[t, s] += p * (
                    game.principal_reward[s, o] - b[o] + gamma * trans[s, o] @ principal[t + 1]
                )
            agent[t, s] += game.agent_reward[s, a]
    return agent[:horizon], principal[:horizon]


def all_agent_policies(game: PrincipalAgentMDP):
    """Every deterministic time-indexed agent policy [H, S] (small games only)."""
    cells = game.horizon * game.num_states
    for choice in itertools.product(range(game.num_actions), repeat=cells):
        yield np.array(choice).reshape(game.horizon, game.num_states)


def separated_game(num_states, num_actions, num_outcomes, horizon, seed, discount=0.9):
    """A random cyclic game whose actions have well-separated outcome distributions (so that
    min-pay contracts stay small enough for a bounded grid search)."""
    from contractrl.core.model import PrincipalAgentMDP as Model

    rng = np.random.default_rng(seed)
    probs = 0.4 * rng.dirichlet(np.ones(num_outcomes), size=(num_states, num_actions))
    for a in range(num_actions):
        probs[:, a, a % num_outcomes] += 0.6
    trans = rng.dirichlet(np.ones(num_states), size=(num_states, num_outcomes))
    return Model(
        outcome_probs=probs,
        agent_reward=-0.5 * rng.random((num_states, num_actions)),
        principal_reward=2.0 * rng.random((num_states, num_outcomes)),
        transitions=trans,
        horizon=horizon,
        discount=discount,
    )


def _solve_exact(mat, rhs):
    """Gauss-Jordan elimination on Fractions; ``None`` when the matrix is singular."""
    n = len(mat)
    rows = [list(row) + [rhs[i]] for i, row in enumerate(mat)]
    for c in range(n):
        pivot = next((r for r in range(c, n) if rows[r][c] != 0), None)
        if pivot is None:
            return None
        rows[c], rows[pivot] = rows[pivot], rows[c]
        for r in range(n):
            if r != c and rows[r][c] != 0:
                f = rows[r][c] / rows[c][c]
                rows[r] = [a - f * b for a, b in zip(rows[r], rows[c], strict=True)]
    return [rows[i][n] / rows[i][i] for i in range(n)]


def exact_min_pay(q_bar, probs, target, margin=0.0):
    """Min expected payment of the min-pay LP in exact rational arithmetic on the float inputs,
    by brute force over every basis (LP theory: a bounded feasible LP whose polyhedron has a
    vertex attains its optimum at one); ``None`` when not implementable."""
    from fractions import Fraction

    p = [[Fraction(float(x)) for x in row] for row in probs]
    num_actions, num_outcomes = len(p), len(p[0])
    others = [a for a in range(num_actions) if a != target]
    gap = [[p[target][o] - p[a][o] for o in range(num_outcomes)] for a in others]
    need = [
        Fraction(float(q_bar[a])) - Fraction(float(q_bar[target])) + Fraction(float(margin))
        for a in others
    ]
    if all(n <= 0 for n in need):
        return Fraction(0)
    best = None
    for k in range(1, min(len(others), num_outcomes) + 1):
        for rows in itertools.combinations(range(len(others)), k):
            for cols in itertools.combinations(range(num_outcomes), k):
                x = _solve_exact([[gap[r][c] for c in cols] for r in rows], [need[r] for r in rows])
                if x is None or any(v < 0 for v in x):
                    continue
                b = [Fraction(0)] * num_outcomes
                for c, v in zip(cols, x, strict=True):
                    b[c] = v
                if all(
                    sum(gap[r][o] * b[o] for o in range(num_outcomes)) >= need[r]
                    for r in range(len(others))
                ):
                    cost = sum(p[target][o] * b[o] for o in range(num_outcomes))
                    best = cost if best is None or cost < best else best
    return best


def stationary_spe_profiles(probs, agent_reward, principal_reward, transitions, discount):
    """Every stationary SPE of a dense 2-action infinite-horizon game, by enumeration.

    For each recommendation profile ``σ`` and each "pay / don't pay" regime per state, the
    agent's values solve one linear system (under the min-pay contract the agent's value is
    ``Q̄(σ) + c · (Q̄(other) − Q̄(σ))`` when paying, ``c = P[σ,o*] / (P[σ,o*] − P[other,o*])``
    at the likelihood-ratio outcome ``o*`` of model.md §2); a regime is kept when consistent, and
    the profile is an SPE when ``σ(s)`` maximises the principal's contractual Q at every state
    (each action's min-pay computed in exact arithmetic). Returns ``[(σ, V, V^p)]``.
    """
    P, r, rp, T, g = probs, agent_reward, principal_reward, transitions, discount
    S, A, num_outcomes = P.shape
    assert A == 2
    found = []
    for sigma in itertools.product(range(A), repeat=S):
        for regime in itertools.product([False, True], repeat=S):
            lhs, rhs, star = np.eye(S), np.zeros(S), {}
            for s in range(S):
                a, b = sigma[s], 1 - sigma[s]
                ka, kb = g * P[s, a] @ T[s], g * P[s, b] @ T[s]
                d = P[s, a] - P[s, b]
                if regime[s]:
                    if not (d > 0).any():
                        break
                    o = int(np.argmax(np.where(d > 0, d / P[s, a], -np.inf)))
                    c = P[s, a, o] / d[o]
                    star[s] = o
                    lhs[s] -= (1 - c) * ka + c * kb
                    rhs[s] = (1 - c) * r[s, a] + c * r[s, b]
                else:
                    lhs[s] -= ka
                    rhs[s] = r[s, a]
            else:
                v = np.linalg.solve(lhs, rhs)
                q_bar = r + g * np.einsum("sao,sot,t->sa", P, T, v)
                need = np.array([q_bar[s, 1 - sigma[s]] - q_bar[s, sigma[s]] for s in range(S)])
                if any(regime[s] != (need[s] > 0) for s in range(S)):
                    continue
                contract = np.zeros((S, num_outcomes))
                for s, o in star.items():
                    contract[s, o] = need[s] / (P[s, sigma[s], o] - P[s, 1 - sigma[s], o])
                lhs_p = np.eye(S) - g * np.stack([P[s, sigma[s]] @ T[s] for s in range(S)])
                vp = np.linalg.solve(
                    lhs_p, np.array([P[s, sigma[s]] @ (rp[s] - contract[s]) for s in range(S)])
                )
                spe = True
                for s in range(S):
                    q = []
                    for a in range(A):
                        pay = exact_min_pay(q_bar[s], P[s], a)
                        gross = P[s, a] @ (rp[s] + g * T[s] @ vp)
                        q.append(-np.inf if pay is None else gross - float(pay))
                    spe &= q[sigma[s]] >= max(q) - 1e-9
                if spe:
                    found.append((sigma, v, vp))
    return found


def no_pay_values(game: PrincipalAgentMDP, agent_next, principal_next):
    """Principal's value of paying nothing at every state for one step, by plain loops.

    With continuation values ``agent_next [S]`` and ``principal_next [S]`` (the next step's), the
    agent facing the zero contract takes an action maximising its own truncated Q; among its
    tied actions it takes the principal's favourite (paper Lemma B.12). Returns ``[S]``: the
    principal's value of that action. Any SPE value at the same state is at least this, since
    paying nothing is always an available contract.
    """
    trans = dense_transitions(game)
    gamma = game.discount
    out = np.zeros(game.num_states)
    for s in range(game.num_states):
        agent_q, principal_q = [], []
        for a in range(game.num_actions):
            qa = float(game.agent_reward[s, a])
            qp = 0.0
            for o in range(game.num_outcomes):
                p = float(game.outcome_probs[s, a, o])
                w_agent = sum(trans[s, o, x] * agent_next[x] for x in range(game.num_states))
                w_principal = sum(
                    trans[s, o, x] * principal_next[x] for x in range(game.num_states)
                )
                qa += gamma * p * w_agent
                qp += p * (float(game.principal_reward[s, o]) + gamma * w_principal)
            agent_q.append(qa)
            principal_q.append(qp)
        top = max(agent_q)
        tied = [a for a in range(game.num_actions) if agent_q[a] >= top - 1e-12 * (1 + abs(top))]
        out[s] = max(principal_q[a] for a in tied)
    return out
