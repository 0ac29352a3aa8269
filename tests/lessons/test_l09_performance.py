"""Lesson 09 (performance): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded functions are the expected ones, the setup picks a
device, the misconceptions and conventions are stated, GPU cells explain themselves without a GPU
and torch.compile is opt-in on the CPU, the solutions agree with their references beyond the
scenarios (random simulated devices, torch.optim.Adam's traced traffic, torch.amp.GradScaler
itself), and the student copy's experiments say what is missing. The module tests are in
test_lesson09_modules.py.
"""

from __future__ import annotations

import functools
import re

import lesson_harness as harness
import numpy as np
import pytest
import torch

from dlopt.grading.drivers import timer
from dlopt.grading.drivers.loss_scale import run_loss_scale
from dlopt.lessons.l09_performance import roofline
from dlopt_instructor import timers

LESSON = "09_performance"
GRADED = ["time_with_warmup", "adam_step_bytes", "achieved_bandwidth", "roofline_bound",
          "update_loss_scale"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
solved, exercises = harness.solved, harness.exercises  # fixtures, for LESSON


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_setup_picks_the_device_and_its_synchronize():
    setup = harness.cell_sources(LESSON)["setup"]
    assert "device = best_device()" in setup
    assert "sync = gpu_timing.device_sync(device)" in setup


def test_misconceptions_and_conventions_are_stated():
    text = " ".join(harness.markdown(LESSON).split())
    for phrase in ("measures the **launch**, not the work", "torch.cuda.synchronize()",
                   "CUDA events", "**warm-up**", "**median**", "**interquartile range**",
                   "= 7 \\times n_\\text{params}", "28\\ \\text{bytes per parameter",
                   "`max_exp_avg_sq`", "1 GiB $= 2^{30}", "**write-allocate**",
                   "**machine balance**", "**memory-bound**", "**fusion**", "graph breaks",
                   "**loss scaling**", "`growth_interval`",
                   "**reductions accumulate in float32**", "Processes, not threads",
                   "page-locked", "critical batch size"):
        assert phrase in text, phrase


def test_gpu_cells_explain_themselves_without_a_gpu():
    cells = harness.cell_sources(LESSON)
    for grade_id in ("experiment_cuda_events", "experiment_amp", "experiment_data_loading"):
        source = cells[grade_id]
        assert 'device != "cuda"' in source or 'device == "cuda"' in source, grade_id
        assert "No GPU here" in source or "On CUDA" in source or "with CUDA" in source, grade_id
    compile_cell = cells["experiment_compile"]
    assert 'COMPILE = device == "cuda"  # knob' in compile_cell
    assert "torch.compile is off on this device" in compile_cell


def test_timing_cells_pin_the_cpu_threads():
    cells = harness.cell_sources(LESSON)
    assert "CPU_THREADS = 1  # knob" in cells["setup"]
    for grade_id in ("experiment_timer_at_work", "experiment_cuda_events", "experiment_crossover",
                     "experiment_adam_bandwidth", "experiment_roofline", "experiment_amp",
                     "experiment_batch_size"):
        assert "CPU_THREADS" in cells[grade_id], grade_id


# --- the solutions beyond the scenarios ----------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_time_with_warmup_measures_the_truth_on_random_devices(solved, seed):
    rng = np.random.default_rng(seed)
    warmup, repeat = int(rng.integers(0, 5)), int(rng.integers(1, 12))
    costs = rng.lognormal(np.log(1e-3), 0.5, size=warmup + repeat)
    costs[0] *= 20
    launch = float(rng.uniform(1e-6, 1e-4))
    got = timer.run_timer(solved["time_with_warmup"], costs, launch, warmup, repeat)
    want = timer.run_timer(timers.ground_truth, costs, launch, warmup, repeat)
    np.testing.assert_allclose(got["runs"], want["runs"], rtol=1e-12)
    assert got["calls"] == warmup + repeat
    assert got["median"] == pytest.approx(np.median(want["runs"]))


def test_time_with_warmup_synchronizes_around_every_run(solved):
    device = timer.FakeDevice([1e-3] * 8, 1e-5)
    solved["time_with_warmup"](device.kernel, device.clock, device.synchronize, warmup=2, repeat=6)
    reads = [i for i, (kind, *_) in enumerate(device.log) if kind == "clock"]
    assert len(reads) == 12
    for i in reads:  # the device's queue is empty at every clock reading
        assert device.log[i - 1][0] == "sync" or device.log[i - 1][0] == "clock"


def test_time_with_warmup_on_the_real_clock(solved):
    import time

    x = torch.randn(10_000)
    out = solved["time_with_warmup"](lambda: torch.sort(x), time.perf_counter, lambda: None,
                                     warmup=1, repeat=5)
    assert out["runs"].shape == (5,) and (out["runs"] > 0).all()
    assert out["iqr"] >= 0 and out["runs"].min() <= out["median"] <= out["runs"].max()


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_step_bytes_matches_the_traced_adam_and_adamw(solved, dtype, amsgrad):
    n = 1000
    size = torch.finfo(dtype).bits // 8
    want = solved["adam_step_bytes"](n, size, amsgrad)
    for optimizer in (None, functools.partial(torch.optim.AdamW, foreach=False)):
        traffic = roofline.traced_adam_traffic(n, dtype=dtype, amsgrad=amsgrad, optimizer=optimizer)
        assert traffic.ideal_bytes == want
        assert traffic.op_bytes > traffic.ideal_bytes  # unfused: more passes than one


def test_achieved_bandwidth_and_roofline_bound_on_random_inputs(solved):
    rng = np.random.default_rng(9)
    b, t = rng.uniform(1e3, 1e11, size=(3, 4)), rng.uniform(1e-6, 1.0, size=(3, 4))
    np.testing.assert_allclose(solved["achieved_bandwidth"](b, t), b / t / 1e9, rtol=1e-12)
    for _ in range(20):
        flops, nbytes, peak, bw = rng.uniform(1e3, 1e12, size=4)
        out = solved["roofline_bound"](flops, nbytes, peak, bw)
        assert out["attainable_gflops"] <= peak * (1 + 1e-12)
        assert out["attainable_gflops"] <= flops / nbytes * bw * (1 + 1e-12)
        assert (out["bound"] == "memory") == (flops / nbytes < peak / bw)


def test_update_loss_scale_follows_torch_grad_scaler(solved):
    """The learner's rule against torch.amp.GradScaler driving a real model, infs injected."""
    flags = np.random.default_rng(5).random(60) < 0.15
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_factor=3.0,
                                  backoff_factor=0.25, growth_interval=4)
    scales = [scaler.get_scale()]
    for flag in flags:
        opt.zero_grad()
        loss = (w * (float("inf") if flag else 1.0)).sum()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    mine = run_loss_scale(solved["update_loss_scale"], flags, scale=1024.0,
                                  growth_factor=3.0, backoff_factor=0.25, growth_interval=4)
    np.testing.assert_allclose(mine["scale"], scales, rtol=1e-6)


# --- the student copy ----------------------------------------------------------------------------
def test_student_copy_experiments_say_what_is_missing():
    run = harness.run_student_copy(LESSON, experiments=True, quiet_warnings=True)
    for grade_id, function in [("experiment_timer_at_work", "time_with_warmup"),
                               ("experiment_cuda_events", "time_with_warmup"),
                               ("experiment_crossover", "time_with_warmup"),
                               ("experiment_adam_bandwidth", "adam_step_bytes"),
                               ("experiment_roofline", "roofline_bound"),
                               ("experiment_amp", "update_loss_scale")]:
        assert f"implement `{function}` first" in run.printed[grade_id], grade_id
    assert "torch.compile is off" in run.printed["experiment_compile"]


# --- the executed notebook ------------------------------------------------------------------------
@pytest.mark.slow
def test_solved_notebook_prints_its_measurements_and_draws_its_figures():
    nb = harness.executed_solution(LESSON)
    text = harness.printed_text(nb)
    for phrase in ("naive timer: 0.50 ms for 5 kernels; with synchronize: 10.10 ms",
                   "one pass needs 28", "of the best reference", "balance", "examples/s",
                   "num_workers"):
        assert phrase in text, phrase
    assert re.search(r"float16 +2048\n", text) and re.search(r"bfloat16 +256\n", text)
    # md_amp_experiments: "both precisions reached the same test accuracy, 97 %"
    for precision in ("float32", "bfloat16"):
        assert re.search(precision + r" +loss per epoch .*test accuracy 0\.97\d", text), precision
    harness.assert_draws_a_figure(nb, "experiment_async_timeline", "experiment_timer_at_work",
                                  "experiment_crossover", "experiment_roofline",
                                  "experiment_batch_size")


# --- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
def test_time_with_warmup_waits_for_cuda(solved):
    import time

    a = torch.randn(4096, 4096, device="cuda")
    synced = solved["time_with_warmup"](lambda: a @ a, time.perf_counter, torch.cuda.synchronize,
                                        warmup=2, repeat=5)
    unsynced = solved["time_with_warmup"](lambda: a @ a, time.perf_counter, lambda: None,
                                          warmup=2, repeat=5)
    torch.cuda.synchronize()
    assert synced["median"] > 3 * unsynced["median"]


def test_precision_and_throughput_statements_hold():
    """md_precision, md_crossover, md_amp_experiments: the numbers quoted agree with IEEE rounding
    (ties to even) and with their own arithmetic."""
    text = " ".join(harness.markdown(LESSON).split())
    half = torch.float16
    tiny = 2.0**-24  # float16's smallest subnormal
    assert torch.tensor(tiny / 2, dtype=half).item() == 0.0  # a tie, rounded to even: 0
    assert torch.tensor(2.97e-8, dtype=half).item() == 0.0
    assert torch.tensor(2.99e-8, dtype=half).item() == tiny  # above half the subnormal: kept
    assert "about $3\\cdot10^{-8}$, rounds to 0" in text
    s = torch.tensor(2048.0, dtype=half)
    assert (s + torch.tensor(1.0, dtype=half)).item() == 2048.0  # 2049 is a tie: back to 2048
    s = torch.tensor(256.0, dtype=torch.bfloat16)
    assert (s + torch.tensor(1.0, dtype=torch.bfloat16)).item() == 256.0
    assert "ties round to the neighbour with an even mantissa" in text
    # a * b + c in float32: 2 flops, 3 reads and 1 write of 4 bytes each
    assert 2 / (4 * 4) == 0.125 and "0.125 flop per byte" in text and "moves 16 bytes" in text
    # 2 * 1024^3 flops at the 51.7 TFLOP/s quoted for an H100 in float32
    assert round(2 * 1024**3 / 1e9, 1) == 2.1 and round(2 * 1024**3 / 51.7e12 * 1e6) == 42
    assert "2.1$ GFLOP, about 41 µs at the 51.7 TFLOP/s" in text
    assert "PCIe Gen5" in text and "25 GB/s" not in text
    assert "2.1 and 2.6 times faster than eager in two runs" in text
