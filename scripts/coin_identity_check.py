"""Check that two source trees give the Coin Game experiment bit-identical numbers (Algorithm 3).

Runs three small experiments with the code in ``--before`` and in ``--after`` — the smoke
preset on the ``inline`` backend (one seed, every phase), the same on the ``vmap`` backend (two
seeds, both stages as lanes) and three agents on a 4x4 grid with the ``top_up`` constant
scheme — then compares every number of every ``runs/**/*.csv`` and ``*.json`` file and
``results.json`` (wall-clock fields excepted; keys only the new tree writes are counted, not
compared) and every byte of the trained principals' parameters. Exit code 0 when all are equal.

Usage: python scripts/coin_identity_check.py --before OLD/src --after src
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: The protocol flags are explicit so that trees with other defaults run the same experiment.
PROCESS = ["--nudge-base", "validation", "--budget-match", "final"]
LOCKSTEP = ["--nudge-base", "plan", "--budget-match", "same_evaluation"]
RUNS = {
    "smoke-inline": ["--preset", "smoke", "--backend", "inline", "--seeds", "1", *PROCESS],
    "smoke-vmap": ["--preset", "smoke", "--backend", "vmap", "--seeds", "2", *LOCKSTEP],
    "g4n3": [
        "--preset",
        "smoke",
        "--backend",
        "inline",
        "--seeds",
        "1",
        "--grid-size",
        "4",
        "--num-agents",
        "3",
        "--horizon",
        "12",
        "--baselines",
        "constant",
        "--constant-schemes",
        "top_up",
        *PROCESS,
    ],
}
#: Keys that measure wall time or name the source tree, not results.
CLOCK = {
    "train_seconds",
    "iterations_per_second",
    "wall_seconds",
    "git_sha",
    "version",
    "iterations_per_second_se",
    "wall_seconds_se",
}


def run(src: str, out: Path) -> None:
    """The three experiments with the code in ``src``."""
    env = {**os.environ, "PYTHONPATH": src, "JAX_PLATFORMS": "cpu"}
    for name, flags in RUNS.items():
        cmd = [sys.executable, "-m", "contractrl", "train", "coin", "--out", str(out / name)]
        subprocess.run([*cmd, *flags, "--no-progress"], check=True, env=env)


def numbers(path: Path) -> dict[str, object]:
    """Every value of a CSV (``row/column``) or JSON file (``a/b/c``), clocks left out."""
    out: dict[str, object] = {}
    if path.suffix == ".csv":
        with path.open() as f:
            for i, row in enumerate(csv.DictReader(f)):
                out.update({f"{i}/{k}": v for k, v in row.items() if k not in CLOCK})
        return out

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in CLOCK and k != "command":
                    walk(f"{prefix}/{k}", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)
        else:
            out[prefix] = value

    walk("", json.loads(path.read_text()))
    return out


def same(a, b) -> bool:
    """Equal values (``nan`` equals ``nan``)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare(before: Path, after: Path) -> list[str]:
    """Names of the values (or files) that differ."""
    bad = []
    files = sorted(
        p.relative_to(before)
        for p in before.rglob("*")
        if p.suffix in (".csv", ".json", ".msgpack")
        and "progress" not in p.name
        and "checkpoint" not in p.name
        and p.name != "config.json"
    )
    count = added = 0
    for rel in files:
        a, b = before / rel, after / rel
        if not b.exists():
            bad.append(f"{rel} missing")
            continue
        if rel.suffix == ".msgpack":
            count += 1
            if a.read_bytes() != b.read_bytes():
                bad.append(str(rel))
            continue
        na, nb = numbers(a), numbers(b)
        added += len(set(nb) - set(na))  # new keys (e.g. new config fields) are not changes
        for key in sorted(na):
            count += 1
            if key not in nb or not same(na[key], nb[key]):
                bad.append(f"{rel}:{key}")
    print(f"{len(files)} files, {count} values compared, {len(bad)} differ ({added} keys added)")
    return bad


def main() -> None:
    """Run both trees (or reuse ``--dirs``), compare, print the first mismatches."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args.before, Path(tmp) / "before")
        run(args.after, Path(tmp) / "after")
        bad = compare(Path(tmp) / "before", Path(tmp) / "after")
    if bad:
        print("differ:", *bad[:20], sep="\n  ")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
