"""Read and write games in the instance format of SPEC §9 (JSON or YAML).

One object with ``states``, ``actions``, ``outcomes`` (name lists), ``initial_state`` (index or
name), ``horizon`` (integer, or ``null`` for infinite), ``discount``,
``outcome_probs[S][A][O]``, ``agent_reward[S][A]``, ``principal_reward[S][O]`` and
``transitions``: dense ``[S][O][S]`` (a row of zeros ends the episode) or sparse
``{"sparse": [[s, o, s_next, prob], ...]}`` (states and outcomes by index or name). An optional
``name`` labels the game. Anything malformed raises :class:`~contractrl.model.InvalidGameError`
naming the field and the index, before any solving starts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from contractrl.model import InvalidGameError, PrincipalAgentMDP

REQUIRED_KEYS = (
    "states",
    "actions",
    "outcomes",
    "initial_state",
    "horizon",
    "discount",
    "outcome_probs",
    "agent_reward",
    "principal_reward",
    "transitions",
)
OPTIONAL_KEYS = ("name",)
#: ``save_instance`` writes sparse transitions when the dense form would exceed this many entries.
SPARSE_ABOVE = 4096


def load_instance(path: str | Path) -> PrincipalAgentMDP:
    """Load a game from a ``.json``, ``.yaml`` or ``.yml`` file.

    Raises:
        InvalidGameError: unreadable file, syntax error, or malformed content (the message names
            the field and index).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidGameError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidGameError(f"{path}: not a UTF-8 text file") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        data = _parse_yaml(text)
    else:
        data = _parse_json(text)
    return parse_instance(data)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidGameError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def _parse_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidGameError(f"invalid YAML{where}: {problem}") from None


def parse_instance(data: Any) -> PrincipalAgentMDP:
    """Build a game from a parsed instance object (a ``dict``), validating everything."""
    if not isinstance(data, dict):
        raise InvalidGameError(
            f"instance: expected an object with keys {list(REQUIRED_KEYS)}, "
            f"got {type(data).__name__}"
        )
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise InvalidGameError(
            f"{unknown[0]}: unknown key (allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise InvalidGameError(f"{missing[0]}: required key is missing")
    states = _names(data, "states")
    actions = _names(data, "actions")
    outcomes = _names(data, "outcomes")
    num_s, num_a, num_o = len(states), len(actions), len(outcomes)
    probs = _table(data["outcome_probs"], "outcome_probs", (num_s, num_a, num_o))
    agent_reward = _table(data["agent_reward"], "agent_reward", (num_s, num_a))
    principal_reward = _table(data["principal_reward"], "principal_reward", (num_s, num_o))
    transitions = _transitions(data["transitions"], states, outcomes)
    initial = _lookup(data["initial_state"], states, "initial_state")
    name = data.get("name", "game")
    if not isinstance(name, str):
        raise InvalidGameError(f"name: expected a string, got {name!r}")
    return PrincipalAgentMDP(
        outcome_probs=probs,
        agent_reward=agent_reward,
        principal_reward=principal_reward,
        transitions=transitions,
        initial_state=initial,
        horizon=data["horizon"],
        discount=data["discount"],
        state_names=states,
        action_names=actions,
        outcome_names=outcomes,
        name=name,
    )


def _names(data: dict, key: str) -> tuple[str, ...]:
    value = data[key]
    if not isinstance(value, list) or not value:
        raise InvalidGameError(f"{key}: expected a non-empty list of names, got {value!r:.60}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise InvalidGameError(f"{key}[{i}]: expected a non-empty string, got {item!r}")
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        if item in seen:
            raise InvalidGameError(f"{key}[{i}]: duplicate name {item!r} (also at [{seen[item]}])")
        seen[item] = i
    return tuple(value)


def _lookup(value: Any, names: tuple[str, ...], where: str) -> int:
    if isinstance(value, str):
        try:
            return names.index(value)
        except ValueError:
            raise InvalidGameError(f"{where}: unknown name {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidGameError(f"{where}: expected an index or a name, got {value!r}")
    if not 0 <= value < len(names):
        raise InvalidGameError(f"{where}: index {value} out of range [0, {len(names)})")
    return value


def _table(value: Any, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """Nested lists -> float array of ``shape``; on failure, find and name the bad index."""
    try:
        array = np.asarray(value)
        if array.shape == shape and array.dtype.kind in "iuf":
            return array.astype(np.float64)
    except (ValueError, TypeError):
        pass
    _locate_table_error(value, key, shape, ())
    raise InvalidGameError(f"{key}: expected numbers in shape {list(shape)}")  # pragma: no cover


def _locate_table_error(value: Any, key: str, shape: tuple[int, ...], idx: tuple[int, ...]):
    where = key + "".join(f"[{i}]" for i in idx)
    if not shape:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidGameError(f"{where}: expected a number, got {value!r}")
        return
    if not isinstance(value, list):
        raise InvalidGameError(f"{where}: expected a list of {shape[0]}, got {value!r:.60}")
    if len(value) != shape[0]:
        raise InvalidGameError(
            f"{where}: expected {shape[0]} entries, got {len(value)}" + _dim_hint(key, len(idx))
        )
    for i, item in enumerate(value):
        _locate_table_error(item, key, shape[1:], (*idx, i))


_LAYOUTS = {
    "outcome_probs": ("state", "action", "outcome"),
    "agent_reward": ("state", "action"),
    "principal_reward": ("state", "outcome"),
    "transitions": ("state", "outcome", "next state"),
}


def _dim_hint(key: str, depth: int) -> str:
    layout = _LAYOUTS.get(key, ())
    return f" (one per {layout[depth]})" if depth < len(layout) else ""


def _transitions(value: Any, states: tuple[str, ...], outcomes: tuple[str, ...]):
    num_s, num_o = len(states), len(outcomes)
    if not isinstance(value, dict):
        return _table(value, "transitions", (num_s, num_o, num_s))
    if set(value) != {"sparse"}:
        raise InvalidGameError(
            "transitions: expected a dense [S][O][S] list or "
            '{"sparse": [[s, o, s_next, prob], ...]}'
        )
    entries = value["sparse"]
    if not isinstance(entries, list):
        raise InvalidGameError("transitions.sparse: expected a list of [s, o, s_next, prob]")
    try:
        array = np.asarray(entries, dtype=np.float64) if entries else np.zeros((0, 4))
        ok = array.ndim == 2 and array.shape[1] == 4
    except (ValueError, TypeError):
        ok = False
    if ok and np.isfinite(array).all():
        idx = array[:, :3]
        if (idx == np.round(idx)).all():
            return _sparse_matrix(array, num_s, num_o)
    return _sparse_matrix(_sparse_rows_slow(entries, states, outcomes), num_s, num_o)


def _sparse_rows_slow(entries: list, states: tuple[str, ...], outcomes: tuple[str, ...]):
    """Entry-by-entry parsing (names allowed), naming the first bad entry."""
    state_index = {n: i for i, n in enumerate(states)}
    outcome_index = {n: i for i, n in enumerate(outcomes)}
    rows = np.zeros((len(entries), 4))
    for k, entry in enumerate(entries):
        where = f"transitions.sparse[{k}]"
        if not isinstance(entry, list) or len(entry) != 4:
            raise InvalidGameError(f"{where}: expected [s, o, s_next, prob], got {entry!r:.60}")
        s, o, nxt, prob = entry
        rows[k, 0] = _entry_index(s, state_index, len(states), f"{where}[0] (state)")
        rows[k, 1] = _entry_index(o, outcome_index, len(outcomes), f"{where}[1] (outcome)")
        rows[k, 2] = _entry_index(nxt, state_index, len(states), f"{where}[2] (next state)")
        if isinstance(prob, bool) or not isinstance(prob, int | float) or not math.isfinite(prob):
            raise InvalidGameError(f"{where}[3]: expected a finite probability, got {prob!r}")
        rows[k, 3] = prob
    return rows


def _entry_index(value: Any, index: dict[str, int], count: int, where: str) -> int:
    if isinstance(value, str):
        if value not in index:
            raise InvalidGameError(f"{where}: unknown name {value!r}")
        return index[value]
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidGameError(f"{where}: expected an index or a name, got {value!r}")
    return int(value)


def _sparse_matrix(rows: np.ndarray, num_s: int, num_o: int) -> sp.csr_array:
    s, o, nxt = (rows[:, i].astype(np.int64) for i in range(3))
    prob = rows[:, 3]
    for col, (arr, count, what) in enumerate(
        ((s, num_s, "state"), (o, num_o, "outcome"), (nxt, num_s, "next state"))
    ):
        bad = (arr < 0) | (arr >= count)
        if bad.any():
            k = int(np.argmax(bad))
            raise InvalidGameError(
                f"transitions.sparse[{k}][{col}] ({what}): index {arr[k]} out of range [0, {count})"
            )
    bad = ~np.isfinite(prob) | (prob < 0)
    if bad.any():
        k = int(np.argmax(bad))
        raise InvalidGameError(
            f"transitions.sparse[{k}][3]: probability must be finite and >= 0, got {prob[k]}"
        )
    key = (s * num_o + o) * num_s + nxt
    order = np.argsort(key, kind="stable")
    dup = np.flatnonzero(np.diff(key[order]) == 0)
    if dup.size:
        k = int(order[dup[0] + 1])
        raise InvalidGameError(
            f"transitions.sparse[{k}]: duplicate entry for (s={s[k]}, o={o[k]}, s_next={nxt[k]})"
        )
    return sp.csr_array((prob, (s * num_o + o, nxt)), shape=(num_s * num_o, num_s))


def instance_dict(game: PrincipalAgentMDP, sparse: bool | None = None) -> dict[str, Any]:
    """The instance-format object of ``game``.

    Args:
        game: the game.
        sparse: write transitions sparsely; default: when ``S*O*S > SPARSE_ABOVE``.
    """
    num_s, num_o = game.num_states, game.num_outcomes
    if sparse is None:
        sparse = num_s * num_o * num_s > SPARSE_ABOVE
    if sparse:
        coo = game.transitions.tocoo()
        rows = np.column_stack([coo.row // num_o, coo.row % num_o, coo.col]).tolist()
        transitions: Any = {
            "sparse": [[*r, p] for r, p in zip(rows, coo.data.tolist(), strict=True)]
        }
    else:
        transitions = game.transitions.toarray().reshape(num_s, num_o, num_s).tolist()
    return {
        "name": game.name,
        "states": [game.state_name(s) for s in range(num_s)],
        "actions": [game.action_name(a) for a in range(game.num_actions)],
        "outcomes": [game.outcome_name(o) for o in range(num_o)],
        "initial_state": game.state_name(game.initial_state),
        "horizon": game.horizon,
        "discount": game.discount,
        "outcome_probs": game.outcome_probs.tolist(),
        "agent_reward": game.agent_reward.tolist(),
        "principal_reward": game.principal_reward.tolist(),
        "transitions": transitions,
    }


def save_instance(game: PrincipalAgentMDP, path: str | Path, sparse: bool | None = None) -> None:
    """Write ``game`` to ``path`` (YAML for ``.yaml``/``.yml``, JSON otherwise), atomically."""
    path = Path(path)
    data = instance_dict(game, sparse)
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        text = yaml.dump(
            data,
            Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper),
            sort_keys=False,
            default_flow_style=None,
            width=120,
        )
    else:
        text = json.dumps(data, separators=(",", ":"))
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
