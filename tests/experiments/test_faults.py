"""Fault injection on the shared driver: signals, dead workers, a second owner (values only).

The driver is ``tests/fault_tasks.py`` (toy runs of the shared loop, seconds each). After each
fault: the exit code and the message, then a resume to the uninterrupted result, with every
metric row exactly once.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fault_tasks

pytestmark = pytest.mark.skipif(not Path("/proc").exists(), reason="needs Linux (/proc)")

HERE = Path(__file__).resolve().parent.parent  # tests/
SCRIPT = HERE / "fault_tasks.py"
TIMEOUT = 240  # generous: a loaded laptop


def _env(stall_at: int | None = None):
    env = dict(os.environ)
    env.pop("FAULT_STALL_AT", None)
    if stall_at is not None:
        env["FAULT_STALL_AT"] = str(stall_at)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _start(
    out: Path, tasks: int, workers: int, backend: str = "local", stall_at: int | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), str(tasks), str(workers), backend],
        env=_env(stall_at),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _iteration(run: Path) -> int:
    try:
        return int(_read(run / "progress.json")["iteration"])
    except (OSError, ValueError, KeyError):
        return 0


def _read(path: Path):
    from contractrl.experiments.store import read_json

    return read_json(path)


def _rows(run: Path) -> list[int]:
    with open(run / "metrics.csv", newline="") as fh:
        return [int(r["iteration"]) for r in csv.DictReader(fh)]


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                child = int(stat.parent.name)
                found.append(child)
                frontier.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _resume_and_check(out: Path, tasks: int, workers: int) -> None:
    again = _start(out, tasks, workers)
    stdout, stderr = again.communicate(timeout=TIMEOUT)
    assert again.returncode == 0, stderr
    assert stdout.split() == [str(fault_tasks.expected_value())] * tasks
    for k in range(tasks):  # every evaluation row exactly once
        assert _rows(out / f"run{k}") == list(range(5, 41, 5))


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_queued_and_running_runs_and_resume_completes(tmp_path, signum, code):
    driver = _start(tmp_path, tasks=6, workers=1)
    try:
        _wait_for(lambda: _iteration(tmp_path / "run0") >= 10, "run0 to train")
        workers = _descendants(driver.pid)
        os.kill(driver.pid, signum)
        _, stderr = driver.communicate(timeout=TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == code, stderr
    assert f"interrupted {signal.Signals(signum).name} done=0 forced=False" in stderr
    assert "Traceback" not in stderr
    _wait_for(lambda: not any(_alive(w) for w in workers), "the workers to exit")
    # queued runs never started; the running one saved a checkpoint at its last chunk
    assert not any((tmp_path / f"run{k}").exists() for k in range(1, 6))
    from contractrl.experiments.store import load_state

    saved = load_state(tmp_path / "run0" / "checkpoint.msgpack")
    assert saved["iteration"] >= 10 and _rows(tmp_path / "run0")[-1] == saved["iteration"]
    _resume_and_check(tmp_path, tasks=6, workers=1)


def test_a_second_signal_stops_at_once_without_hanging(tmp_path):
    # The workers stall mid-chunk from iteration 10 on, so after the first signal the driver is
    # certainly still inside its stop grace when the second one comes.
    driver = _start(tmp_path, tasks=4, workers=2, stall_at=10)
    try:
        _wait_for(lambda: _iteration(tmp_path / "run0") >= 10, "run0 to train")
        workers = _descendants(driver.pid)
        os.kill(driver.pid, signal.SIGINT)
        # Standard signals are not queued: two sent before the handler runs arrive as one.
        time.sleep(1.0)
        os.kill(driver.pid, signal.SIGINT)
        _, stderr = driver.communicate(timeout=TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, stderr
    assert "forced=True" in stderr and "Traceback" not in stderr
    _wait_for(lambda: not any(_alive(w) for w in workers), "the workers to exit")
    _resume_and_check(tmp_path, tasks=4, workers=2)


def test_a_killed_worker_stops_the_experiment_and_resume_completes(tmp_path):
    driver = _start(tmp_path, tasks=4, workers=2)
    try:
        _wait_for(lambda: _iteration(tmp_path / "run1") >= 5, "run1 to train")
        children = _descendants(driver.pid)
        workers = [p for p in children if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert workers
        os.kill(workers[0], signal.SIGKILL)
        _, stderr = driver.communicate(timeout=TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 7, stderr
    assert "worker died: a worker process (pid" in stderr and "killed by SIGKILL" in stderr
    assert "Traceback" not in stderr
    _wait_for(lambda: not any(_alive(w) for w in children), "the other workers to exit")
    _resume_and_check(tmp_path, tasks=4, workers=2)


def test_inline_backend_checkpoints_on_a_signal(tmp_path):
    driver = _start(tmp_path, tasks=3, workers=1, backend="inline")
    try:
        _wait_for(lambda: _iteration(tmp_path / "run0") >= 10, "run0 to train")
        os.kill(driver.pid, signal.SIGTERM)
        _, stderr = driver.communicate(timeout=TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 143, stderr
    assert not (tmp_path / "run1").exists()
    _resume_and_check(tmp_path, tasks=3, workers=1)


OWNER = """
import sys, time
from pathlib import Path
from contractrl.experiments.lock import acquire
acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(600)
"""


def test_one_owner_per_directory_and_a_killed_owner_never_blocks(tmp_path):
    from contractrl.experiments.lock import ExperimentBusyError, acquire, release

    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout.readline().strip() == "locked"
        with pytest.raises(ExperimentBusyError, match=f"pid {owner.pid} on .*kill -INT"):
            acquire(tmp_path)
        owner.kill()
        owner.wait(timeout=TIMEOUT)
        held = acquire(tmp_path)  # the dead owner's lock is taken over
        release(held)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait(timeout=TIMEOUT)
        owner.stdout.close()


def test_ray_backend_stops_on_sigterm_and_resumes(tmp_path):
    pytest.importorskip("ray")
    driver = _start(tmp_path, tasks=3, workers=1, backend="ray")
    try:
        _wait_for(lambda: _iteration(tmp_path / "run0") >= 5, "run0 to train")
        os.kill(driver.pid, signal.SIGTERM)  # Ray's own handler would abort the driver
        _, stderr = driver.communicate(timeout=TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 143, stderr
    assert "interrupted SIGTERM" in stderr and "Traceback" not in stderr
    again = _start(tmp_path, tasks=3, workers=1, backend="ray")
    stdout, stderr = again.communicate(timeout=TIMEOUT)
    assert again.returncode == 0, stderr
    assert stdout.split() == [str(fault_tasks.expected_value())] * 3
    for k in range(3):
        assert _rows(tmp_path / f"run{k}") == list(range(5, 41, 5))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_signal_at_a_random_point_resumes_to_the_same_result(tmp_path, seed):
    """SIGINT, SIGTERM or SIGKILL (seeded) at a random time into the experiment."""
    import random

    rng = random.Random(seed)
    signum = rng.choice([signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
    delay = rng.uniform(0.0, 3.0)
    driver = _start(tmp_path, tasks=3, workers=2)
    try:
        _wait_for(lambda: _iteration(tmp_path / "run0") >= 5, "run0 to train")
        time.sleep(delay)
        workers = _descendants(driver.pid)
        os.kill(driver.pid, signum)
        _, stderr = driver.communicate(timeout=TIMEOUT)
    finally:
        if driver.poll() is None:
            driver.kill()
    expected = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[signum]
    assert driver.returncode in (expected, 0), stderr  # 0: it had finished first
    assert "Traceback" not in stderr
    _wait_for(lambda: not any(_alive(w) for w in workers), "the workers to exit")
    _resume_and_check(tmp_path, tasks=3, workers=2)


def test_a_full_disk_is_one_line_and_resume_completes_once_space_is_freed(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the store's ENOSPC path is tested in test_store)")
    try:
        driver = _start(mount / "exp", tasks=12, workers=2)
        _, stderr = driver.communicate(timeout=TIMEOUT)
        assert driver.returncode == 6, stderr
        assert "error: the disk is full: cannot write " + str(mount / "exp") in stderr
        assert "Traceback" not in stderr
        subprocess.run(["mount", "-o", "remount,size=8m", str(mount)], check=True)
        _resume_and_check(mount / "exp", tasks=12, workers=2)
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
