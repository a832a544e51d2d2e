"""The hidden-action principal-agent MDP (docs/model.md §1): one immutable, validated game object.

Every solver, learner and environment of the package takes a :class:`PrincipalAgentMDP`.
Shapes use ``S`` states, ``A`` agent actions and ``O`` outcomes.

One step: the principal offers a contract ``b[O] >= 0`` at state ``s``; the agent picks a
hidden action ``a``; outcome ``o ~ outcome_probs[s, a]``; the agent gets
``agent_reward[s, a] + b[o]``, the principal ``principal_reward[s, o] - b[o]``; the next state
is drawn from ``transitions[s, o]``. A row of zeros in ``transitions`` ends the episode.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

#: Rows of probability tables must sum to 1 within this tolerance (docs/model.md §9).
PROB_SUM_TOL = 1e-9
#: The largest finite horizon (time indices are int64).
MAX_HORIZON = 2**63 - 1


class InvalidGameError(ValueError):
    """A game (or instance file) is malformed; the message names the field and index."""


def _fail(message: str) -> None:
    raise InvalidGameError(message)


def _index(*idx: int) -> str:
    return "".join(f"[{i}]" for i in idx)


@dataclass(frozen=True, eq=False)
class PrincipalAgentMDP:
    """A tabular hidden-action principal-agent MDP ``(S, s0, A, O, P, r, r^p, T, γ, H)``.

    Arrays are stored as read-only float64 NumPy arrays; construction validates everything and
    raises :class:`InvalidGameError` naming the offending field and index.

    Attributes:
        outcome_probs: ``[S, A, O]`` outcome distribution of each action in each state; rows sum
            to 1.
        agent_reward: ``[S, A]`` the agent's own reward (effort costs are negative).
        principal_reward: ``[S, O]`` the principal's reward, a function of the outcome only.
        transitions: ``[S*O, S]`` sparse CSR matrix; row ``s*O + o`` is the next-state
            distribution after outcome ``o`` in state ``s``: it sums to 1, or is all zeros,
            which ends the episode. A dense ``[S, O, S]`` array is accepted and converted.
        initial_state: index of ``s0``.
        horizon: number of decisions ``H >= 1``, or ``None`` for an infinite horizon.
        discount: ``γ`` in ``(0, 1]``; must be ``< 1`` when the horizon is infinite.
        state_names: ``S`` names, or ``None`` for the default names ``s0, s1, ...`` (cheap for
            games with millions of states).
        action_names: ``A`` names (default ``a0, a1, ...``).
        outcome_names: ``O`` names (default ``o0, o1, ...``).
        name: a label for reports.

    Example:
        >>> from contractrl.core.games import figure1
        >>> game = figure1()
        >>> game.num_states, game.num_actions, game.num_outcomes, game.horizon
        (3, 2, 2, 2)
    """

    outcome_probs: np.ndarray
    agent_reward: np.ndarray
    principal_reward: np.ndarray
    transitions: sp.csr_array
    initial_state: int = 0
    horizon: int | None = None
    discount: float = 1.0
    state_names: tuple[str, ...] | None = None
    action_names: tuple[str, ...] | None = None
    outcome_names: tuple[str, ...] | None = None
    name: str = "game"
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        probs = _as_float_array("outcome_probs", self.outcome_probs, 3)
        num_states, num_actions, num_outcomes = probs.shape
        if min(probs.shape) == 0:
            _fail(f"outcome_probs: every dimension must be non-empty, got shape {probs.shape}")
        set_("outcome_probs", probs)
        set_("agent_reward", _as_float_array("agent_reward", self.agent_reward, 2))
        set_("principal_reward", _as_float_array("principal_reward", self.principal_reward, 2))
        _check_shape("agent_reward", self.agent_reward, (num_states, num_actions))
        _check_shape("principal_reward", self.principal_reward, (num_states, num_outcomes))
        _check_distribution_rows("outcome_probs", probs, allow_zero_rows=False)
        set_("transitions", _as_transition_matrix(self.transitions, num_states, num_outcomes))
        _check_scalars(self, num_states)
        set_("state_names", _check_names("states", self.state_names, num_states))
        set_("action_names", _check_names("actions", self.action_names, num_actions))
        set_("outcome_names", _check_names("outcomes", self.outcome_names, num_outcomes))

    # ----------------------------------------------------------------------------- sizes
    @property
    def num_states(self) -> int:
        """Number of states ``S``."""
        return self.outcome_probs.shape[0]

    @property
    def num_actions(self) -> int:
        """Number of agent actions ``A``."""
        return self.outcome_probs.shape[1]

    @property
    def num_outcomes(self) -> int:
        """Number of outcomes ``O``."""
        return self.outcome_probs.shape[2]

    @property
    def infinite_horizon(self) -> bool:
        """Whether the horizon is infinite (``horizon is None``)."""
        return self.horizon is None

    # ----------------------------------------------------------------------------- names
    def state_name(self, s: int) -> str:
        """Name of state ``s``."""
        return f"s{s}" if self.state_names is None else self.state_names[s]

    def action_name(self, a: int) -> str:
        """Name of action ``a``."""
        return f"a{a}" if self.action_names is None else self.action_names[a]

    def outcome_name(self, o: int) -> str:
        """Name of outcome ``o``."""
        return f"o{o}" if self.outcome_names is None else self.outcome_names[o]

    # ----------------------------------------------------------------------------- structure
    def continuation(self, values: np.ndarray, states: np.ndarray | None = None) -> np.ndarray:
        """Expected next-state value after each outcome: ``W[s, o] = Σ_s' T[s,o,s'] · V[s']``.

        Args:
            values: ``[S]`` a value per state.
            states: optional ``[n]`` state indices; default all states.

        Returns:
            ``[n, O]`` (``[S, O]`` by default); terminal outcomes contribute 0.
        """
        num_outcomes = self.num_outcomes
        if states is None:
            return (self.transitions @ values).reshape(-1, num_outcomes)
        rows = (states[:, None] * num_outcomes + np.arange(num_outcomes)).ravel()
        return (self.transitions[rows] @ values).reshape(-1, num_outcomes)

    @property
    def successor_graph(self) -> sp.csr_array:
        """``[S, S]`` boolean adjacency: ``s -> s'`` when an outcome of ``s`` can lead to ``s'``."""
        if "graph" not in self._cache:
            coo = self.transitions.tocoo()
            data = np.ones(coo.nnz, dtype=bool)
            graph = sp.csr_array(
                (data, (coo.row // self.num_outcomes, coo.col)),
                shape=(self.num_states, self.num_states),
            )
            graph.sum_duplicates()
            self._cache["graph"] = graph
        return self._cache["graph"]

    def is_terminal_row(self) -> np.ndarray:
        """``[S, O]`` boolean: outcome ``o`` in state ``s`` ends the episode."""
        counts = np.diff(self.transitions.indptr)
        return (counts == 0).reshape(self.num_states, self.num_outcomes)


# --------------------------------------------------------------------------------- validation
def _as_float_array(name: str, value: object, ndim: int) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidGameError(f"{name}: expected numbers in a {ndim}-d array ({exc})") from None
    if array.ndim != ndim:
        _fail(f"{name}: expected a {ndim}-d array, got {array.ndim} dimensions {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        _fail(f"{name}{_index(*idx)}: must be finite, got {array[idx]}")
    array.flags.writeable = False
    return array


def _check_shape(name: str, array: np.ndarray, expected: tuple[int, ...]) -> None:
    if array.shape != expected:
        _fail(f"{name}: expected shape {list(expected)}, got {list(array.shape)}")


def _check_distribution_rows(name: str, probs: np.ndarray, allow_zero_rows: bool) -> None:
    negative = probs < 0
    if negative.any():
        idx = tuple(int(i) for i in np.argwhere(negative)[0])
        _fail(f"{name}{_index(*idx)}: negative probability {probs[idx]}")
    sums = probs.sum(axis=-1)
    bad = np.abs(sums - 1.0) > PROB_SUM_TOL
    if allow_zero_rows:
        bad &= sums != 0.0
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "1 or 0 (episode ends)" if allow_zero_rows else "1"
        _fail(
            f"{name}{_index(*idx)}: probabilities sum to {float(sums[idx]):.12g}, expected {what}"
        )


def _as_transition_matrix(value: object, num_states: int, num_outcomes: int) -> sp.csr_array:
    if sp.issparse(value):
        # Copy: the caller's buffers must not alias the validated (then read-only) game.
        matrix = sp.csr_array(value, dtype=np.float64, copy=True)
        if matrix.shape != (num_states * num_outcomes, num_states):
            _fail(
                f"transitions: expected sparse shape [{num_states * num_outcomes}, {num_states}]"
                f" (rows s*O+o), got {list(matrix.shape)}"
            )
        matrix.sum_duplicates()
        bad = ~np.isfinite(matrix.data)
        if bad.any():
            _fail(
                f"transitions{_index(*_sparse_entry(matrix, int(np.argmax(bad)), num_outcomes))}"
                ": must be finite"
            )
        negative = matrix.data < 0
        if negative.any():
            k = int(np.argmax(negative))
            _fail(
                f"transitions{_index(*_sparse_entry(matrix, k, num_outcomes))}: negative "
                f"probability {matrix.data[k]}"
            )
        sums = np.asarray(matrix.sum(axis=1)).ravel()
        bad_rows = (np.abs(sums - 1.0) > PROB_SUM_TOL) & (sums != 0.0)
        if bad_rows.any():
            row = int(np.argmax(bad_rows))
            _fail(
                f"transitions{_index(row // num_outcomes, row % num_outcomes)}: probabilities "
                f"sum to {float(sums[row]):.12g}, expected 1 or 0 (episode ends)"
            )
        matrix.eliminate_zeros()
    else:
        dense = _as_float_array("transitions", value, 3)
        _check_shape("transitions", dense, (num_states, num_outcomes, num_states))
        _check_distribution_rows("transitions", dense, allow_zero_rows=True)
        matrix = sp.csr_array(dense.reshape(num_states * num_outcomes, num_states))
    matrix.sort_indices()
    for array in (matrix.data, matrix.indices, matrix.indptr):
        array.flags.writeable = False
    return matrix


def _sparse_entry(matrix: sp.csr_array, k: int, num_outcomes: int) -> tuple[int, int, int]:
    row = int(np.searchsorted(matrix.indptr, k, side="right") - 1)
    return row // num_outcomes, row % num_outcomes, int(matrix.indices[k])


def _check_scalars(game: PrincipalAgentMDP, num_states: int) -> None:
    set_ = functools.partial(object.__setattr__, game)
    discount = game.discount
    if isinstance(discount, bool) or not isinstance(discount, int | float | np.floating):
        _fail(f"discount: expected a number in (0, 1], got {discount!r:.60}")
    try:
        discount = float(discount)
    except OverflowError:
        _fail("discount: must lie in (0, 1], got an integer too large for a float")
    if not (0.0 < discount <= 1.0):
        _fail(f"discount: must lie in (0, 1], got {discount!r}")
    set_("discount", discount)
    horizon = game.horizon
    if horizon is None:
        if discount >= 1.0:
            _fail("discount: an infinite horizon (horizon null) needs discount < 1, got 1")
    else:
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer):
            _fail(f"horizon: expected a positive integer or null, got {horizon!r:.60}")
        if horizon < 1:
            _fail(f"horizon: must be >= 1 (or null for infinite), got {_brief(horizon)}")
        if horizon > MAX_HORIZON:
            _fail(
                f"horizon: must be at most 2**63 - 1 (or null for infinite), got {_brief(horizon)}"
            )
        set_("horizon", int(horizon))
    s0 = game.initial_state
    if isinstance(s0, bool) or not isinstance(s0, int | np.integer):
        _fail(f"initial_state: expected a state index, got {s0!r:.60}")
    if not 0 <= s0 < num_states:
        _fail(f"initial_state: index {_brief(s0)} out of range [0, {num_states})")
    set_("initial_state", int(s0))


def _brief(value: int) -> str:
    """An integer for a message: a huge one by its number of digits, not its 400 digits."""
    value = int(value)
    if value.bit_length() <= 64:
        return str(value)
    return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"


def _check_names(field_name: str, names: object, count: int) -> tuple[str, ...] | None:
    if names is None:
        return None
    if isinstance(names, str) or not hasattr(names, "__len__"):
        _fail(f"{field_name}: expected a list of {count} names, got {names!r}")
    names = tuple(names)
    if len(names) != count:
        _fail(f"{field_name}: expected {count} names, got {len(names)}")
    for i, item in enumerate(names):
        if not isinstance(item, str) or not item:
            _fail(f"{field_name}[{i}]: expected a non-empty string, got {item!r}")
    if len(set(names)) != count:
        seen: set[str] = set()
        for i, item in enumerate(names):
            if item in seen:
                _fail(f"{field_name}[{i}]: duplicate name {item!r}")
            seen.add(item)
    return names
