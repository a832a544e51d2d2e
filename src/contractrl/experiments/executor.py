"""Run independent training runs in parallel, with a progress bar and ETA.

Backends:

* ``local``: a pool of worker processes, one per core, each pinned to its core with
  single-threaded XLA (on CPU, one run per core beats sharing cores between runs).
* ``ray``: one Ray task per run (a local Ray, or a cluster via ``ray_address``).
* ``inline``: this process, one run after another (tests, debugging, accelerators).

Tasks are ``fn(**kwargs)`` with ``fn`` importable at module level; each writes
``<run_dir>/progress.json`` (``{"iteration": i, "total": n}``) as it goes, which the driver polls
to draw a single progress bar over all runs, so the same mechanism serves every backend. A task
may name the tasks it needs finished first (``after``: a dependency graph, e.g. a validation
phase after its principal); every backend starts a task only once those have finished.

Faults (docs/faults.md): a stop request (:mod:`.stop`) or a failed task stops the experiment
on every backend: no queued task starts, running workers are asked to checkpoint and exit
(SIGTERM), and are killed after :data:`~.stop.STOP_GRACE_SECONDS` (at once on a second
signal). Workers die with the driver (``PR_SET_PDEATHSIG`` on Linux, else a watcher thread).
A worker that dies (the out-of-memory killer, ``kill -9``) raises :class:`WorkerDiedError`.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contractrl.experiments import stop
from contractrl.experiments.store import read_json

#: XLA flags of a worker process: one thread (the worker owns one core).
SINGLE_THREAD_XLA = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


@dataclass(frozen=True)
class Task:
    """One run: call ``fn(**kwargs)``; progress in ``run_dir/progress_file``.

    ``after``: positions (in the list given to :func:`run_tasks`) of the tasks that must have
    finished before this one starts; each earlier in the list than this task.
    """

    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    run_dir: Path
    total: int
    progress_file: str = "progress.json"
    after: tuple[int, ...] = ()


def available_cores() -> list[int]:
    """Cores this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return list(range(os.cpu_count() or 1))


def _exit_with_parent(parent: int, period: float = 1.0) -> None:
    """Exit this worker as soon as its parent is gone (polled every ``period`` seconds).

    A driver killed with SIGKILL cannot stop its pool; without this its workers would go on
    training and writing into the experiment directory, racing a later ``--resume``.
    """
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(period)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class WorkerDiedError(RuntimeError):
    """A worker process died while training (killed by a signal or crashed).

    Attributes:
        done: tasks finished before it died.
        total: tasks of the experiment.
    """

    def __init__(self, message: str, done: int = 0, total: int = 0):
        super().__init__(message)
        self.done, self.total, self.running = done, total, 0


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process the moment its parent dies (Linux), else poll."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        _exit_with_parent(parent)
        return
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


def _init_worker(core_queue, parent: int | None = None) -> None:
    """Pin the worker to one core and make XLA single-threaded (before JAX is imported).

    With ``parent`` (the driver's pid) the worker exits when the driver dies. The worker
    ignores SIGINT and checkpoints on SIGTERM (:func:`.stop.install_worker`).
    """
    stop.install_worker()
    if parent is not None:
        _die_with_parent(parent)
    core = core_queue.get()
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD_XLA}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run a task in a worker; a stop request ends the worker once the task checkpointed."""
    try:
        return fn(**kwargs)
    except stop.Interrupted as exc:
        import sys

        sys.stderr.flush()
        os._exit(exc.exit_code)


#: Report the disk an experiment will take when its estimate passes this many bytes.
SIZE_NOTE_BYTES = 1 << 30


def size_note(tasks: list[Task], finished: int) -> str | None:
    """The disk ``tasks`` will take, estimated from the finished task ``finished``.

    ``None`` when the estimate is below :data:`SIZE_NOTE_BYTES` and below the free space.
    """
    import shutil

    run_dir = tasks[finished].run_dir
    try:
        size = sum(f.stat().st_size for f in Path(run_dir).rglob("*") if f.is_file())
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return None
    dirs = len({str(t.run_dir) for t in tasks})
    total = size * dirs
    if total < SIZE_NOTE_BYTES and total < free:
        return None
    text = (
        f"contractrl: a finished run takes {size / 1e6:.1f} MB, so {dirs:,} runs will take "
        f"about {total / 1e9:.1f} GB (free: {free / 1e9:.1f} GB)"
    )
    if total > free:
        text += "; more than is free: the experiment will stop with a full disk (exit 6)"
    return text


def _note_size(tasks: list[Task], finished: int, noted: list[bool]) -> None:
    if noted[0]:
        return
    noted[0] = True
    note = size_note(tasks, finished)
    if note is not None:
        import sys

        print(note, file=sys.stderr, flush=True)


def _progress(tasks: list[Task]) -> int:
    done = 0
    for task in tasks:
        try:
            done += int(read_json(task.run_dir / task.progress_file)["iteration"])
        except (OSError, ValueError, KeyError):
            pass
    return done


def resolve_backend(backend: str) -> str:
    """``auto`` -> ``vmap`` on an accelerator (JAX's default backend), else ``local``."""
    if backend != "auto":
        return backend
    import jax

    return "local" if jax.default_backend() == "cpu" else "vmap"


class LineProgress:
    """Progress for a non-interactive run (CI, a log file): whole lines, not a redrawn bar.

    Prints a line when the count has moved and at least ``interval`` seconds passed since the
    last line (progress moves at evaluations), and a last line on :meth:`close`. The subset of
    ``tqdm``'s interface the experiments use: ``n``, ``update``, ``refresh``, ``close``, and a
    context manager.
    """

    def __init__(self, total: int, description: str, interval: float = 30.0, stream=None):
        import sys
        import time

        self.total, self.description, self.interval = total, description, interval
        self.stream = stream if stream is not None else sys.stderr
        self.n, self._shown = 0, 0
        self._clock = time.monotonic
        self._start = self._last = self._clock()
        print(f"{description}: compiling, then {total:,} iterations", file=self.stream)

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` iterations."""
        self.n += n
        self.refresh()

    def skip(self, n: int) -> None:
        """Count ``n`` iterations done before this session (resumed): not in the rate."""
        self.n += n
        self._skipped = getattr(self, "_skipped", 0) + n
        self._shown = self.n

    def refresh(self, force: bool = False) -> None:
        """Print a line if the count moved and the interval passed (or ``force``)."""
        now = self._clock()
        if self.n == self._shown or not (force or now - self._last >= self.interval):
            return
        elapsed = now - self._start
        done = min(self.n / max(self.total, 1), 1.0)
        ran = self.n - getattr(self, "_skipped", 0)  # this session's iterations
        left = max(self.total - self.n, 0)
        eta = elapsed * left / ran if ran > 0 else float("nan")
        note = f", {self.note}" if getattr(self, "note", "") else ""
        print(
            f"{self.description}: {self.n:,}/{self.total:,} ({100 * done:.0f}%), "
            f"{elapsed:.0f} s elapsed, ~{eta:.0f} s left{note}",
            file=self.stream,
            flush=True,
        )
        self._shown, self._last = self.n, now

    def close(self) -> None:
        """Print the last line."""
        self.refresh(force=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def check_resume_backend(manifest: dict, backend: str, out) -> None:
    """Refuse to continue with ``vmap`` an experiment that ran as processes, or the reverse.

    Their checkpoints differ (per stage against per run), and the Coin Game's ``vmap``
    protocol sets the validation nudge and the budget target differently.
    """
    from contractrl.experiments.store import ExperimentExistsError

    saved = manifest["config"].get("backend", "local")
    if saved == "auto" or (saved == "vmap") == (backend == "vmap"):
        return
    raise ExperimentExistsError(
        f"--resume: {out} ran with --backend {saved}; continue it with --backend {saved}"
    )


def advance(bar, n: int, resumed: bool = False) -> None:
    """Move a progress bar (``None``, tqdm or :class:`LineProgress`) by ``n`` iterations.

    ``resumed``: iterations done before this session (not counted in the rate); the first
    move past compilation clears the bar's "compiling" note.
    """
    if bar is None or n <= 0:
        return
    if resumed and hasattr(bar, "skip"):
        bar.skip(n)
        return
    bar.update(n)
    if not resumed and hasattr(bar, "set_postfix_str"):
        bar.set_postfix_str("")


def _bar(total: int, enabled: bool, description: str):
    """A progress bar on a terminal, :class:`LineProgress` otherwise (``None``: disabled)."""
    import sys

    if not enabled:
        return None
    if not sys.stderr.isatty():
        return LineProgress(total, description)
    from tqdm import tqdm

    bar = tqdm(total=total, desc=description, unit="it", smoothing=0.05, dynamic_ncols=True)
    bar.set_postfix_str("compiling")
    return bar


def run_tasks(
    tasks: list[Task],
    backend: str = "local",
    workers: int = 0,
    ray_address: str | None = None,
    progress: bool = True,
    description: str = "training",
) -> list[Any]:
    """Run every task; return their results in order.

    Args:
        tasks: the runs.
        backend: ``local``, ``ray`` or ``inline``.
        workers: ``local`` worker processes (0: one per available core).
        ray_address: ``ray`` cluster address (``None``: local Ray).
        progress: draw a progress bar (stderr) with an ETA.
        description: the bar's label.
    """
    for index, task in enumerate(tasks):
        if any(not 0 <= j < index for j in task.after):
            raise ValueError(f"task {index}: 'after' must name earlier tasks, got {task.after}")
    total = sum(t.total for t in tasks)
    bar = _bar(total, progress, description)
    done: list[int] = [0]  # tasks finished, for the message of an interrupt
    try:
        if backend == "inline":  # list order is a topological order of the graph
            results, noted = [], [False]
            for i, task in enumerate(tasks):
                stop.check()
                results.append(task.fn(**task.kwargs))
                done[0] += 1
                _note_size(tasks, i, noted)
                _refresh(bar, tasks)
            return results
        if backend == "ray":
            return _run_ray(tasks, ray_address, bar, done)
        return _run_local(tasks, workers, bar, done)
    except (stop.Interrupted, WorkerDiedError) as exc:
        exc.done, exc.total = done[0], len(tasks)
        raise
    except KeyboardInterrupt:  # a library (Ray) turned our stop request into its own
        if stop.requested() is None:
            raise
        exc = stop.Interrupted(stop.requested(), forced=stop.forced())
        exc.done, exc.total = done[0], len(tasks)
        raise exc from None
    finally:
        if bar is not None:
            try:
                _refresh(bar, tasks)
                bar.close()
            except Exception:  # noqa: BLE001 - a progress bar never hides the real error
                pass


def _refresh(bar, tasks: list[Task]) -> None:
    if bar is not None:
        bar.n = _progress(tasks)
        note = _divergence_note(bar, tasks)
        if hasattr(bar, "set_postfix_str"):
            if bar.n or note:
                bar.set_postfix_str(note)  # past compilation; runs that diverged
        else:
            bar.note = note
        bar.refresh()


#: Seconds between two looks for runs that diverged (``<log>.diverged.json``).
DIVERGENCE_POLL_SECONDS = 10.0


def _divergence_note(bar, tasks: list[Task]) -> str:
    """``"N run(s) diverged"`` for the progress line, or ``""`` (looked up every few seconds)."""
    import time

    now = time.monotonic()
    last, note = getattr(bar, "_divergence", (float("-inf"), ""))
    if now - last < DIVERGENCE_POLL_SECONDS:
        return note
    dirs = {Path(t.run_dir) for t in tasks}
    count = sum(1 for d in dirs for _ in d.glob("*.diverged.json"))
    note = f"{count} run(s) diverged" if count else ""
    bar._divergence = (now, note)
    return note


def _run_local(tasks: list[Task], workers: int, bar, done: list[int]) -> list[Any]:
    cores = available_cores()
    count = max(1, min(len(tasks), workers or len(cores)))
    ctx = multiprocessing.get_context("spawn")
    core_queue = ctx.Queue()
    for i in range(count):
        core_queue.put(cores[i % len(cores)] if count <= len(cores) else None)
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=count,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(core_queue, os.getpid()),
    )
    seen: dict[int, Any] = {}  # every worker process started (pid -> Process)
    try:
        results = _schedule(pool, tasks, count, bar, done, seen)
    except BaseException as exc:
        graceful = not (isinstance(exc, stop.Interrupted) and exc.forced)
        try:
            killed = _stop_workers(pool, seen, graceful)
        except stop.Interrupted:  # a second signal while the workers checkpoint
            killed = _stop_workers(pool, seen, graceful=False)
            if isinstance(exc, stop.Interrupted):
                exc.forced = True
        if isinstance(exc, stop.Interrupted | WorkerDiedError):
            exc.killed = killed
        if isinstance(exc, WorkerDiedError):  # now that every worker was reaped: how it died
            exc.args = (_death_message(seen, exc.running),)
        raise
    pool.shutdown(wait=True)
    return results


def _schedule(pool, tasks: list[Task], count: int, bar, done: list[int], seen) -> list[Any]:
    """Submit ready tasks to free workers until all have finished; raise the first failure."""
    futures: dict[int, concurrent.futures.Future] = {}
    chain = _chain_lengths(tasks)
    noted = [False]
    while True:
        stop.check()
        finished = {i for i, f in futures.items() if f.done()}
        # no queue inside the pool: a free worker takes the ready task with the longest
        # chain of tasks waiting on it (the pipeline's principal before a baseline)
        free = count - (len(futures) - len(finished))
        ready = sorted(_ready(tasks, futures, finished), key=lambda i: (-chain[i], i))
        for i in ready[:free]:
            futures[i] = pool.submit(_call, tasks[i].fn, tasks[i].kwargs)
        seen.update(getattr(pool, "_processes", None) or {})
        running = [f for f in futures.values() if not f.done()]
        if running:
            concurrent.futures.wait(
                running, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED
            )
        _refresh(bar, tasks)
        failed = [f for f in futures.values() if f.done() and f.exception() is not None]
        ok = [i for i, f in futures.items() if f.done() and f.exception() is None]
        done[0] = len(ok)
        if ok:
            _note_size(tasks, ok[0], noted)
        if failed:
            error = failed[0].exception()
            if isinstance(error, concurrent.futures.BrokenExecutor):
                died = WorkerDiedError(_death_message(seen, len(running)))
                died.running = len(running)
                raise died
            raise error
        if len(futures) == len(tasks) and all(f.done() for f in futures.values()):
            return [futures[i].result() for i in range(len(tasks))]


def _death_message(seen: dict[int, Any], running: int) -> str:
    """One line on a dead worker: its pid and how it died (a signal, an exit code)."""
    import signal

    how = "died"
    # our own stops (SIGTERM from the pool or the driver, exit 143/130) are not the cause
    codes = {
        pid: p.exitcode for pid, p in seen.items() if p.exitcode not in (None, 0, -15, 130, 143)
    }
    for pid, code in sorted(codes.items(), key=lambda item: (item[1] != -9, item[1] > 0)):
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (the out-of-memory killer sends it: see `dmesg`)" if -code == 9 else ""
            how = f"(pid {pid}) was killed by {name}{hint}"
        else:
            how = f"(pid {pid}) exited with code {code}"
        break
    return (
        f"a worker process {how} while {running} run(s) were training; the other runs "
        "stopped at their checkpoints"
    )


def _stop_workers(pool, seen: dict[int, Any], graceful: bool) -> int:
    """Stop every worker: SIGTERM and wait (``graceful``), then SIGKILL what is left.

    Never blocks longer than :data:`~.stop.STOP_GRACE_SECONDS`; the pool is shut down without
    waiting (its queued tasks are cancelled). Returns how many workers had to be killed.
    """
    import signal
    import time

    seen.update(getattr(pool, "_processes", None) or {})
    processes = [p for p in seen.values() if p.exitcode is None]
    if graceful:
        for p in processes:
            _signal(p, signal.SIGTERM)
        deadline = time.monotonic() + stop.STOP_GRACE_SECONDS
        for p in processes:
            p.join(timeout=max(deadline - time.monotonic(), 0.0))
    busy = [p for p in processes if p.exitcode is None]
    for p in busy:
        _signal(p, signal.SIGKILL)
    for p in busy:
        p.join(timeout=2.0)
    pool.shutdown(wait=False, cancel_futures=True)
    return len(busy)


def _signal(process, signum: int) -> None:
    try:
        os.kill(process.pid, signum)
    except (ProcessLookupError, TypeError):
        pass


def _chain_lengths(tasks: list[Task]) -> list[int]:
    """Per task, the length of the longest chain of tasks that wait on it (itself included)."""
    chain = [1] * len(tasks)
    for i in reversed(range(len(tasks))):
        for j in tasks[i].after:
            chain[j] = max(chain[j], chain[i] + 1)
    return chain


def _ready(tasks: list[Task], started, finished: set[int]) -> list[int]:
    """Positions of the tasks not started yet whose ``after`` have all finished."""
    return [
        i
        for i, task in enumerate(tasks)
        if i not in started and all(j in finished for j in task.after)
    ]


def _run_ray(tasks: list[Task], address: str | None, bar, done: list[int]) -> list[Any]:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("backend 'ray' needs Ray: pip install 'contractrl[ray]'") from exc
    started = False
    if not ray.is_initialized():
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"XLA_FLAGS": SINGLE_THREAD_XLA, "JAX_PLATFORMS": "cpu"}},
        )
        started = True
        stop.reinstall()  # Ray's own SIGTERM handler aborts the driver without a word
    refs: dict[int, Any] = {}
    try:
        finished: set[int] = set()
        while len(finished) < len(tasks):
            stop.check()
            for i in _ready(tasks, refs, finished):
                refs[i] = ray.remote(num_cpus=1)(tasks[i].fn).remote(**tasks[i].kwargs)
            pending = [refs[i] for i in refs if i not in finished]
            ready, _ = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            ray.get(ready)  # raises a task's error here
            done_refs = set(ready)
            finished |= {i for i, ref in refs.items() if ref in done_refs}
            done[0] = len(finished)
            _refresh(bar, tasks)
        return ray.get([refs[i] for i in range(len(tasks))])
    except BaseException:
        for ref in refs.values():  # queued tasks never start; running ones are killed
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - finished or already cancelled
                pass
        raise
    finally:
        if started:
            ray.shutdown()
