"""The run store under faults: checksums, damaged files, partial starts, locks, wall time."""

import errno
from dataclasses import dataclass, field

import pytest

from contractrl.experiments.store import (
    DamagedFileError,
    ExperimentBusyError,
    ExperimentExistsError,
    MetricsLog,
    add_wall_time,
    open_experiment,
    read_json,
    write_json,
)


@dataclass(frozen=True)
class Inner:
    lr: float = 0.001


@dataclass(frozen=True)
class Config:
    seeds: int = 2
    eval_every: int = 5
    workers: int = 0
    inner: Inner = field(default_factory=Inner)


def _build(out):
    (out / "instances").mkdir(exist_ok=True)
    (out / "instances" / "instance0.json").write_text('{"game": 1}')
    return {"instances": [{"index": 0, "spe_principal_value": 0.25}]}


def _open(out, config=Config(), resume=False):
    return open_experiment(out, "toy", config, resume, "contractrl train toy", "0", _build)


def test_json_checksum_catches_an_edited_number(tmp_path):
    path = tmp_path / "final.json"
    write_json(path, {"ratio": 0.985, "seed": 1})
    assert read_json(path) == {"ratio": 0.985, "seed": 1}  # the checksum is not returned
    text = path.read_text().replace("0.985", "0.554")
    path.write_text(text)
    with pytest.raises(DamagedFileError, match="final.json was changed after contractrl"):
        read_json(path)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(DamagedFileError, match="not JSON"):
        read_json(path)
    path.write_text('{"ratio": 1.0}')  # files of older versions (no checksum) are read
    assert read_json(path) == {"ratio": 1.0}


def test_a_hand_edited_config_or_instance_is_refused_on_resume(tmp_path):
    out = tmp_path / "exp"
    _open(out)
    config = out / "config.json"
    saved = config.read_text()
    config.write_text(saved.replace("0.25", "0.9"))  # a stored SPE value
    with pytest.raises(ExperimentExistsError, match="config.json was changed.*new --out"):
        _open(out, resume=True)
    config.write_text(saved)
    (out / "instances" / "instance0.json").write_text('{"game": 2}')
    with pytest.raises(ExperimentExistsError, match="instance0.json is missing or was changed"):
        _open(out, resume=True)


def test_a_changed_config_names_the_fields_and_no_overrides_are_assumed(tmp_path):
    out = tmp_path / "exp"
    _open(out)
    with pytest.raises(ExperimentExistsError) as info:
        _open(out, Config(inner=Inner(lr=0.5)), resume=True)
    assert "inner.lr 0.5 (saved: 0.001)" in str(info.value)
    assert "rerun without overrides" not in str(info.value)
    _open(out, Config(workers=3), resume=True)  # how to run may change


def test_damaged_summaries_are_set_aside_on_resume(tmp_path, capsys):
    out = tmp_path / "exp"
    _open(out)
    run = out / "runs" / "run0"
    write_json(run / "final.json", {"iterations": 10, "value": 3.0})
    log = MetricsLog(run / "metrics.csv", ["iteration", "value"])
    log.append({"iteration": 5, "value": 1.0})
    log.append({"iteration": 10, "value": 3.0})
    (run / "final.json").write_text((run / "final.json").read_text().replace("3.0", "9.0"))
    _open(out, resume=True)
    assert not (run / "final.json").exists() and (run / "final.json.damaged").exists()
    assert "set aside as final.json.damaged" in capsys.readouterr().err
    # a finished run whose log lost rows is reported (its summary is unaffected)
    write_json(run / "final.json", {"iterations": 10, "value": 3.0})
    log.truncate_after(5)
    _open(out, resume=True)
    err = capsys.readouterr().err
    assert "metrics.csv has 1 of the run's 2 evaluation rows" in err
    assert (run / "final.json").exists()


def test_a_start_that_failed_before_config_json_starts_afresh(tmp_path, monkeypatch, capsys):
    import contractrl.experiments.store as store

    out = tmp_path / "exp"
    real = store.write_json

    def full_disk(path, data, checksum=True):
        if path.name == "config.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data, checksum)

    monkeypatch.setattr(store, "write_json", full_disk)
    with pytest.raises(OSError, match="No space"):
        _open(out)
    assert not (out / "instances").exists()  # nothing a next start would refuse
    monkeypatch.setattr(store, "write_json", real)
    (out / "instances").mkdir()  # what a killed start leaves: accepted too, even with --resume
    manifest = _open(out, resume=True)
    assert manifest["experiment"] == "toy" and (out / "config.json").exists()
    assert "did not finish" in capsys.readouterr().err
    other = tmp_path / "mine"
    (other / "runs").mkdir(parents=True)  # someone's own folder, never a start of ours
    with pytest.raises(ExperimentExistsError, match="not empty and holds no experiment"):
        _open(other)
    assert (other / "runs").exists()


def test_the_directory_is_locked_while_its_manifest_lives(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "exp"
    manifest = _open(out)
    probe = (
        "import sys; from pathlib import Path; from contractrl.experiments.lock import acquire\n"
        "try:\n    acquire(Path(sys.argv[1]))\nexcept Exception as e:\n    print(e)\n"
    )
    run = [sys.executable, "-c", probe, str(out)]
    busy = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert "is in use by another contractrl process (pid" in busy.stdout
    del manifest  # released with the manifest
    free = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert free.stdout == ""
    assert issubclass(ExperimentBusyError, Exception)


def test_wall_time_adds_each_invocation_once(tmp_path):
    out = tmp_path / "exp"
    manifest = _open(out)
    assert add_wall_time(out, 2.0) == 2.0
    del manifest
    manifest = _open(out, resume=True)
    assert add_wall_time(out, 3.0) == 5.0
    (out / "timing.json").write_text("garbage")  # damaged: counted from what is known
    assert add_wall_time(out, 1.0) == 1.0
    del manifest


def test_rows_cut_short_are_dropped(tmp_path):
    log = MetricsLog(tmp_path / "m.csv", ["iteration", "value", "train_seconds"])
    log.append({"iteration": 5, "value": 1.0, "train_seconds": 0.1})
    with open(log.path, "a") as fh:
        fh.write("1")  # a full disk in the middle of a row
    assert [r["iteration"] for r in log.read()] == ["5"]
    log.truncate_after(5)
    assert log.path.read_text().splitlines()[-1].startswith("5,")
    log.path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DamagedFileError):
        log.read()


def test_loop_rebuilds_a_run_whose_log_lost_rows_and_flags_divergence(tmp_path, capsys):
    import jax.numpy as jnp

    from contractrl.experiments.loop import checkpointed_loop, diverged_marker

    log = MetricsLog(tmp_path / "metrics.csv", ["iteration", "value", "loss"])
    calls = []

    def run(blow_up_at=None):
        def chunk(state, start, steps):
            calls.append(start)
            return {"sum": state["sum"] + start}, None

        def evaluate(state, _s, iteration, _seconds):
            loss = float("inf") if iteration == blow_up_at else 0.5
            return state, {
                "run": {"iteration": iteration, "value": float(state["sum"]), "loss": loss}
            }

        return checkpointed_loop(
            {"sum": jnp.zeros(())},
            total=20,
            eval_every=5,
            checkpoint=tmp_path / "c.msgpack",
            checkpoint_seconds=0.0,
            logs={"run": log},
            train_chunk=chunk,
            evaluate=evaluate,
        )

    first = run(blow_up_at=10)
    assert read_json(diverged_marker(log))["column"] == "loss"
    assert "training diverged at iteration 10 (loss = inf" in capsys.readouterr().err
    log.path.unlink()  # deleted by hand: the run trains again, its log whole
    calls.clear()
    again = run()
    assert calls == [0, 5, 10, 15] and float(again.state["sum"]) == float(first.state["sum"])
    assert [int(r["iteration"]) for r in log.read()] == [5, 10, 15, 20]
    assert "metrics.csv is missing" in capsys.readouterr().err
    assert not diverged_marker(log).exists()


def test_one_line_for_a_full_disk_names_the_file_and_the_resume(tmp_path):
    from contractrl.experiments.failures import EXIT_DISK, explain

    (tmp_path / "config.json").write_text("{}")
    exc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs/x/c.msgpack"))
    failure = explain(exc, tmp_path, ["train", "tree", "--out", str(tmp_path)])
    assert failure.exit_code == EXIT_DISK
    assert "the disk is full: cannot write" in str(failure) and "c.msgpack" in str(failure)
    assert str(failure).endswith(f"--out {tmp_path} --resume")


KILLED_OWNER = """
import sys, time
from pathlib import Path
import contractrl.experiments.lock as lock
lock.HEARTBEAT_SECONDS = 0.1
lock.acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_killed_invocation_is_counted_by_the_next_one(tmp_path):
    import subprocess
    import sys
    import time

    out = tmp_path / "exp"
    del_manifest = _open(out)
    add_wall_time(out, 2.0)
    del del_manifest
    owner = subprocess.Popen(
        [sys.executable, "-c", KILLED_OWNER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout.readline().strip() == "locked"
        time.sleep(1.0)  # a few heartbeats
        owner.kill()
        owner.wait(timeout=120)
    finally:
        owner.stdout.close()
    manifest = _open(out, resume=True)
    total = add_wall_time(out, 1.0)
    assert total > 3.0  # 2 + 1 + the killed invocation's time (from its heartbeat)
    assert add_wall_time(out, 0.5) == pytest.approx(total + 0.5)  # counted once
    del manifest


def test_diverged_runs_reach_results_json_and_the_exit_code(tmp_path, capsys):
    from contractrl.experiments.cli import _flag_divergence
    from contractrl.experiments.failures import EXIT_DIVERGED

    results = {"experiment": "tree", "mean": {}}
    assert _flag_divergence(tmp_path, results) == 0 and "diverged" not in results
    marker = tmp_path / "runs" / "instance0-seed1" / "metrics.diverged.json"
    write_json(marker, {"iteration": 500, "column": "agent_loss", "value": 6.3e9})
    assert _flag_divergence(tmp_path, results) == EXIT_DIVERGED
    saved = read_json(tmp_path / "results.json")
    assert saved["diverged"] == [
        {"iteration": 500, "column": "agent_loss", "value": 6.3e9, "run": "runs/instance0-seed1"}
    ]
    assert "diverged in runs/instance0-seed1 at iteration 500" in capsys.readouterr().err
