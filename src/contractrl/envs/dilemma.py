"""An iterated two-agent prisoner's dilemma: the smallest social dilemma with known contracts.

Two agents play the same stage game every step: cooperate (action 0) or defect (action 1),
rewards ``reward`` (both cooperate), ``sucker``/``temptation`` (one defects: the cooperator
gets ``sucker``, the defector ``temptation``), ``punishment`` (both defect); defaults 3, 0, 5, 1
(Axelrod's). With ``temptation > reward`` and ``punishment > sucker``, defecting is dominant,
while cooperating maximises welfare. The episode lasts ``horizon`` steps or **ends at once
after a step in which both defect** (``end_on_mutual_defection``), so selfish play makes
episodes short. Both ends are ``terminated``: the agents observe the time, so the last step
is a terminal state of the game they see, not a time limit to bootstrap through (learners
that bootstrapped there would read values off an observation no one ever acts in).

Each agent observes the share of the episode elapsed, ``[t / horizon]``, and nothing of the
past actions: no one can be punished later for defecting now, so defecting is each agent's
dominant action at every step and selfish learners defect (with the early end, episodes of
one step).

Closed forms (tests and docs/your-environment.md): the team optimum is mutual cooperation,
welfare ``2 · reward`` per step. With the other agent following a recommendation to cooperate,
defecting changes neither what the agent observes next nor the episode's length (a single
defection does not end it), so the min-pay contract that makes an agent cooperate (paper
Section 5.1, ``b_i = max_a Q_i - Q_i(cooperate)``) is ``temptation - reward`` per step (2 with
the defaults), whatever the discount.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from contractrl._validate import is_finite_number, require
from contractrl.envs.protocol import MultiAgentEnv


@dataclasses.dataclass(frozen=True)
class DilemmaConfig:
    """Rules of the iterated dilemma (module docstring).

    Attributes:
        horizon: steps per episode at most.
        reward: each agent's reward when both cooperate.
        sucker: the cooperator's reward when the other defects.
        temptation: the defector's reward when the other cooperates.
        punishment: each agent's reward when both defect.
        end_on_mutual_defection: a step in which both defect ends the episode.
    """

    horizon: int = 10
    reward: float = 3.0
    sucker: float = 0.0
    temptation: float = 5.0
    punishment: float = 1.0
    end_on_mutual_defection: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        payoffs = ("reward", "sucker", "temptation", "punishment")
        require(
            self,
            [("horizon", isinstance(self.horizon, int) and self.horizon >= 1)]
            + [("end_on_mutual_defection", isinstance(self.end_on_mutual_defection, bool))]
            + [(name, is_finite_number(getattr(self, name))) for name in payoffs],
        )


class IteratedDilemma(MultiAgentEnv):
    """The iterated prisoner's dilemma as a protocol environment.

    Args:
        config: the rules; or give its fields as keywords.
    """

    num_agents = 2
    num_actions = 2
    observation_shape = (1,)

    def __init__(self, config: DilemmaConfig | None = None, **flags):
        config = DilemmaConfig(**flags) if config is None else dataclasses.replace(config, **flags)
        config.validate()
        self.config = config
        self.max_steps = config.horizon
        c = config
        # payoff[a_0, a_1] -> (r_0, r_1)
        self.payoff = jnp.asarray(
            [
                [[c.reward, c.reward], [c.sucker, c.temptation]],
                [[c.temptation, c.sucker], [c.punishment, c.punishment]],
            ],
            jnp.float32,
        )

    def __eq__(self, other) -> bool:
        return isinstance(other, IteratedDilemma) and other.config == self.config

    def __hash__(self) -> int:
        return hash(("iterated_dilemma", self.config))

    def _observe(self, t: jax.Array) -> jax.Array:
        # a table, not a division: compiled code may divide by multiplying with the reciprocal,
        # and the observation should be float32(t / horizon) exactly, as NumPy computes it
        fractions = np.arange(self.config.horizon + 1) / self.config.horizon
        return jnp.full((2, 1), jnp.asarray(fractions, jnp.float32)[t])

    def reset_env(self, key: jax.Array):
        """The first step; the state is ``(last actions [2], t)``."""
        del key
        t = jnp.zeros((), jnp.int32)
        return self._observe(t), (jnp.zeros(2, jnp.int32), t)

    def render(self, state, cell: int = 32) -> np.ndarray:
        """``uint8 [cell, 2 cell, 3]``: each agent's previous action, green (cooperated) or red."""
        image = np.full((cell, 2 * cell, 3), 230, np.uint8)
        if int(np.asarray(state.t)) == 0:
            return image  # no previous actions
        for i, action in enumerate(np.asarray(state.inner[0])):
            colour = (60, 170, 80) if action == 0 else (220, 60, 60)
            image[4 : cell - 4, i * cell + 4 : (i + 1) * cell - 4] = colour
        return image

    def step_env(self, key: jax.Array, state: jax.Array, actions: jax.Array):
        """Both agents act; the stage game's rewards; mutual defection may end the episode."""
        del key
        actions = jnp.asarray(actions, jnp.int32)
        t = state[1] + 1
        rewards = self.payoff[actions[0], actions[1]]
        ended_early = jnp.all(actions == 1) & self.config.end_on_mutual_defection
        return self._observe(t), (actions, t), rewards, ended_early | (t >= self.config.horizon)
