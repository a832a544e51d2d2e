"""Read and write games in the instance format of docs/instance-format.md (JSON or YAML).

One object with ``states``, ``actions``, ``outcomes`` (name lists), ``initial_state`` (index or
name), ``horizon`` (integer, or ``null`` for infinite), ``discount``,
``outcome_probs[S][A][O]``, ``agent_reward[S][A]``, ``principal_reward[S][O]`` and
``transitions``: dense ``[S][O][S]`` (a row of zeros ends the episode) or sparse
``{"sparse": [[s, o, s_next, prob], ...]}`` (states and outcomes by index or name). An optional
``name`` labels the game. Anything malformed raises :class:`~contractrl.core.model.InvalidGameError`
naming the field and the index, before any solving starts.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from contractrl._io import write_atomic
from contractrl.core.model import InvalidGameError, PrincipalAgentMDP

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
    except RecursionError:
        raise InvalidGameError("invalid JSON: lists or objects nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise InvalidGameError(f"invalid JSON: {_value_error(exc)}") from None


def _parse_yaml(text: str) -> Any:
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None)
        if problem is None and isinstance(exc, yaml.reader.ReaderError):
            where = f" at character {exc.position}"
            char = exc.character
            shown = f"#x{char:04x}" if isinstance(char, int) else repr(char)
            problem = f"unacceptable character {shown}"
        problem = " ".join(str(problem or exc).split())  # one line
        raise InvalidGameError(f"invalid YAML{where}: {_short(problem, 120)}") from None
    except RecursionError:
        raise InvalidGameError("invalid YAML: lists or mappings nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise InvalidGameError(f"invalid YAML: {_value_error(exc)}") from None
    if "&" in text:  # anchors: refuse aliases before anything expands them
        _refuse_shared_containers(data)
    return data


def _value_error(exc: ValueError) -> str:
    if "integer string conversion" in str(exc):
        return "an integer literal of more than 4300 digits (far beyond a float64)"
    return _short(str(exc), 120)


def _refuse_shared_containers(data: Any) -> None:
    """Refuse a document in which one list or mapping appears twice (a YAML alias).

    YAML aliases let a file of a few hundred bytes stand for billions of entries ("billion
    laughs"): the parsed object shares the repeated parts, but converting it to arrays would
    expand them. Instance files never need aliases, so any shared container is refused, naming
    where it is used the second time. The walk visits each container once (bounded time).
    """
    if not isinstance(data, dict | list):  # a scalar document: nothing shared (refused later)
        return
    seen: set[int] = set()
    stack: list[tuple[Any, Any]] = [(data, None)]
    while stack:
        node, where = stack.pop()
        if id(node) in seen:
            raise InvalidGameError(
                f"{_path(where)}: YAML aliases (*name) are not allowed in instance files"
            )
        seen.add(id(node))
        children = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in children:
            if isinstance(child, dict | list):
                stack.append((child, (where, key)))


def _path(where: Any) -> str:
    """``(((None, "a"), 0), 1)`` -> ``a[0][1]``."""
    keys = []
    while where is not None:
        where, key = where
        keys.append(key)
    text = ""
    for key in reversed(keys):
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return _short(text or "instance", 80)


def _short(value: Any, limit: int = 40) -> str:
    """``str(value)`` cut to ``limit`` characters: a huge integer must not flood a message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}<an integer of about {digits} digits>"
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}... ({len(text)} characters)"


def _show(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters."""
    if isinstance(value, int):
        return _short(value, limit)
    try:
        text = repr(value)
    except ValueError:  # a container holding an integer of more than 4300 digits
        text = f"<a {type(value).__name__}>"
    return _short(text, limit)


def parse_instance(data: Any) -> PrincipalAgentMDP:
    """Build a game from a parsed instance object (a ``dict``), validating everything."""
    if not isinstance(data, dict):
        raise InvalidGameError(
            f"instance: expected an object with keys {list(REQUIRED_KEYS)}, "
            f"got {type(data).__name__}"
        )
    unknown = [k for k in data if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if unknown:
        key = min(unknown, key=str)
        raise InvalidGameError(
            f"{_short(key) if isinstance(key, str) else _show(key)}: unknown key "
            f"(allowed: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)})"
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
        raise InvalidGameError(f"name: expected a string, got {_show(name)}")
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
        raise InvalidGameError(f"{key}: expected a non-empty list of names, got {_show(value, 60)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise InvalidGameError(f"{key}[{i}]: expected a non-empty string, got {_show(item)}")
    seen: dict[str, int] = {}
    for i, item in enumerate(value):
        if item in seen:
            raise InvalidGameError(
                f"{key}[{i}]: duplicate name {_show(item)} (also at [{seen[item]}])"
            )
        seen[item] = i
    return tuple(value)


def _lookup(value: Any, names: tuple[str, ...], where: str) -> int:
    if isinstance(value, str):
        try:
            return names.index(value)
        except ValueError:
            raise InvalidGameError(f"{where}: unknown name {_show(value)}") from None
    if _is_bool(value) or not isinstance(value, int):
        raise InvalidGameError(f"{where}: expected an index or a name, got {_show(value)}")
    if not 0 <= value < len(names):
        raise InvalidGameError(f"{where}: index {_short(value)} out of range [0, {len(names)})")
    return value


def _is_bool(value: Any) -> bool:
    """JSON ``true``/``false`` are not numbers here (Python counts ``True`` as ``1``)."""
    return isinstance(value, bool | np.bool_)


def _leaf_types(value: Any, depth: int) -> set[type]:
    """Types of the entries of a regular nested sequence ``depth`` levels deep (C-speed)."""
    flat = value
    for _ in range(depth - 1):
        flat = itertools.chain.from_iterable(flat)
    return set(map(type, flat))


def _only_numbers(types: set[type]) -> bool:
    return all(issubclass(t, int | float | np.number) and not issubclass(t, bool) for t in types)


def _table(value: Any, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """Nested lists -> float array of ``shape``; on failure, find and name the bad index.

    Any number that is a finite float64 is accepted (integers are converted, so ``10**20`` is
    ``1e20``); booleans and integers beyond float64's range (about ``1.8e308``) are refused.
    """
    try:
        array = np.asarray(value)
        if (
            array.shape == shape
            and array.dtype.kind in "iuf"
            and _only_numbers(_leaf_types(value, len(shape)))
        ):
            return array.astype(np.float64)
    except (ValueError, TypeError, OverflowError):
        pass
    _locate_table_error(value, key, shape, ())
    # Every entry is a number of the right shape: e.g. integers beyond int64 (an object array).
    return np.array(value, dtype=np.float64)


def _locate_table_error(value: Any, key: str, shape: tuple[int, ...], idx: tuple[int, ...]):
    where = key + "".join(f"[{i}]" for i in idx)
    if not shape:
        _number(value, where)
        return
    if not isinstance(value, list):
        raise InvalidGameError(f"{where}: expected a list of {shape[0]}, got {_show(value, 60)}")
    if len(value) != shape[0]:
        raise InvalidGameError(
            f"{where}: expected {shape[0]} entries, got {len(value)}" + _dim_hint(key, len(idx))
        )
    for i, item in enumerate(value):
        _locate_table_error(item, key, shape[1:], (*idx, i))


def _number(value: Any, where: str) -> float:
    """One number of a table or a probability: a finite float64, not a boolean."""
    if _is_bool(value) or not isinstance(value, int | float | np.number):
        raise InvalidGameError(f"{where}: expected a number, got {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidGameError(
            f"{where}: integer too large for a float64 (|x| < 1.8e308), got {_short(value)}"
        ) from None
    if not math.isfinite(number):
        raise InvalidGameError(f"{where}: must be finite, got {number}")
    return number


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
        ok = ok and _only_numbers(_leaf_types(entries, 2))
    except (ValueError, TypeError, OverflowError):
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
            raise InvalidGameError(
                f"{where}: expected [s, o, s_next, prob], got {_show(entry, 60)}"
            )
        s, o, nxt, prob = entry
        rows[k, 0] = _entry_index(s, state_index, len(states), f"{where}[0] (state)")
        rows[k, 1] = _entry_index(o, outcome_index, len(outcomes), f"{where}[1] (outcome)")
        rows[k, 2] = _entry_index(nxt, state_index, len(states), f"{where}[2] (next state)")
        rows[k, 3] = _number(prob, f"{where}[3] (probability)")
    return rows


def _entry_index(value: Any, index: dict[str, int], count: int, where: str) -> int:
    if isinstance(value, str):
        if value not in index:
            raise InvalidGameError(f"{where}: unknown name {_show(value)}")
        return index[value]
    integral = isinstance(value, int) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    )
    if _is_bool(value) or not integral:
        raise InvalidGameError(f"{where}: expected an index or a name, got {_show(value)}")
    if not 0 <= value < count:
        raise InvalidGameError(f"{where}: index {_short(value)} out of range [0, {count})")
    return int(value)


def _sparse_matrix(rows: np.ndarray, num_s: int, num_o: int) -> sp.csr_array:
    """``[n, 4]`` float rows (integral indices, finite) -> the ``[S*O, S]`` CSR matrix."""
    for col, (count, what) in enumerate(
        ((num_s, "state"), (num_o, "outcome"), (num_s, "next state"))
    ):
        # Range-check the floats before the cast: 1e30 must not wrap to a negative int64.
        bad = (rows[:, col] < 0) | (rows[:, col] >= count)
        if bad.any():
            k = int(np.argmax(bad))
            value = rows[k, col]
            shown = int(value) if abs(value) < 1e15 else f"{value:g}"
            raise InvalidGameError(
                f"transitions.sparse[{k}][{col}] ({what}): index {shown} out of range [0, {count})"
            )
    s, o, nxt = (rows[:, i].astype(np.int64) for i in range(3))
    prob = rows[:, 3]
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
    """Write ``game`` to ``path`` (YAML for ``.yaml``/``.yml``, JSON otherwise), atomically.

    Raises:
        OSError: ``path`` cannot be written (a directory, an uncreatable folder); no temporary
            file is left behind.
    """
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
    write_atomic(path, text)
