"""Run directories: atomic JSON, metrics CSV, checkpoints and progress files.

Layout of an experiment directory::

    config.json            resolved config, version, git SHA, command
    instances/             each training game in the instance format
    runs/<run>/metrics.csv one row per evaluation
    runs/<run>/checkpoint.msgpack   the learner state (atomic), with its iteration
    runs/<run>/progress.json        iterations done (polled for the progress bar)
    runs/<run>/final.json           written when the run completes
    results.json           aggregated results
    .contractrl.lock       the lock of the process that owns the directory (pid, host)

JSON files written here carry a ``checksum`` (SHA-256 of their other content), checked by
:func:`read_json`: a hand-edited or damaged file is refused, never read as a result
(docs/faults.md).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contractrl._io import write_atomic
from contractrl.experiments.lock import (
    LOCK_NAME,
    held_lock,
    killed_session,
    mark_counted,
)
from contractrl.experiments.lock import ExperimentBusyError as ExperimentBusyError
from contractrl.experiments.lock import acquire as acquire_lock
from contractrl.experiments.lock import release as release_lock


class DamagedCheckpointError(Exception):
    """A checkpoint or parameter file fails its checksum or cannot be decoded."""


#: Header of a verified state file: magic, then the SHA-256 of the msgpack payload.
_STATE_MAGIC = b"contractrl-state-v1\n"


def save_state(path: Path, state_dict: Any) -> None:
    """Write a pytree (``flax.serialization.to_state_dict`` form) atomically, with a checksum."""
    import hashlib

    from flax import serialization

    data = serialization.msgpack_serialize(state_dict)
    write_bytes(path, _STATE_MAGIC + hashlib.sha256(data).digest() + data)


def load_state(path: Path) -> Any:
    """Read a file written by :func:`save_state` (or a plain msgpack file of older versions).

    Raises:
        DamagedCheckpointError: the checksum does not match (a truncated or corrupted file)
            or the payload cannot be decoded; the message names the file.
    """
    import hashlib

    from flax import serialization

    raw = Path(path).read_bytes()
    if raw.startswith(_STATE_MAGIC):
        start = len(_STATE_MAGIC)
        digest, data = raw[start : start + 32], raw[start + 32 :]
        if hashlib.sha256(data).digest() != digest:
            raise DamagedCheckpointError(f"{path} is damaged (checksum mismatch: {len(raw)} bytes)")
    else:
        data = raw
    try:
        return serialization.msgpack_restore(data)
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged file
        raise DamagedCheckpointError(f"{path} is damaged ({exc})") from None


def load_checkpoint(path: Path) -> Any | None:
    """:func:`load_state` for a resumable checkpoint, or ``None`` if it is damaged.

    A damaged checkpoint is reported in one line on stderr and removed, so the caller
    recomputes what it held.
    """
    import sys

    try:
        return load_state(path)
    except DamagedCheckpointError as exc:
        print(f"contractrl: {exc}; recomputing what it held", file=sys.stderr)
        Path(path).unlink(missing_ok=True)
        return None


class ExperimentExistsError(Exception):
    """The output directory holds another experiment (use ``--resume`` or a new ``--out``)."""


class DamagedFileError(ValueError):
    """A file of the experiment cannot be read or fails its checksum (the message names it)."""


#: The key of a JSON object's checksum (``sha256:<hex>`` of its other content).
CHECKSUM_KEY = "checksum"


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_default)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_json(path: Path, data: Any, checksum: bool = True) -> None:
    """Write JSON atomically (temporary file, then rename).

    A JSON object gets a ``checksum`` entry (unless ``checksum`` is false), which
    :func:`read_json` verifies.
    """
    if checksum and isinstance(data, dict):
        plain = json.loads(json.dumps(data, default=_default))  # as a reader will see it
        plain.pop(CHECKSUM_KEY, None)
        data = {**plain, CHECKSUM_KEY: _digest(plain)}
    write_atomic(path, json.dumps(data, indent=2, default=_default) + "\n")


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically, flushed to disk before the rename (checkpoints)."""
    write_atomic(path, data, fsync=True)


def read_json(path: Path) -> Any:
    """Read a JSON file; verify and drop its ``checksum`` (files of older versions have none).

    Raises:
        DamagedFileError: the file is not JSON or its content does not match its checksum
            (edited or damaged); the message names the file.
        OSError: it cannot be read (``FileNotFoundError`` if it does not exist).
    """
    raw = Path(path).read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedFileError(f"{path} is damaged (not JSON: {exc})") from None
    if isinstance(data, dict) and CHECKSUM_KEY in data:
        stored = data.pop(CHECKSUM_KEY)
        if stored != _digest(data):
            raise DamagedFileError(
                f"{path} was changed after contractrl wrote it (its checksum does not match)"
            )
    return data


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _iteration(row: dict[str, str]) -> float:
    try:
        return float(row["iteration"])
    except (TypeError, ValueError):
        return float("inf")  # an unreadable row is dropped with the rows past the checkpoint


class MetricsLog:
    """Append-only CSV of evaluation rows; on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = Path(path)
        self.columns = columns

    def truncate_after(self, iteration: int) -> None:
        """Keep only rows up to ``iteration``.

        Rows a crash left past the checkpoint would otherwise be duplicated on resume.
        """
        rows = [r for r in self.read() if _iteration(r) <= iteration]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, buffer.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        """Append one row (writing the header first if the file is new).

        Raises:
            OSError: it cannot be written (``filename``: this log), e.g. a full disk.
        """
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.path, "a", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.columns)
                if new:
                    writer.writeheader()
                writer.writerow({k: row.get(k, "") for k in self.columns})
                fh.flush()
        except OSError as exc:
            if exc.filename is not None or exc.errno is None:
                raise
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def read(self) -> list[dict[str, str]]:
        """All complete rows (empty if the file does not exist).

        A row cut short (a crash or a full disk in the middle of a write) is left out.

        Raises:
            DamagedFileError: the file is not a CSV of these columns.
        """
        if not self.path.exists():
            return []
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                rows = list(reader)
                header = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DamagedFileError(f"{self.path} is damaged ({exc})") from None
        if header is None:
            return []
        if "iteration" not in header:
            raise DamagedFileError(f"{self.path} is damaged (no 'iteration' column)")
        return [r for r in rows if None not in r and None not in r.values()]


def expected_iterations(upto: int, eval_every: int, total: int) -> list[int]:
    """The iterations the loop logs a row at, up to ``upto`` (``eval_every``, ..., ``total``)."""
    marks = list(range(eval_every, total, eval_every)) + [total]
    return [i for i in marks if i <= upto]


def git_sha() -> str | None:
    """The source tree's git commit, if available."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


class Manifest(dict):
    """``config.json``'s content; while it is referenced, this process owns the directory.

    :func:`open_experiment` locks the directory (:mod:`.lock`) and ties the lock to the
    manifest it returns: the lock is released when the manifest is no longer referenced (the
    experiment function returned) or the process ends.
    """


#: Entries a start writes before ``config.json`` (a start that failed leaves only these).
_START_ENTRIES = {"instances", "runs", "timing.json"}


def _leftovers(out: Path) -> list[Path]:
    """What ``out`` holds besides the lock and temporary files."""
    return [e for e in out.iterdir() if e.name != LOCK_NAME and not e.name.endswith(".tmp")]


def _partial_start(out: Path) -> bool:
    """``out`` is empty, or holds only what a start that did not finish wrote.

    Such a start always took the lock first (``.contractrl.lock``), so a directory without it
    is never taken for one (its ``runs/`` may be someone else's).
    """
    leftovers = _leftovers(out)
    if not leftovers:
        return True
    return (out / LOCK_NAME).exists() and all(e.name in _START_ENTRIES for e in leftovers)


def _clear(out: Path, entries: list[Path]) -> None:
    import shutil

    for e in entries:
        if e.is_dir() and not e.is_symlink():
            shutil.rmtree(e, ignore_errors=True)
        else:
            e.unlink(missing_ok=True)
    for e in out.glob(".*.tmp"):
        e.unlink(missing_ok=True)


def _file_sums(out: Path, before: set[Path]) -> dict[str, str]:
    """SHA-256 of every file under ``out`` that is not in ``before`` (what ``build`` wrote)."""
    sums = {}
    for f in sorted(out.rglob("*")):
        if f.is_file() and f not in before and f.name != LOCK_NAME:
            sums[str(f.relative_to(out))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return sums


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def open_experiment(
    out: Path,
    kind: str,
    config: Any,
    resume: bool,
    command: str,
    version: str,
    build: Callable[[Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Create the experiment directory ``out`` (``config.json``), or reopen it to resume.

    The directory is locked for this process while the returned manifest is referenced
    (:class:`Manifest`). A directory left by a start that failed before ``config.json`` (a
    full disk, an interrupt) is started afresh, with or without ``resume``. On ``resume``,
    the files ``build`` wrote (instances) are checked against their checksums and damaged
    per-run files are set aside (:func:`verify_outputs`).

    Args:
        out: the directory.
        kind: the experiment's name (``tree``, ``coin``).
        config: its frozen dataclass config.
        resume: reopen an existing directory (its config must be the same).
        command: the command line, for the record.
        version: the package version.
        build: called once on creation; returns extra manifest entries (e.g. instances).

    Raises:
        ExperimentExistsError: ``out`` holds an experiment and ``resume`` is false, or its config
            or kind differs, or its ``config.json`` or instances were changed; ``out`` is a
            file, or a non-empty directory without an experiment; ``resume`` and ``out``
            holds no experiment.
        ExperimentBusyError: another process owns ``out``.
    """
    out = Path(out)
    path = out / "config.json"
    resolved = json.loads(json.dumps(dataclasses.asdict(config)))
    if out.exists() and not out.is_dir():
        raise ExperimentExistsError(f"--out: {out} is a file, not an experiment directory")
    if resume and not path.exists() and not (out.is_dir() and _leftovers(out)):
        raise ExperimentExistsError(
            f"--resume: {out} holds no experiment (no config.json); drop --resume to start one"
        )
    if not path.exists() and out.is_dir() and not _partial_start(out):
        raise ExperimentExistsError(
            f"--out: {out} is not empty and holds no experiment; choose a new or empty directory"
        )
    if path.exists() and not resume:
        raise ExperimentExistsError(
            f"{out} already holds an experiment: pass --resume to continue it, or choose "
            "another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    held = acquire_lock(out)
    try:
        if path.exists():
            manifest = Manifest(_reopen(out, kind, config, resolved))
        else:
            manifest = Manifest(_create(out, kind, resolved, command, version, build))
    except BaseException:
        release_lock(held)
        raise
    weakref.finalize(manifest, release_lock, held)
    return manifest


def _reopen(out: Path, kind: str, config: Any, resolved: dict[str, Any]) -> dict[str, Any]:
    path = out / "config.json"
    try:
        saved = read_json(path)
    except DamagedFileError as exc:
        raise ExperimentExistsError(
            f"--resume: {exc}: its settings and exact values cannot be trusted; restore the "
            "original, or start a new experiment with a new --out"
        ) from None
    except OSError as exc:
        raise ExperimentExistsError(f"--resume: {path} is unreadable ({exc.strerror})") from None
    try:
        if saved.get("experiment") != kind:
            raise ExperimentExistsError(
                f"--resume: {out} holds a {saved.get('experiment')!r} experiment, not {kind!r}"
            )
        before = _identity(config, saved["config"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ExperimentExistsError(f"--resume: {path} is unreadable ({exc})") from None
    diffs = _differences(before, _identity(config, resolved))
    if diffs:
        named = ", ".join(f"{name} {new!r} (saved: {old!r})" for name, old, new in diffs[:6])
        raise ExperimentExistsError(
            f"--resume: {out} was started with another config: {named}; resume with the "
            "saved values (drop the flags that set these), or start a new --out"
        )
    for name, digest in saved.get("files", {}).items():
        f = out / name
        try:
            ok = hashlib.sha256(f.read_bytes()).hexdigest() == digest
        except OSError:
            ok = False
        if not ok:
            raise ExperimentExistsError(
                f"--resume: {f} is missing or was changed after the experiment started (its "
                "checksum in config.json does not match): restore it, or start a new --out"
            )
    verify_outputs(out, saved)
    return saved


def _create(out, kind, resolved, command, version, build) -> dict[str, Any]:
    leftovers = _leftovers(out)
    if leftovers:
        print(
            f"contractrl: {out} holds a start that did not finish (no config.json): "
            "starting afresh",
            file=sys.stderr,
        )
        _clear(out, leftovers)
    manifest = {"experiment": kind, "config": resolved}
    try:
        before = set(out.rglob("*"))
        if build is not None:
            manifest.update(build(out))
            manifest["files"] = _file_sums(out, before)
        manifest.update(
            version=version,
            git_sha=git_sha(),
            command=command,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            host=socket.gethostname(),
        )
        write_json(out / "config.json", manifest)
    except BaseException:  # a full disk, an interrupt: leave nothing a next start would refuse
        _clear(out, _leftovers(out))
        raise
    return manifest


def verify_outputs(out: Path, manifest: dict[str, Any]) -> list[str]:
    """Check every JSON file an experiment derived (summaries, ``results.json``) on resume.

    A file that is not JSON or fails its checksum is renamed ``<name>.damaged`` (kept for a
    look) with one line on stderr, so the run computes it again from its checkpoint (or
    trains again where none is kept). A finished run whose CSV lacks rows is reported (its
    summary, and so ``results.json``, is unaffected; ``plot`` marks the run).

    Returns:
        the paths (relative to ``out``) set aside.
    """
    set_aside = []
    eval_every = manifest.get("config", {}).get("eval_every")
    for f in sorted(out.rglob("*.json")):
        rel = f.relative_to(out)
        if f.name.startswith(".") or rel.parts[0] == "instances" or rel == Path("config.json"):
            continue
        try:
            data = read_json(f)
        except DamagedFileError as exc:
            f.replace(f.with_name(f.name + ".damaged"))
            set_aside.append(str(rel))
            what = "computed again" if f.name != "timing.json" else "counted from zero"
            print(
                f"contractrl: {exc}: set aside as {f.name}.damaged; it is {what}", file=sys.stderr
            )
            continue
        except OSError:
            continue
        if isinstance(eval_every, int) and isinstance(data, dict):
            _check_log(f, data, eval_every)
    return set_aside


def _check_log(summary: Path, data: dict[str, Any], eval_every: int) -> None:
    """Report a finished run's CSV that lacks rows (``final.json`` -> ``metrics.csv``)."""
    iterations = data.get("iterations")
    if not isinstance(iterations, int) or iterations <= 0:
        return
    name = "metrics.csv" if summary.name == "final.json" else summary.stem + ".csv"
    log = MetricsLog(summary.with_name(name), ["iteration"])
    want = expected_iterations(iterations, eval_every, iterations)
    try:
        have = [int(float(r["iteration"])) for r in log.read()] if log.path.exists() else []
    except (DamagedFileError, TypeError, ValueError):
        have = []
    if have != want:
        print(
            f"contractrl: {log.path} has {len(set(have) & set(want))} of the run's "
            f"{len(want)} evaluation rows (deleted or truncated after it finished): its "
            f"summary and results.json are unaffected; `plot` marks the run (delete "
            f"{summary.name} and --resume to train it again)",
            file=sys.stderr,
        )


#: Config fields that say how to run, not what: they may differ on ``--resume``.
EXECUTION_FIELDS = ("backend", "workers", "ray_address", "checkpoint_seconds")


def _identity(config: Any, data: dict[str, Any]) -> dict[str, Any]:
    """A saved config as the current version reads it, without :data:`EXECUTION_FIELDS`.

    Fields added since it was saved take their defaults (the older code's behaviour).
    """
    from contractrl.experiments.config import from_dict

    full = json.loads(json.dumps(dataclasses.asdict(from_dict(type(config), data))))
    return {k: v for k, v in full.items() if k not in EXECUTION_FIELDS}


def add_wall_time(out: Path, seconds: float | None = None) -> float:
    """Add this invocation's time to the experiment's recorded wall time; returns the total.

    ``seconds``: this invocation's time (``None``: since it took the directory's lock). The
    time of an earlier invocation that was killed before it could count its own (read from
    its lock's heartbeat) is added too; each invocation is counted once.
    """
    path = out / "timing.json"
    try:
        total = float(read_json(path)["wall_seconds"]) if path.exists() else 0.0
    except (DamagedFileError, OSError, KeyError, TypeError, ValueError):
        total = 0.0
    held = held_lock(out)
    if held is not None:
        total += killed_session(held)
        held.previous = {}  # counted once
        spent = mark_counted(held)
        if seconds is None:
            seconds = spent
    total += seconds or 0.0
    write_json(path, {"wall_seconds": total})
    return total
