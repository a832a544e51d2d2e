"""What the command line says, and exits with, when an experiment does not finish normally.

Every failure of ``contractrl train`` is one line on stderr with a documented exit code
(docs/faults.md) and, where the experiment can continue, the ``--resume`` command:

====  ==================================================================================
code  meaning
====  ==================================================================================
0     finished
2     bad input: usage, a malformed file, a directory that holds another experiment or
      another config, a file changed by hand (``config.json``, an instance), read-only
      or missing places
3     no equilibrium computed (``solve``, ``train game``)
4     training diverged in some run (``results.json`` written, with ``diverged``)
5     another process owns the experiment directory
6     the disk is full (or failing): free space, then ``--resume``
7     a worker process died (the out-of-memory killer, ``kill -9``): ``--resume``
130   interrupted by SIGINT (Ctrl-C); 143: by SIGTERM: ``--resume``
====  ==================================================================================
"""

from __future__ import annotations

import errno
import shlex
from collections.abc import Sequence
from pathlib import Path

from contractrl.experiments.stop import STOP_GRACE_SECONDS

EXIT_DIVERGED = 4
EXIT_BUSY = 5
EXIT_DISK = 6
EXIT_WORKER_DIED = 7

#: ``errno`` values that mean the disk cannot take more (or is failing), not a user mistake.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


class ExperimentFailed(Exception):
    """A failure the command line reports in one line with ``exit_code``."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues the experiment of ``argv`` (``contractrl ... --resume``)."""
    again = [a for a in argv if a != "--resume"]
    return shlex.join(["contractrl", *again, "--resume"])


def _runs(exc) -> str:
    done, total = getattr(exc, "done", None), getattr(exc, "total", None)
    if done is None or not total:
        return ""
    return f"{done:,} of {total:,} runs finished; "


def interrupted_message(exc, out: Path | None, argv: Sequence[str]) -> str:
    """The line for an :class:`~.stop.Interrupted` (or a plain ``KeyboardInterrupt``)."""
    name = getattr(exc, "name", "SIGINT")
    text = f"interrupted ({name})"
    if out is None or not (Path(out) / "config.json").exists():
        return text + "; nothing to resume (the experiment had not started)"
    killed = getattr(exc, "killed", 0) or 0
    if getattr(exc, "forced", False):
        kept = "stopped at once (second signal): running runs keep their last checkpoint"
    elif killed:
        kept = (
            f"{killed} run(s) still in a training chunk after {STOP_GRACE_SECONDS:g} s were "
            "stopped; every run keeps its last checkpoint"
        )
    else:
        kept = "running runs saved a checkpoint"
    return f"{text}: {_runs(exc)}{kept}. Continue with: {resume_command(argv)}"


def explain(exc: BaseException, out: Path | None, argv: Sequence[str]) -> ExperimentFailed | None:
    """The one-line report of a failure of ``contractrl train``, or ``None`` if unknown."""
    from contractrl.experiments.executor import WorkerDiedError
    from contractrl.experiments.lock import ExperimentBusyError
    from contractrl.experiments.loop import TrainingDivergedError
    from contractrl.experiments.store import DamagedCheckpointError, DamagedFileError

    started = out is not None and (Path(out) / "config.json").exists()
    hint = f"; continue with: {resume_command(argv)}" if started else ""
    if isinstance(exc, ExperimentBusyError):
        return ExperimentFailed(str(exc), EXIT_BUSY)
    if isinstance(exc, WorkerDiedError):
        return ExperimentFailed(f"{_runs(exc)}{exc}{hint}", EXIT_WORKER_DIED)
    if isinstance(exc, TrainingDivergedError):
        return ExperimentFailed(f"{exc} (resuming with the same config diverges again)", 4)
    if isinstance(exc, DamagedFileError | DamagedCheckpointError):
        return ExperimentFailed(f"{exc}{hint}", 2)
    if isinstance(exc, OSError):
        where = exc.filename or out
        if exc.errno in DISK_ERRORS:
            what = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "I/O error"
            again = hint or f"; start again with: {shlex.join(['contractrl', *argv])}"
            return ExperimentFailed(
                f"{what}: cannot write {where} ({exc.strerror}); free space, then{again[1:]}",
                EXIT_DISK,
            )
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.ENOENT):
            return ExperimentFailed(f"--out: cannot write {where}: {exc.strerror}", 2)
    return None
