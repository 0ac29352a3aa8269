"""Lesson 09's dlopt modules: fake_device, gpu_timing, roofline, amp_lab and perf_lab.

No test asserts on measured time (the machines are shared): timings are checked for their
structure (counts, positivity, what was called), simulated devices for exact values. The CUDA
tests run only where a GPU is present.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from dlopt.grading.drivers import timer as fake_device
from dlopt.grading.drivers.loss_scale import run_loss_scale
from dlopt.kit.plotting import new_figure
from dlopt.kit.timing import Timing
from dlopt.lessons.l09_performance import amp_lab, gpu_timing, perf_lab, roofline, timeline
from dlopt_instructor import timers
from dlopt_instructor.amp import torch_update_loss_scale

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# --- fake_device ---------------------------------------------------------------------------------
def test_fake_device_launches_asynchronously_and_synchronize_waits():
    dev = fake_device.FakeDevice([2e-3, 3e-3], launch_seconds=1e-4)
    dev.kernel()
    dev.kernel()
    assert dev.clock() == pytest.approx(2e-4)  # the host only paid for two launches
    dev.synchronize()
    assert dev.clock() == pytest.approx(1e-4 + 2e-3 + 3e-3)  # kernels run back to back
    assert dev.calls == 2 and dev.syncs == 1
    with pytest.raises(RuntimeError, match="fn was called 3 times"):
        dev.kernel()


def test_a_kernel_waits_for_its_launch_when_the_queue_is_empty():
    dev = fake_device.FakeDevice([1e-6, 1e-6], launch_seconds=1e-5)
    dev.kernel()
    dev.kernel()
    dev.synchronize()
    assert dev.clock() == pytest.approx(2e-5 + 1e-6)


def _correct(fn, clock, sync, warmup=3, repeat=7):
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        sync()
        start = clock()
        fn()
        sync()
        runs.append(clock() - start)
    q1, q3 = np.percentile(runs, [25, 75])
    return {"runs": np.array(runs), "median": float(np.median(runs)), "iqr": float(q3 - q1)}


def _no_sync(fn, clock, sync, warmup=3, repeat=7):
    return _correct(fn, clock, lambda: None, warmup, repeat)


def _stop_before_sync(fn, clock, sync, warmup=3, repeat=7):
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        sync()
        start = clock()
        fn()
        runs.append(clock() - start)
        sync()
    q1, q3 = np.percentile(runs, [25, 75])
    return {"runs": np.array(runs), "median": float(np.median(runs)), "iqr": float(q3 - q1)}


def _no_warmup(fn, clock, sync, warmup=3, repeat=7):
    return _correct(fn, clock, sync, 0, repeat)


def _includes_warmup(fn, clock, sync, warmup=3, repeat=7):
    return _correct(fn, clock, sync, 0, warmup + repeat)


def _sync_only_after(fn, clock, sync, warmup=3, repeat=7):
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        start = clock()
        fn()
        sync()
        runs.append(clock() - start)
    q1, q3 = np.percentile(runs, [25, 75])
    return {"runs": np.array(runs), "median": float(np.median(runs)), "iqr": float(q3 - q1)}


def _one_stopwatch(fn, clock, sync, warmup=3, repeat=7):
    for _ in range(warmup):
        fn()
    sync()
    start = clock()
    for _ in range(repeat):
        fn()
    sync()
    runs = [(clock() - start) / repeat] * repeat
    return {"runs": np.array(runs), "median": float(np.median(runs)), "iqr": 0.0}


COSTS = np.array([40e-3, 4e-3, 2.1e-3, 2.0e-3, 2.05e-3, 1.98e-3, 2.02e-3, 9e-3, 2.01e-3, 1.99e-3])


@pytest.mark.parametrize("launch", [1e-5, 5e-3])
def test_ground_truth_is_what_a_correct_timer_measures(launch):
    truth = fake_device.run_timer(timers.ground_truth, COSTS, launch, 3, 7)
    measured = fake_device.run_timer(_correct, COSTS, launch, 3, 7)
    for key in ("runs", "median", "iqr", "calls"):
        np.testing.assert_allclose(measured[key], truth[key], rtol=1e-12)


@pytest.mark.parametrize("mistake,timer", [
    ("no_sync", _no_sync), ("no_sync", _stop_before_sync), ("no_warmup", _no_warmup),
    ("includes_warmup", _includes_warmup), ("warmup_in_first_run", _sync_only_after),
    ("one_stopwatch", _one_stopwatch)])
def test_measured_if_predicts_what_a_wrong_timer_measures(mistake, timer):
    predicted = fake_device.run_timer(timers.measured_if(mistake), COSTS, 1e-5, 3, 7)
    measured = fake_device.run_timer(timer, COSTS, 1e-5, 3, 7)
    np.testing.assert_allclose(measured["runs"], predicted["runs"], rtol=1e-12)
    assert measured["calls"] == predicted["calls"]
    truth = fake_device.run_timer(timers.ground_truth, COSTS, 1e-5, 3, 7)
    assert not np.array_equal(predicted["runs"], truth["runs"])


def test_measured_if_summaries_and_unknown_mistakes():
    truth = fake_device.run_timer(timers.ground_truth, COSTS, 1e-5, 3, 7)
    mean = fake_device.run_timer(timers.measured_if("mean"), COSTS, 1e-5, 3, 7)
    std = fake_device.run_timer(timers.measured_if("std"), COSTS, 1e-5, 3, 7)
    assert mean["median"] == pytest.approx(truth["runs"].mean()) != truth["median"]
    assert std["iqr"] == pytest.approx(truth["runs"].std()) != truth["iqr"]
    with pytest.raises(ValueError, match="unknown mistake"):
        fake_device.run_timer(timers.measured_if("oops"), COSTS, 1e-5, 3, 7)
    with pytest.raises(TypeError, match="FakeDevice.kernel"):
        timers.ground_truth(lambda: None, lambda: 0.0, lambda: None)


def test_run_timer_refuses_what_is_not_a_summary():
    with pytest.raises(ValueError, match="must return a dict with keys"):
        fake_device.run_timer(lambda fn, clock, sync, warmup, repeat: [1.0], COSTS)
    with pytest.raises(ValueError, match="with keys"):
        fake_device.run_timer(lambda fn, clock, sync, warmup, repeat: {"runs": []}, COSTS)


def test_plot_timeline_draws_launches_kernels_and_clock_readings():
    dev = fake_device.FakeDevice([1e-3] * 3, 1e-4)
    _correct(dev.kernel, dev.clock, dev.synchronize, warmup=1, repeat=2)
    fig, ax = new_figure()
    timeline.plot_timeline(ax, dev, title="t")
    assert len(ax.collections) == sum(kind != "clock" for kind, *_ in dev.log)
    assert len(ax.lines) == sum(kind == "clock" for kind, *_ in dev.log) == 4


# --- gpu_timing ----------------------------------------------------------------------------------
def test_device_sync():
    assert gpu_timing.device_sync("cpu")() is None
    with pytest.raises(ValueError, match="unknown device"):
        gpu_timing.device_sync("tpu")


def test_measure_device_warms_up_and_repeats():
    calls = []
    timing = gpu_timing.measure_device(lambda: calls.append(1), "cpu", repeat=4, warmup=2, number=3)
    assert isinstance(timing, Timing) and len(timing.runs) == 4 and len(calls) == 2 + 4 * 3
    with pytest.raises(ValueError):
        gpu_timing.measure_device(lambda: None, repeat=0)


def test_launch_vs_finish_and_first_and_rest_on_the_cpu():
    a = torch.randn(64, 64)
    launch, finish = gpu_timing.launch_vs_finish(lambda: a @ a, "cpu", calls=5)
    assert 0 < launch <= finish
    made = []

    def make():
        made.append(1)
        return lambda: a @ a

    first, rest = gpu_timing.first_and_rest(make, "cpu", repeat=3)
    assert made == [1] and first > 0 and len(rest.runs) == 3

    calls = []
    first, rest = gpu_timing.first_and_rest(lambda: lambda: calls.append(1), "cpu", repeat=3,
                                            warmup=2)
    assert len(calls) == 1 + 2 + 3 and len(rest.runs) == 3  # the warm-up calls are not timed


# --- roofline -----------------------------------------------------------------------------------
def test_trace_traffic_counts_reads_writes_and_temporaries():
    a, b, c = torch.ones(100), torch.ones(100), torch.empty(100)
    traffic = roofline.trace_traffic(lambda: torch.add(a, b, out=c), {"a": a, "b": b, "c": c})
    assert set(traffic.read) == {"a", "b"} and traffic.written == ("c",)
    assert traffic.ideal_bytes == traffic.op_bytes == 3 * 400
    traffic = roofline.trace_traffic(lambda: a.add_(b * 2), {"a": a, "b": b})
    assert set(traffic.read) == {"a", "b"} and traffic.written == ("a",)
    assert traffic.ideal_bytes == 3 * 400
    assert traffic.op_bytes == (400 + 400) + (3 * 400)  # b * 2 makes a temporary
    traffic = roofline.trace_traffic(lambda: a.view(10, 10), {"a": a})
    assert traffic.n_ops == 0 and traffic.op_bytes == 0  # a view moves nothing


def test_traced_adam_reads_four_tensors_and_writes_three():
    traffic = roofline.traced_adam_traffic(256)
    assert set(traffic.read) == {"w", "dw", "exp_avg", "exp_avg_sq"}
    assert set(traffic.written) == {"w", "exp_avg", "exp_avg_sq"}
    assert traffic.ideal_bytes == 7 * 256 * 4
    assert traffic.op_bytes >= 2 * traffic.ideal_bytes  # one operation at a time
    amsgrad = roofline.traced_adam_traffic(256, amsgrad=True, weight_decay=0.1)
    assert "max_exp_avg_sq" in amsgrad.read and "max_exp_avg_sq" in amsgrad.written


def test_traced_adam_accepts_another_optimizer_class():
    traffic = roofline.traced_adam_traffic(
        128, optimizer=functools.partial(torch.optim.Adam, foreach=True))
    assert set(traffic.read) == {"w", "dw", "exp_avg", "exp_avg_sq"}


@pytest.mark.parametrize("n,size,amsgrad,expected", [
    (10, 4, False, 280), (1_000_000, 2, False, 14_000_000), (3, 8, True, 216),
    (124_000_000, 4, False, 3_472_000_000)])
def test_torch_adam_step_bytes(n, size, amsgrad, expected):
    assert roofline.torch_adam_step_bytes(n, size, amsgrad) == expected


def test_device_measurements_return_bytes_flops_and_timings():
    nbytes, timing = roofline.copy_timing(2**20, repeat=2, warmup=1)
    assert nbytes == 2 * 2**20 and len(timing.runs) == 2 and timing.median > 0
    nbytes, timing = roofline.inplace_timing(2**20, repeat=2, warmup=1)
    assert nbytes == 2 * 2**20 and timing.median > 0
    flops, timing = roofline.matmul_timing(32, repeat=2)
    assert flops == 2 * 32**3 and timing.median > 0
    made = []

    def optimizer(params):
        made.append([p.numel() for p in params])
        return torch.optim.Adam(params)

    timing = roofline.optimizer_step_timing(optimizer, 1001, n_tensors=3, repeat=2)
    assert made == [[334, 334, 333]] and len(timing.runs) == 2


def test_plot_roofline_draws_the_roofs_and_the_points():
    fig, ax = new_figure()
    roofline.plot_roofline(ax, 100.0, 10.0, {"adam": (0.46, 4.0), "matmul": (50.0, 90.0)},
                           title="t")
    roof = ax.lines[0].get_ydata()
    assert roof.max() == pytest.approx(100.0) and roof.min() == pytest.approx(0.1, rel=1e-6)
    assert len(ax.lines) == 4  # the roofline, the balance line, two points


# --- amp_lab -----------------------------------------------------------------------------------
def test_running_sums_stall_where_the_spacing_exceeds_twice_the_term():
    assert amp_lab.running_sum(1.0, 3000, "float16") == 2048.0
    assert amp_lab.running_sum(1.0, 3000, "bfloat16") == 256.0
    assert amp_lab.running_sum(1.0, 3000, "float32") == 3000.0


def test_precision_table_and_underflow():
    table = amp_lab.precision_table()
    assert table["float16"]["max"] == 65504.0 and table["float16"]["mantissa_bits"] == 10
    assert table["bfloat16"]["mantissa_bits"] == 7
    assert table["float16"]["smallest_subnormal"] == pytest.approx(2.0**-24)
    grads = np.array([1e-9, 1e-7, 1e-3, 1.0])
    result = amp_lab.underflow_fractions(grads, scales=(1.0, 2.0**16, 2.0**20))
    assert result[("float16", 1.0)]["zero"] == 0.25  # 1e-9 < 6e-8
    assert result[("float16", 2.0**16)]["zero"] == 0.0
    assert result[("float16", 2.0**20)]["inf"] == 0.25  # 2**20 overflows float16
    assert result[("bfloat16", 1.0)]["zero"] == 0.0


@pytest.mark.parametrize("found_inf", [False, True])
def test_torch_update_loss_scale(found_inf):
    scale, tracker = torch_update_loss_scale(1024.0, 2, found_inf, growth_interval=3)
    assert (scale, tracker) == ((512.0, 0) if found_inf else (2048.0, 0))
    assert torch_update_loss_scale(1024.0, 0, False, growth_interval=3) == (1024.0, 1)


def test_run_loss_scale_records_the_trajectory_and_refuses_bad_returns():
    run = run_loss_scale(torch_update_loss_scale, [0, 0, 1], scale=8.0,
                                 growth_interval=2)
    np.testing.assert_array_equal(run["scale"], [8.0, 8.0, 16.0, 8.0])
    np.testing.assert_array_equal(run["growth_tracker"], [0, 1, 0, 0])
    with pytest.raises(ValueError, match="must return a pair"):
        run_loss_scale(lambda s, g, f: s, [0])


def test_simulated_dynamic_scaling_settles_below_the_safe_scale():
    run = amp_lab.simulate_dynamic_scaling(torch_update_loss_scale, 300, grad_max=4.0)
    assert run["scale"].shape == (301,) and run["found_inf"].shape == (300,)
    assert 0 < run["skipped"] < 0.1
    assert run["scale"][-50:].max() <= 4 * run["safe_scale"]
    fig, ax = new_figure()
    amp_lab.plot_loss_scale(ax, run, title="t")
    assert len(ax.lines) == 3


def test_autocast_timing_and_mixed_training_on_the_cpu():
    timings = amp_lab.autocast_timing("cpu", 64, repeat=1)
    assert set(timings) == {"float32", "autocast bfloat16"}
    runs = [amp_lab.train_mixed(p, epochs=2, hidden=32) for p in ("float32", "bfloat16")]
    assert all(r.train_loss.shape == (2,) and r.train_loss[1] < r.train_loss[0] for r in runs)
    np.testing.assert_allclose(runs[0].train_loss, runs[1].train_loss, rtol=0.05)
    with pytest.raises(ValueError, match="for CUDA"):
        amp_lab.train_mixed("float16", device="cpu")


# --- perf_lab -----------------------------------------------------------------------------------
def test_speedup_table_with_the_default_and_a_given_timer():
    table = perf_lab.speedup_table("elementwise", [16, 1024], repeat=1, threads=1)
    assert list(table.seconds) == ["numpy", "torch cpu"]
    assert all(v.shape == (2,) and (v > 0).all() for v in table.seconds.values())
    seen = []

    def timer(fn, clock, sync, warmup, repeat):
        seen.append((warmup, repeat))
        fn()
        return {"median": 1e-3}

    table = perf_lab.speedup_table("matmul", [4, 8], repeat=2, timer=timer)
    assert seen == [(1, 2)] * 4 and (table.seconds["numpy"] > 0).all()
    with pytest.raises(ValueError, match="op must be"):
        perf_lab.speedup_table("conv")


def test_speedup_crossover_and_plot():
    table = perf_lab.SpeedupTable("elementwise", np.array([1, 10, 100, 1000]), {
        "numpy": np.array([1.0, 2.0, 10.0, 100.0]), "torch cpu": np.array([3.0, 1.0, 12.0, 50.0])})
    assert table.crossover() == 1000
    table.seconds["torch cpu"][2] = 5.0
    assert table.crossover() == 10
    table.seconds["torch cpu"][3] = 500.0
    assert table.crossover() is None
    fig, ax = new_figure()
    perf_lab.plot_speedup(ax, table)
    assert len(ax.lines) == 2


def test_batch_size_sweep_and_its_plot():
    runs = perf_lab.batch_size_sweep([8, 64], examples=256, eval_every=128)
    assert [r.batch_size for r in runs] == [8, 64]
    for r in runs:
        np.testing.assert_array_equal(r.examples_seen, [0, 128, 256])
        assert r.examples_per_second > 0 and r.train_loss[-1] < r.train_loss[0]
    assert runs[0].train_loss[0] == runs[1].train_loss[0]  # the same initial weights
    assert runs[0].train_loss[-1] < runs[1].train_loss[-1]  # more steps per example
    fig, (ax1, ax2) = new_figure(1, 2)
    perf_lab.plot_batch_sweep(ax1, ax2, runs)
    assert len(ax1.lines) == 1 and len(ax2.lines) == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_throughput(workers):
    result = perf_lab.loader_throughput(workers, n_items=64, work_seconds=1e-4, batch_size=16)
    assert result["batches"] == 4 and result["seconds"] >= result["first_batch_seconds"] > 0


def test_slow_digits_items():
    data = perf_lab.SlowDigits(10, 0.0)
    x, y = data[3]
    assert len(data) == 10 and x.shape == (64,) and x.dtype == torch.float32 and 0 <= int(y) <= 9


# --- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
def test_cuda_timing_uses_events_and_launches_are_asynchronous():
    a = torch.randn(4096, 4096, device="cuda")
    timing = gpu_timing.measure_device(lambda: a @ a, "cuda", repeat=3, warmup=2)
    assert len(timing.runs) == 3 and timing.median > 0
    launch, finish = gpu_timing.launch_vs_finish(lambda: a @ a, "cuda", calls=10)
    assert launch < finish


@pytest.mark.gpu
@cuda
def test_cuda_bandwidth_and_optimizer_measurements():
    nbytes, timing = roofline.copy_timing(2**28, "cuda", repeat=3)
    assert nbytes == 2**29 and timing.median > 0
    timing = roofline.optimizer_step_timing(functools.partial(torch.optim.Adam, fused=True),
                                            2**24, "cuda", repeat=3)
    assert timing.median > 0


@pytest.mark.gpu
@cuda
def test_cuda_mixed_precision_and_speedup_table():
    run = amp_lab.train_mixed("float16", device="cuda", epochs=2)
    assert run.train_loss[-1] < run.train_loss[0]
    table = perf_lab.speedup_table("matmul", [64, 1024], device="cuda", repeat=2)
    assert list(table.seconds) == ["numpy", "torch cpu", "torch cuda"]
    result = perf_lab.loader_throughput(2, n_items=64, work_seconds=0.0, pin_memory=True)
    assert result["batches"] == 2


# --- the benchmarks run (their timings are not tested) -----------------------------------------
def _benchmark(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_foreach_adam_benchmark_runs_and_reports_its_ratio(capsys):
    _benchmark("foreach_adam").main(["--device", "cpu", "--d-model", "16", "--layers", "1",
                                     "--rounds", "1", "--repeat", "2", "--warmup", "1"])
    out = capsys.readouterr().out
    assert "learner's ForeachAdam / torch Adam(foreach=True):" in out and "target <= 1.3x" in out
    assert "parameters: 0.1 M in 16 tensors" in out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own internals
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_compiled_adam_benchmark_runs_and_reports_its_ratio(capsys):
    _benchmark("compiled_adam").main(["--device", "cpu", "--params", "4096", "--tensors", "2",
                                      "--repeat", "2", "--warmup", "1"])
    out = capsys.readouterr().out
    assert "of the copy's bandwidth; target >= 70%" in out
    diff = float(out.split("steps: ")[-1])
    assert diff < 1e-5  # the compiled learner's Adam still agrees with torch.optim.Adam
