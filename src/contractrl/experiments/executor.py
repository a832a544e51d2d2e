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
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _init_worker(core_queue, parent: int | None = None) -> None:
    """Pin the worker to one core and make XLA single-threaded (before JAX is imported).

    With ``parent`` (the driver's pid) the worker exits when the driver dies.
    """
    if parent is not None:
        _exit_with_parent(parent)
    core = core_queue.get()
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} {SINGLE_THREAD_XLA}".strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


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
        print(
            f"{self.description}: {self.n:,}/{self.total:,} ({100 * done:.0f}%), "
            f"{elapsed:.0f} s elapsed, ~{eta:.0f} s left",
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
    try:
        if backend == "inline":  # list order is a topological order of the graph
            results = []
            for task in tasks:
                results.append(task.fn(**task.kwargs))
                _refresh(bar, tasks)
            return results
        if backend == "ray":
            return _run_ray(tasks, ray_address, bar)
        return _run_local(tasks, workers, bar)
    finally:
        if bar is not None:
            _refresh(bar, tasks)
            bar.close()


def _refresh(bar, tasks: list[Task]) -> None:
    if bar is not None:
        bar.n = _progress(tasks)
        if bar.n and hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str("")  # past compilation
        bar.refresh()


def _run_local(tasks: list[Task], workers: int, bar) -> list[Any]:
    cores = available_cores()
    count = max(1, min(len(tasks), workers or len(cores)))
    ctx = multiprocessing.get_context("spawn")
    core_queue = ctx.Queue()
    for i in range(count):
        core_queue.put(cores[i % len(cores)] if count <= len(cores) else None)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=count,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(core_queue, os.getpid()),
    ) as pool:
        futures: dict[int, concurrent.futures.Future] = {}
        chain = _chain_lengths(tasks)
        while True:
            finished = {i for i, f in futures.items() if f.done()}
            # no queue inside the pool: a free worker takes the ready task with the longest
            # chain of tasks waiting on it (the pipeline's principal before a baseline)
            free = count - (len(futures) - len(finished))
            ready = sorted(_ready(tasks, futures, finished), key=lambda i: (-chain[i], i))
            for i in ready[:free]:
                futures[i] = pool.submit(tasks[i].fn, **tasks[i].kwargs)
            running = [f for f in futures.values() if not f.done()]
            if running:
                concurrent.futures.wait(
                    running, timeout=1.0, return_when=concurrent.futures.FIRST_COMPLETED
                )
            _refresh(bar, tasks)
            failed = [f for f in futures.values() if f.done() and f.exception() is not None]
            if failed:
                for f in futures.values():
                    f.cancel()
                raise failed[0].exception()
            if len(futures) == len(tasks) and all(f.done() for f in futures.values()):
                break
        return [futures[i].result() for i in range(len(tasks))]


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


def _run_ray(tasks: list[Task], address: str | None, bar) -> list[Any]:
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
    try:
        refs: dict[int, Any] = {}
        finished: set[int] = set()
        while len(finished) < len(tasks):
            for i in _ready(tasks, refs, finished):
                refs[i] = ray.remote(num_cpus=1)(tasks[i].fn).remote(**tasks[i].kwargs)
            pending = [refs[i] for i in refs if i not in finished]
            done, _ = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            ray.get(done)  # raises a task's error here
            done_refs = set(done)
            finished |= {i for i, ref in refs.items() if ref in done_refs}
            _refresh(bar, tasks)
        return ray.get([refs[i] for i in range(len(tasks))])
    finally:
        if started:
            ray.shutdown()
