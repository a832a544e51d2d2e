"""The ``contractrl`` command line.

Commands:
    ``solve FILE``: solve an instance file (docs/instance-format.md) for its SPE.
    ``solve coin --grid G``: the Coin Game's exact references (docs/exact-multiagent.md).
    ``example figure1|delegation|delegation-retry``: write (or solve) a built-in game.
    ``tree --depth D --seed S``: write (or solve) a random binary Tree MDP.

Exit codes: 0 success; 2 bad input (usage, malformed file); 3 no equilibrium computed (an
infinite-horizon iteration did not converge: the game may have no stationary SPE; nothing is
implementable with the nudge; the LP solver failed); ``train``'s faults (4 diverged, 5 busy,
6 disk full, 7 a worker died, 130/143 interrupted): :mod:`.failures`. Errors print one line
on stderr and nothing on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from contractrl import __version__
from contractrl.core.model import InvalidGameError, PrincipalAgentMDP
from contractrl.experiments import stop
from contractrl.experiments.failures import (
    EXIT_DIVERGED,
    ExperimentFailed,
    explain,
    interrupted_message,
)

EXIT_BAD_INPUT = 2
EXIT_NO_EQUILIBRIUM = 3
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT

EXIT_CODES_HELP = (
    "exit codes: 0 success; 2 bad input (usage, malformed or hand-changed file, a directory "
    "that holds another experiment); 3 no equilibrium computed (the iteration did not "
    "converge: an infinite-horizon game may have no stationary SPE; nothing implementable "
    "with the nudge; LP solver failure); 4 training diverged; 5 the directory is in use by "
    "another process; 6 disk full; 7 a worker process died; 130 interrupted (Ctrl-C), 143 "
    "terminated (SIGTERM). Errors: one line on stderr (docs/faults.md)."
)


class UsageError(Exception):
    """A user mistake: reported on stderr with exit code 2."""


class NoEquilibriumError(Exception):
    """The solver returned no equilibrium: reported on stderr with exit code 3."""


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _add_solve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        choices=("backward", "meta"),
        default="backward",
        help="backward induction (default) or the meta-algorithm (Algorithm 1)",
    )
    parser.add_argument(
        "--nudge",
        type=_non_negative_float,
        default=0.0,
        metavar="X",
        help="margin ξ >= 0 by which the recommended action must win (default 0)",
    )
    parser.add_argument(
        "--contract-method",
        default="auto",
        choices=("auto", "closed_form", "vertex", "lp"),
        help="min-pay contract solver (default auto; lp is the reference)",
    )
    parser.add_argument(
        "--sweep",
        default="auto",
        choices=("auto", "levels", "time"),
        help="state visiting order (default auto: one level sweep when acyclic)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (values, timing, full policy) on stdout",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=40,
        metavar="N",
        help="rows of the policy table without --json (0: all; default 40)",
    )


class _Parser(argparse.ArgumentParser):
    """An argument parser whose "unrecognized arguments" error suggests the closest flag."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            import difflib

            known = sorted(
                o for action in self._actions for o in action.option_strings if o[:2] == "--"
            )
            for word in message.split(":", 1)[1].split():
                if word.startswith("--"):
                    close = difflib.get_close_matches(word.split("=")[0], known, n=1)
                    if close:
                        message += f" (did you mean {close[0]}?)"
                        break
        super().error(message)


def _active_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The (sub)command parser that parsed ``args`` (the deepest one chosen)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _active_parser(action.choices[chosen], args)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``contractrl`` command."""
    parser = _Parser(
        prog="contractrl",
        description="Principal-agent reinforcement learning with contracts.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"contractrl {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    solve = sub.add_parser(
        "solve",
        help="solve an instance file for its subgame-perfect equilibrium",
        description="Solve a JSON/YAML instance file (format: docs/instance-format.md in the "
        "repository; examples in examples/games/). `contractrl solve coin --help`: the Coin "
        "Game's exact solution (a file named coin: ./coin).",
        epilog=EXIT_CODES_HELP,
    )
    solve.add_argument("file", type=Path, help="instance file (.json, .yaml, .yml)")
    _add_solve_options(solve)
    solve.set_defaults(handler=_cmd_solve)

    example = sub.add_parser("example", help="write or solve a built-in example game")
    example.add_argument(
        "name",
        choices=("figure1", "delegation", "delegation-retry"),
        help="which example (delegation: docs/delegation.md; -retry: retry until accepted)",
    )
    _add_generate_options(example)
    example.set_defaults(handler=_cmd_example)

    tree = sub.add_parser("tree", help="write or solve a random binary Tree MDP (paper App. D.1)")
    tree.add_argument("--depth", type=int, default=10, help="decision levels (default 10)")
    tree.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _add_generate_options(tree)
    tree.set_defaults(handler=_cmd_tree)

    train = sub.add_parser("train", help="train learners (experiments with presets)")
    train_sub = train.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    _add_train_parser(train_sub)

    plot = sub.add_parser("plot", help="draw the figures of a finished experiment directory")
    plot.add_argument("run_dir", type=Path, help="experiment directory (holds results.json)")
    plot.add_argument("--out", type=Path, help="PNG path (default RUN_DIR/<figure>.png)")
    plot.set_defaults(handler=_cmd_plot)
    render = sub.add_parser(
        "render",
        help="draw an experiment: a Coin Game episode (GIF) or its game's policy",
        description="Coin Game experiments: an animated GIF of one episode of the trained "
        "principal's plan (agents, coin, recommendations, contracts). Tree and own-game "
        "experiments: the first instance's exact SPE policy as a coloured tree (PNG) when its "
        "states form a tree; any other game (cycles included): its state graph with the first "
        "run's learned principal beside the SPE (policy-graph.png).",
    )
    render.add_argument("run_dir", type=Path, help="experiment directory")
    render.add_argument("--out", type=Path, help="output path (default: in RUN_DIR)")
    render.add_argument(
        "--seed-index", type=int, default=0, help="Coin Game: which seed's principal (default: 0)"
    )
    render.add_argument(
        "--agents",
        default="principal",
        help="Coin Game: whose episode — principal (its plan; default) or a validation phase "
        "(validation, validation_nudged: the trained agents, deviations in red)",
    )
    render.set_defaults(handler=_cmd_render)
    evaluate = sub.add_parser(
        "evaluate",
        help="re-evaluate a finished team run's validation agents with confidence intervals",
        description="Reload every seed's trained principal and validation agents of a finished "
        "`train coin`/`train marl` run and play BATCHES independent batches of EPISODES "
        "episodes each (keys no training used): per seed and phase, follow rate, SPE and IC "
        "ratios, welfare and payments with 95% t intervals over the batches, and across seeds "
        "(paper Section 5.2; docs/outputs.md). Writes RUN_DIR/reevaluation.json.",
    )
    evaluate.add_argument("run_dir", type=Path, help="experiment directory")
    evaluate.add_argument(
        "--episodes", type=int, default=500, help="episodes per batch (default 500)"
    )
    evaluate.add_argument(
        "--batches", type=int, default=10, help="independent batches per seed (default 10)"
    )
    evaluate.add_argument("--out", type=Path, help="JSON path (default RUN_DIR/reevaluation.json)")
    evaluate.set_defaults(handler=_cmd_evaluate)
    return parser


def _experiment_parser(
    train_sub, name, help, description, presets, default, cls, handler, positional=None
):
    """Add one ``train`` subcommand with the flags every experiment shares.

    An optional positional, ``--preset`` (``default``), ``--out``, ``--print-config``,
    ``--resume``, ``--no-progress``, and one flag per field of ``cls``.
    """
    from contractrl.experiments.config import add_config_flags

    parser = train_sub.add_parser(name, help=help, description=description)
    if positional is not None:
        parser.add_argument(*positional[0], **positional[1])
    parser.add_argument(
        "--preset",
        choices=sorted(presets),
        default=default,
        help=f"starting config (default: {default}); the flags' defaults below are its values"
        + (
            " before it is sized from FILE (iterations, phase_length, replay_capacity, nudge: "
            "see --print-config)"
            if default == "auto"
            else ""
        ),
    )
    parser.add_argument("--out", type=Path, help="experiment directory (required to train)")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (preset + flags) as JSON and exit",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted experiment from its checkpoints",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(parser, cls, presets[default])
    parser.set_defaults(handler=handler)


def _add_train_parser(train_sub) -> None:
    from contractrl.experiments.registry import experiments

    handlers = {
        "tree": _cmd_train_tree,
        "coin": _cmd_train_coin,
        "marl": _cmd_train_marl,
        "game": _cmd_train_game,
        "frontier": _cmd_train_frontier,
    }
    for spec in experiments().values():
        _experiment_parser(
            train_sub,
            spec.name,
            spec.summary,
            spec.description,
            spec.presets,
            spec.default_preset,
            spec.config_class,
            handlers[spec.name],
            spec.positional,
        )


def _add_generate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write the game here (.json or .yaml); default (without --solve): stdout as JSON",
    )
    parser.add_argument(
        "--solve",
        action="store_true",
        help="solve the game (prints what `solve` prints; with --out, after writing it)",
    )
    _add_solve_options(parser)


_NOT_SOLVED = {
    "budget": "did not converge within {iterations} iterations",
    "stalled": "did not converge: the fixed-point residual stopped shrinking after {iterations} "
    "iterations (the game may have no stationary SPE; see docs/theory-checks.md)",
    "cycle": "did not converge: the meta-algorithm returned to an earlier policy after "
    "{iterations} iterations (the game may have no stationary SPE; see docs/theory-checks.md)",
    "not_implementable": "no action can be implemented at some state with nudge {nudge:g} (the "
    "outcome distributions cannot separate the actions there): no equilibrium",
}


def _solve_and_print(
    game: PrincipalAgentMDP, args: argparse.Namespace, label: str | None = None
) -> None:
    from contractrl.core.lp import ContractSolverError
    from contractrl.core.report import solution_dict, solution_table
    from contractrl.core.solver import solve_spe

    try:
        solution = solve_spe(
            game,
            method=args.method,
            margin=args.nudge,
            contract_method=args.contract_method,
            sweep=args.sweep,
        )
    except ValueError as exc:  # options that cannot apply to this game, e.g. --sweep levels
        raise UsageError(f"{label}: {exc}" if label else str(exc)) from None
    except ContractSolverError as exc:
        raise NoEquilibriumError(f"{label or game.name}: {exc}") from None
    if not solution.ok:
        template = _NOT_SOLVED.get(solution.status, "no equilibrium ({status})")
        raise NoEquilibriumError(
            f"{label or game.name}: "
            + template.format(
                iterations=solution.iterations, nudge=solution.margin, status=solution.status
            )
        )
    if args.json:
        text = json.dumps(solution_dict(game, solution), separators=(",", ":"), allow_nan=False)
        sys.stdout.write(text + "\n")
    else:
        print(solution_table(game, solution, max_rows=args.max_rows))


def _emit(game: PrincipalAgentMDP, args: argparse.Namespace) -> None:
    from contractrl.core.instance import instance_dict, save_instance

    named = args.out is not None and not args.out.is_dir()  # a directory: the write says so
    if named and args.out.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise UsageError(f"--out {args.out}: expected a .json or .yaml file name")
    if args.out is not None:
        try:
            save_instance(game, args.out)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            where = (
                f" ({exc.filename})" if exc.filename and str(exc.filename) != str(args.out) else ""
            )
            raise UsageError(f"--out {args.out}: cannot write the file: {reason}{where}") from None
        print(f"wrote {game.name} ({game.num_states} states) to {args.out}", file=sys.stderr)
    if args.solve:
        _solve_and_print(game, args)
    elif args.out is None:
        text = json.dumps(instance_dict(game), separators=(",", ":"), allow_nan=False)
        sys.stdout.write(text + "\n")


def _cmd_solve(args: argparse.Namespace) -> None:
    from contractrl.core.instance import load_instance

    try:
        game = load_instance(args.file)
    except InvalidGameError as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    _solve_and_print(game, args, str(args.file))


def _cmd_example(args: argparse.Namespace) -> None:
    from contractrl.core.delegation import delegation_game
    from contractrl.core.games import figure1

    examples = {
        "figure1": figure1,
        "delegation": delegation_game,
        "delegation-retry": lambda: delegation_game(deadline=None),
    }
    _emit(examples[args.name](), args)


def _cmd_tree(args: argparse.Namespace) -> None:
    from contractrl.core.games import tree_mdp

    try:
        game = tree_mdp(args.depth, args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _emit(game, args)


def _run_experiment(args: argparse.Namespace, presets: dict, runner) -> dict:
    """Apply the preset and the flags, validate before any work, run, report user errors."""
    from contractrl.experiments.config import apply_overrides
    from contractrl.experiments.store import ExperimentExistsError

    config = apply_overrides(presets[args.preset], args)
    try:
        config.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.print_config:
        from contractrl.experiments.config import to_dict

        print(json.dumps(to_dict(config), indent=2, allow_nan=False))
        return None
    if args.out is None:
        raise UsageError("--out: required to train (an experiment directory)")
    argv = getattr(args, "argv", sys.argv[1:])
    command = "contractrl " + shlex.join(argv)
    try:
        with stop.handle_signals():
            results = runner(
                config,
                args.out,
                resume=args.resume,
                progress=not args.no_progress,
                command=command,
            )
    except ExperimentExistsError as exc:
        raise UsageError(str(exc)) from None
    except (stop.Interrupted, KeyboardInterrupt):
        _count_session(args.out)
        raise
    except Exception as exc:
        failure = explain(exc, args.out, argv)
        if failure is None:
            raise
        _count_session(args.out)
        raise failure from None
    if results is not None:
        args.exit_code = _flag_divergence(args.out, results)
    return results


def _count_session(out: Path) -> None:
    """Add this invocation's time to ``timing.json`` (best effort: the disk may be full)."""
    from contractrl.experiments.store import add_wall_time, held_lock

    if held_lock(out) is not None:
        try:
            add_wall_time(out)
        except OSError:
            pass


def _flag_divergence(out: Path, results: dict) -> int:
    """Record the runs that diverged in ``results.json``; one line each; the exit code."""
    from contractrl.experiments.store import DamagedFileError, read_json, write_json

    found = []
    for marker in sorted(Path(out).rglob("*.diverged.json")):
        try:
            info = read_json(marker)
        except (OSError, DamagedFileError):
            continue
        info["run"] = str(marker.parent.relative_to(out))
        found.append(info)
    if not found:
        return 0
    results["diverged"] = found
    write_json(Path(out) / "results.json", results)
    for info in found:
        print(
            f"contractrl train: warning: training diverged in {info['run']} at iteration "
            f"{info['iteration']} ({info['column']} = {info['value']:.3g}); its numbers in "
            "results.json are not to be trusted",
            file=sys.stderr,
        )
    return EXIT_DIVERGED


def _cmd_train_tree(args: argparse.Namespace) -> None:
    from contractrl.experiments.tree import TREE_PRESETS, run_tree

    results = _run_experiment(args, TREE_PRESETS, run_tree)
    if results is None:
        return
    m = results["mean"]
    print(
        f"principal utility ratio {m['principal_utility_ratio']:.4f} "
        f"± {m['principal_utility_ratio_se']:.4f}, accuracy {m['accuracy']:.4f}, "
        f"agent utility {m['agent_utility']:.4f} (SPE {m['spe_agent_value']:.4f}), "
        f"{m['runs']} runs in {m['wall_seconds']:.1f} s -> {args.out}/results.json"
    )


def _cmd_train_game(args: argparse.Namespace) -> None:
    from contractrl.core.instance import load_instance
    from contractrl.experiments.game import SMOKE_NOTE, auto_note, game_presets, run_game

    try:  # one clear line for a bad file, before any work; `auto` is sized from the game
        game = load_instance(args.file)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{args.file}: {exc}") from None
    presets = game_presets(game)
    sized = presets["auto"].dqn
    if args.preset == "auto" and args.iterations is not None and args.phase_length is None:
        # keep auto's number of phases: a phase longer than the run would train one network
        args.phase_length = max(1, args.iterations // (sized.iterations // sized.phase_length))
    if args.print_config and args.preset == "auto":  # the JSON on stdout, how on stderr
        from contractrl.experiments.config import apply_overrides

        print(auto_note(game, apply_overrides(presets["auto"], args)), file=sys.stderr)

    def runner(config, out, **kwargs):
        if kwargs.get("progress"):
            note = {"auto": auto_note(game, config), "smoke": SMOKE_NOTE}.get(args.preset)
            if note:
                print(note, file=sys.stderr)
        return run_game(config, args.file, out, **kwargs)

    results = _run_experiment(args, presets, runner)
    if results is None:
        return
    m = results["mean"]
    reference = results.get("reference", "spe")
    if reference is None:
        compared = (
            f"principal utility {m['principal_utility']:.4f} ± {m['principal_utility_se']:.4f} "
            "(no SPE found to compare with)"
        )
    else:
        against = "the SPE" if reference == "spe" else f"the reference {reference}"
        compared = (
            f"principal utility ratio {m['principal_utility_ratio']:.4f} "
            f"± {m['principal_utility_ratio_se']:.4f} of {against} "
            f"({m['spe_principal_value']:.4f}), accuracy {m['accuracy']:.4f}"
        )
    ci = m.get("principal_utility_ratio_ci95")
    if reference is not None and ci:
        compared += f", 95% CI over seeds [{ci[0]:.4f}, {ci[1]:.4f}] (each run exact)"
    print(f"{compared}, {m['runs']} runs in {m['wall_seconds']:.1f} s -> {args.out}/results.json")
    above = [r for r in results["instances"][0]["runs"] if r["principal_utility_ratio"] > 1 + 1e-9]
    if reference is not None and above:
        print(
            f"{len(above)} run(s) above the SPE: not subgame-perfect (deviation_gain > 0), "
            "the value of commitment (docs/own-games.md)"
        )
    _print_policy(Path(args.out) / "runs" / "instance0-seed0" / "policy.json")


def _print_policy(path: Path, max_rows: int = 40) -> None:
    """The first run's learned principal per state beside the SPE (``policy.json``)."""
    from contractrl.experiments.store import read_json
    from contractrl.learning.evaluation import format_policy_table

    if not path.exists():
        return
    rows = read_json(path)["rows"]
    print(f"learned principal of seed 0 beside the reference ({path}):")
    print(format_policy_table(rows[:max_rows]))
    if len(rows) > max_rows:
        print(f"... {len(rows) - max_rows} more rows in {path}")


def _cmd_train_coin(args: argparse.Namespace) -> None:
    from contractrl.experiments.coin import COIN_PRESETS
    from contractrl.experiments.team import run_coin

    _print_team_results(args, _run_experiment(args, COIN_PRESETS, run_coin))


def _cmd_train_marl(args: argparse.Namespace) -> None:
    from contractrl.experiments.coin import MARL_PRESETS
    from contractrl.experiments.team import run_coin

    # saved so that --resume, plot and render find the same env from any directory
    if args.env and ".py:" in args.env:
        file, _, factory = args.env.rpartition(":")
        if Path(file).is_file():
            args.env = f"{Path(file).resolve()}:{factory}"
    if args.env_kwargs:
        try:
            args.env_kwargs = json.dumps(json.loads(args.env_kwargs), sort_keys=True)
        except json.JSONDecodeError:
            pass  # validation names the field

    _print_team_results(args, _run_experiment(args, MARL_PRESETS, run_coin))


def _print_team_results(args: argparse.Namespace, results: dict | None) -> None:
    if results is None:
        return
    m = results["mean"]
    nan = float("nan")
    baselines = ", ".join(
        f"{name} {m.get(f'welfare_{name}', nan):.2f}"
        for name in ("selfish", "cooperative", "constant")
        if math.isfinite(m.get(f"welfare_{name}", nan))
    )
    print(
        f"welfare {m['welfare']:.2f} ± {m['welfare_se']:.2f} ({baselines or 'no baselines'}); "
        f"payment share {m['payment_share']:.3f}, follow rate {m['follow_rate']:.3f}, "
        f"SPE ratio {m['spe_ratio']:.3f}, IC ratio {m['ic_ratio']:.3f} (above 1: deviating "
        f"pays); {m['seeds']} seeds in {m['wall_seconds']:.0f} s -> {args.out}/results.json"
    )


def _cmd_train_frontier(args: argparse.Namespace) -> None:
    from contractrl.experiments.frontier import FRONTIER_PRESETS, run_frontier

    results = _run_experiment(args, FRONTIER_PRESETS, run_frontier)
    if results is None:
        return
    print(
        f"{len(results['points'])} points in {results['wall_seconds']:.0f} s -> "
        f"{args.out}/results.json"
    )


def _cmd_plot(args: argparse.Namespace) -> None:
    from contractrl.experiments.store import DamagedFileError, read_json

    results_path = args.run_dir / "results.json"
    manifest_path = args.run_dir / "config.json"
    in_progress = None
    try:
        if not results_path.exists():
            from contractrl.experiments.registry import experiments

            manifest = read_json(manifest_path) if manifest_path.exists() else {}
            spec = experiments().get(manifest.get("experiment"))
            if spec is None or spec.figures != "team":
                raise UsageError(
                    f"{results_path} not found: is {args.run_dir} a finished experiment?"
                )
            from contractrl.plotting.figures import in_progress_results

            in_progress = in_progress_results(manifest)
        results = in_progress or read_json(results_path)
    except DamagedFileError as exc:
        raise UsageError(
            f"{exc}: rebuild it with the experiment's train command and --resume (its runs "
            "are kept)"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {exc.filename or results_path}: {exc.strerror}") from None
    if not isinstance(results, dict) or "experiment" not in results:
        raise UsageError(f"{results_path} is not an experiment's results (no 'experiment')")
    from contractrl.plotting.figures import plot_experiment

    notes: list[str] = []
    try:
        paths = plot_experiment(args.run_dir, results, args.out, notes)
    except OSError as exc:
        where = exc.filename or args.out or args.run_dir
        raise UsageError(
            f"cannot write {where}: {exc.strerror} (pass --out to write the figure elsewhere)"
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{results_path} is not a complete results file ({exc!r})") from None
    for note in notes:
        print(f"contractrl plot: {note}", file=sys.stderr)
    for path in paths:
        print(f"wrote {path}" + (" (in progress: the evaluations so far)" if in_progress else ""))


def _cmd_render(args: argparse.Namespace) -> None:
    from contractrl.experiments.render import render
    from contractrl.experiments.store import DamagedCheckpointError

    if not (args.run_dir / "config.json").exists():
        raise UsageError(f"{args.run_dir} holds no experiment (no config.json)")
    try:
        path = render(args.run_dir, args.out, args.seed_index, args.agents)
    except (ValueError, FileNotFoundError, DamagedCheckpointError) as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {path}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from contractrl.experiments.reevaluate import format_table, reevaluate
    from contractrl.experiments.store import DamagedCheckpointError, write_json

    if not (args.run_dir / "config.json").exists():
        raise UsageError(f"{args.run_dir} holds no experiment (no config.json)")
    try:
        result = reevaluate(
            args.run_dir,
            args.episodes,
            args.batches,
            progress=lambda done: print(f"re-evaluated {done}", file=sys.stderr),
        )
    except (ValueError, FileNotFoundError, DamagedCheckpointError) as exc:
        raise UsageError(str(exc)) from None
    out = args.out or args.run_dir / "reevaluation.json"
    write_json(out, dict(result.to_dict(), command="contractrl " + " ".join(args.argv)))
    print(format_table(result))
    print(f"wrote {out}")


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Refuse abbreviated long options everywhere (``--nudg`` must not run as ``--nudge``)."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _no_abbreviations(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``contractrl`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["solve", "coin"]:
        from contractrl.experiments.solve_coin import main as solve_coin

        return solve_coin(argv[2:])
    parser = build_parser()
    _no_abbreviations(parser)
    args, extras = parser.parse_known_args(argv)
    if extras:  # reported by the subcommand that got them, with its closest flag
        _active_parser(parser, args).error(f"unrecognized arguments: {' '.join(extras)}")
    handler: Callable[[argparse.Namespace], None] = args.handler
    args.argv = argv
    try:
        handler(args)
    except UsageError as exc:
        print(f"contractrl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except NoEquilibriumError as exc:
        print(f"contractrl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_NO_EQUILIBRIUM
    except ExperimentFailed as exc:
        print(f"contractrl {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # e.g. `contractrl solve big.json --json | head`
        sys.stderr.close()
    except KeyboardInterrupt as exc:  # stop.Interrupted (SIGINT, SIGTERM) or a plain Ctrl-C
        out = getattr(args, "out", None) if args.command == "train" else None
        message = interrupted_message(exc, out, argv) if out is not None else "interrupted"
        print(f"contractrl {args.command}: {message}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)
    return getattr(args, "exit_code", 0)


if __name__ == "__main__":
    sys.exit(main())
