"""One owner per experiment directory: an OS-level lock held for the experiment's lifetime.

``<out>/.contractrl.lock`` is locked with ``flock`` by the process that runs the experiment;
the operating system releases it when that process ends, however it ends (a ``kill -9`` or a
crash included), so a killed owner never blocks a later ``--resume``. The file records the
owner (pid, host, start, command) so that a refused second process names it. Where the
filesystem has no ``flock`` (some network filesystems), a lock whose owner is on this host
and no longer runs is taken over.

The owner also refreshes ``heartbeat`` in the file, so the next owner can count the time of an
invocation that was killed (``timing.json``).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

#: The lock file's name inside an experiment directory.
LOCK_NAME = ".contractrl.lock"
#: Seconds between the owner's heartbeats.
HEARTBEAT_SECONDS = 10.0


class ExperimentBusyError(Exception):
    """Another process owns the experiment directory (the message names it)."""


class _Held:
    """A lock this process holds, shared by every user in the process (reference counted)."""

    def __init__(self, fd: int, path: Path, previous: dict[str, Any]):
        self.fd, self.path, self.count, self.previous = fd, path, 1, previous
        self.started = time.time()
        self.counted = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                _write_owner(self.fd, self.started)
            except OSError:
                pass  # a full disk: the heartbeat is best effort

    def close(self) -> None:
        self._stop.set()
        try:
            os.close(self.fd)
        except OSError:
            pass


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _owner_info(started: float) -> dict[str, Any]:
    import sys

    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "started_unix": started,
        "heartbeat_unix": time.time(),
        "command": " ".join(sys.argv),
        "counted": False,
    }


def _write_owner(fd: int, started: float) -> None:
    data = (json.dumps(_owner_info(started)) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, 65536, 0)
        data = json.loads(raw.decode("utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe(owner: dict[str, Any]) -> str:
    """``pid 123 on host, since ...: command`` (what is known of an owner)."""
    text = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}"
    if owner.get("started"):
        text += f", since {owner['started']}"
    if owner.get("command"):
        text += f" ({owner['command']})"
    return text


def _busy(out: Path, owner: dict[str, Any]) -> ExperimentBusyError:
    pid = owner.get("pid")
    how = f"stop it first (kill -INT {pid})" if pid else "stop it first"
    return ExperimentBusyError(
        f"{out} is in use by another contractrl process ({describe(owner)}): wait for it to "
        f"finish, or {how}, then --resume"
    )


def acquire(out: Path) -> _Held:
    """Lock ``out`` (an existing directory) for this process.

    Returns the held lock; :func:`release` it (a process that ends releases it too). A process
    may acquire a directory it holds again (counted).

    Raises:
        ExperimentBusyError: another process holds it.
        OSError: the lock file cannot be created (a read-only place, a full disk).
    """
    import fcntl

    key = os.path.realpath(out)
    with _GUARD:
        held = _HELD.get(key)
        if held is not None:
            held.count += 1
            return held
        path = Path(out) / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _busy(Path(out), _read_owner(fd)) from None
            except OSError as exc:  # no flock here (e.g. some network filesystems)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                owner = _read_owner(fd)
                mine = owner.get("host") == socket.gethostname()
                if owner.get("pid") and (not mine or _pid_alive(int(owner["pid"]))):
                    raise _busy(Path(out), owner) from None
            previous = _read_owner(fd)
            started = time.time()
            _write_owner(fd, started)
        except BaseException:
            os.close(fd)
            raise
        held = _Held(fd, path, previous)
        held.started = started
        _HELD[key] = held
        return held


def release(held: _Held) -> None:
    """Release one acquisition of ``held`` (the lock goes when the last one is released)."""
    with _GUARD:
        held.count -= 1
        if held.count > 0:
            return
        for key, value in list(_HELD.items()):
            if value is held:
                del _HELD[key]
        held.close()


def killed_session(held: _Held) -> float:
    """Seconds spent by the previous owner if it ended without counting its time, else 0.

    Read from its heartbeat (at most :data:`HEARTBEAT_SECONDS` short): an owner that was
    killed (``kill -9``, a power cut) could not add its time to ``timing.json``.
    """
    prev = held.previous
    try:
        if prev.get("counted", True) or "heartbeat_unix" not in prev:
            return 0.0
        return max(float(prev["heartbeat_unix"]) - float(prev["started_unix"]), 0.0)
    except (TypeError, ValueError):
        return 0.0


def mark_counted(held: _Held) -> float:
    """Record that this owner's time is counted; returns the seconds since it took the lock.

    Stops the heartbeat; later calls return 0 (the time is counted once).
    """
    if held.counted:
        return 0.0
    held.counted = True
    held._stop.set()
    held._thread.join(timeout=1.0)
    info = _owner_info(held.started)
    info["counted"] = True
    try:
        os.ftruncate(held.fd, 0)
        os.pwrite(held.fd, (json.dumps(info) + "\n").encode(), 0)
    except OSError:
        pass
    return time.time() - held.started


def held_lock(out: Path) -> _Held | None:
    """The lock of ``out`` this process holds, if any."""
    return _HELD.get(os.path.realpath(out))
