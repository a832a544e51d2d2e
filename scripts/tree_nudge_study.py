"""Choose the Tree MDP nudge on held-out instances, then report on the paper's (issue 11).

Tuning set: ``--instance-seed 100`` (3 instances x 3 seeds), never reported as a headline. Every
fixed nudge and every automatic-nudge variant runs there; the best mean principal-utility ratio
of each family is chosen. The chosen ones then run on the paper's instances (``--instance-seed
0``, 3 x 5) and on a second held-out set nobody tuned on (``--instance-seed 200``, 3 x 5), beside
the published Algorithm 2 without a nudge. Each row's ``results.json`` is copied to
``docs/results/`` and a summary with the choice is written to
``docs/results/tree-nudge-study.json``.

Runs use this checkout's ``src`` (not whatever ``contractrl`` the interpreter has installed), so
each ``results.json`` records this checkout's commit. The ``paper-no-nudge`` and
``paper-faithful`` (ξ = 0.01) rows of docs/tree.md are separate runs of those presets.

Usage: python scripts/tree_nudge_study.py OUT_DIR [--rows tune|all]; resumable (rerun it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = [sys.executable, "-m", "contractrl"]
TUNE = ["--instance-seed", "100", "--instances", "3", "--seeds", "3"]
PAPER = ["--instance-seed", "0", "--instances", "3", "--seeds", "5"]
HELD_OUT = ["--instance-seed", "200", "--instances", "3", "--seeds", "5"]
FIXED = {
    f"fixed-{x}": ["--preset", "paper", "--nudge", x] for x in ("0.0025", "0.005", "0.01", "0.02")
}
AUTO = {
    "auto-sqrt-q0.9": ["--preset", "paper-auto-nudge"],
    "auto-linear-q0.9": ["--preset", "paper-auto-nudge", "--auto-nudge-accumulation", "linear"],
    "auto-sqrt-q0.99": ["--preset", "paper-auto-nudge", "--auto-nudge-quantile", "0.99"],
}
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"


def run(out: Path, name: str, args: list[str]) -> dict:
    """Run (or resume, or reuse) one row; returns its ``results.json``."""
    target = out / name
    if not (target / "results.json").exists():
        # resume only what was started (a start killed before writing config.json restarts)
        resume = ["--resume"] if (target / "config.json").exists() else []
        if not resume and target.exists():
            shutil.rmtree(target)
        command = [*BIN, "train", "tree", *args, "--out", str(target), "--no-progress", *resume]
        print("+", " ".join(command), flush=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        subprocess.run(command, check=True, env=env)
    return json.loads((target / "results.json").read_text())


def ratio(results: dict) -> float:
    """The mean principal-utility ratio of a row."""
    return float(results["mean"]["principal_utility_ratio"])


def main() -> None:
    """Tune, choose, report; write the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", choices=("tune", "all"), default="all")
    args = parser.parse_args()
    summary: dict = {"command": " ".join(["python", *sys.argv]), "tuning": {}, "report": {}}
    for name, row in {**FIXED, **AUTO}.items():
        summary["tuning"][name] = ratio(run(args.out, f"tune-{name}", [*row, *TUNE]))
    best_fixed = max(FIXED, key=lambda n: summary["tuning"][n])
    best_auto = max(AUTO, key=lambda n: summary["tuning"][n])
    summary["chosen"] = {"fixed": best_fixed, "auto": best_auto}
    print("chosen:", summary["chosen"], flush=True)
    if args.rows != "tune":
        rows = {
            f"paper-{best_fixed}": [*FIXED[best_fixed], *PAPER],
            f"paper-{best_auto}": [*AUTO[best_auto], *PAPER],
            f"heldout-{best_fixed}": [*FIXED[best_fixed], *HELD_OUT],
            f"heldout-{best_auto}": [*AUTO[best_auto], *HELD_OUT],
            "paper-faithful-no-nudge": ["--preset", "paper-faithful", "--nudge", "0", *PAPER],
        }
        for name, row in rows.items():
            results = run(args.out, name, row)
            summary["report"][name] = {
                "args": row,
                "principal_utility_ratio": ratio(results),
                "principal_utility_ratio_se": float(results["mean"]["principal_utility_ratio_se"]),
                "worst_run": min(
                    one["principal_utility_ratio"]
                    for instance in results["instances"]
                    for one in instance["runs"]
                ),
                "accuracy": float(results["mean"]["accuracy"]),
                "follow_rate": float(results["mean"]["follow_rate"]),
                "nudge": float(results["mean"]["nudge"]),
                "wall_seconds": float(results["mean"]["wall_seconds"]),
            }
    if args.rows == "tune":
        print(json.dumps(summary, indent=2))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = [f"tune-{name}" for name in {**FIXED, **AUTO}] + list(summary["report"])
    for name in names:
        shutil.copy(args.out / name / "results.json", RESULTS / f"tree-study-{name}.json")
    (RESULTS / "tree-nudge-study.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
