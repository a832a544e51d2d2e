"""Benchmark: exact SPE solve time on random binary Tree MDPs (paper App. D.1), one core.

Times a cold solve (a fresh game object, so no cached structure) of trees of depth 10, 14, 17
and 20, and, in the same run, two baselines on the same trees: ``H`` time sweeps over all states
(no level structure) and the straightforward per-state LP loop (``contract_method="lp"``, two
HiGHS LPs per state). Prints a table and records it in ``benchmarks/RESULTS.md``.

Usage: ``python benchmarks/bench_exact.py [--depths 10 14 17 20] [--repeats 5]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core, before NumPy loads

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from contractrl.core.games import tree_mdp  # noqa: E402
from contractrl.core.solver import solve_spe  # noqa: E402
from machine import machine_summary, record_section  # noqa: E402


def time_solve(depth: int, repeats: int, **options) -> tuple[list[float], float]:
    times, value = [], float("nan")
    for _ in range(repeats):
        game = tree_mdp(depth, seed=0)  # fresh object: structure analysis is timed too
        start = time.perf_counter()
        sol = solve_spe(game, **options)
        times.append(time.perf_counter() - start)
        value = sol.initial_principal_value
    return times, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[10, 14, 17, 20])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--lp-depths",
        type=int,
        nargs="+",
        default=[10],
        help="depths at which to run the per-state LP baseline",
    )
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args()

    rows = []
    for depth in args.depths:
        repeats = args.repeats if depth < 20 else max(1, min(args.repeats, 3))
        fast, value = time_solve(depth, repeats)
        time_sweeps, value_t = time_solve(
            depth, max(1, repeats // 2 if depth < 20 else 1), sweep="time"
        )
        assert abs(value - value_t) <= 1e-9 * max(1.0, abs(value)), "sweeps disagree"
        lp = None
        if depth in args.lp_depths:
            lp, value_lp = time_solve(depth, 1, contract_method="lp")
            assert abs(value - value_lp) <= 1e-8 * max(1.0, abs(value)), "LP disagrees"
        num_states = 2**depth - 1
        best = min(fast)
        rows.append(
            {
                "depth": depth,
                "states": num_states,
                "best_ms": best * 1e3,
                "median_ms": statistics.median(fast) * 1e3,
                "us_per_state": best / num_states * 1e6,
                "time_sweeps_ms": min(time_sweeps) * 1e3,
                "lp_loop_ms": None if lp is None else min(lp) * 1e3,
                "principal_value": value,
            }
        )
        print(f"depth {depth}: {best * 1e3:.2f} ms", file=sys.stderr)

    header = (
        "depth",
        "states",
        "SPE solve (best)",
        "median",
        "per state",
        "H time sweeps",
        "speed-up",
        "per-state LP loop",
        "speed-up",
        "principal value",
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lp = r["lp_loop_ms"]
        lp_cell = "-" if lp is None else f"{lp:.0f} ms"
        lp_ratio = "-" if lp is None else f"{lp / r['best_ms']:.0f}x"
        lines.append(
            f"| {r['depth']} | {r['states']:,} | {r['best_ms']:.2f} ms | {r['median_ms']:.2f} ms"
            f" | {r['us_per_state']:.3f} µs | {r['time_sweeps_ms']:.1f} ms"
            f" | {r['time_sweeps_ms'] / r['best_ms']:.1f}x"
            f" | {lp_cell} | {lp_ratio}"
            f" | {r['principal_value']:.6f} |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_record:
        command = "python benchmarks/bench_exact.py " + " ".join(sys.argv[1:])
        body = (
            f"{machine_summary()}\n\nCommand: `{command.strip()}` (one core: "
            "`OMP_NUM_THREADS=1`; cold solves on fresh game objects, structure analysis "
            "included; the game's construction is not timed). Baselines in the same run: `H` "
            'time sweeps over all states (`sweep="time"`) and the per-state HiGHS LP loop '
            '(`contract_method="lp"`).\n\n' + table
        )
        record_section("bench_exact", "Exact SPE solver on Tree MDPs", body)
    np.testing.assert_(all(r["best_ms"] > 0 for r in rows))


if __name__ == "__main__":
    main()
