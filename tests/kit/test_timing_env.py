"""dlopt.kit.timing and dlopt.kit.env."""

import time

import pytest

from dlopt.kit.env import best_device, environment_report, print_environment_report
from dlopt.kit.timing import Timing, measure


def test_measure_reports_median_and_discards_warmup():
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.002)

    timing = measure(work, repeat=5, warmup=2)
    assert len(calls) == 7 and len(timing.runs) == 5
    assert 0.0015 < timing.median < 0.05
    assert "median ± IQR of 5" in str(timing)


def test_measure_calls_sync_around_each_measurement():
    events = []
    measure(lambda: events.append("fn"), repeat=2, warmup=0, sync=lambda: events.append("sync"))
    assert events == ["sync", "fn", "sync"] * 2


def test_spread_is_the_interquartile_range():
    assert Timing((1.0, 2.0, 3.0, 4.0, 5.0)).spread == pytest.approx(2.0)
    assert Timing((1.0,)).spread == 0.0


def test_measure_rejects_bad_arguments():
    with pytest.raises(ValueError):
        measure(lambda: None, repeat=0)


def test_environment_report_names_versions_and_device(capsys):
    report = environment_report()
    assert report["device"] == best_device() == "cpu"  # CI and dev machines have no GPU
    assert report["packages"]["numpy"].startswith("2.")
    print_environment_report()
    out = capsys.readouterr().out
    assert "Compute device: cpu" in out and "torch" in out
