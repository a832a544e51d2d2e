"""``make(name, **kwargs)``: any multi-agent environment the learners can train in, by name.

Names (docs/your-environment.md):

* a built-in environment: ``coin_game`` (:class:`~contractrl.envs.coin_game.CoinGame`;
  keywords are :class:`~contractrl.envs.coin_game.CoinGameConfig` fields, or ``preset`` with a
  Coin Game preset name), ``iterated_dilemma``
  (:class:`~contractrl.envs.dilemma.IteratedDilemma`), ``escape_room``
  (:class:`~contractrl.envs.escape_room.EscapeRoom`; ``preset`` ``er2-1`` or ``er3-2``, or
  :class:`~contractrl.envs.escape_room.EscapeRoomConfig` fields);
* ``jaxmarl:<id>`` — a registered JaxMARL environment (:mod:`.adapters`);
* ``<module>:<factory>`` or ``<file.py>:<factory>`` — a callable in an importable module or a
  Python file; ``factory(**kwargs)`` returns a protocol environment (:mod:`.protocol`), a
  JaxMARL ``MultiAgentEnv``, or a PettingZoo ``ParallelEnv`` (stepped on the host,
  :mod:`.host`).

Every failure is one :class:`~contractrl.envs.adapters.EnvUnusableError` whose message says
what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from contractrl.envs.adapters import EnvUnusableError, JaxMARLEnv, from_jaxmarl
from contractrl.envs.protocol import validate_env


def _coin_game(preset: str | None = None, **flags):
    from contractrl.envs.coin_game import PRESETS, CoinGame

    if preset is not None and preset not in PRESETS:
        raise EnvUnusableError(f"coin_game: unknown preset {preset!r} (known: {sorted(PRESETS)})")
    return CoinGame(PRESETS[preset] if preset else None, **flags)


def _iterated_dilemma(**flags):
    from contractrl.envs.dilemma import IteratedDilemma

    return IteratedDilemma(**flags)


def _escape_room(preset: str | None = None, **flags):
    from contractrl.envs.escape_room import PRESETS, EscapeRoom

    if preset is not None and preset not in PRESETS:
        raise EnvUnusableError(f"escape_room: unknown preset {preset!r} (known: {sorted(PRESETS)})")
    return EscapeRoom(PRESETS[preset] if preset else None, **flags)


def _cleanup(preset: str | None = None, **flags):
    from contractrl.envs.cleanup import PRESETS, Cleanup

    if preset is not None and preset not in PRESETS:
        raise EnvUnusableError(f"cleanup: unknown preset {preset!r} (known: {sorted(PRESETS)})")
    return Cleanup(PRESETS[preset] if preset else None, **flags)


#: Built-in environments: name -> factory(**kwargs).
BUILTINS = {
    "coin_game": _coin_game,
    "iterated_dilemma": _iterated_dilemma,
    "escape_room": _escape_room,
    "cleanup": _cleanup,
}


def make(name: str, **kwargs) -> Any:
    """The protocol environment called ``name`` (module docstring), validated.

    Raises:
        EnvUnusableError: the name resolves to nothing usable; the message says why.
    """
    if not isinstance(name, str) or not name:
        raise EnvUnusableError(f"env: a name is needed, got {name!r}")
    try:
        if name in BUILTINS:
            env = BUILTINS[name](**kwargs)
        elif name.startswith("jaxmarl:"):
            env = from_jaxmarl(name.split(":", 1)[1], **kwargs)
        elif ":" in name:
            env = _from_factory(name, kwargs)
        else:
            raise EnvUnusableError(
                f"env: unknown {name!r} (built-in: {', '.join(BUILTINS)}; or jaxmarl:<id>, "
                "or <module>:<factory>)"
            )
    except EnvUnusableError:
        raise
    except (TypeError, ValueError) as exc:  # a bad keyword or field of the env's own config
        raise EnvUnusableError(f"{name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's factory or module failed: one line
        raise EnvUnusableError(f"{name}: {type(exc).__name__}: {exc}") from None
    try:
        validate_env(env)
    except ValueError as exc:
        raise EnvUnusableError(f"{name}: {exc}") from None
    return env


def _load_module(module_name: str):
    """An importable module, or a Python file given by its path (``my_envs/room.py``)."""
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise EnvUnusableError(f"env: no file {module_name!r}")
        # the file's folder is importable, as when the file is run as a script (siblings)
        if str(path.resolve().parent) not in sys.path:
            sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvUnusableError(f"env: cannot import {module_name!r} ({exc})") from None


def _from_factory(name: str, kwargs: dict) -> Any:
    module_name, _, attr = name.rpartition(":")
    module = _load_module(module_name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise EnvUnusableError(f"env: {module_name!r} has no callable {attr!r}")
    limit = kwargs.get("max_steps")
    try:
        env = factory(**kwargs)
        limit_taken = limit is not None
    except TypeError:
        if limit is None:
            raise
        # max_steps is the adapters' episode limit, not necessarily the factory's keyword
        kwargs = {k: v for k, v in kwargs.items() if k != "max_steps"}
        env = factory(**kwargs)
        limit_taken = False
    if _is_jaxmarl(env):
        return JaxMARLEnv(env, limit, name)
    if _is_parallel_env(env):
        from contractrl.envs.host import PettingZooEnv

        env.close()
        return PettingZooEnv(factory, kwargs, limit, name)
    if limit is not None and not limit_taken:
        raise EnvUnusableError(
            f"{name}: max_steps: the factory takes no such keyword and the environment declares "
            f"its own episode limit ({getattr(env, 'max_steps', '?')}); drop it from --env-kwargs"
        )
    return env


def _is_jaxmarl(env: Any) -> bool:
    """A JaxMARL ``MultiAgentEnv`` (without importing jaxmarl when it is absent)."""
    module = type(env).__module__ or ""
    return module.startswith("jaxmarl") or any(
        c.__module__.startswith("jaxmarl") for c in type(env).__mro__
    )


def _is_parallel_env(env: Any) -> bool:
    return any(c.__name__ == "ParallelEnv" for c in type(env).__mro__) and not hasattr(
        env, "step_env"
    )
