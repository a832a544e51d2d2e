"""Delegating a multi-stage task to an AI agent who privately picks a model tier.

The principal hands a task (by default ``draft -> test -> revise -> accept``) to an AI provider,
the agent. At every stage the agent privately chooses a *tier* (a small, medium or large model;
equally: more samples, more reasoning) at a cost to itself; the principal observes only an
evaluation *outcome* (``fail``, ``pass``, ``excellent``, e.g. from a test suite or a grader)
whose distribution depends on the tier, and pays by outcome (the paper's hidden-action model,
Section 2; docs/model.md §1). Outcomes move the task on, send it back or end it; the principal
values the accepted result.

Two variants:

* **finite** (``deadline = H``): at most ``H`` attempts; the state is ``(stage, attempt)``, so
  states are tied to time steps and the exact solver needs one backward sweep. A task not
  accepted by the deadline is worth nothing.
* **infinite** (``deadline = None``): retry until accepted; the state is the stage and every
  attempt is discounted by ``γ < 1`` (the cost of delay).

Default numbers (**assumptions**, chosen to be plausible, not measured; every one is a
parameter):

* tier costs per attempt ``(0, 0.01, 0.03)`` in units of the accepted task's value: a provider's
  list prices for small, medium and large models differ by roughly 3x per step, and one attempt
  of a large model costs a few per cent of a task's value. Costs count *above* the
  cheapest tier, whose price is a base fee outside the contract; with a zero cheapest cost the
  agent's utility is never negative, so first-best bounds every contract (see
  :mod:`contractrl.core.simple_contracts`).
* outcome probabilities ``(fail, pass, excellent)``: small ``(0.5, 0.4, 0.1)``, medium
  ``(0.3, 0.5, 0.2)``, large ``(0.15, 0.5, 0.35)`` at every stage: a pass rate (pass or better)
  rising from 50% to 85% with the tier, the spread between small and frontier models that code
  and grading benchmarks commonly show.
* outcome effects ``advance = (0, 1, 1)``: a fail retries the stage, a pass or an excellent
  moves on one stage; a negative number sends the task back; an outcome marked in ``abandon``
  ends the task unaccepted (none by default).
* the principal's value of the accepted task ``accept_value = (0, 1, 1.25)``: 1 when accepted
  on a pass, 1.25 on an excellent (better quality), earned when an outcome of the last stage
  moves the task past it. Nothing is earned at earlier stages.
* ``deadline = 6`` attempts for 4 stages with ``γ = 1`` (finite: two retries to spare);
  ``γ = 0.85`` per attempt (infinite: delay is costly). With ``γ = 0.9`` the retry variant
  has no stationary SPE (the exact iteration cycles; docs/delegation.md).

Example:
    >>> game = delegation_game()
    >>> game.num_actions, game.num_outcomes, game.horizon, game.num_states
    (3, 3, 6, 24)
    >>> delegation_game(deadline=None).state_names
    ('draft', 'test', 'revise', 'accept')
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from contractrl.core.model import InvalidGameError, PrincipalAgentMDP

#: Default stage names (the number of stages is their count).
DEFAULT_STAGES = ("draft", "test", "revise", "accept")
#: Default tier names.
DEFAULT_TIERS = ("small", "medium", "large")
#: Default outcome names, worst first.
DEFAULT_OUTCOMES = ("fail", "pass", "excellent")
#: Default extra cost per attempt of each tier, in units of the task's value (assumption).
DEFAULT_TIER_COSTS = (0.0, 0.01, 0.03)
#: Default ``[tier, outcome]`` probabilities, the same at every stage (assumption).
DEFAULT_OUTCOME_PROBS = ((0.5, 0.4, 0.1), (0.3, 0.5, 0.2), (0.15, 0.5, 0.35))
#: Default stages each outcome moves the task (0: retry; negative: sent back).
DEFAULT_ADVANCE = (0, 1, 1)
#: Default value to the principal of a task accepted with each outcome.
DEFAULT_ACCEPT_VALUE = (0.0, 1.0, 1.25)
#: Default attempts in the finite variant.
DEFAULT_DEADLINE = 6
#: Default discount per attempt of the infinite variant.
DEFAULT_RETRY_DISCOUNT = 0.85
#: Most states ``stages × deadline`` a game may have (its transition table is dense).
MAX_STATES = 2_000


def _fail(message: str) -> None:
    raise InvalidGameError(f"delegation_game: {message}")


def _names(field: str, value: int | Sequence[str], prefix: str) -> tuple[str, ...]:
    if isinstance(value, bool):
        _fail(f"{field}: expected a count or a list of names, got {value!r}")
    if isinstance(value, int | np.integer):
        if value < 1:
            _fail(f"{field}: expected at least 1, got {value}")
        return tuple(f"{prefix}{i + 1}" for i in range(int(value)))
    if isinstance(value, str):
        _fail(f"{field}: expected a count or a list of names, got the string {value!r}")
    try:
        names = tuple(value)
    except TypeError:
        _fail(f"{field}: expected a count or a list of names, got {value!r}")
    if not names:
        _fail(f"{field}: expected at least one name")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            _fail(f"{field}[{i}]: expected a non-empty string, got {name!r}")
    if len(set(names)) != len(names):
        _fail(f"{field}: names must be distinct, got {list(names)}")
    return names


def _where(mask: np.ndarray) -> str:
    return "".join(f"[{int(i)}]" for i in np.argwhere(mask)[0])


def _per_stage(
    field: str, value, shape: tuple[int, ...], num_stages: int, non_negative: bool = False
) -> np.ndarray:
    """``value`` as a ``[stages, *shape]`` array (one table for all stages or one per stage)."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidGameError(f"delegation_game: {field}: expected numbers ({exc})") from None
    if array.shape not in (shape, (num_stages, *shape)):
        _fail(
            f"{field}: expected shape {list(shape)} (every stage) or {[num_stages, *shape]} "
            f"(per stage), got {list(array.shape)}"
        )
    if not np.isfinite(array).all():
        _fail(f"{field}{_where(~np.isfinite(array))}: must be finite")
    if non_negative and (array < 0).any():
        _fail(f"{field}{_where(array < 0)}: must be >= 0 (a cost), got {array[array < 0][0]}")
    return np.broadcast_to(array, (num_stages, *shape))


def _check_free_tier(costs: np.ndarray) -> None:
    free = costs.min(axis=1)
    if (free != 0).any():
        k = int(np.argmax(free != 0))
        _fail(
            f"tier_costs[{k}]: some tier must cost 0 at every stage (the agent's free fallback; "
            f"the model has no participation constraint, so without one the principal could "
            f"profit from the agent's losses), got a cheapest cost of {free[k]}"
        )


def _advance(advance, num_outcomes: int) -> np.ndarray:
    try:
        items = list(advance)
    except TypeError:
        _fail(f"advance: expected {num_outcomes} integers (one per outcome), got {advance!r}")
    if len(items) != num_outcomes or not all(
        isinstance(x, int | np.integer) and not isinstance(x, bool) for x in items
    ):
        _fail(f"advance: expected {num_outcomes} integers (one per outcome), got {items!r}")
    return np.array(items, dtype=np.int64)


def _check_horizon(deadline, discount, num_stages: int) -> float:
    """The discount to use (validated with the deadline)."""
    if deadline is not None and (
        isinstance(deadline, bool) or not isinstance(deadline, int | np.integer) or deadline < 1
    ):
        _fail(f"deadline: expected a positive integer or None, got {deadline!r}")
    if deadline is not None and deadline * num_stages > MAX_STATES:
        _fail(
            f"deadline: at most {MAX_STATES // num_stages} attempts with {num_stages} stages "
            f"(the game's tables are dense in states), got {deadline}"
        )
    if discount is None:
        return 1.0 if deadline is not None else DEFAULT_RETRY_DISCOUNT
    real = isinstance(discount, numbers.Real) and not isinstance(discount, bool)
    if deadline is not None and not (real and 0 < discount <= 1):
        _fail(f"discount: expected 0 < discount <= 1, got {discount!r}")
    if deadline is None and not (real and 0 < discount < 1):
        _fail(
            f"discount: retry until accepted (deadline None) needs 0 < discount < 1, got "
            f"{discount!r}"
        )
    return float(discount)


def _abandons(abandon, num_outcomes: int) -> np.ndarray:
    if abandon is None:
        return np.zeros(num_outcomes, bool)
    try:
        items = list(abandon)
    except TypeError:
        _fail(f"abandon: expected {num_outcomes} booleans (one per outcome), got {abandon!r}")
    if len(items) != num_outcomes or not all(isinstance(x, bool | np.bool_) for x in items):
        _fail(f"abandon: expected {num_outcomes} booleans (one per outcome), got {items!r}")
    return np.array(items, bool)


def _accept_values(value, num_outcomes: int) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidGameError(f"delegation_game: accept_value: expected numbers ({exc})") from None
    if array.shape != (num_outcomes,):
        _fail(
            f"accept_value: expected {num_outcomes} numbers (one per outcome), got shape "
            f"{list(array.shape)}"
        )
    if not np.isfinite(array).all():
        _fail(f"accept_value{_where(~np.isfinite(array))}: must be finite")
    return array


def delegation_game(
    stages: int | Sequence[str] = DEFAULT_STAGES,
    tiers: int | Sequence[str] = DEFAULT_TIERS,
    outcomes: Sequence[str] = DEFAULT_OUTCOMES,
    tier_costs=DEFAULT_TIER_COSTS,
    outcome_probs=DEFAULT_OUTCOME_PROBS,
    advance: Sequence[int] = DEFAULT_ADVANCE,
    accept_value: Sequence[float] = DEFAULT_ACCEPT_VALUE,
    deadline: int | None = DEFAULT_DEADLINE,
    discount: float | None = None,
    abandon: Sequence[bool] | None = None,
) -> PrincipalAgentMDP:
    """The delegation game: a multi-stage task, a hidden model tier, observed evaluations.

    State, action and outcome: the stage (and, with a deadline, the attempt); the tier; the
    evaluation. Agent reward ``r(s, tier) = -tier_costs[stage, tier]``; principal reward
    ``r^p(s, o) = accept_value[o]`` when outcome ``o`` at stage ``k`` accepts the task
    (``k + advance[o] >= stages``), else 0. Next stage ``clip(k + advance[o], 0)``; acceptance
    and the deadline end the episode. Defaults and where they come from: the module docstring.

    Args:
        stages: stage names, or their number ``K`` (then named ``stage1 ...``).
        tiers: tier names, or their number ``A`` (then named ``tier1 ...``).
        outcomes: outcome names ``O``, worst first.
        tier_costs: ``[A]`` or ``[K, A]`` cost per attempt, ``>= 0``, in units of value.
        outcome_probs: ``[A, O]`` or ``[K, A, O]`` outcome distribution of each tier.
        advance: ``[O]`` integer number of stages each outcome moves the task.
        accept_value: ``[O]`` the principal's value of a task accepted with each outcome.
        deadline: number of attempts ``H >= 1`` (finite variant, states ``(stage, attempt)``),
            or ``None`` (retry until accepted; infinite horizon).
        discount: ``γ``; default 1 with a deadline, 0.85 without (must then be < 1).
        abandon: ``[O]`` booleans: outcomes that end the task unaccepted (no value; their
            ``advance`` is ignored). Default: none (a task ends only when accepted or at the
            deadline).

    Some tier must cost 0 at every stage (the agent's free fallback): the paper's model has
    limited liability but no participation constraint, so without one the principal could
    earn more than the welfare (from the agent's losses) and first-best would bound nothing.

    Returns:
        A :class:`PrincipalAgentMDP` named ``delegation-K<stages>-H<deadline>`` (or ``-retry``).
        Finite variant: state ``t*K + k`` is stage ``k`` at attempt ``t``, named
        ``<stage>@<t>``; infinite: state ``k`` is stage ``k``.

    Raises:
        InvalidGameError: a malformed parameter; the message names it and the index.
    """
    stage_names = _names("stages", stages, "stage")
    tier_names = _names("tiers", tiers, "tier")
    outcome_names = _names("outcomes", outcomes, "outcome")
    num_k, num_a, num_o = len(stage_names), len(tier_names), len(outcome_names)
    if num_k > MAX_STATES:
        _fail(f"stages: at most {MAX_STATES} (the game's tables are dense in states), got {num_k}")
    costs = _per_stage("tier_costs", tier_costs, (num_a,), num_k, non_negative=True)
    probs = _per_stage("outcome_probs", outcome_probs, (num_a, num_o), num_k)
    _check_free_tier(costs)
    adv = _advance(advance, num_o)
    value = _accept_values(accept_value, num_o)
    discount = _check_horizon(deadline, discount, num_k)
    ends = _abandons(abandon, num_o)
    next_stage = np.maximum(np.arange(num_k)[:, None] + adv[None, :], 0)  # [K, O]
    accepts = (next_stage >= num_k) & ~ends[None, :]
    rp_stage = np.where(accepts, value[None, :], 0.0)  # [K, O]
    attempts = 1 if deadline is None else int(deadline)
    num_s = num_k * attempts
    transitions = np.zeros((num_s, num_o, num_s))
    for t in range(attempts):
        for k in range(num_k):
            for o in range(num_o):
                if accepts[k, o] or ends[o]:  # the episode ends: a row of zeros
                    continue
                if deadline is None:
                    transitions[k, o, next_stage[k, o]] = 1.0
                elif t + 1 < attempts:
                    transitions[t * num_k + k, o, (t + 1) * num_k + next_stage[k, o]] = 1.0
    reps = (attempts, 1, 1)
    if deadline is None:
        names, label = stage_names, f"delegation-K{num_k}-retry"
    else:
        names = tuple(f"{n}@{t}" for t in range(attempts) for n in stage_names)
        label = f"delegation-K{num_k}-H{attempts}"
    try:
        return PrincipalAgentMDP(
            outcome_probs=np.tile(probs, reps),
            agent_reward=np.tile(-costs, (attempts, 1)),
            principal_reward=np.tile(rp_stage, (attempts, 1)),
            transitions=transitions,
            initial_state=0,
            horizon=None if deadline is None else attempts,
            discount=discount,
            state_names=names,
            action_names=tier_names,
            outcome_names=outcome_names,
            name=label,
        )
    except InvalidGameError as exc:  # e.g. outcome_probs rows: name the parameter
        raise InvalidGameError(f"delegation_game: {exc}") from None


def stage_of_state(game: PrincipalAgentMDP, num_stages: int) -> np.ndarray:
    """``[S]`` the stage of each state of a :func:`delegation_game` with ``num_stages`` stages."""
    return np.arange(game.num_states) % num_stages


def on_time_states(game: PrincipalAgentMDP, num_stages: int) -> np.ndarray:
    """``[K']`` the state of stage ``k`` reached without a retry: ``(k, attempt k)``.

    ``K' = min(K, H)`` with a deadline; all ``K`` stages in the retry variant.
    """
    if game.horizon is None:
        return np.arange(num_stages)
    ks = np.arange(min(num_stages, game.horizon))
    return ks * num_stages + ks
