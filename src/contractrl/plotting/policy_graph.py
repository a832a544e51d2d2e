"""Any game's principal policy as a state graph, cycles included (``contractrl render``).

States sit on a circle (the initial state on top); an arrow ``s -> s'`` for every outcome that
can lead there (labelled with the outcome; a loop is drawn as a ring). One panel per policy:
the learned principal (from a run's ``policy.json``) and the exact SPE, each state coloured by
its recommended action and labelled with the expected payment; a state where the oracle agent
ignores the learned recommendation is ringed in black.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple")


def _edges(game) -> dict[tuple[int, int], list[str]]:
    """``(s, s') -> outcome names`` of every possible transition."""
    trans = game.transitions
    num_o = game.num_outcomes
    out: dict[tuple[int, int], list[str]] = {}
    for s in range(game.num_states):
        for o in range(num_o):
            lo, hi = trans.indptr[s * num_o + o], trans.indptr[s * num_o + o + 1]
            for s2, p in zip(trans.indices[lo:hi], trans.data[lo:hi], strict=True):
                if p > 0:
                    out.setdefault((s, int(s2)), []).append(game.outcome_name(o))
    return out


def policy_graph(game, panels: dict[str, list[dict]], path: Path, max_states: int = 40) -> Path:
    """Draw each policy of ``panels`` (title -> rows of ``learning.evaluation.policy_table``).

    Rows of time-indexed policies: the first row of each state is drawn. At most
    ``max_states`` states.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if game.num_states > max_states:
        raise ValueError(f"{game.num_states} states: render draws at most {max_states}")
    n = game.num_states
    angle = np.pi / 2 - 2 * np.pi * (np.arange(n) - game.initial_state) / n
    xy = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    edges = _edges(game)
    actions = [game.action_name(a) for a in range(game.num_actions)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.2), squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels.items(), strict=True):
        first: dict[str, dict] = {}
        for r in rows:
            first.setdefault(r["state"], r)
        for (s, s2), outcomes in edges.items():
            label = ",".join(outcomes)
            if s == s2:
                ring = plt.Circle(xy[s] * 1.18, 0.1, fill=False, color="0.6", linewidth=1)
                ax.add_patch(ring)
                ax.text(*(xy[s] * 1.36), label, fontsize=6, color="0.4", ha="center")
                continue
            ax.annotate(
                "",
                xy=xy[s2] * 0.92 + xy[s] * 0.08,
                xytext=xy[s] * 0.92 + xy[s2] * 0.08,
                arrowprops={"arrowstyle": "->", "color": "0.6", "connectionstyle": "arc3,rad=0.15"},
            )
            mid = (xy[s] + xy[s2]) / 2 + 0.08 * np.array(
                [xy[s2][1] - xy[s][1], xy[s][0] - xy[s2][0]]
            )
            ax.text(*mid, label, fontsize=6, color="0.4", ha="center")
        for s in range(n):
            r = first.get(game.state_name(s))
            if r is None:
                continue
            colour = _COLOURS[actions.index(r["action"]) % 5] if r["action"] else "0.8"
            edge = "black" if not r.get("follows", True) else colour
            ax.scatter(*xy[s], s=700, color=colour, edgecolors=edge, linewidths=2.5, zorder=2)
            text = f"{r['state']}\n{r['action']}\n{r['expected_payment']:.3g}"
            ax.text(*xy[s], text, fontsize=6, ha="center", va="center", color="white", zorder=3)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.set_aspect("equal")
        ax.axis("off")
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=_COLOURS[a % 5], label=name)
        for a, name in enumerate(actions)
    ]
    handles.append(
        plt.Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color="white",
            markeredgecolor="black",
            label="oracle ignores",
        )
    )
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7)
    fig.suptitle(f"{game.name or 'game'}: recommended action and expected payment per state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
