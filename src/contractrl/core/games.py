"""Built-in games: the paper's Figure 1 example and random binary Tree MDPs (paper App. D.1)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from contractrl.core.model import PrincipalAgentMDP

#: SPE of :func:`figure1` (docs/model.md §4): the two values at ``s0`` and the contract on ``aL``.
FIGURE1_PRINCIPAL_VALUE = 1.0
FIGURE1_AGENT_VALUE = 0.2
FIGURE1_CONTRACT = (1.0, 0.0)

#: Largest tree depth the factory accepts (2^26 - 1 states, about 3 GB of arrays).
MAX_TREE_DEPTH = 26


def figure1() -> PrincipalAgentMDP:
    """The paper's Figure 1 game: states ``s0, sL, sR``; two decisions; ``γ = 1``.

    Action ``aL`` costs 4/5 and yields outcome L w.p. 0.9; ``aR`` is free and yields L w.p. 0.1.
    The principal earns 14/9 on L. Outcome L leads to ``sL``, R to ``sR``; the episode ends after
    the decision there **[choice]**. SPE: contract ``(1, 0)`` for ``aL`` in every state;
    principal 1.0, agent 0.2.
    """
    probs = np.tile(np.array([[0.9, 0.1], [0.1, 0.9]]), (3, 1, 1))
    agent_reward = np.tile([-0.8, 0.0], (3, 1))
    principal_reward = np.tile([14.0 / 9.0, 0.0], (3, 1))
    transitions = np.zeros((3, 2, 3))
    transitions[0, 0, 1] = 1.0  # s0 --L--> sL
    transitions[0, 1, 2] = 1.0  # s0 --R--> sR
    return PrincipalAgentMDP(
        outcome_probs=probs,
        agent_reward=agent_reward,
        principal_reward=principal_reward,
        transitions=transitions,
        initial_state=0,
        horizon=2,
        discount=1.0,
        state_names=("s0", "sL", "sR"),
        action_names=("aL", "aR"),
        outcome_names=("L", "R"),
        name="figure1",
    )


def tree_mdp(depth: int = 10, seed: int = 0) -> PrincipalAgentMDP:
    """Random complete binary Tree MDP of the paper's App. D.1 (docs/model.md §6).

    States are numbered in breadth-first (heap) order: state ``i`` at depth ``d`` has children
    ``2i+1`` (outcome ``o0``, bad) and ``2i+2`` (``o1``, good); the ``2^(depth-1)`` states of the
    last level end the episode, so there are ``2^depth - 1`` decision states and the horizon is
    ``depth``; ``γ = 1``. Actions ``a0`` (low effort, free) and ``a1`` (high effort, cost
    ``u``); ``P(o1|a0) = 0.1``, ``P(o1|a1) = 0.9``. Per state, independently:
    ``v ~ U[0,1]``, ``u ~ U[0, 1-v]``, ``v' ~ U[0,2]``, ``u' ~ U[0, 2-v']``;
    ``r(s,a1) = -u``, ``r^p(s,o1) = u'``.

    Args:
        depth: number of decision levels, ``1 <= depth <= 26``.
        seed: seed of the NumPy generator that draws the rewards.

    Returns:
        The game, transitions in sparse form.
    """
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise ValueError(f"depth must be an integer, got {depth!r}")
    if not 1 <= depth <= MAX_TREE_DEPTH:
        raise ValueError(f"depth must lie in [1, {MAX_TREE_DEPTH}], got {depth}")
    rng = np.random.default_rng(seed)
    num_states = 2**depth - 1
    v = rng.uniform(0.0, 1.0, num_states)
    u = rng.uniform(0.0, 1.0, num_states) * (1.0 - v)
    v_p = rng.uniform(0.0, 2.0, num_states)
    u_p = rng.uniform(0.0, 1.0, num_states) * (2.0 - v_p)
    agent_reward = np.zeros((num_states, 2))
    agent_reward[:, 1] = -u
    principal_reward = np.zeros((num_states, 2))
    principal_reward[:, 1] = u_p
    probs = np.broadcast_to(np.array([[0.9, 0.1], [0.1, 0.9]]), (num_states, 2, 2))
    internal = 2 ** (depth - 1) - 1  # states with children
    rows = np.arange(2 * internal)  # row s*O + o for s < internal
    transitions = sp.csr_array(
        (np.ones(2 * internal), (rows, rows + 1)), shape=(2 * num_states, num_states)
    )
    return PrincipalAgentMDP(
        outcome_probs=probs,
        agent_reward=agent_reward,
        principal_reward=principal_reward,
        transitions=transitions,
        initial_state=0,
        horizon=depth,
        discount=1.0,
        action_names=("a0", "a1"),
        outcome_names=("o0", "o1"),
        name=f"tree-d{depth}-seed{seed}",
    )


def random_game(
    num_states: int = 5,
    num_actions: int = 2,
    num_outcomes: int = 2,
    horizon: int | None = 3,
    discount: float = 0.9,
    seed: int = 0,
    terminal_prob: float = 0.0,
) -> PrincipalAgentMDP:
    """A random dense game, for tests and experiments with general (cyclic) dynamics.

    Outcome and transition distributions are Dirichlet(1); agent rewards lie in ``[-1, 0]``
    (costs), principal rewards in ``[0, 2]``. Each ``(s, o)`` ends the episode with probability
    ``terminal_prob``.

    Args:
        num_states: ``S``.
        num_actions: ``A``.
        num_outcomes: ``O``.
        horizon: ``H`` or ``None`` (infinite; then ``discount < 1``).
        discount: ``γ``.
        seed: NumPy generator seed.
        terminal_prob: probability that an outcome's transition row is all zeros.
    """
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(num_outcomes), size=(num_states, num_actions))
    transitions = rng.dirichlet(np.ones(num_states), size=(num_states, num_outcomes))
    transitions[rng.random((num_states, num_outcomes)) < terminal_prob] = 0.0
    return PrincipalAgentMDP(
        outcome_probs=probs,
        agent_reward=-rng.random((num_states, num_actions)),
        principal_reward=2.0 * rng.random((num_states, num_outcomes)),
        transitions=transitions,
        horizon=horizon,
        discount=discount,
        name=f"random-S{num_states}-A{num_actions}-O{num_outcomes}-seed{seed}",
    )
