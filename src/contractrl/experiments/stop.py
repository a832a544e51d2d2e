"""Stopping an experiment on SIGINT (Ctrl-C) or SIGTERM (``kill``, schedulers, containers).

The driver (the ``contractrl train`` process) handles both signals with :func:`handle_signals`:

* the first signal stops the experiment: no queued run starts, the driver asks its workers to
  stop (SIGTERM), each running :func:`~contractrl.experiments.loop.checkpointed_loop` finishes
  its chunk, writes a checkpoint and exits; a worker still busy after
  :data:`STOP_GRACE_SECONDS` is killed (it loses what it trained since its last checkpoint);
* a second signal stops at once: every worker is killed, nothing more is written;
* further signals are ignored while the driver exits.

The driver then raises :class:`Interrupted`, which the command line turns into one line (what
was kept, the ``--resume`` command) and exit code 128 + the signal's number (130 for SIGINT,
143 for SIGTERM). Workers ignore SIGINT (a Ctrl-C reaches the whole process group; the driver
decides) and treat SIGTERM as a request to checkpoint and exit (:func:`install_worker`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

#: Seconds a worker may take, after the first signal, to finish its chunk and checkpoint.
STOP_GRACE_SECONDS = 5.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The experiment was stopped by a signal.

    Attributes:
        signum: the (first) signal.
        forced: a second signal came: workers were killed without a last checkpoint.
        done: runs finished before the stop (``None``: unknown).
        total: runs of the experiment (``None``: unknown).
    """

    def __init__(self, signum: int, forced: bool = False):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.forced = signum, forced
        self.done: int | None = None
        self.total: int | None = None

    @property
    def exit_code(self) -> int:
        """The shell's code for death by this signal (130: SIGINT, 143: SIGTERM)."""
        return 128 + self.signum

    @property
    def name(self) -> str:
        """The signal's name (``SIGINT``)."""
        return signal.Signals(self.signum).name


class _State:
    requested: int | None = None  # the first signal's number
    count = 0  # signals received
    loops = 0  # checkpointed loops running in this process
    worker = False
    active = False  # handle_signals is in force


def requested() -> int | None:
    """The signal that asked this process to stop, or ``None``."""
    return _State.requested


def reset() -> None:
    """Forget a stop request (a new experiment in the same process)."""
    _State.requested, _State.count = None, 0


@contextlib.contextmanager
def checkpointable():
    """Mark a loop that checks :func:`requested` between chunks and checkpoints before stopping.

    While one runs, a first signal only sets the request (the loop raises :class:`Interrupted`
    after its checkpoint) instead of interrupting the process at once.
    """
    _State.loops += 1
    try:
        yield
    finally:
        _State.loops -= 1


def _driver_handler(signum, frame) -> None:
    _State.count += 1
    if _State.count == 1:
        _State.requested = signum
        if _State.loops > 0:  # an inline or lane loop: it checkpoints, then raises
            return
        raise Interrupted(signum)
    if _State.count == 2:
        raise Interrupted(_State.requested or signum, forced=True)
    # a third signal or more: the driver is already killing its workers and exiting


@contextlib.contextmanager
def handle_signals():
    """Handle SIGINT and SIGTERM in this (driver) process as described in the module docstring.

    Outside the main thread (signals cannot be handled there) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    reset()
    previous = {s: signal.signal(s, _driver_handler) for s in _SIGNALS}
    _State.active = True
    try:
        yield
    finally:
        _State.active = False
        for s, handler in previous.items():
            signal.signal(s, handler)
        reset()


def reinstall() -> None:
    """Take SIGINT and SIGTERM back after a library installed its own handlers (Ray does)."""
    if _State.active and threading.current_thread() is threading.main_thread():
        for s in _SIGNALS:
            signal.signal(s, _driver_handler)


def forced() -> bool:
    """A second signal came (stop without waiting for checkpoints)."""
    return _State.count >= 2


def _worker_handler(signum, frame) -> None:
    if _State.requested is None:
        _State.requested = signum
    if _State.loops == 0:  # nothing to checkpoint (idle, compiling a setup, solving): go now
        sys.stderr.flush()
        os._exit(128 + signum)


def install_worker() -> None:
    """In a worker process: ignore SIGINT, make SIGTERM a request to checkpoint and exit."""
    _State.worker = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_handler)


def in_worker() -> bool:
    """This process is a worker of the local executor."""
    return _State.worker


def check() -> None:
    """Raise :class:`Interrupted` if a stop was requested."""
    if _State.requested is not None:
        raise Interrupted(_State.requested, forced=forced())
