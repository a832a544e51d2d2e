"""Summarise ``scripts/coin_fix_ablation.sh`` runs: one row per variant, mean ± s.e. over seeds.

Usage: python scripts/coin_fix_ablation_table.py OUT_DIR [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from contractrl._stats import mean_se

COLUMNS = [
    ("welfare", "validation welfare"),
    ("principal_plan_welfare", "principal's plan welfare"),
    ("payment_share", "payments / welfare"),
    ("follow_rate", "follow rate"),
    ("spe_ratio", "SPE ratio"),
    ("ic_ratio", "IC ratio"),
]


def main() -> None:
    """Print the table (and write it as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()
    rows = {}
    for results in sorted(args.out.glob("*/results.json")):
        data = json.loads(results.read_text())
        seeds = data["seeds"]
        rows[results.parent.name] = {
            "config": {
                k: data["config"]["dqn"][k]
                for k in ("time_limit", "principal_cost", "learning_starts", "clip_scope")
            },
            "iterations_per_phase": data["mean"]["iterations_per_phase"],
            "seeds": len(seeds),
            **{key: mean_se([s[key] for s in seeds]) for key, _ in COLUMNS},
        }
    header = "| variant | " + " | ".join(label for _, label in COLUMNS) + " |"
    print(header)
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, row in rows.items():
        cells = [f"{row[key][0]:.3f} ± {row[key][1]:.3f}" for key, _ in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
