"""Pictures of learned behaviour: an episode as an animated GIF, a policy as a tree.

Drawing only (matplotlib, NumPy): the data come from :mod:`contractrl.experiments.render`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Arrow of each Coin Game move (row, column deltas; see ``coin_game.MOVES``).
_ARROWS = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))
_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple")


def arrow_segment(row: float, col: float, dr: int, dc: int, grid: int, length: float = 0.42):
    """``((x0, y0), (x1, y1))``: the arrow of a move ``(dr, dc)`` from ``(row, col)``, on the grid.

    A move off the grid's edge wraps around the torus; its arrow is drawn from the agent up to
    the edge it crosses (never past the axes, where it would be clipped), so every arrow shows.
    """
    lo, hi = -0.5, grid - 0.5
    x1 = min(max(col + length * dc, lo + 0.02), hi - 0.02)
    y1 = min(max(row + length * dr, lo + 0.02), hi - 0.02)
    return (col, row), (x1, y1)


def coin_gif(episode: dict[str, Any], path: Path, fps: int = 3) -> Path:
    """Animate an episode (:func:`contractrl.experiments.render.coin_episode`) into a GIF.

    Each frame: the torus grid, each agent (a disc with its number, in its colour), the coin
    (a square in its owner's colour), each agent's recommended move (an arrow) and the contract
    it is paid for following it, with the running totals of rewards and payments. With
    ``actions [H, n]`` (validation agents' episodes), a step where an agent plays other than its
    recommendation adds a red dashed arrow for the move played, and the totals count
    deviations per agent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    g = int(episode["grid_size"])
    steps = len(episode["recs"])
    n = episode["positions"].shape[1]
    fig, ax = plt.subplots(figsize=(4.2, 5.2))
    from matplotlib.lines import Line2D

    legend = [
        Line2D([], [], marker="o", ls="", color=_COLOURS[i % 5], label=f"agent {i}")
        for i in range(n)
    ] + [
        Line2D([], [], marker="s", ls="", color="0.5", alpha=0.6, label="coin (owner's colour)"),
        Line2D([], [], color="black", marker=">", label="recommended move (ring: stay)"),
    ]
    played = episode.get("actions", episode["recs"])
    deviations = played != episode["recs"]  # [H, n]
    if deviations.any():
        legend.append(
            Line2D([], [], color="red", ls="--", marker=">", label="deviation: the move played")
        )

    def draw(t: int) -> None:
        ax.clear()
        ax.set_xlim(-0.5, g - 0.5)
        ax.set_ylim(g - 0.5, -0.5)
        ax.set_xticks(np.arange(-0.5, g, 1.0), minor=True)
        ax.set_yticks(np.arange(-0.5, g, 1.0), minor=True)
        ax.grid(which="minor", color="0.8")
        ax.set_xticks([])
        ax.set_yticks([])
        coin, owner = episode["coin"][t], int(episode["colour"][t])
        ax.add_patch(
            plt.Rectangle(
                (coin[1] - 0.18, coin[0] - 0.18), 0.36, 0.36, color=_COLOURS[owner % 5], alpha=0.6
            )
        )
        for i in range(n):
            r, c = episode["positions"][t, i]
            dx = 0.12 * (i - (n - 1) / 2)
            ax.add_patch(plt.Circle((c + dx, r + dx), 0.28, color=_COLOURS[i % 5], alpha=0.85))
            ax.text(c + dx, r + dx, str(i), ha="center", va="center", color="white", fontsize=10)
            if t < steps:
                moves = [(int(episode["recs"][t, i]), "black", "-")]
                if deviations[t, i]:
                    moves.append((int(played[t, i]), "red", "--"))
                for move, colour, style in moves:
                    dr, dc = _ARROWS[move]
                    if (dr, dc) == (0, 0):  # stay: a ring, not an arrow of length 0
                        ring = plt.Circle(
                            (c + dx, r + dx), 0.36, fill=False, lw=1.5, color=colour, ls=style
                        )
                        ax.add_patch(ring)
                        continue
                    (x0, y0), (x1, y1) = arrow_segment(r + dx, c + dx, dr, dc, g)
                    ax.annotate(
                        "",
                        xy=(x1, y1),
                        xytext=(x0, y0),
                        arrowprops={"arrowstyle": "->", "color": colour, "lw": 1.5, "ls": style},
                        annotation_clip=False,
                    )
        done = min(t, steps)
        deviated = deviations[:done].sum(axis=0)
        rewards = episode["rewards"][:done].sum(axis=0)
        paid = episode["payments"][:done].sum(axis=0)
        now = (
            "  ".join(f"b{i}={episode['payments'][t, i]:.2f}" for i in range(n))
            if t < steps
            else "episode over"
        )
        ax.legend(
            handles=legend,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.01),
            ncol=2,
            fontsize=7,
            frameon=False,
        )
        ax.set_title(
            f"step {t}/{steps}  contracts now: {now}\n"
            + "  ".join(
                f"agent {i}: r={rewards[i]:.1f} paid={paid[i]:.1f}"
                + (f" dev={deviated[i]}" if deviations.any() else "")
                for i in range(n)
            ),
            fontsize=8,
        )

    animation = FuncAnimation(fig, draw, frames=steps + 1, interval=1000 // fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    animation.save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path


def frames_gif(episode: dict[str, Any], path: Path, fps: int = 3) -> Path:
    """Animate an episode of any renderable environment into a GIF.

    ``episode`` (:func:`contractrl.experiments.render.team_episode`): ``frames`` (``uint8
    [H, W, 3]`` pictures from the environment's ``render``), ``recs [T, n]``, ``payments
    [T, n]`` and ``rewards [T, n]``; each frame is captioned with the step's recommendations,
    contracts and running totals.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    frames = episode["frames"]
    recs, pay, rewards = episode["recs"], episode["payments"], episode["rewards"]
    fig, ax = plt.subplots(figsize=(4.2, 4.8))

    def draw(t: int) -> None:
        ax.clear()
        ax.imshow(frames[t], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if t < len(recs):
            shown = ", ".join(
                f"{i}: a={int(a)} b={b:.2f}"
                for i, (a, b) in enumerate(zip(recs[t], pay[t], strict=True))
            )
            totals = f"rewards {rewards[: t + 1].sum():.2f}, paid {pay[: t + 1].sum():.2f}"
            ax.set_title(f"t = {t}  {shown}\n{totals}", fontsize=8)
        else:
            ax.set_title(f"end: rewards {rewards.sum():.2f}, paid {pay.sum():.2f}", fontsize=8)

    animation = FuncAnimation(fig, draw, frames=len(frames), interval=1000 // fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    animation.save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path


def _tree_layout(game, max_states: int):
    """Breadth-first ``(order, depth, children)`` of the states reachable from the start.

    Raises:
        ValueError: a state is reached twice (the states do not form a tree).
    """
    matrix = game.transitions  # CSR [S*O, S]: row s*O + o
    children: dict[int, list[tuple[int, int]]] = {}
    order, depth = [game.initial_state], {game.initial_state: 0}
    for s in order:
        if len(order) >= max_states:
            break
        for o in range(game.num_outcomes):
            r = s * game.num_outcomes + o
            for s2 in matrix.indices[matrix.indptr[r] : matrix.indptr[r + 1]]:
                s2 = int(s2)
                if s2 in depth:  # a second way in: the states do not form a tree
                    raise ValueError(
                        f"{game.name}: state {game.state_name(s2)} is reached twice; render "
                        "draws games whose states form a tree"
                    )
                if len(order) < max_states:
                    depth[s2] = depth[s] + 1
                    order.append(s2)
                    children.setdefault(s, []).append((s2, o))
    return order, depth, children


def policy_tree(game, solution, path: Path, max_states: int = 63) -> Path:
    """Draw a game's policy as a tree, breadth first from the initial state.

    Each state is a node coloured by its recommended action and labelled with the expected
    payment; each edge with the outcome that leads there.

    For games whose transition graph from the initial state is a tree (Tree MDPs; small own
    games); at most ``max_states`` states are drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order, depth, children = _tree_layout(game, max_states)
    levels: dict[int, list[int]] = {}
    for s in order:
        levels.setdefault(depth[s], []).append(s)
    xy = {}
    for d, states in levels.items():
        for k, s in enumerate(states):
            xy[s] = ((k + 1) / (len(states) + 1), -d)
    widest = max(len(v) for v in levels.values())
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * widest), 1.4 * len(levels) + 1))
    for s, kids in children.items():
        for s2, o in kids:
            ax.plot(*zip(xy[s], xy[s2], strict=True), color="0.6", linewidth=1, zorder=1)
            mid = ((xy[s][0] + xy[s2][0]) / 2, (xy[s][1] + xy[s2][1]) / 2)
            ax.text(*mid, game.outcome_name(o), fontsize=6, color="0.4", ha="center")

    def time_of(s: int) -> int:  # the state's depth is its time step in a tree
        return min(depth[s], game.horizon - 1) if game.horizon is not None else 0

    decisions = {s: solution.decision(time_of(s), s) for s in order}
    actions = sorted({d.action for d in decisions.values()})
    for s in order:
        d = decisions[s]
        colour = _COLOURS[actions.index(d.action) % 5]
        ax.scatter(*xy[s], s=260, color=colour, zorder=2)
        if len(order) <= 31:
            ax.text(xy[s][0], xy[s][1] + 0.2, game.state_name(s), fontsize=6, ha="center")
        ax.text(xy[s][0], xy[s][1] - 0.32, f"{d.expected_payment:.2f}", fontsize=6, ha="center")
    for a in actions:
        ax.scatter([], [], color=_COLOURS[actions.index(a) % 5], label=game.action_name(a))
    ax.legend(title="recommended action", fontsize=7, loc="upper right")
    ax.set_axis_off()
    ax.set_title(f"{game.name}: the SPE policy (below each state: expected payment)", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
