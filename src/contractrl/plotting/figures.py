"""Paper figures drawn from an experiment directory's saved files (never from training)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_run_metrics(run_dir: Path) -> dict[str, np.ndarray]:
    """Columns of ``run_dir/metrics.csv`` as float arrays."""
    with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return (
        {k: np.array([float(r[k]) if r[k] != "" else np.nan for r in rows]) for k in rows[0]}
        if rows
        else {}
    )


def _mean_se(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    length = min(len(c) for c in curves)
    stack = np.stack([c[:length] for c in curves])
    se = stack.std(axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * stack[0]
    return stack.mean(axis=0), se


def plot_tree(exp_dir: Path, results: dict[str, Any], out: Path | None = None) -> Path:
    """Paper Figure 3: principal utility, agent utility and accuracy against iterations.

    One colour per instance (mean over seeds, shaded standard error); SPE values dashed.
    """
    plt = _figure()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [
        ("principal_utility", "principal utility", "spe_principal_value"),
        ("agent_utility", "agent utility", "spe_agent_value"),
        ("accuracy", "accuracy", None),
    ]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for inst in results["instances"]:
        colour = colours[inst["index"] % len(colours)]
        runs = [
            read_run_metrics(exp_dir / "runs" / f"instance{inst['index']}-seed{r['seed']}")
            for r in inst["runs"]
        ]
        runs = [r for r in runs if r]
        if not runs:
            continue
        x = runs[0]["iteration"][: min(len(r["iteration"]) for r in runs)]
        for ax, (key, label, spe_key) in zip(axes, panels, strict=True):
            mean, se = _mean_se([r[key] for r in runs])
            ax.plot(x, mean, color=colour, label=f"instance {inst['index']}")
            ax.fill_between(x, mean - se, mean + se, color=colour, alpha=0.25, linewidth=0)
            if spe_key is not None:
                ax.axhline(inst[spe_key], color=colour, linestyle="--", linewidth=1)
            ax.set_title(label)
            ax.set_xlabel("iteration")
    axes[2].set_ylim(0, 1.02)
    axes[0].legend(loc="lower right", fontsize=8)
    mean = results["mean"]
    dqn = results["config"]["dqn"]
    nudge = "auto" if dqn["auto_nudge"] else f"{dqn['nudge']:g}"
    fig.suptitle(
        f"Tree MDP depth {results['config']['depth']}: {mean['runs']} runs, nudge {nudge} — "
        f"principal utility {mean['principal_utility_ratio']:.3f} of the SPE, "
        f"accuracy {mean['accuracy']:.3f} (dashed: SPE)",
        fontsize=11,
    )
    fig.tight_layout()
    path = Path(out) if out is not None else exp_dir / "figure3.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


PLOTTERS = {"tree": plot_tree}


def plot_experiment(exp_dir: Path, results: dict[str, Any], out: Path | None = None) -> list[Path]:
    """Draw every figure of an experiment; returns the written paths."""
    kind = results.get("experiment")
    if kind not in PLOTTERS:
        raise ValueError(f"results.json: unknown experiment {kind!r}")
    return [PLOTTERS[kind](Path(exp_dir), results, out)]
