"""The nudge a trained principal needs against rational agents, exactly (Proposition 4.1).

Reuses one finished team run (``train coin`` or ``train marl`` on a game small enough to export
exactly, docs/exact-multiagent.md): for each seed's trained principal and each absolute nudge
``ξ`` (reward units per followed step), the principal's contracts plus ``ξ`` are audited
against the exact solution: the follow rate of agents that best-respond exactly (ties towards
the recommendation, and at random), the gain from deviating alone, the welfare they reach, and
what the principal pays. No training: one trained principal, every ``ξ``.

Usage: python scripts/audit_nudge_sweep.py RUN_DIR [--nudges 0,0.03,0.1,0.2,0.4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    """Print one row per nudge (mean over seeds) and write the JSON."""
    from contractrl.experiments.coin import _config, experiment_env, load_principal
    from contractrl.experiments.exact_audit import exact_export_of, team_references
    from contractrl.multiagent.algorithm3 import principal_learner
    from contractrl.multiagent.audit import audit_learned_principal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--nudges", default="0,0.03,0.1,0.2,0.4")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start = time.perf_counter()
    config = _config(args.run)
    env = experiment_env(config)
    export = exact_export_of(env, config.dqn.gamma)
    if export is None:
        sys.exit(f"{args.run}: the environment has no exact export this small")
    team = team_references(export)["team_welfare"]
    learner = principal_learner(env, config.dqn)
    nudges = [float(x) for x in args.nudges.split(",")]
    seeds = sorted(int(p.name[4:]) for p in (args.run / "runs").glob("seed*"))
    principals = {seed: load_principal(args.run, config, seed) for seed in seeds}
    rows = []
    for xi in nudges:
        per_seed = []
        for seed, params in principals.items():
            audit = audit_learned_principal(learner, params, export, team, nudge=xi)
            br = {b.tie_rule: b for b in audit.best_response}
            per_seed.append(
                {
                    "seed": seed,
                    "follow_rate": br["follow"].follow_rate,
                    "follow_rate_random_ties": br["uniform"].follow_rate,
                    "spe_gain": br["follow"].spe_gain,
                    "welfare": br["follow"].welfare,
                    "welfare_random_ties": br["uniform"].welfare,
                    "payments": br["follow"].payments,
                    "underpaid_share": audit.underpaid_share,
                }
            )
        mean = {k: float(np.mean([r[k] for r in per_seed])) for k in per_seed[0] if k != "seed"}
        rows.append({"nudge": xi, "mean": mean, "seeds": per_seed})
        print(
            f"ξ = {xi:<6g} follow {mean['follow_rate']:.3f} (random ties "
            f"{mean['follow_rate_random_ties']:.3f}), welfare {mean['welfare']:.2f} "
            f"({mean['welfare_random_ties']:.2f}), paid {mean['payments']:.2f}, "
            f"underpaid {mean['underpaid_share']:.3f}, SPE gain {mean['spe_gain']:+.3f}"
        )
    result = {
        "command": " ".join(["python", *sys.argv]),
        "run": str(args.run),
        "run_command": json.loads((args.run / "config.json").read_text()).get("command"),
        "team_welfare": team,
        "rows": rows,
        "wall_seconds": time.perf_counter() - start,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
