"""Print the exact tables of docs/delegation.md and draw its figure.

    PYTHONPATH=src python scripts/delegation_tables.py [--figure docs/figures/delegation.png]

Every number is an exact computation on the default delegation game (no training, no seeds).
"""

from __future__ import annotations

import argparse

from contractrl.core.delegation import DEFAULT_STAGES, delegation_game, on_time_states
from contractrl.core.delegation_study import misspecification, sequential_value
from contractrl.core.simple_contracts import compare_contracts


def _sequential_table(rows) -> str:
    lines = [
        "| stages | deadline | SPE | best stationary | best one-parameter | first-best "
        "| SPE / stationary |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        spe = "none found" if r.spe != r.spe else f"{r.spe:.4f}"
        ratio = "" if r.spe != r.spe else f"{r.spe / r.stationary:.3f}"
        lines.append(
            f"| {r.num_stages} | {r.deadline if r.deadline is not None else 'retry'} | {spe} | "
            f"{r.stationary:.4f} | {r.best_one_parameter:.4f} | {r.first_best:.4f} | {ratio} |"
        )
    return "\n".join(lines)


def _robust_table(plays) -> str:
    lines = [
        "| belief shift | nudge ξ | expected | true principal | share of SPE | agent "
        "| follows (per stage) |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in plays:
        if not p.ok:  # the belief has no stationary SPE: nothing to play
            lines.append(
                f"| {p.shift:+.2f} | {p.margin:g} | — | — | — | — | "
                f"no SPE of the belief ({p.believed_status}) |"
            )
            continue
        follows = "".join("y" if f else "n" for f in p.followed)
        lines.append(
            f"| {p.shift:+.2f} | {p.margin:g} | {p.believed_principal_utility:.4f} | "
            f"{p.principal_utility:.4f} | {p.share_of_spe:.3f} | {p.agent_utility:.4f} | "
            f"{follows} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Print the Markdown tables; draw the figure when asked."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--figure", help="PNG path for the figure")
    args = parser.parse_args()
    k = len(DEFAULT_STAGES)
    comparisons = {}
    for label, deadline in (("finite (deadline 6)", 6), ("retry until accepted", None)):
        game = delegation_game(deadline=deadline)
        cmp = compare_contracts(game)
        comparisons[label] = (game, cmp)
        print(f"### {label}: {game.name}\n")
        print(cmp.markdown(on_time_states(game, k)))
        print()
        print("SPE contracts (on-time states):")
        spe = cmp.row("spe")
        for s in on_time_states(game, k):
            print(f"  {game.state_name(s)}: {spe.contract[s].round(4).tolist()}")
        print(
            f"stationary contract: {cmp.row('stationary').contract[0].round(4).tolist()} "
            f"({cmp.row('stationary').method})\n"
        )
    sequential = {}
    for label, slack in (("finite, deadline K+2", 2), ("retry", None)):
        sequential[label] = sequential_value(deadline_slack=slack)
        print(f"### value of sequential contracts: {label}\n")
        print(_sequential_table(sequential[label]))
        print()
    for label, deadline in (("finite (deadline 6)", 6), ("retry until accepted", None)):
        print(f"### mis-specified outcome probabilities: {label}\n")
        print(_robust_table(misspecification(deadline=deadline)))
        print()
    if args.figure:
        from contractrl.plotting.delegation import plot_delegation

        game, cmp = comparisons["finite (deadline 6)"]
        states = on_time_states(game, k)
        plot_delegation(
            cmp,
            states,
            list(DEFAULT_STAGES),
            game.outcome_names,
            sequential["finite, deadline K+2"],
            out=args.figure,
        )
        print(f"wrote {args.figure}")


if __name__ == "__main__":
    main()
