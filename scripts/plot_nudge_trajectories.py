"""Figure: the automatic nudge (Proposition 4.1's estimator) over training, per run.

Reads ``docs/results/tree-study-auto-nudge-trajectories.json`` (the automatic-nudge rows of
the tree nudge study, docs/tree.md) and draws, for the paper's and the held-out instances, the
nudge in force at each evaluation of every run, coloured by the run's final principal-utility
ratio, beside the fixed nudge ξ = 0.005 the ``paper`` preset uses.

Usage: python scripts/plot_nudge_trajectories.py [OUT.png] (default
docs/figures/tree_auto_nudge.png).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Draw the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/figures/tree_auto_nudge.png"
    data = json.loads((ROOT / "docs/results/tree-study-auto-nudge-trajectories.json").read_text())
    panels = (
        ("paper-auto-sqrt-q0.9", "the paper's instances"),
        ("heldout-auto-sqrt-q0.9", "held-out instances"),
    )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    cmap, norm = plt.get_cmap("viridis"), matplotlib.colors.Normalize(0.85, 1.0)
    for ax, (row, title) in zip(axes, panels, strict=True):
        runs = data["rows"][row]
        for _name, run in sorted(runs.items()):
            ratio = run["principal_utility_ratio"]
            ax.step(
                run["iteration"],
                run["nudge"],
                where="post",
                color=cmap(norm(ratio)),
                lw=2.0 if ratio < 0.95 else 1.0,
                alpha=0.9,
                label=None,
            )
        ax.axhline(0.005, color="grey", ls="--", lw=1, label="fixed ξ = 0.005 (paper preset)")
        collapsed = sum(r["principal_utility_ratio"] < 0.95 for r in runs.values())
        ax.set_title(f"{title}: {len(runs)} runs, {collapsed} end below 0.95 (thick)", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nudge ξ in force")
    axes[0].legend(loc="upper right", fontsize=8)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, pad=0.01)
    bar.set_label("final principal / SPE")
    fig.suptitle(
        "Automatic nudge (Proposition 4.1 estimator, q0.9, √H accumulation) over training", y=1.02
    )
    fig.savefig(out, dpi=120, bbox_inches="tight")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
