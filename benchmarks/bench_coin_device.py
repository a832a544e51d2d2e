"""Benchmark: the Coin Game training phase on whatever JAX backend is the default (GPU or CPU).

One process; ``S`` seeds of Algorithm 3's training phase vmapped into one compiled loop (how
an accelerator runs them), for S = 1 and more, on 3x3 and 7x7. Reports iterations per second
per seed and in total, after compilation. Not part of ``make bench`` (which pins one seed per
CPU core); run it on an accelerator:

    python benchmarks/bench_coin_device.py --seeds 1 5 16 --iterations 2000 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def measure(grid: int, seeds: int, iterations: int) -> dict:
    """Compile, warm up, then time ``iterations`` vmapped iterations of ``seeds`` runs."""
    import jax

    from contractrl.envs.coin_game import PRESETS
    from contractrl.multiagent.algorithm3 import PrincipalLearner
    from contractrl.multiagent.common import CoinDQNConfig

    learner = PrincipalLearner(PRESETS[f"paper-{grid}x{grid}"], CoinDQNConfig())
    states = jax.vmap(learner.init)(jax.random.split(jax.random.PRNGKey(0), seeds))
    run = jax.jit(
        jax.vmap(lambda st, start: learner._train_chunk(st, start, iterations)[0], (0, None))
    )
    t0 = time.perf_counter()
    states = jax.block_until_ready(run(states, 0))
    compile_and_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    states = jax.block_until_ready(run(states, iterations))
    elapsed = time.perf_counter() - t0
    return {
        "grid": grid,
        "seeds": seeds,
        "iterations": iterations,
        "per_seed_it_s": iterations / elapsed,
        "total_it_s": seeds * iterations / elapsed,
        "compile_and_first_chunk_s": compile_and_first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[3, 7])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    import jax

    device = str(jax.devices()[0])
    print(f"JAX {jax.__version__} on {device}", file=sys.stderr)
    rows = []
    print("| grid | seeds vmapped | it/s per seed | it/s total | compile + first chunk |")
    print("|---|---|---|---|---|")
    for grid in args.grids:
        for seeds in args.seeds:
            row = measure(grid, seeds, args.iterations)
            rows.append(row)
            print(
                f"| {grid}x{grid} | {seeds} | {row['per_seed_it_s']:.0f} | "
                f"{row['total_it_s']:.0f} | {row['compile_and_first_chunk_s']:.1f} s |",
                flush=True,
            )
            if args.json:  # after every row: a timeout keeps what was measured
                with open(args.json, "w") as f:
                    json.dump({"device": device, "jax": jax.__version__, "rows": rows}, f)


if __name__ == "__main__":
    main()
