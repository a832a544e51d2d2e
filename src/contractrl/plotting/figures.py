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


def read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """Columns of a CSV file as float arrays (empty cells are NaN; no rows: ``{}``).

    Rows cut short (a crash in the middle of a write) are left out.

    Raises:
        ValueError: the file is not a CSV of numbers (the message names it).
        OSError: it cannot be read (``FileNotFoundError``: it does not exist).
    """
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if None not in r and None not in r.values()]
        if not rows:
            return {}
        columns = {
            k: np.array([float(r[k]) if r[k] != "" else np.nan for r in rows]) for k in rows[0]
        }
    except (csv.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path} is damaged ({exc})") from None
    if "iteration" not in columns:
        raise ValueError(f"{path} is damaged (no 'iteration' column)")
    return columns


def read_run_metrics(run_dir: Path) -> dict[str, np.ndarray]:
    """Columns of ``run_dir/metrics.csv`` as float arrays."""
    return read_csv_columns(run_dir / "metrics.csv")


def _read_runs(paths: list[Path], notes: list[str] | None) -> list[dict[str, np.ndarray]]:
    """The CSVs of ``paths`` that can be read; a note for each that is missing or damaged."""
    runs = []
    for path in paths:
        try:
            data = read_csv_columns(path)
        except FileNotFoundError:
            data, why = {}, f"{path} is missing"
        except (OSError, ValueError) as exc:
            data, why = {}, str(exc)
        else:
            why = f"{path} has no rows"
        if data:
            runs.append(data)
        elif notes is not None:
            notes.append(f"{why}: left out of the figure")
    return runs


def align_by_iteration(
    runs: list[dict[str, np.ndarray]], key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Runs' ``key`` on one axis of iterations: ``(x [N], values [runs, N])``.

    ``x`` is every iteration any run evaluated at; a run without a row at an iteration has NaN
    there (so runs are averaged iteration by iteration, never row by row).
    """
    x = np.unique(np.concatenate([r["iteration"] for r in runs]))
    stack = np.full((len(runs), len(x)), np.nan)
    for i, r in enumerate(runs):
        if key in r:
            stack[i, np.searchsorted(x, r["iteration"])] = r[key]
    return x, stack


def mean_spread(stack: np.ndarray, shade: str = "se") -> tuple[np.ndarray, ...]:
    """Per iteration over the runs that have a value: ``(mean, low, high)``.

    ``shade``: ``se`` (mean ± standard error) or ``minmax``.
    """
    import warnings

    count = np.sum(~np.isnan(stack), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an iteration no run has: NaN
        mean = np.nanmean(stack, axis=0)
        if shade == "se":
            spread = np.where(count > 1, np.nanstd(stack, axis=0, ddof=1), 0.0)
            half = spread / np.sqrt(np.maximum(count, 1))
            return mean, mean - half, mean + half
        return mean, np.nanmin(stack, axis=0), np.nanmax(stack, axis=0)


def _note_gaps(names: list[str], runs: list[dict[str, np.ndarray]], notes) -> None:
    """A note for each run lacking rows at iterations other runs have."""
    if notes is None or not runs:
        return
    every = np.unique(np.concatenate([r["iteration"] for r in runs]))
    for name, r in zip(names, runs, strict=True):
        lacking = np.setdiff1d(every, r["iteration"])
        if lacking.size:
            shown = ", ".join(f"{int(i):,}" for i in lacking[:5])
            more = f" and {lacking.size - 5} more" if lacking.size > 5 else ""
            notes.append(
                f"{name} lacks rows at iterations {shown}{more}: averaged without it there"
            )


def plot_tree(
    exp_dir: Path, results: dict[str, Any], out: Path | None = None, notes: list[str] | None = None
) -> Path:
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
        paths = [
            exp_dir / "runs" / f"instance{inst['index']}-seed{r['seed']}" / "metrics.csv"
            for r in inst["runs"]
        ]
        runs = _read_named(exp_dir, paths, notes)
        if not runs:
            continue
        for ax, (key, label, spe_key) in zip(axes, panels, strict=True):
            x, stack = align_by_iteration(runs, key)
            mean, low, high = mean_spread(stack)
            ax.plot(x, mean, color=colour, label=f"instance {inst['index']}", marker="o", ms=3)
            ax.fill_between(x, low, high, color=colour, alpha=0.25, linewidth=0)
            if spe_key is not None and inst.get(spe_key) is not None:  # None: no SPE found
                ax.axhline(inst[spe_key], color=colour, linestyle="--", linewidth=1)
            ax.set_title(label)
            ax.set_xlabel("iteration")
    axes[2].set_ylim(0, 1.02)
    axes[0].legend(loc="lower right", fontsize=8)
    mean = results["mean"]
    dqn = results["config"]["dqn"]
    nudge = "auto" if dqn["auto_nudge"] else f"{dqn['nudge']:g}"
    if results.get("experiment") == "game":
        title = f"{Path(str(results.get('instance', 'game'))).name}"
        default_name = "learning.png"
    else:
        title = f"Tree MDP depth {results['config']['depth']}"
        default_name = "figure3.png"
    fig.suptitle(
        f"{title}: {mean['runs']} runs, nudge {nudge} — "
        f"principal utility {mean['principal_utility_ratio']:.3f} of the SPE, "
        f"accuracy {mean['accuracy']:.3f} (dashed: SPE)",
        fontsize=11,
    )
    fig.tight_layout()
    path = Path(out) if out is not None else exp_dir / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _read_named(exp_dir: Path, paths: list[Path], notes: list[str] | None):
    """The readable CSVs of ``paths``; notes for the missing, damaged and gapped ones."""
    runs, names = [], []
    for path in paths:
        got = _read_runs([path], notes)
        if got:
            runs += got
            names.append(str(path.relative_to(exp_dir)))
    _note_gaps(names, runs, notes)
    return runs


def _phase_curves(exp_dir: Path, seeds: int, phase: str, notes: list[str] | None = None):
    """The seeds' CSVs of ``phase`` that exist (a note for each damaged one)."""
    paths = [exp_dir / "runs" / f"seed{k}" / f"{phase}.csv" for k in range(seeds)]
    return _read_named(exp_dir, [p for p in paths if p.exists()], notes)


def plot_coin(
    exp_dir: Path, results: dict[str, Any], out: Path | None = None, notes: list[str] | None = None
) -> Path:
    """Paper Figures 2 (7x7) and 4 (3x3): the six metrics of Section 5.2 against iterations.

    Any team experiment (``coin``, ``marl``) draws the same panels.

    (a) welfare of the validation agents and of the baselines, (b) the nudged variants,
    (c) payments as a share of welfare, (d) follow rate, (e) SPE ratio, (f) IC ratio. Shading:
    standard error over seeds for (a)-(d), min-max for the ratios.
    """
    plt = _figure()
    config = results["config"]
    seeds = results["mean"]["seeds"]
    schemes = results.get("constant_schemes", ["top_up"])  # older results: top-up only
    first, *others = schemes
    baselines = config.get("baselines", ())
    transfers = []  # the transfer baselines (contractrl.envs.transfers), where trained
    if "formal" in baselines:
        for theta in config.get("formal_thetas", ()):
            transfers.append((f"formal_{float(theta):g}", f"formal contract, θ = {theta:g}"))
    if "gifting" in baselines:
        transfers.append(("gifting", f"gifting ({config.get('gift_amount', '?')} per gift)"))
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    panels = [
        (
            axes[0, 0],
            "(a) social welfare",
            "welfare",
            [
                ("validation", "contracts (validation agents)"),
                ("selfish", "selfish"),
                ("cooperative", "cooperative"),
                ("constant", f"constant proportion, {first} (budget-matched)"),
                *[(f"constant_{o}", f"constant proportion, {o} (budget-matched)") for o in others],
                ("principal", "principal's plan (training)"),
                *transfers,
            ],
            "se",
        ),
        (
            axes[0, 1],
            "(b) welfare, nudged variants",
            "welfare",
            [
                ("validation_nudged", "contracts + nudge"),
                ("constant_nudged", f"constant, {first} + same extra budget"),
                *[(f"constant_{o}_nudged", f"constant, {o} + same extra budget") for o in others],
                ("cooperative", "cooperative"),
            ],
            "se",
        ),
        (
            axes[0, 2],
            "(c) payments / welfare",
            "payment_share",
            [("validation", "contracts"), ("validation_nudged", "contracts + nudge")],
            "se",
        ),
        (
            axes[1, 0],
            "(d) recommendations followed",
            "follow_rate",
            [("validation", "validation agents"), ("validation_nudged", "nudged")],
            "se",
        ),
        (
            axes[1, 1],
            "(e) SPE ratio",
            "spe_ratio",
            [("validation", "validation agents"), ("validation_nudged", "nudged")],
            "minmax",
        ),
        (
            axes[1, 2],
            "(f) IC ratio",
            "ic_ratio",
            [("validation", "validation agents"), ("validation_nudged", "nudged")],
            "minmax",
        ),
    ]
    noted: set[str] = set()
    for ax, title, key, lines, shade in panels:
        for phase, label in lines:
            first_time = phase not in noted
            noted.add(phase)
            runs = _phase_curves(exp_dir, seeds, phase, notes if first_time else None)
            runs = [r for r in runs if key in r]
            if not runs:
                continue
            x, stack = align_by_iteration(runs, key)
            mean, low, high = mean_spread(stack, "se" if shade == "se" else "minmax")
            line = ax.plot(
                x,
                mean,
                label=label,
                linestyle=":"
                if phase == "principal"
                else "--"
                if (phase, label) in transfers
                else "-",
                marker="o",  # a run with one evaluation is a point, not an invisible line
                markersize=3,
            )[0]
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(title)
        ax.set_xlabel("iteration (of each phase)")
        if key in ("spe_ratio", "ic_ratio"):
            ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        exact = results.get("exact") or {}
        if key == "welfare" and exact.get("team_welfare") is not None:
            ax.axhline(exact["team_welfare"], color="black", linestyle="-.", linewidth=1)
            ax.plot([], [], color="black", linestyle="-.", label="exact team optimum")
        if key == "payment_share" and exact.get("payment_share") is not None:
            ax.axhline(exact["payment_share"], color="black", linestyle="-.", linewidth=1)
            ax.plot([], [], color="black", linestyle="-.", label="exact min-pay contracts")
        if ax.get_legend_handles_labels()[0]:  # a run in progress may have no curve here yet
            ax.legend(fontsize=8)
    game = config.get("game")
    m = results["mean"]
    if game is not None:
        where = (
            f"Coin Game {game['grid_size']}x{game['grid_size']}, {game['num_agents']} agents, "
            f"tie rule {game.get('tie_rule', '?')}"
        )
    else:  # train marl: any environment
        where = f"{config.get('env', '?')} {config.get('env_kwargs', '') or ''}".strip()
    if results.get("in_progress"):
        summary = "in progress: the evaluations so far"
    else:
        summary = (
            f"welfare {_number(m.get('welfare'))} vs cooperative "
            f"{_number(m.get('welfare_cooperative'))}, selfish "
            f"{_number(m.get('welfare_selfish'))}, constant {_number(m.get('welfare_constant'))}"
        )
    fig.suptitle(
        f"{where}, α = {config['dqn'].get('alpha', '?')}, "
        f"{m['iterations_per_phase']:,} iterations per phase, {seeds} seeds\n{summary}",
        fontsize=11,
    )
    fig.tight_layout()
    if game is None:
        name = "marl.png"
    else:
        name = {3: "figure4.png", 7: "figure2.png"}.get(game["grid_size"], "coin.png")
    path = Path(out) if out is not None else exp_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_frontier(
    exp_dir: Path, results: dict[str, Any], out: Path | None = None, notes: list[str] | None = None
) -> Path:
    """The budget frontier: welfare against the amount paid per episode.

    Contracts (one line per nudge, points along ``α``) and constant-proportion sharing (one
    line per scheme, points along ``p``).

    Error bars: standard error over seeds on both axes.
    """
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    series: dict[str, list[dict]] = {}
    for point in results["points"]:
        if point["kind"] == "contracts":
            label = f"contracts, nudge {point['nudge_share']:g} of welfare (points: α)"
        else:
            label = f"constant proportion, {point['scheme']} (points: p)"
        series.setdefault(label, []).append(point)
    for label, points in sorted(series.items()):
        points = sorted(points, key=lambda p: p["payments"])
        marker = "o" if points[0]["kind"] == "contracts" else "s"
        bars = ax.errorbar(
            [p["payments"] for p in points],
            [p["welfare"] for p in points],
            xerr=[p["payments_se"] for p in points],
            yerr=[p["welfare_se"] for p in points],
            marker=marker,
            capsize=3,
            label=label,
            linestyle="-" if marker == "o" else "--",
        )
        for p in points:
            tag = f"α={p['alpha']:g}" if p["kind"] == "contracts" else f"p={p['share']:g}"
            ax.annotate(
                tag,
                (p["payments"], p["welfare"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color=bars[0].get_color(),
            )
    game = results["config"]["game"]
    ax.set_xlabel("amount paid per episode (contracts: payments; sharing: transfers)")
    ax.set_ylabel("social welfare per episode")
    ax.set_title(
        f"Coin Game {game['grid_size']}x{game['grid_size']} ({game['tie_rule']}): budget "
        f"frontier, {results['iterations_per_phase']:,} iterations per phase"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out) if out is not None else exp_dir / "frontier.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _seed_value(results: dict[str, Any], key: str) -> list[float]:
    return [r[key] for r in results.get("seeds", []) if r.get(key) is not None]


def plot_transfers(exp_dir: Path, results: dict[str, Any], out: Path | None = None) -> Path:
    """Welfare against the amount transferred, and who does the work (docs/cleanup.md).

    (a) each seed's final welfare against what changed hands per episode: the principal's
    contracts (validation agents, with and without the nudge), constant-proportion sharing,
    the formal-contract sweep and gifting, with the selfish and cooperative baselines as
    horizontal lines and the exact optimum and min-pay contracts where known. (b) the
    environment's contract measure per episode (e.g. waste cleaned) of each phase, split into
    the agent that did most of it and the rest (the division of labour).
    """
    plt = _figure()
    config = results["config"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 5.5))
    groups = [
        ("contracts", "welfare", "payments"),
        ("contracts + nudge", "welfare_nudged", "payments_nudged"),
    ]
    for scheme in results.get("constant_schemes", []):
        name = "constant" if scheme == results["constant_schemes"][0] else f"constant_{scheme}"
        groups.append((f"constant, {scheme}", f"welfare_{name}", f"{name}_payments"))
        groups.append(
            (f"constant, {scheme} + nudge", f"welfare_{name}_nudged", f"{name}_nudged_payments")
        )
    for theta in config.get("formal_thetas", ()) if "formal" in config.get("baselines", ()) else ():
        name = f"formal_{float(theta):g}"
        groups.append((f"formal contract θ = {theta:g}", f"welfare_{name}", f"{name}_payments"))
    if "gifting" in config.get("baselines", ()):
        groups.append(("gifting", "welfare_gifting", "gifting_payments"))
    for label, wkey, pkey in groups:
        pairs = [
            (r[pkey], r[wkey])
            for r in results.get("seeds", [])
            if r.get(pkey) is not None and r.get(wkey) is not None
        ]
        if pairs:
            xs, ys = zip(*pairs, strict=True)
            ax.scatter(xs, ys, label=label, s=30, alpha=0.8)
    for key, label, style in (
        ("welfare_selfish", "selfish", ":"),
        ("welfare_cooperative", "cooperative", "--"),
    ):
        values = _seed_value(results, key)
        if values:
            ax.axhline(
                float(np.mean(values)), color="grey", linestyle=style, label=f"{label} (mean)"
            )
    exact = results.get("exact") or {}
    if exact.get("team_welfare") is not None:
        ax.axhline(exact["team_welfare"], color="black", linestyle="-.", label="exact team optimum")
        if exact.get("payments") is not None:
            ax.scatter(
                [exact["payments"]],
                [exact["team_welfare"]],
                marker="*",
                s=160,
                color="black",
                label="exact min-pay contracts",
            )
    ax.set_xlabel("amount paid or transferred per episode")
    ax.set_ylabel("welfare per episode")
    ax.set_title("(a) welfare against the amount that changed hands (per seed)")
    ax.legend(fontsize=7)
    measures = results.get("measures", {}).get("per_seed", {})
    present = [m for s in measures.values() for p in s.values() for m in p]
    # the contract measure named in the config, else the envs' known ones, else the first
    wanted = [config.get("formal_measure") or "", "waste_cleaned", "lever_pulls"]
    measure = next((m for m in wanted if m and m in present), present[0] if present else None)

    if measure is not None:
        phases = sorted({p for s in measures.values() for p in s if measure in s[p]})
        tops, rests = [], []
        for phase in phases:
            values = [
                sorted(s[phase][measure], reverse=True) for s in measures.values() if phase in s
            ]
            tops.append(float(np.mean([v[0] for v in values])))
            rests.append(float(np.mean([sum(v[1:]) for v in values])))
        where = np.arange(len(phases))
        bx.bar(where, tops, label="the agent that did most")
        bx.bar(where, rests, bottom=tops, label="the others")
        bx.set_xticks(where, phases, rotation=60, ha="right", fontsize=7)
        bx.set_ylabel(f"{measure} per episode (mean over seeds)")
        bx.legend(fontsize=8)
    bx.set_title("(b) who does the work")
    m = results["mean"]
    fig.suptitle(
        f"{config.get('env', '?')} {config.get('env_kwargs', '')}: {m['seeds']} seeds, "
        f"{m['iterations_per_phase']:,} iterations per phase",
        fontsize=11,
    )
    fig.tight_layout()
    path = Path(out) if out is not None else exp_dir / "transfers.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _number(value) -> str:
    """``value`` with two decimals, or ``-`` where there is none."""
    return "-" if value is None or not np.isfinite(value) else f"{value:.2f}"


def in_progress_results(manifest: dict[str, Any]) -> dict[str, Any]:
    """What :func:`plot_coin` reads, for a team experiment without ``results.json`` yet.

    Built from its ``config.json`` manifest; the curves come from the metrics written so far.
    """
    config = manifest["config"]
    return {
        "experiment": manifest.get("experiment"),
        "config": config,
        "constant_schemes": list(config.get("constant_schemes", ["redistribute"])),
        "mean": {"seeds": config["seeds"], "iterations_per_phase": config["dqn"]["iterations"]},
        "in_progress": True,
    }


#: The figures of each kind an experiment names (:mod:`contractrl.experiments.registry`).
PLOTTERS = {"tree": plot_tree, "team": plot_coin, "frontier": plot_frontier}


def plot_experiment(
    exp_dir: Path, results: dict[str, Any], out: Path | None = None, notes: list[str] | None = None
) -> list[Path]:
    """Draw every figure of an experiment; returns the written paths.

    ``notes`` receives one line per run left out of a figure or lacking rows.
    """
    from contractrl.experiments.registry import experiments

    spec = experiments().get(results.get("experiment"))
    if spec is None:
        raise ValueError(f"results.json: unknown experiment {results.get('experiment')!r}")
    paths = [PLOTTERS[spec.figures](Path(exp_dir), results, out, notes=notes)]
    baselines = results.get("config", {}).get("baselines", ())
    if spec.figures == "team" and out is None and not results.get("in_progress"):
        if {"formal", "gifting"} & set(baselines) or results.get("measures"):
            paths.append(plot_transfers(Path(exp_dir), results))
    return paths
