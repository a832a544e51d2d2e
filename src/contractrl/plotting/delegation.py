"""The delegation game's figure (docs/delegation.md): contracts by stage, utilities by class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def plot_delegation(
    comparison,
    stage_states: Sequence[int],
    stage_labels: Sequence[str],
    outcome_names: Sequence[str],
    sequential_rows: Sequence = (),
    out: Path | None = None,
):
    """Three panels: SPE payments by stage and outcome; utilities per class; value vs stages.

    Args:
        comparison: a :class:`contractrl.core.simple_contracts.ContractComparison`.
        stage_states: ``[K]`` the state shown for each stage (e.g. the on-time states).
        stage_labels: ``[K]`` their labels.
        outcome_names: ``[O]`` outcome names.
        sequential_rows: :class:`contractrl.core.delegation_study.SequentialValueRow` entries
            (third panel: principal utility against the number of stages), optional.
        out: PNG path to write; ``None`` returns the figure only.

    Returns:
        The matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if sequential_rows else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.0))
    ax = axes[0]
    contract = comparison.row("spe").contract[np.asarray(stage_states)]  # [K, O]
    width = 0.8 / len(outcome_names)
    x = np.arange(len(stage_states))
    for o, name in enumerate(outcome_names):
        ax.bar(x + (o - (len(outcome_names) - 1) / 2) * width, contract[:, o], width, label=name)
    tiers = comparison.row("spe").action[np.asarray(stage_states)]
    labels = [
        f"{s}\n({comparison.action_names[a]})" for s, a in zip(stage_labels, tiers, strict=True)
    ]
    ax.set_xticks(x, labels)
    ax.set_ylabel("payment (units of the task's value)")
    ax.set_title("exact SPE contract by stage (tier induced)")
    ax.legend(title="outcome")
    ax = axes[1]
    rows = comparison.rows
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r.principal_utility for r in rows], 0.4, label="principal")
    ax.barh(y + 0.2, [r.agent_utility for r in rows], 0.4, label="agent")
    ax.set_yticks(y, [r.description for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("expected utility from the start")
    ax.set_title("utilities per contract class")
    ax.legend()
    if sequential_rows:
        ax = axes[2]
        ks = [r.num_stages for r in sequential_rows]
        for field, label in (
            ("first_best", "first-best"),
            ("spe", "exact SPE (sequential)"),
            ("stationary", "best stationary"),
            ("best_one_parameter", "best one-parameter"),
        ):
            ax.plot(ks, [getattr(r, field) for r in sequential_rows], "o-", label=label)
        ax.set_xlabel("number of stages")
        ax.set_ylabel("principal utility")
        ax.set_title("value of sequential contracts")
        ax.legend()
    fig.tight_layout()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    return fig
