"""Summarise variant runs: one row per variant (``OUT_DIR/<variant>``), mean ± s.e. over seeds.

For ``scripts/coin_fix_ablation.sh`` (``--columns fix``, the default) and
``scripts/coin_audit_variants.sh`` (``--columns audit``: every number against the exact audit
of docs/outputs.md). Each row records the variant's command and ``wall_seconds``.

Usage: python scripts/coin_fix_ablation_table.py OUT_DIR [--columns fix|audit] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from contractrl._stats import mean_se

FIX_COLUMNS = [
    ("welfare", "validation welfare"),
    ("principal_plan_welfare", "principal's plan welfare"),
    ("payment_share", "payments / welfare"),
    ("follow_rate", "follow rate"),
    ("spe_ratio", "SPE ratio"),
    ("ic_ratio", "IC ratio"),
]
AUDIT_COLUMNS = [
    ("audit_welfare_of_optimum", "plan welfare / exact optimum"),
    ("audit_payments_learned", "plan's contracts paid"),
    ("audit_payments_exact", "exact min-pay for the plan"),
    ("audit_contract_rmse", "contract RMSE"),
    ("audit_underpaid_share", "states underpaid"),
    ("audit_follow_rate", "exact best-responder follow"),
    ("welfare", "validation welfare"),
    ("payment_share", "payments / welfare"),
    ("audit_validation_follow_rate", "validation follow (exact)"),
    ("audit_validation_welfare_relevant_follow_rate", "welfare-relevant follow"),
    ("ic_ratio", "IC ratio"),
]
COLUMN_SETS = {"fix": FIX_COLUMNS, "audit": AUDIT_COLUMNS}
DQN_FIELDS = {
    "fix": ("time_limit", "principal_cost", "learning_starts", "clip_scope"),
    "audit": ("replay_capacity", "replay_fraction", "epsilon_fraction", "explore_recommendations"),
}


def main() -> None:
    """Print the table (and write it as JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--columns", choices=sorted(COLUMN_SETS), default="fix")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()
    columns = COLUMN_SETS[args.columns]
    rows = {}
    for results in sorted(args.out.glob("*/results.json")):
        data = json.loads(results.read_text())
        seeds = data["seeds"]
        rows[results.parent.name] = {
            "command": data["command"],
            "wall_seconds": data["mean"]["wall_seconds"],
            "config": {k: data["config"]["dqn"].get(k) for k in DQN_FIELDS[args.columns]},
            "iterations_per_phase": data["mean"]["iterations_per_phase"],
            "seeds": len(seeds),
            **{key: mean_se([s[key] for s in seeds]) for key, _ in columns},
        }
    header = "| variant | " + " | ".join(label for _, label in columns) + " |"
    print(header)
    print("|---" * (len(columns) + 1) + "|")
    for name, row in rows.items():
        cells = [f"{row[key][0]:.3f} ± {row[key][1]:.3f}" for key, _ in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
