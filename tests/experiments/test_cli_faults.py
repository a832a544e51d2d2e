"""`contractrl train` under faults: one line, the documented exit code, the resume command."""

import errno
import signal

import pytest

from contractrl.experiments import stop
from contractrl.experiments.cli import main
from contractrl.experiments.executor import WorkerDiedError
from contractrl.experiments.lock import ExperimentBusyError
from contractrl.experiments.loop import TrainingDivergedError


def _interrupted(signum, forced=False):
    exc = stop.Interrupted(signum, forced)
    exc.done, exc.total = 3, 40
    return exc


CASES = [
    (_interrupted(signal.SIGINT), 130, "interrupted (SIGINT): 3 of 40 runs finished; running"),
    (_interrupted(signal.SIGTERM), 143, "interrupted (SIGTERM): 3 of 40 runs finished"),
    (_interrupted(signal.SIGINT, True), 130, "stopped at once (second signal)"),
    (WorkerDiedError("a worker process (pid 7) was killed by SIGKILL", 1, 4), 7, "killed by"),
    (OSError(errno.ENOSPC, "No space left on device", "X/runs/a/c.msgpack"), 6, "disk is full"),
    (ExperimentBusyError("D is in use by another contractrl process (pid 9)"), 5, "pid 9"),
    (
        TrainingDivergedError("training diverged by iteration 500: non-finite Q-values"),
        4,
        "diverged",
    ),
]


@pytest.mark.parametrize(("error", "code", "text"), CASES)
def test_each_fault_is_one_line_with_its_exit_code(
    tmp_path, monkeypatch, capsys, error, code, text
):
    import contractrl.experiments.tree as tree

    out = tmp_path / "exp"

    def runner(config, out, **_):
        out.mkdir()
        (out / "config.json").write_text("{}")  # the experiment had started
        raise error

    monkeypatch.setattr(tree, "run_tree", runner)
    argv = ["train", "tree", "--preset", "smoke", "--out", str(out), "--no-progress"]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if code in (6, 7, 130, 143):
        assert err.strip().endswith(f"--out {out} --no-progress --resume")
