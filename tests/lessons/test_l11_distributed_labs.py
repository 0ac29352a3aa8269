"""Lesson 11's dlopt modules and instructor references, with the lesson's functions written here.

dlopt holds no all-reduce, sharding or memory count of its own: these tests bring them
(``ring_allreduce`` ... ``zero_memory_per_rank`` below, the lesson's interface), plus stubs.
The references of ``dlopt_instructor.distributed`` are checked against torch called directly:
a real gloo all-reduce in 3 processes, ``DistributedSampler``, autograd, the bytes of
``torch.optim.Adam``'s state. The launcher is tested where it succeeds and where it must fail
without hanging (a child that raises, a child that never ends, no usable network interface).
No test asserts on a measured time (the machine is shared).
"""

from __future__ import annotations

import functools
import math
import os
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from dlopt.grading import Case, call
from dlopt.grading.drivers.allreduce import UnusableRingResult, ring_outputs
from dlopt.kit import plotting
from dlopt.kit.data import load_digits_split
from dlopt.lessons.l11_distributed import (
    ddp_lab,
    distributed_plots,
    gil_lab,
    launch,
    losses,
    parallel_lab,
)
from dlopt_instructor import distributed as ref

gloo = pytest.mark.skipif(launch.gloo_problem() is not None,
                          reason=f"gloo cannot start here: {launch.gloo_problem()}")


# --- the lesson's functions, written here ------------------------------------------------------
def ring_allreduce(xs):
    k = len(xs)
    buf = [np.array(x, dtype=float) for x in xs]
    chunks = np.array_split(np.arange(buf[0].size), k)
    sent = [0] * k
    for first, add in ((0, True), (1, False)):
        for s in range(k - 1):
            msgs = [(r, chunks[(r + first - s) % k], buf[r][chunks[(r + first - s) % k]].copy())
                    for r in range(k)]
            for r, idx, data in msgs:
                if add:
                    buf[(r + 1) % k][idx] += data
                else:
                    buf[(r + 1) % k][idx] = data
                sent[r] += idx.size
    return buf, sent


def allreduce_time(n_bytes, k, latency, bandwidth):
    return 2 * (k - 1) * latency + 2 * (k - 1) / k * n_bytes / bandwidth


def shard_indices(n, rank, world_size):
    if not 0 <= rank < world_size:
        raise ValueError(rank)
    return np.resize(np.arange(n), math.ceil(n / world_size) * world_size)[rank::world_size]


def data_parallel_gradient(w, X_shards, y_shards, grad_fn):
    grads = [grad_fn(w, X, y).ravel() for X, y in zip(X_shards, y_shards, strict=True)]
    out, _ = ring_allreduce(grads)
    return out[0].reshape(np.shape(w)) / len(X_shards)


def accumulated_gradient(w, micro_batches, grad_fn):
    n = sum(len(X) for X, _ in micro_batches)
    return sum(len(X) / n * grad_fn(w, X, y) for X, y in micro_batches)


def zero_memory_per_rank(n_params, world_size, stage):
    shard = [world_size if stage >= s else 1 for s in (3, 2, 1)]
    return 2 * n_params / shard[0] + 2 * n_params / shard[1] + 12 * n_params / shard[2]


def stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your code")


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


# --- a real gloo all-reduce, and the launcher ----------------------------------------------------
def _all_reduce_rank(rank, world_size, xs):
    import torch.distributed as dist

    t = torch.tensor(xs[rank])
    dist.all_reduce(t)  # the default op: SUM
    return t.numpy()


@gloo
def test_the_ring_reference_and_the_solution_equal_a_real_gloo_all_reduce():
    rng = np.random.default_rng(31)
    xs = [rng.normal(size=11) for _ in range(3)]
    real = launch.launch(_all_reduce_rank, 3, xs, timeout=60)
    reference, sent = ref.torch_ring_allreduce(xs)
    for rank in range(3):
        np.testing.assert_allclose(reference[rank], real[rank], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(ring_allreduce(xs)[0][rank], real[rank], rtol=1e-13, atol=1e-13)
    assert sent == ring_allreduce(xs)[1] == [15, 15, 14]  # chunks of 4, 4, 3


def _raise_in_rank_1(rank, world_size):
    if rank == 1:
        raise KeyError("boom in rank 1")
    import torch.distributed as dist

    dist.barrier()  # rank 0 would wait for rank 1 forever: the launcher must not
    return rank


def _sleep_forever(rank, world_size):
    time.sleep(600)


@gloo
def test_a_failing_or_stuck_child_ends_the_launch_with_a_message():
    start = time.monotonic()
    with pytest.raises(launch.GlooUnavailable,
                       match="a process failed: KeyError: 'boom in rank 1'"):
        launch.launch(_raise_in_rank_1, 2, timeout=60, init_timeout=10)
    with pytest.raises(launch.GlooUnavailable, match="did not finish within 1 s"):
        launch.launch(_sleep_forever, 2, timeout=1.0)
    assert time.monotonic() - start < 30


@gloo
def test_no_usable_interface_is_reported_not_hung(monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "no-such-interface0")  # what gloo sees in a sandbox
    with pytest.raises(launch.GlooUnavailable, match="a process failed"):
        launch.launch(_all_reduce_rank, 2, [np.zeros(2)] * 2, timeout=60, init_timeout=10)


def test_no_loopback_is_reported_before_forking(monkeypatch):
    def no_network():
        raise OSError(99, "Cannot assign requested address")

    monkeypatch.setattr(launch, "free_port", no_network)
    assert "no loopback network interface" in launch.gloo_problem()
    with pytest.raises(launch.GlooUnavailable, match="no loopback network interface"):
        launch.launch(_all_reduce_rank, 2, [np.zeros(2)] * 2)


# --- the references -----------------------------------------------------------------------------
@pytest.mark.parametrize("k,n", [(1, 4), (2, 5), (3, 6), (4, 10), (5, 3), (8, 64)])
def test_the_simulated_ring_is_the_reference_and_sends_the_nccl_factor(k, n):
    xs = [np.random.default_rng(k * n).normal(size=n) for _ in range(k)]
    out, sent = ref.torch_ring_allreduce(xs)
    buffers, simulated = ref.simulate_ring(xs)
    np.testing.assert_allclose(buffers, out, rtol=1e-12, atol=1e-12)
    assert simulated == sent == ring_allreduce(xs)[1]
    sizes = [len(c) for c in np.array_split(np.arange(n), k)]
    assert sent == [2 * n - sizes[(r + 1) % k] - sizes[(r + 2) % k] if k > 1 else 0
                    for r in range(k)]
    if n % k == 0:
        assert sent == [2 * (k - 1) * n // k] * k


def test_the_ring_mistakes_change_one_thing():
    xs = [np.arange(6.0), np.full(6, 10.0), np.arange(6.0) ** 2]
    total = np.sum(xs, axis=0)
    partial, sent = ref.simulate_ring(xs, all_gather=False)
    for r in range(3):  # after the reduce-scatter rank r holds chunk (r + 1) % 3 complete
        chunk = np.array_split(np.arange(6), 3)[(r + 1) % 3]
        np.testing.assert_allclose(partial[r][chunk], total[chunk])
        assert not np.allclose(partial[r], total)
    assert sent == [4, 4, 4]
    averaged, _ = ref.simulate_ring(xs, combine="average")
    weights = np.array([0.25, 0.25, 0.5])  # chunk 0 starts at rank 0: ((x0 + x1) / 2 + x2) / 2
    np.testing.assert_allclose(averaged[0][:2], weights @ np.array([x[:2] for x in xs]))
    assert ref.ring_schedule(3, 3)[:3] == [("reduce-scatter", 0, r, r) for r in range(3)]


def test_ring_time_is_the_schedule_timed_step_by_step():
    for k in (1, 2, 3, 8, 100):
        assert ref.ring_time_by_steps(1e8, k, 5e-6, 1e10) == pytest.approx(
            allreduce_time(1e8, k, 5e-6, 1e10), rel=1e-12)
    assert ref.ring_time_by_steps(1e8, 1, 5e-6, 1e10) == 0.0


def test_sampler_reference_and_variants():
    for n, rank, world_size in ((10, 2, 3), (3, 4, 7), (2, 4, 5), (9, 0, 3)):
        expected = list(DistributedSampler(range(n), world_size, rank, shuffle=False))
        assert ref.torch_sampler_indices(n, rank, world_size).tolist() == expected
        assert ref.sampler_variant(n, rank, world_size).tolist() == expected
        assert shard_indices(n, rank, world_size).tolist() == expected
    assert ref.sampler_variant(10, 2, 3, pad="new").tolist() == [2, 5, 8, 11]
    assert ref.sampler_variant(10, 2, 3, pad="last").tolist() == [2, 5, 8, 9]
    assert ref.sampler_variant(10, 2, 3, pad="none").tolist() == [2, 5, 8]
    assert ref.sampler_variant(10, 0, 3, split="blocks").tolist() == [0, 1, 2, 3]
    assert ref.torch_sampler_indices(10, 0, 3, drop_last=True).tolist() == [0, 3, 6]
    for fn in (ref.torch_sampler_indices, ref.sampler_variant):
        with pytest.raises(ValueError):
            fn(10, 3, 3)


@pytest.mark.parametrize("grad_fn", [losses.softmax_regression_grad, losses.least_squares_grad])
def test_the_given_gradients_and_the_references_are_autograd(grad_fn):
    rng = np.random.default_rng(32)
    X = rng.normal(size=(12, 4))
    if grad_fn is losses.softmax_regression_grad:
        w, y = rng.normal(size=(4, 3)), rng.integers(0, 3, size=12)
        wt = torch.tensor(w, requires_grad=True)
        loss = F.cross_entropy(torch.tensor(X) @ wt, torch.tensor(y))
        assert losses.softmax_regression_loss(w, X, y) == pytest.approx(float(loss.detach()),
                                                                        rel=1e-12)
    else:
        w, y = rng.normal(size=4), rng.normal(size=12)
        wt = torch.tensor(w, requires_grad=True)
        loss = 0.5 * ((torch.tensor(X) @ wt - torch.tensor(y)) ** 2).mean()
        assert losses.least_squares_loss(w, X, y) == pytest.approx(float(loss.detach()), rel=1e-12)
    loss.backward()
    np.testing.assert_allclose(grad_fn(w, X, y), wt.grad.numpy(), rtol=1e-12, atol=1e-14)
    shards = [X[:6], X[6:]], [y[:6], y[6:]]
    np.testing.assert_allclose(ref.torch_full_batch_gradient(w, *shards, grad_fn), wt.grad.numpy(),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(data_parallel_gradient(w, *shards, grad_fn), wt.grad.numpy(),
                               rtol=1e-12, atol=1e-14)
    micro = [(X[:1], y[:1]), (X[1:8], y[1:8]), (X[8:], y[8:])]
    np.testing.assert_allclose(ref.torch_accumulated_gradient(w, micro, grad_fn),
                               wt.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(accumulated_gradient(w, micro, grad_fn), wt.grad.numpy(),
                               rtol=1e-12, atol=1e-14)
    assert len(ref.shard_gradients(w, *shards, grad_fn)) == 2
    assert len(ref.torch_micro_gradients(w, micro, grad_fn)) == 3


def test_zero_reference_measures_sixteen_bytes_on_torch_tensors():
    per_parameter = ref.measured_bytes_per_parameter()
    assert per_parameter == {"float16 parameters": 2.0, "float16 gradients": 2.0,
                             "float32 master parameters": 4.0, "Adam exp_avg (float32)": 4.0,
                             "Adam exp_avg_sq (float32)": 4.0}
    assert [ref.torch_zero_memory(7.5e9, 64, s) for s in range(4)] == pytest.approx(
        [120e9, 31.40625e9, 16.640625e9, 1.875e9])
    for stage in range(4):
        assert ref.zero_variant(1e9, 8, stage) == ref.torch_zero_memory(1e9, 8, stage) == \
            zero_memory_per_rank(1e9, 8, stage)
    assert ref.zero_variant(1e9, 8, 0, grads=4) == 18e9
    assert ref.zero_variant(1e9, 8, 1, shard_grads_from=1) == ref.zero_variant(1e9, 8, 2)
    with pytest.raises(ValueError):
        ref.torch_zero_memory(1e9, 8, 4)


# --- the ring driver ---------------------------------------------------------------------------
def test_ring_outputs_reads_lists_tuples_and_arrays():
    xs = [np.arange(4.0), np.ones(4)]
    for wrap in (list, tuple, np.array):
        report = ring_outputs(lambda xs, wrap=wrap: tuple(wrap(v) for v in ring_allreduce(xs)), xs)
        np.testing.assert_array_equal(report["out"], [[1, 2, 3, 4]] * 2)
        np.testing.assert_array_equal(report["sent"], [4, 4])


@pytest.mark.parametrize("result,match", [
    (np.zeros(3), "must return a pair"),
    (([np.zeros(4)], [0, 0]), "one buffer per rank, 2 in all"),
    (([np.zeros(4), np.zeros(3)], [0, 0]), r"out\[1\] has shape \(3,\)"),
    (([np.zeros(4)] * 2, [0]), r"one count per rank, shape \(2,\)"),
    (([np.zeros(4), "abc"], [0, 0]), "must hold numbers"),
])
def test_ring_outputs_refuses_what_is_not_k_buffers_and_counts(result, match):
    with pytest.raises(UnusableRingResult, match=match):
        ring_outputs(lambda xs: result, [np.zeros(4), np.zeros(4)])


def test_a_ring_that_writes_into_its_input_is_caught():
    def in_place(xs):
        for x in xs[1:]:
            xs[0] += x
        return [xs[0].copy() for _ in xs], [0] * len(xs)

    outcome = call(in_place, Case("", [np.ones(3), np.ones(3)]), driver=ring_outputs)
    assert outcome.mutated == ("argument 1",)


# --- gil_lab ------------------------------------------------------------------------------------
def test_the_workloads_and_the_timer_run_in_threads_and_processes():
    assert gil_lab.python_loop(10) == sum(i * i % 7 for i in range(10))
    assert np.isfinite(gil_lab.torch_steps(1, width=8, batch=4))
    before = torch.get_num_threads()
    for mode in gil_lab.MODES:
        assert gil_lab.time_workers(functools.partial(gil_lab.python_loop, 1000), 2, mode) > 0
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        gil_lab.time_workers(lambda: None, 1, "fibers")


def test_threads_vs_processes_reports_every_configuration():
    result = gil_lab.threads_vs_processes(python_iterations=2000, steps=1, repeat=1)
    assert set(result.seconds) == {(w, m, n) for w in gil_lab.WORKLOADS for m in gil_lab.MODES
                                   for n in (1, 2)}
    key = (gil_lab.WORKLOADS[0], "threads")
    assert result.speedup(*key, 2) == pytest.approx(
        2 * result.seconds[(*key, 1)] / result.seconds[(*key, 2)])
    assert f"{result.cpu_count} CPU cores usable" in result.machine()
    assert "every 5 ms" in result.machine()


def test_a_worker_process_that_fails_is_reported():
    with pytest.raises(RuntimeError, match="exited with code"):
        gil_lab.time_workers(functools.partial(os._exit, 3), 1, "processes")


# --- ddp_lab -------------------------------------------------------------------------------------
def test_rank_batches_cover_the_sampler_and_the_reference_uses_every_rank(digits):
    batches = [ddp_lab.rank_batches(10, 2, r, 0, 2) for r in range(2)]
    assert [len(b) for b in batches] == [2, 2] and all(len(x) == 2 for b in batches for x in b)
    assert ddp_lab.rank_batches(10, 2, 0, 1, 5, set_epoch=False) == \
        ddp_lab.rank_batches(10, 2, 0, 0, 5)
    model = ddp_lab.make_model(True)
    assert isinstance(model[1], torch.nn.BatchNorm1d) and len(ddp_lab.make_model(False)) == 3


@gloo
def test_ddp_matches_one_process_and_the_variants_do_not(digits):
    config = ddp_lab.DDPConfig(epochs=2, global_batch=256)
    results = ddp_lab.data_parallel_runs(digits, (2,), config=config)
    run = results[2]
    assert run.drift["DDP"] < 1e-6
    assert run.drift["sum without /k"] > 1e-3 and run.drift["BatchNorm per rank"] > 1e-4
    assert run.drift["set_epoch forgotten"] > 1e-4
    assert run.same_order == {"DDP": False, "sum without /k": False, "BatchNorm per rank": False,
                              "set_epoch forgotten": True}
    assert max(run.replica_spread.values()) == 0.0
    assert sorted(run.orders) == [0, 1] and len(run.orders[0]) == 2
    n = len(digits.y_train)
    assert ddp_lab.shard_agreement(results, shard_indices, n) == (4, 4, None)
    assert ddp_lab.shard_agreement(results, stub, n) == (0, 0, "implement `stub` first")
    assert ddp_lab.shard_agreement(results, lambda n, r, k: np.arange(r, n, k), n)[0] < 4


# --- parallel_lab --------------------------------------------------------------------------------
def test_simulated_runs_match_full_batch(digits):
    runs = parallel_lab.simulated_training(digits, shard_fn=shard_indices,
                                           dp_fn=data_parallel_gradient,
                                           acc_fn=accumulated_gradient, steps=3, n=96,
                                           micro_sizes=(64, 24, 8), world_sizes=(2, 8))
    assert list(runs.loss) == ["full batch", "data-parallel, k = 2", "data-parallel, k = 8",
                               "accumulated (64, 24, 8)"]
    assert all(d.max() < 1e-14 for d in runs.deviation.values()) and runs.problems == []
    stubbed = parallel_lab.simulated_training(digits, shard_fn=shard_indices, dp_fn=stub,
                                              acc_fn=stub, steps=1, n=96)
    assert list(stubbed.loss) == ["full batch"]
    assert stubbed.problems == ["implement `stub` first"] * 2


def test_padding_counts_examples_twice(digits):
    gap = parallel_lab.padding_gap(digits, shard_indices, data_parallel_gradient, k=4)
    assert gap["n"] == 1347 and gap["padded"] == 1 and 0 < gap["relative difference"] < 0.1
    assert parallel_lab.problem_with(stub) == "implement `stub` first"
    assert "is odd" in parallel_lab.problem_with(len, [1], check=lambda r: "is odd")


def test_bucket_costs_and_zero_table_use_the_learners_functions():
    table = parallel_lab.bucket_costs(allreduce_time, 100e6, [8], latency=1e-5, bandwidth=12.5e9,
                                      message_bytes=(100e6, 30e6))
    assert table[100e6][0] == pytest.approx(allreduce_time(100e6, 8, 1e-5, 12.5e9))
    assert table[30e6][0] == pytest.approx(3 * allreduce_time(30e6, 8, 1e-5, 12.5e9)
                                           + allreduce_time(10e6, 8, 1e-5, 12.5e9))
    zero = parallel_lab.zero_table(zero_memory_per_rank, 7.5e9, [1, 64])
    np.testing.assert_allclose(zero[3], [120e9, 1.875e9])


# --- the plots ----------------------------------------------------------------------------------
def test_plots_draw_their_data(digits):
    fig, axes = plotting.new_figure(2, 3, figsize=(9, 5), dpi=50)
    gil = gil_lab.GilResult(seconds={(w, m, n): 0.1 * n for w in gil_lab.WORKLOADS
                                     for m in gil_lab.MODES for n in (1, 2)}, cpu_count=2)
    distributed_plots.plot_threads(axes[0, 0], gil)
    assert len(axes[0, 0].patches) == 4
    runs = parallel_lab.simulated_training(digits, shard_fn=shard_indices,
                                           dp_fn=data_parallel_gradient, steps=2, n=64,
                                           world_sizes=(2,))
    distributed_plots.plot_simulated(axes[0, 1], axes[0, 2], runs)
    table = parallel_lab.bucket_costs(allreduce_time, 1e8, [2, 8], latency=1e-5, bandwidth=1e10)
    distributed_plots.plot_bucket_costs(axes[1, 0], table, [2, 8], 1e8)
    assert axes[1, 0].get_xscale() == "log"
    zero = parallel_lab.zero_table(zero_memory_per_rank, 7.5e9, [1, 8])
    distributed_plots.plot_zero(axes[1, 1], zero, [1, 8], 7.5e9, 80e9)
    ddp = {k: ddp_lab.DDPResult(k, 0.1, drift={"DDP": 1e-8 * k, "sum": 0.0}) for k in (1, 2)}
    distributed_plots.plot_ddp_drift(axes[1, 2], ddp)
    assert len(axes[1, 2].patches) == 4
    plotting.figure_png(fig)


def test_forking_silences_only_the_warning_about_threads():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with launch.forking():
            warnings.warn("This process (pid=1) is multi-threaded, use of fork() may lead to "
                          "deadlocks in the child.", DeprecationWarning, stacklevel=1)
        with pytest.raises(DeprecationWarning), launch.forking():
            warnings.warn("something else", DeprecationWarning, stacklevel=1)
