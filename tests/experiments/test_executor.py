"""The process executor: workers do not outlive a killed driver."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = """
import functools, time
from pathlib import Path
from contractrl.experiments.executor import Task, run_tasks
run_tasks([Task(functools.partial(time.sleep, 120), {}, Path('.'), 1)], 'local', 1, None, False)
"""


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc (Linux)")
def test_workers_exit_when_the_driver_is_killed(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:  # resource tracker + worker
            time.sleep(0.5)
            workers = _children(driver.pid)
        assert workers, "the driver started no worker"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.5)
        assert not any(_alive(w) for w in workers)
    finally:
        if driver.poll() is None:
            driver.kill()


def test_line_progress_prints_whole_lines_when_it_moves():
    import io

    from contractrl.experiments.executor import LineProgress

    out = io.StringIO()
    with LineProgress(1000, "coin 3x3", interval=0.0, stream=out) as bar:
        bar.refresh()  # nothing moved: no line
        bar.update(250)
        bar.update(0)  # no movement: no line
        bar.n = 1000
        bar.refresh()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "coin 3x3: compiling, then 1,000 iterations"
    assert lines[1].startswith("coin 3x3: 250/1,000 (25%)")
    assert lines[2].startswith("coin 3x3: 1,000/1,000 (100%)") and len(lines) == 3


def test_state_files_are_verified(tmp_path):
    import pytest

    from contractrl.experiments.store import (
        DamagedCheckpointError,
        load_checkpoint,
        load_state,
        save_state,
    )

    path = tmp_path / "s.msgpack"
    save_state(path, {"w": [1.0, 2.0], "step": 3})
    assert load_state(path) == {"w": [1.0, 2.0], "step": 3}
    raw = path.read_bytes()
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))  # one flipped bit
    with pytest.raises(DamagedCheckpointError, match="checksum"):
        load_state(path)
    path.write_bytes(raw[:40])
    assert load_checkpoint(path) is None and not path.exists()


def test_damaged_principal_is_discarded(tmp_path, capsys):
    from contractrl.experiments.coin import discard_damaged_principal
    from contractrl.experiments.store import save_state

    run = tmp_path / "runs" / "seed0"
    run.mkdir(parents=True)
    (run / "principal.json").write_text("{}")
    save_state(run / "principal.params.msgpack", {"a": 1})
    assert not discard_damaged_principal(tmp_path, 0)
    (run / "principal.params.msgpack").write_bytes(b"x" * 100)
    assert discard_damaged_principal(tmp_path, 0)
    assert not (run / "principal.json").exists()
    assert "principal.params.msgpack" in capsys.readouterr().err


def test_size_note_estimates_the_disk_from_a_finished_run(tmp_path, monkeypatch):
    import contractrl.experiments.executor as executor
    from contractrl.experiments.executor import Task, size_note

    tasks = [Task(print, {}, tmp_path / f"run{k}", 1) for k in range(10_000)]
    tasks[0].run_dir.mkdir()
    (tasks[0].run_dir / "checkpoint.msgpack").write_bytes(b"x" * 2_900_000)
    note = size_note(tasks, 0)
    assert "2.9 MB, so 10,000 runs will take about 29.0 GB" in note
    monkeypatch.setattr(executor, "SIZE_NOTE_BYTES", 1 << 50)
    assert size_note(tasks[:2], 0) is None  # small, and it fits


def test_the_progress_line_counts_runs_that_diverged(tmp_path):
    import io

    from contractrl.experiments.executor import LineProgress, Task, _refresh
    from contractrl.experiments.store import write_json

    tasks = [Task(print, {}, tmp_path / f"run{k}", 10) for k in range(3)]
    for k in range(3):
        write_json(tmp_path / f"run{k}" / "progress.json", {"iteration": 5, "total": 10})
    write_json(tmp_path / "run1" / "metrics.diverged.json", {"iteration": 5})
    out = io.StringIO()
    bar = LineProgress(30, "tree", interval=0.0, stream=out)
    _refresh(bar, tasks)
    assert out.getvalue().splitlines()[-1].endswith("left, 1 run(s) diverged")
