"""A public-goods game as a contractrl environment: the page docs/your-environment.md builds.

Every step each of ``n`` agents contributes (action 1) or keeps (action 0) one unit; the pot is
multiplied by ``multiplier`` and shared equally. With ``1 < multiplier < n`` keeping is each
agent's dominant action, while everyone contributing maximises welfare: a social dilemma.
Each agent observes the share of agents that contributed on the previous step.

Closed forms: contributing changes an agent's own reward by ``multiplier / n - 1`` (-0.4 with
3 agents and 1.8), and nothing later depends on it, so the contract that makes it contribute
while the others follow is ``1 - multiplier / n`` per step; everyone contributing gives welfare
``n (multiplier - 1)`` per step.

Train a principal for it:

    contractrl train marl --env examples/public_goods.py:make --env-kwargs '{"num_agents": 3}' \
        --preset smoke --out runs/public-goods
"""

import jax
import jax.numpy as jnp

from contractrl.envs.protocol import MultiAgentEnv


class PublicGoods(MultiAgentEnv):
    """``n`` agents, actions keep (0) / contribute (1), observation ``[1]``, ``horizon`` steps."""

    num_actions = 2
    observation_shape = (1,)

    def __init__(self, num_agents: int = 3, multiplier: float = 1.8, horizon: int = 10):
        if not 1.0 < multiplier < num_agents:
            raise ValueError(f"multiplier: must lie in (1, num_agents), got {multiplier}")
        self.num_agents = num_agents
        self.multiplier = multiplier
        self.max_steps = horizon

    def reset_env(self, key: jax.Array):
        """No one contributed before the first step."""
        del key
        share = jnp.zeros(())
        return jnp.full((self.num_agents, 1), share), share

    def step_env(self, key: jax.Array, state, actions: jax.Array):
        """Contributions, the shared pot, and the share that contributed (the next observation)."""
        del key, state
        contributed = actions.astype(jnp.float32)
        pot = self.multiplier * contributed.sum()
        rewards = pot / self.num_agents - contributed
        share = contributed.mean()
        terminated = jnp.zeros((), bool)  # the game ends only at the time limit
        return jnp.full((self.num_agents, 1), share), share, rewards, terminated


def make(**kwargs) -> PublicGoods:
    """The factory ``--env examples/public_goods.py:make`` calls with ``--env-kwargs``."""
    return PublicGoods(**kwargs)
