"""Confidence intervals of the re-evaluation, and its refusals."""

import math

import pytest

from contractrl.experiments.cli import main
from contractrl.experiments.reevaluate import estimate


def test_interval_is_student_t():
    # mean 2, sd 1, n = 3: t(0.975, 2) = 4.302653 -> half width 4.302653 / sqrt(3)
    e = estimate([1.0, 2.0, 3.0])
    assert e.mean == 2.0 and e.count == 3
    assert e.high - e.mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert e.mean - e.low == pytest.approx(e.high - e.mean)


def test_interval_drops_nan_and_degenerates_honestly():
    e = estimate([math.nan, 5.0])
    assert e.mean == 5.0 and e.count == 1 and math.isnan(e.low)
    assert math.isnan(estimate([math.nan]).mean) and estimate([]).count == 0
    assert estimate([0.7] * 4).low == pytest.approx(0.7)  # no spread, no width


def test_cli_refuses_a_directory_without_an_experiment(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
