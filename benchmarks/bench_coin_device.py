"""Benchmark: the Coin Game's ``vmap`` backend on whatever JAX backend is the default (GPU/CPU).

Each row compiles one stage program of :mod:`contractrl.experiments.coin_lanes` (the program
the ``vmap`` backend runs) for a grid, a number of seeds and a set of learners, and times
``--iterations`` iterations after compilation. It reports:

* iterations per second per lane (every lane advances one iteration per loop step) and in total;
* the projected time of the protocol (2 stages x ``--phase-iterations``) at that rate, compile
  and evaluations excluded;
* how many buffer-sized copies the compiled loop holds (the replay buffer must be updated in
  place; a copy per iteration would move the whole buffer) and whether two runs of the same
  program from the same state are bit-identical on this device.

Rows are ``grid:seeds:learners:sampler`` with learners ``stage1`` (principal, selfish,
cooperative per seed) or ``principal`` (principal lanes only) and sampler ``sum_tree`` or
``prefix_sum``. Not part of ``make bench`` (which pins one seed per CPU core); run it on an
accelerator (``benchmarks/device_check.sh``)::

    python benchmarks/bench_coin_device.py --rows 7:5:stage1:sum_tree 7:1:principal:sum_tree \
        --iterations 2000 --json OUT.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time


def _computations(text: str) -> dict[str, list[str]]:
    comps: dict[str, list[str]] = {}
    body: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if m:
            body = comps.setdefault(m.group(1), [])
        else:
            body.append(line)
    return comps


def loop_buffer_copies(hlo_text: str, capacity: int) -> int:
    """Copies of a ``capacity``-sized array inside the compiled loops (and what they call)."""
    comps = _computations(hlo_text)
    todo = [
        m.group(1)
        for lines in comps.values()
        for line in lines
        for m in [re.search(r"while\(.*body=%?([\w.\-]+)", line)]
        if m
    ]
    seen: set[str] = set()
    called = re.compile(
        r"(?:calls|to_apply|body|condition|branch_computations|true_computation|"
        r"false_computation)=\{?(%?[\w.\-]+(?:, %?[\w.\-]+)*)\}?"
    )
    while todo:
        name = todo.pop()
        if name in seen or name not in comps:
            continue
        seen.add(name)
        for line in comps[name]:
            for m in called.finditer(line):
                todo += [n.lstrip("%") for n in re.split(r",\s*", m.group(1))]
    pattern = re.compile(r"\[[^\]]*\b" + str(capacity) + r"\b[^\]]*\][^=]*? copy\(")
    return sum(1 for name in seen for line in comps[name] if pattern.search(line))


def config_for(grid: int, seeds: int, learners: str, sampler: str, unroll: int = 1):
    """The experiment config of a row (the paper preset of the grid)."""
    from contractrl.experiments.coin import COIN_PRESETS

    base = COIN_PRESETS[f"paper-{grid}x{grid}"]
    baselines = ("selfish", "cooperative", "constant") if learners == "stage1" else ()
    return dataclasses.replace(
        base,
        seeds=seeds,
        backend="vmap",
        baselines=baselines,
        scan_unroll=unroll,
        dqn=dataclasses.replace(base.dqn, replay_sampler=sampler),
    )


def measure(row: str, iterations: int, phase_iterations: int, unroll: int = 1) -> dict:
    """Compile, run once, then time ``iterations`` iterations of one stage-1 program."""
    import jax
    import numpy as np

    from contractrl.experiments import coin_lanes

    grid, seeds, learners, sampler = row.split(":")
    config = config_for(int(grid), int(seeds), learners, sampler, unroll)
    groups = coin_lanes.stage_groups(config, 1)
    lanes = sum(len(g.lanes) for g in groups)
    program = coin_lanes.stage_program(config, 1, iterations)
    states = coin_lanes._init_states(config, groups, {})
    principals = tuple({} for _ in groups)
    t0 = time.perf_counter()
    compiled = program.lower(states, principals, 0).compile()
    compile_s = time.perf_counter() - t0
    copies = loop_buffer_copies(compiled.as_text(), config.dqn.replay_capacity)
    warm, _ = jax.block_until_ready(compiled(states, principals, 0))
    t0 = time.perf_counter()
    again, _ = jax.block_until_ready(compiled(warm, principals, iterations))
    elapsed = time.perf_counter() - t0
    repeat, _ = jax.block_until_ready(compiled(warm, principals, iterations))
    same = all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(repeat), strict=True
        )
    )
    per_lane = iterations / elapsed
    return {
        "row": row,
        "grid": int(grid),
        "seeds": int(seeds),
        "learners": learners,
        "sampler": sampler,
        "unroll": unroll,
        "lanes": lanes,
        "iterations": iterations,
        "per_lane_it_s": per_lane,
        "total_it_s": lanes * per_lane,
        "compile_s": compile_s,
        "loop_buffer_copies": copies,
        "bit_identical_repeat": bool(same),
        "projected_protocol_s": 2 * phase_iterations / per_lane,
    }


def mapped_predicate_copies(grid: int, seeds: int) -> int:
    """Buffer-sized copies in the loop when the draw's predicate is mapped (the old code)."""
    from contractrl.experiments import coin_lanes
    from contractrl.learning import replay

    real = replay.sample

    def mapped(buffer, key, batch_size, prioritized, beta=0.0, shared=None, sampler="sum_tree"):
        return real(buffer, key, batch_size, prioritized, beta, None, sampler)

    replay.sample = mapped
    try:
        config = dataclasses.replace(config_for(grid, seeds, "principal", "sum_tree"), seed=1)
        groups = coin_lanes.stage_groups(config, 1)
        program = coin_lanes.stage_program(config, 1, 100)
        states = coin_lanes._init_states(config, groups, {})
        compiled = program.lower(states, tuple({} for _ in groups), 0).compile()
        return loop_buffer_copies(compiled.as_text(), config.dqn.replay_capacity)
    finally:
        replay.sample = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=["3:5:stage1:sum_tree", "7:5:stage1:sum_tree"])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--phase-iterations", type=int, default=1_000_000)
    parser.add_argument("--unroll", type=int, default=1)
    parser.add_argument("--mapped-predicate", metavar="GRID:SEEDS", help="also count copies")
    parser.add_argument("--json", help="also write the rows to this JSON file (after each row)")
    args = parser.parse_args()
    import jax

    device = str(jax.devices()[0])
    print(f"JAX {jax.__version__} on {device}", file=sys.stderr)
    report: dict = {"device": device, "jax": jax.__version__, "rows": []}
    print(
        "| grid | seeds | learners | sampler | lanes | it/s per lane | it/s total | compile "
        "| loop copies | repeat identical | 2 x phase at this rate |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in args.rows:
        r = measure(row, args.iterations, args.phase_iterations, args.unroll)
        report["rows"].append(r)
        print(
            f"| {r['grid']}x{r['grid']} | {r['seeds']} | {r['learners']} | {r['sampler']} | "
            f"{r['lanes']} | {r['per_lane_it_s']:.0f} | {r['total_it_s']:.0f} | "
            f"{r['compile_s']:.0f} s | {r['loop_buffer_copies']} | {r['bit_identical_repeat']} | "
            f"{r['projected_protocol_s'] / 60:.1f} min |",
            flush=True,
        )
        if args.json:  # after every row: a timeout keeps what was measured
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
    if args.mapped_predicate:
        grid, seeds = (int(x) for x in args.mapped_predicate.split(":"))
        report["mapped_predicate_loop_copies"] = mapped_predicate_copies(grid, seeds)
        print(
            f"loop copies with a mapped predicate ({grid}x{grid}, {seeds} lanes): "
            f"{report['mapped_predicate_loop_copies']}"
        )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
