"""Shared by the A/B benchmarks: measure two source trees alternately, print the ratios."""

from __future__ import annotations

from collections.abc import Callable, Sequence


def alternate(
    rate: Callable[[str, str], float], before: str, after: str, configs: Sequence[str], rounds: int
) -> None:
    """``rate(src, config)`` for each config, before then after, ``rounds`` times; a table.

    Alternating lets a shared machine's drifts hit both sides alike. Prints every round, then
    one Markdown row per config with both sides' rates and the ratio of their means.
    """
    rates: dict[tuple[str, str], list[float]] = {}
    for round_ in range(rounds):
        for which in configs:
            for side, src in (("before", before), ("after", after)):
                value = rate(src, which)
                rates.setdefault((which, side), []).append(value)
                print(f"round {round_}: {which} {side} {value:.0f} it/s", flush=True)
    print("| configuration | before, it/s | after, it/s | after / before (means) |")
    print("|---|---|---|---|")
    for which in configs:
        old, new = rates[(which, "before")], rates[(which, "after")]
        ratio = (sum(new) / len(new)) / (sum(old) / len(old))
        shown = [", ".join(f"{v:.0f}" for v in xs) for xs in (old, new)]
        print(f"| {which} | {shown[0]} | {shown[1]} | {ratio:.2f} |")
