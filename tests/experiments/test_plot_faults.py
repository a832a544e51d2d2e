"""`plot` under faults: curves aligned by iteration, gaps named, damaged inputs one line."""

import numpy as np
import pytest

from contractrl.experiments.cli import main
from contractrl.experiments.store import MetricsLog, write_json
from contractrl.plotting.figures import align_by_iteration, mean_spread

COLUMNS = ["iteration", "principal_utility", "agent_utility", "accuracy"]


def test_runs_with_unequal_rows_are_averaged_at_each_iteration():
    full = {"iteration": np.array([5.0, 10, 15, 20]), "v": np.array([1.0, 2, 3, 4])}
    gappy = {"iteration": np.array([5.0, 20]), "v": np.array([3.0, 8])}  # rows 10, 15 lost
    x, stack = align_by_iteration([full, gappy], "v")
    assert x.tolist() == [5, 10, 15, 20]
    mean, low, high = mean_spread(stack)
    # row position would pair gappy's 8 (iteration 20) with full's 2 (iteration 10)
    assert mean.tolist() == [2.0, 2.0, 3.0, 6.0]
    assert low[1] == high[1] == 2.0  # one run there: no spread
    assert mean_spread(stack, "minmax")[2].tolist() == [3.0, 2.0, 3.0, 8.0]


def _tree_experiment(out, rows):
    runs = []
    for seed, iterations in enumerate(rows):
        log = MetricsLog(out / "runs" / f"instance0-seed{seed}" / "metrics.csv", COLUMNS)
        for i in iterations:
            log.append(
                {"iteration": i, "principal_utility": 1.0, "agent_utility": 0.5, "accuracy": 0.9}
            )
        runs.append({"seed": seed})
    mean = {"runs": len(rows), "principal_utility_ratio": 1.0, "accuracy": 0.9}
    results = {
        "experiment": "tree",
        "config": {"depth": 2, "dqn": {"auto_nudge": False, "nudge": 0.01}},
        "mean": mean,
        "instances": [
            {"index": 0, "runs": runs, "spe_principal_value": 1.0, "spe_agent_value": 0.5}
        ],
    }
    write_json(out / "results.json", results)


def test_plot_names_runs_lacking_rows_and_missing_files(tmp_path, capsys):
    _tree_experiment(tmp_path, [[5, 10, 15], [5, 15], [5, 10, 15]])
    (tmp_path / "runs" / "instance0-seed2" / "metrics.csv").unlink()
    assert main(["plot", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "instance0-seed1/metrics.csv lacks rows at iterations 10: averaged without it" in err
    assert "instance0-seed2/metrics.csv is missing: left out of the figure" in err
    assert (tmp_path / "figure3.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_text("{garbage"), "is damaged (not JSON"),
        (
            lambda p: p.write_text(p.read_text().replace('"accuracy": 0.9', '"accuracy": 0.1')),
            "was changed after contractrl wrote it",
        ),
        (lambda p: p.write_text("[1, 2]"), "is not an experiment's results"),
    ],
)
def test_plot_on_a_damaged_results_file_is_one_line(tmp_path, capsys, damage, message):
    _tree_experiment(tmp_path, [[5, 10]])
    damage(tmp_path / "results.json")
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_plot_to_an_unwritable_place_is_one_line(tmp_path, capsys):
    _tree_experiment(tmp_path, [[5, 10]])
    (tmp_path / "file").write_text("")
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "file" / "fig.png")]) == 2
    assert "cannot write" in capsys.readouterr().err
