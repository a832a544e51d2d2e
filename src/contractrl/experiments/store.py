"""Run directories: atomic JSON, metrics CSV, checkpoints and progress files.

Layout of an experiment directory::

    config.json            resolved config, version, git SHA, command
    instances/             each training game in the instance format
    runs/<run>/metrics.csv one row per evaluation
    runs/<run>/checkpoint.msgpack   the learner state (atomic), with its iteration
    runs/<run>/progress.json        iterations done (polled for the progress bar)
    runs/<run>/final.json           written when the run completes
    results.json           aggregated results
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contractrl._io import write_atomic


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


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    write_atomic(path, json.dumps(data, indent=2, default=_default) + "\n")


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically, flushed to disk before the rename (checkpoints)."""
    write_atomic(path, data, fsync=True)


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class MetricsLog:
    """Append-only CSV of evaluation rows; on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = Path(path)
        self.columns = columns

    def truncate_after(self, iteration: int) -> None:
        """Keep only rows up to ``iteration``.

        Rows a crash left past the checkpoint would otherwise be duplicated on resume.
        """
        rows = [r for r in self.read() if int(float(r["iteration"])) <= iteration]
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, buffer.getvalue())

    def append(self, row: dict[str, Any]) -> None:
        """Append one row (writing the header first if the file is new)."""
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in self.columns})
            fh.flush()

    def read(self) -> list[dict[str, str]]:
        """All rows (empty if the file does not exist)."""
        if not self.path.exists():
            return []
        with open(self.path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))


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
            or kind differs; ``out`` is a file, or a non-empty directory without an
            experiment; ``resume`` and ``out`` holds no experiment.
    """
    path = out / "config.json"
    resolved = json.loads(json.dumps(dataclasses.asdict(config)))
    if out.exists() and not out.is_dir():
        raise ExperimentExistsError(f"--out: {out} is a file, not an experiment directory")
    if resume and not path.exists():
        raise ExperimentExistsError(
            f"--resume: {out} holds no experiment (no config.json); drop --resume to start one"
        )
    if not path.exists() and out.is_dir() and any(out.iterdir()):
        raise ExperimentExistsError(
            f"--out: {out} is not empty and holds no experiment; choose a new or empty "
            "directory (a failed start leaves a partial one: delete it)"
        )
    if path.exists():
        if not resume:
            raise ExperimentExistsError(
                f"{out} already holds an experiment: pass --resume to "
                "continue it, or choose another --out"
            )
        try:
            saved = read_json(path)
            if saved.get("experiment") != kind:
                raise ExperimentExistsError(
                    f"--resume: {out} holds a {saved.get('experiment')!r} experiment, not {kind!r}"
                )
            before = _identity(config, saved["config"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ExperimentExistsError(f"--resume: {path} is unreadable ({exc})") from None
        if before != _identity(config, resolved):
            raise ExperimentExistsError(
                f"--resume: the config differs from the one saved in "
                f"{path}; rerun without overrides to resume"
            )
        return saved
    manifest = {"experiment": kind, "config": resolved}
    if build is not None:
        manifest.update(build(out))
    manifest.update(
        version=version,
        git_sha=git_sha(),
        command=command,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    write_json(path, manifest)
    return manifest


#: Config fields that say how to run, not what: they may differ on ``--resume``.
EXECUTION_FIELDS = ("backend", "workers", "ray_address", "checkpoint_seconds")


def _identity(config: Any, data: dict[str, Any]) -> dict[str, Any]:
    """A saved config as the current version reads it, without :data:`EXECUTION_FIELDS`.

    Fields added since it was saved take their defaults (the older code's behaviour).
    """
    from contractrl.experiments.config import from_dict

    full = json.loads(json.dumps(dataclasses.asdict(from_dict(type(config), data))))
    return {k: v for k, v in full.items() if k not in EXECUTION_FIELDS}


def add_wall_time(out: Path, seconds: float) -> float:
    """Add ``seconds`` to the experiment's recorded wall time (over resumed invocations)."""
    path = out / "timing.json"
    total = (read_json(path)["wall_seconds"] if path.exists() else 0.0) + seconds
    write_json(path, {"wall_seconds": total})
    return total
