"""``contractrl solve coin``: the Coin Game's exact references (docs/exact-multiagent.md).

Exports the game (:mod:`contractrl.envs.coin_exact`), solves it exactly
(:mod:`contractrl.core.markov_solver`) and reports per episode (undiscounted sums over the
horizon from the reset distribution, as the learners' evaluation reports them; the solutions
maximise the ``γ``-discounted objectives):

* the team optimum's welfare (``team_welfare``);
* the exact min-pay contracts of the payment-minimising welfare-optimal plan (``α = 0``):
  payments per episode and their share of welfare;
* the same for the paper's principal objective (``α``, default 0.1);
* the follow rate of agents that best-respond exactly and break ties uniformly at random
  (``follow_rate_random_ties``), and with the others following (``follow_rate_alone``), with
  their exact SPE and IC ratios.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

COMMAND = "contractrl solve coin"


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``contractrl solve coin``."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", type=int, default=3, help="grid side (default 3)")
    parser.add_argument("--horizon", type=int, default=20, help="steps per episode (default 20)")
    parser.add_argument("--gamma", type=float, default=0.99, help="discount (default 0.99)")
    parser.add_argument("--alpha", type=float, default=0.1, help="payment weight (default 0.1)")
    parser.add_argument("--tie-rule", default="random_one", choices=("random_one", "all_collect"))
    parser.add_argument("--colour-rule", default="alternate", choices=("alternate", "random"))
    parser.add_argument(
        "--spawn-rule", default="avoid_agents", choices=("avoid_agents", "anywhere")
    )
    parser.add_argument("--own-reward", type=float, default=1.0)
    parser.add_argument("--other-reward", type=float, default=0.2)
    parser.add_argument("--owner-penalty", type=float, default=0.0)
    parser.add_argument(
        "--stationary",
        action="store_true",
        help="also solve the learners' own target (the same game without its time limit, "
        "which they bootstrap through) and audit that exact stationary principal against the "
        "timed game: what a perfect time-unaware learner scores (tens of seconds)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def solve_coin(args: argparse.Namespace) -> dict:
    """The exact references of the Coin Game given by ``args`` (see :func:`build_parser`)."""
    from contractrl.core.markov_eval import plan_summary
    from contractrl.core.markov_solver import principal_optimum, team_optimum
    from contractrl.envs.coin_exact import export_coin_game
    from contractrl.envs.coin_game import CoinGameConfig

    start = time.perf_counter()
    config = CoinGameConfig(
        grid_size=args.grid,
        horizon=args.horizon,
        tie_rule=args.tie_rule,
        colour_rule=args.colour_rule,
        spawn_rule=args.spawn_rule,
        own_reward=args.own_reward,
        other_reward=args.other_reward,
        owner_penalty=args.owner_penalty,
    )
    game = export_coin_game(config, discount=args.gamma).game
    team = team_optimum(game)
    welfare_first = principal_optimum(game, 0.0)
    paper = principal_optimum(game, args.alpha)
    first = plan_summary(game, welfare_first)
    extra = (
        {"stationary_reference": stationary_reference(game, first["welfare"])}
        if getattr(args, "stationary", False)
        else {}
    )
    return {
        "game": f"coin {args.grid}x{args.grid}",
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "num_states": game.num_states,
        "num_joint_actions": game.num_joint,
        "team_welfare": first["welfare"],
        "team_discounted_value": team.value,
        "welfare_first": first,
        "principal_alpha": plan_summary(game, paper),
        **extra,
        "seconds": time.perf_counter() - start,
    }


def stationary_reference(game, team_welfare: float) -> dict:
    """The exact welfare-first principal of ``game`` without its time limit, audited on ``game``.

    The learners do not observe time and bootstrap through the time limit, so their target is
    this stationary principal; its audit (:func:`.markov_audit.audit_principal`) is what a
    learner that reached its own target exactly would score.
    """
    import dataclasses

    from contractrl.core.markov_audit import audit_principal
    from contractrl.core.markov_solver import principal_optimum

    solution = principal_optimum(dataclasses.replace(game, horizon=None), 0.0)
    audit = audit_principal(game, solution.plan, solution.contracts, team_welfare).to_dict()
    return {"converged": bool(solution.converged), **audit}


def _table(result: dict) -> str:
    first, paper = result["welfare_first"], result["principal_alpha"]
    alpha = result["config"]["alpha"]
    rows = [
        ("welfare per episode (team optimum)", result["team_welfare"], None),
        ("payments per episode (min-pay contracts)", first["payments"], paper["payments"]),
        ("payment share of welfare", first["payment_share"], paper["payment_share"]),
        ("welfare per episode of the plan", first["welfare"], paper["welfare"]),
        (
            "follow rate, random ties (both agents)",
            first["follow_rate_random_ties"],
            paper["follow_rate_random_ties"],
        ),
        (
            "follow rate, random ties (others follow)",
            first["follow_rate_alone"],
            paper["follow_rate_alone"],
        ),
        ("SPE ratio, random ties", first["spe_ratio_random_ties"], paper["spe_ratio_random_ties"]),
        ("IC ratio, random ties", first["ic_ratio_random_ties"], paper["ic_ratio_random_ties"]),
    ]
    head = (
        f"{result['game']}: {result['num_states']} states, {result['num_joint_actions']} joint "
        f"actions, exact ({result['seconds']:.1f} s); per episode, undiscounted"
    )
    lines = [head, f"{'':44s}{'α = 0 (welfare first)':>24s}{f'α = {alpha:g}':>12s}"]
    for label, a, b in rows:
        lines.append(f"{label:44s}{a:24.4f}" + ("" if b is None else f"{b:12.4f}"))
    ref = result.get("stationary_reference")
    if ref:
        br = ref["best_response"]
        lines += [
            "the learners' own target (no time limit), audited on the timed game:",
            f"  payments per episode {ref['payments_learned']:.4f} (exact for its plan "
            f"{ref['payments_exact']:.4f}); steps underpaid {ref['underpaid_share']:.3f}",
            f"  exact best-responders follow {br['follow']['follow_rate']:.3f} (ties to the "
            f"recommendation), {br['uniform']['follow_rate']:.3f} (random ties; welfare "
            f"{br['uniform']['welfare']:.4f})",
        ]
    return "\n".join(lines)


def main(argv) -> int:
    """Run ``contractrl solve coin ARGV``; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        result = solve_coin(args)
    except ValueError as exc:
        print(f"{COMMAND}: error: {exc}", file=sys.stderr)
        return 2
    result["command"] = " ".join([COMMAND, *map(shlex.quote, argv)])
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0
