"""Issue 10 item 2: a 2-state, 2-action, 2-outcome game at γ = 0.95 with no stationary SPE
(found by a random search, numbers rounded to 2 decimals; docs/theory-checks.md)."""

import numpy as np

from contractrl.core.model import PrincipalAgentMDP

PROBS = np.array([[[0.3, 0.7], [0.53, 0.47]], [[0.75, 0.25], [0.59, 0.41]]])
AGENT_REWARD = np.array([[-0.1, -0.92], [-0.42, -0.03]])
PRINCIPAL_REWARD = np.array([[0.28, 0.12], [11.82, 2.46]])
TRANSITIONS = np.array([[[0.33, 0.67], [0.95, 0.05]], [[0.08, 0.92], [0.1, 0.9]]])
DISCOUNT = 0.95


def no_spe_game() -> PrincipalAgentMDP:
    return PrincipalAgentMDP(
        PROBS,
        AGENT_REWARD,
        PRINCIPAL_REWARD,
        TRANSITIONS,
        horizon=None,
        discount=DISCOUNT,
        name="no-stationary-spe",
    )


def instance_dict() -> dict:
    return {
        "states": ["s0", "s1"],
        "actions": ["a0", "a1"],
        "outcomes": ["o0", "o1"],
        "initial_state": 0,
        "horizon": None,
        "discount": DISCOUNT,
        "outcome_probs": PROBS.tolist(),
        "agent_reward": AGENT_REWARD.tolist(),
        "principal_reward": PRINCIPAL_REWARD.tolist(),
        "transitions": TRANSITIONS.tolist(),
    }
