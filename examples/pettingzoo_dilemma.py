"""The iterated prisoner's dilemma as a plain PettingZoo ``ParallelEnv`` (no JAX).

The rules of ``contractrl.envs.dilemma`` (payoffs 3/0/5/1; both defecting ends the episode),
written the way a PettingZoo user would, to show that an environment not written in JAX
trains too — stepped on the host (docs/your-environment.md):

    contractrl train marl --env examples/pettingzoo_dilemma.py:make --preset smoke \
        --backend inline --out runs/pz-dilemma
"""

import functools

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

PAYOFF = {(0, 0): (3.0, 3.0), (0, 1): (0.0, 5.0), (1, 0): (5.0, 0.0), (1, 1): (1.0, 1.0)}


class DilemmaParallelEnv(ParallelEnv):
    """Two agents, cooperate (0) or defect (1), ``max_steps`` rounds at most."""

    metadata = {"name": "pettingzoo_dilemma_v0", "render_modes": []}

    def __init__(self, max_steps: int = 10):
        self.possible_agents = ["player_0", "player_1"]
        self.max_steps = max_steps
        self.agents = []
        self.t = 0

    @functools.cache  # noqa: B019 - spaces are cached objects, as PettingZoo asks
    def observation_space(self, agent):
        """The share of the game played, ``t / max_steps``."""
        return spaces.Box(0.0, 1.0, (1,), np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent):
        """Cooperate (0) or defect (1)."""
        return spaces.Discrete(2)

    def _obs(self):
        share = np.asarray([self.t / self.max_steps], np.float32)
        return {agent: share.copy() for agent in self.possible_agents}

    def reset(self, seed=None, options=None):
        """A new game: no previous actions."""
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        """One round; both defecting ends the game."""
        joint = (int(actions["player_0"]), int(actions["player_1"]))
        r = PAYOFF[joint]
        self.t += 1
        both_defect = joint == (1, 1)
        obs = self._obs()
        rewards = dict(zip(self.possible_agents, r, strict=True))
        # the agents observe the time: the last round is a terminal state, not a time limit
        terms = {a: both_defect or self.t >= self.max_steps for a in self.agents}
        truncs = {a: False for a in self.agents}
        infos = {a: {} for a in self.agents}
        if both_defect or self.t >= self.max_steps:
            self.agents = []
        return obs, rewards, terms, truncs, infos


def make(**kwargs) -> DilemmaParallelEnv:
    """The factory ``--env examples/pettingzoo_dilemma.py:make`` calls."""
    return DilemmaParallelEnv(**kwargs)
