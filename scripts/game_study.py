"""Algorithm 2's default preset on small games nobody tuned for (issue 22, docs/own-games.md).

The games: :func:`random_game` draws a small game from a seed (3-4 states, 2-4 actions and
outcomes; finite horizon or discounted infinite horizon), keeping only those with a stationary
SPE whose principal value is positive and which induces a costly action somewhere (a game where
the SPE pays nothing tests nothing). Tuning set: seeds 0-99; held-out set: seeds 100 and up,
never used to choose a default. Also the delegation game, both variants (docs/delegation.md).

Each game runs ``contractrl train game FILE`` with the default preset (``auto``); each row's
``results.json`` is summarised in ``docs/results/game-study-<set>.json`` with the command.

Usage: python scripts/game_study.py OUT_DIR [--set tune|heldout|delegation] [--count N]
[-- extra train flags]; resumable (rerun it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = [sys.executable, "-m", "contractrl"]


def random_game(seed: int):
    """A small random game (``None`` when the draw is rejected; see the module docstring)."""
    from contractrl.core.model import PrincipalAgentMDP
    from contractrl.core.solver import solve_spe

    rng = np.random.default_rng(seed)
    S = int(rng.integers(3, 5))
    A = int(rng.integers(2, 5))
    O = int(rng.integers(2, 5))  # noqa: E741 (the paper's symbol)
    finite = bool(rng.integers(0, 2))
    # costlier actions shift the outcome distribution toward better outcomes
    cost = np.sort(rng.uniform(0, 1, (S, A)), axis=1)
    cost[:, 0] = 0.0
    probs = np.empty((S, A, O))
    for s in range(S):
        for a in range(A):
            tilt = np.exp((a / max(A - 1, 1)) * 3.0 * np.linspace(-1, 1, O))
            probs[s, a] = rng.dirichlet(tilt * 2.0)
    principal = np.sort(rng.uniform(0, 2, (S, O)), axis=1)
    transitions = rng.dirichlet(np.ones(S), size=(S, O))
    if finite:
        horizon, discount = int(rng.integers(3, 7)), float(rng.choice([1.0, 0.95]))
    else:
        horizon, discount = None, float(rng.choice([0.8, 0.9]))
    game = PrincipalAgentMDP(
        probs,
        -cost,
        principal,
        transitions,
        horizon=horizon,
        discount=discount,
        name=f"random-{seed}",
    )
    spe = solve_spe(game)
    if not spe.ok or spe.initial_principal_value <= 0:
        return None
    if not np.any(np.asarray(spe.action) > 0):
        return None
    return game


def games(which: str, count: int):
    """``[(name, game)]`` of a set."""
    if which == "delegation":
        from contractrl.core.delegation import delegation_game

        return [
            ("delegation", delegation_game()),
            ("delegation-retry", delegation_game(deadline=None)),
        ]
    seed = 0 if which == "tune" else 100
    out = []
    while len(out) < count:
        game = random_game(seed)
        if game is not None:
            out.append((game.name, game))
        seed += 1
    return out


def main() -> None:
    """Run every game of the set with the default preset; write the summary."""
    from contractrl.core.instance import save_instance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--set", choices=("tune", "heldout", "delegation"), default="heldout")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--summary", type=Path, help="default docs/results/game-study-SET.json")
    parser.add_argument("extra", nargs="*", help="flags for every train game run (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, game in games(args.set, args.count):
        file = args.out / f"{name}.json"
        save_instance(game, file)
        target = args.out / name
        if not (target / "results.json").exists():
            resume = ["--resume"] if (target / "config.json").exists() else []
            if not resume and target.exists():
                shutil.rmtree(target)
            cmd = [*BIN, "train", "game", str(file), "--out", str(target), "--no-progress"]
            cmd += [*args.extra, *resume]
            print("+", " ".join(cmd), flush=True)
            env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
            subprocess.run(cmd, check=True, env=env)
        results = json.loads((target / "results.json").read_text())
        m = results["mean"]
        runs = results["instances"][0]["runs"]
        rows[name] = {
            "command": json.loads((target / "config.json").read_text()).get("command"),
            "states": game.num_states,
            "actions": game.num_actions,
            "outcomes": game.num_outcomes,
            "horizon": game.horizon,
            "discount": game.discount,
            "spe_principal_value": m["spe_principal_value"],
            "principal_utility_ratio": m["principal_utility_ratio"],
            "principal_utility_ratio_se": m["principal_utility_ratio_se"],
            "principal_utility_ratio_ci95": m.get("principal_utility_ratio_ci95"),
            "runs": [r["principal_utility_ratio"] for r in runs],
            "deviation_gain": [r.get("deviation_gain") for r in runs],
            "accuracy": m["accuracy"],
            "iterations": results["config"]["dqn"]["iterations"],
            "phase_length": results["config"]["dqn"]["phase_length"],
            "nudge": results["config"]["dqn"]["nudge"],
            "wall_seconds": m["wall_seconds"],
        }
        print(name, json.dumps(rows[name]), flush=True)
    ratios = [r["principal_utility_ratio"] for r in rows.values()]
    summary = {
        "command": " ".join(["python", *sys.argv]),
        "set": args.set,
        "games": rows,
        "mean_ratio": float(np.mean(ratios)),
        "min_ratio": float(np.min(ratios)),
        "wall_seconds": float(sum(r["wall_seconds"] for r in rows.values())),
        "date": time.strftime("%Y-%m-%d"),
    }
    path = args.summary or ROOT / "docs" / "results" / f"game-study-{args.set}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"mean {summary['mean_ratio']:.4f}, min {summary['min_ratio']:.4f} -> {path}")


if __name__ == "__main__":
    main()
