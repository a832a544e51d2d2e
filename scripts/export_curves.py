"""Export a team run's evaluation curves (every seed, every phase) to one JSON file.

Usage: ``python scripts/export_curves.py RUN_DIR OUT.json``. The run directory's
``runs/seed<k>/<phase>.csv`` logs are large to commit; this keeps, per seed and phase, the
columns a results page quotes (``iteration``, ``welfare``, ``payments``, ``follow_rate``,
``train_welfare``), beside the run's ``command``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

COLUMNS = ("iteration", "welfare", "payments", "follow_rate", "train_welfare")


def curves(run_dir: Path) -> dict:
    """``{"command": …, "curves": {seed: {phase: {column: [values]}}}}`` of a run."""
    manifest = json.loads((run_dir / "config.json").read_text())
    out: dict[str, dict] = {}
    for seed_dir in sorted((run_dir / "runs").glob("seed*")):
        for log in sorted(seed_dir.glob("*.csv")):
            with open(log, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            out.setdefault(seed_dir.name, {})[log.stem] = {
                c: [float(r[c]) if r.get(c) not in (None, "") else None for r in rows]
                for c in COLUMNS
            }
    return {"command": manifest.get("command", ""), "curves": out}


if __name__ == "__main__":
    Path(sys.argv[2]).write_text(json.dumps(curves(Path(sys.argv[1])), indent=1) + "\n")
