"""A tabular n-agent Markov game (paper Section 5.1): the game the exact multi-agent solver takes.

``n`` agents act simultaneously, each with the same ``A`` actions; a joint action is one flat
index ``j`` in ``[0, A**n)``, agent 0's action the most significant digit
(``j = Σ_i a_i · A**(n-1-i)``, NumPy's C order of an ``[A] * n`` array). Shapes use ``S``
states, ``J = A**n`` joint actions and ``n`` agents. One step: in state ``s`` the agents play
``j``; agent ``i`` receives ``rewards[s, j, i]``; the next state is drawn from
``transitions[s * J + j]``; a row of zeros ends the episode. Episodes start from
``initial[S]`` and last ``horizon`` steps (``None``: infinite, then ``discount < 1``).

The principal of the paper's Section 5 is not part of the game: it is what
:mod:`.markov_solver` computes (docs/exact-multiagent.md).
"""

from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from contractrl.core.model import PROB_SUM_TOL, InvalidGameError


def _fail(message: str) -> None:
    raise InvalidGameError(message)


@dataclass(frozen=True, eq=False)
class MarkovGame:
    """A tabular Markov game ``(S, n, A, r, T, d0, γ, H)``, validated on construction.

    Arrays are stored as read-only float64; bad input raises
    :class:`~contractrl.core.model.InvalidGameError` naming the field (and index).

    Attributes:
        rewards: ``[S, J, n]`` agent ``i``'s expected reward for joint action ``j`` in ``s``.
        transitions: ``[S*J, S]`` sparse CSR; row ``s*J + j`` is the next-state distribution
            (sums to 1, or all zeros: the episode ends). A dense ``[S, J, S]`` array is
            accepted and converted.
        initial: ``[S]`` the initial-state distribution ``d0``.
        num_agents: ``n >= 1``.
        num_actions: ``A >= 1`` actions per agent; ``J = A**n`` must match ``rewards``.
        discount: ``γ`` in ``(0, 1]``; ``< 1`` when the horizon is infinite.
        horizon: steps per episode ``H >= 1``, or ``None`` for an infinite horizon.
        name: a label for reports.

    Example:
        >>> import numpy as np
        >>> game = MarkovGame(np.zeros((1, 4, 2)), np.ones((1, 4, 1)), [1.0], 2, 2, 0.9, 3)
        >>> game.num_states, game.num_joint, game.joint_index((1, 0))
        (1, 4, 2)
    """

    rewards: np.ndarray
    transitions: sp.csr_array
    initial: np.ndarray
    num_agents: int
    num_actions: int
    discount: float = 1.0
    horizon: int | None = None
    name: str = "markov-game"

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        for field_name in ("num_agents", "num_actions"):
            value = getattr(self, field_name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                _fail(f"{field_name}: expected a positive integer, got {value!r:.60}")
            set_(field_name, int(value))
        rewards = _float_array("rewards", self.rewards, 3)
        num_states, num_joint, _ = rewards.shape
        if num_states == 0:
            _fail("rewards: needs at least one state, got shape [0, ...]")
        expected = (num_states, self.num_actions**self.num_agents, self.num_agents)
        if rewards.shape != expected:
            _fail(
                f"rewards: expected shape {list(expected)} (S, A**n, n), got {list(rewards.shape)}"
            )
        set_("rewards", rewards)
        set_("transitions", _transition_matrix(self.transitions, num_states, num_joint))
        initial = _float_array("initial", self.initial, 1)
        if initial.shape != (num_states,):
            _fail(f"initial: expected shape [{num_states}], got {list(initial.shape)}")
        if np.any(initial < 0):
            k = int(np.flatnonzero(initial < 0)[0])
            _fail(f"initial[{k}]: negative probability {initial[k]}")
        if abs(initial.sum() - 1.0) > PROB_SUM_TOL:
            _fail(f"initial: probabilities must sum to 1, got {initial.sum()!r}")
        set_("initial", initial)
        _check_discount_horizon(self.discount, self.horizon)
        set_("discount", float(self.discount))

    @property
    def num_states(self) -> int:
        """Number of states ``S``."""
        return self.rewards.shape[0]

    @property
    def num_joint(self) -> int:
        """Number of joint actions ``J = A**n``."""
        return self.rewards.shape[1]

    @property
    def welfare(self) -> np.ndarray:
        """``[S, J]`` social welfare ``Σ_i r_i`` of each joint action."""
        return self.rewards.sum(axis=2)

    @functools.cached_property
    def joint_actions(self) -> np.ndarray:
        """``[J, n]`` each agent's action in joint action ``j`` (int)."""
        grids = np.indices((self.num_actions,) * self.num_agents).reshape(self.num_agents, -1)
        return grids.T.copy()

    @functools.cached_property
    def deviations(self) -> np.ndarray:
        """``[J, n, A]`` the joint action ``j`` with agent ``i``'s action replaced by ``a``."""
        shape = (self.num_actions,) * self.num_agents
        out = np.empty((self.num_joint, self.num_agents, self.num_actions), np.int64)
        for i in range(self.num_agents):
            actions = np.repeat(self.joint_actions[:, None, :], self.num_actions, axis=1)
            actions[:, :, i] = np.arange(self.num_actions)
            out[:, i, :] = np.ravel_multi_index(tuple(np.moveaxis(actions, -1, 0)), shape)
        return out

    def joint_index(self, actions) -> int:
        """The flat index ``j`` of per-agent ``actions [n]``."""
        return int(np.ravel_multi_index(tuple(actions), (self.num_actions,) * self.num_agents))

    def continuation(self, values: np.ndarray) -> np.ndarray:
        """``[S, J, ...]`` expected next-state ``values [S, ...]`` (``Σ_s' T(s'|s,j) v(s')``)."""
        flat = self.transitions @ values.reshape(self.num_states, -1)
        return np.asarray(flat).reshape(self.num_states, self.num_joint, *values.shape[1:])


def _float_array(name: str, value: object, ndim: int) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(f"{name}: expected an array of numbers, got {type(value).__name__}")
    if array.ndim != ndim:
        _fail(f"{name}: expected a {ndim}-d array, got {array.ndim} dimensions {array.shape}")
    if not np.all(np.isfinite(array)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        _fail(f"{name}{list(idx)}: must be finite, got {array[idx]}")
    array.setflags(write=False)
    return array


def _transition_matrix(value: object, num_states: int, num_joint: int) -> sp.csr_array:
    rows = num_states * num_joint
    if sp.issparse(value):
        matrix = sp.csr_array(value, dtype=np.float64)
        if matrix.shape != (rows, num_states):
            _fail(
                f"transitions: expected sparse shape [{rows}, {num_states}] (S*J, S), "
                f"got {list(matrix.shape)}"
            )
    else:
        dense = _float_array("transitions", value, 3)
        if dense.shape != (num_states, num_joint, num_states):
            _fail(
                f"transitions: expected shape [{num_states}, {num_joint}, {num_states}] "
                f"(S, J, S), got {list(dense.shape)}"
            )
        matrix = sp.csr_array(dense.reshape(rows, num_states))
    matrix.sum_duplicates()
    data = matrix.data
    if not np.all(np.isfinite(data)):
        _fail("transitions: every probability must be finite")
    if np.any(data < 0):
        k = int(np.flatnonzero(data < 0)[0])
        row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
        _fail(f"transitions[{row // num_joint}][{row % num_joint}]: negative probability {data[k]}")
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    bad = np.flatnonzero((np.abs(sums - 1.0) > PROB_SUM_TOL) & (np.abs(sums) > PROB_SUM_TOL))
    if bad.size:
        row = int(bad[0])
        _fail(
            f"transitions[{row // num_joint}][{row % num_joint}]: probabilities must sum to 1 "
            f"(or 0: the episode ends), got {sums[row]!r}"
        )
    return matrix


def _check_discount_horizon(discount: object, horizon: object) -> None:
    if not isinstance(discount, numbers.Real) or isinstance(discount, bool):
        _fail(f"discount: expected a number in (0, 1], got {discount!r:.60}")
    if not (0.0 < float(discount) <= 1.0) or math.isnan(float(discount)):
        _fail(f"discount: must lie in (0, 1], got {discount!r}")
    if horizon is None:
        if float(discount) >= 1.0:
            _fail("discount: an infinite horizon (horizon None) needs discount < 1, got 1")
        return
    if not isinstance(horizon, numbers.Integral) or isinstance(horizon, bool) or horizon < 1:
        _fail(f"horizon: expected a positive integer or None, got {horizon!r:.60}")
