"""Lesson 11 (parallel and distributed training): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_contract.py. Here: the graded functions are the expected ones; the misconceptions
(threads to parallelize training; distributed training as Spark or Hadoop jobs) and the
conventions (DistributedSampler's padding, the ring's schedule, ZeRO's 16 bytes) are stated;
other correct implementations pass; the mistakes written as a learner would write them are
named; the solutions agree with torch beyond the scenarios (DistributedSampler itself,
autograd, and a real gloo all-reduce in tests/lessons/test_l11_distributed_labs.py); the
numbers the text quotes are those its code computes; the experiments of the student copy say
what to implement.
"""

from __future__ import annotations

import math
import re

import lesson_harness as harness
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lesson_harness import MISTAKE_PREFIX
from torch.utils.data import DistributedSampler

from dlopt.lessons.l11_distributed import losses, parallel_lab

LESSON = "11_distributed"
GRADED = ["ring_allreduce", "allreduce_time", "shard_indices", "data_parallel_gradient",
          "accumulated_gradient", "zero_memory_per_rank"]
solved = harness.solved  # fixtures: the solved notebook's namespace, and its exercises
exercises = harness.exercises


def text() -> str:
    return " ".join(harness.markdown(LESSON).split())


# --- what this lesson states --------------------------------------------------------------------
test_graded_functions_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_misconceptions_are_stated():
    prose = text()
    assert '**Misconception: "parallelize Keras training with Python threads".**' in prose
    assert "one thread holds it at a time" in prose and "release** the lock" in prose
    assert '**Misconception: "distributed training is a Spark or Hadoop job".**' in prose
    assert "not a job per step" in prose and "TorchDistributor" in prose
    assert "the misconception about Keras and threads" in prose and "not Spark or Hadoop" in prose


def test_anchors_and_conventions_are_stated():
    prose = text()
    for phrase in ("Writing Distributed Applications with PyTorch",
                   "leaves the chunked version as an exercise",
                   "NCCL's performance notes", "*bus bandwidth*", "times $2(k-1)/k$",
                   "`bucket_cap_mb=25`", "ZeRO paper (Rajbhandari et al., 2020)",
                   "Other sources count 18 bytes", "`ShardingStrategy.FULL_SHARD`",
                   "**padded by wrapping around**", "`set_epoch(epoch)`", "`drop_last=True`",
                   'start_method="fork")`', "`import torch._dynamo`", "`MASTER_ADDR=127.0.0.1`",
                   "`with model.no_sync():`", "$n_j/N$"):
        assert phrase in prose, phrase


def test_docstrings_state_the_conventions(solved):
    conventions = {
        "ring_allreduce": ("np.array_split(np.arange(N), k)", "(r - s) % k", "(r + 1 - s) % k",
                           "ADDS", "REPLACES", "SUM", "2 (k - 1) / k * N", "Not changed in place"),
        "allreduce_time": ("2 (k - 1) * latency + 2 (k - 1) / k * n_bytes / bandwidth",
                           "0.0 for k = 1", "bytes per second"),
        "shard_indices": ("shuffle=False, drop_last=False", "wrapping around", "strided",
                          "ValueError"),
        "data_parallel_gradient": ("YOUR ring_allreduce", "divided by k", "MEAN loss",
                                   "same number m of rows"),
        "accumulated_gradient": ("n_j * grad_fn(w, X_j, y_j) / N", "may differ",
                                 "right only for equal"),
        "zero_memory_per_rank": ("16 bytes per parameter", "2 (float16 parameters)",
                                 "12 (float32 optimizer state", "18 bytes",
                                 "4 Psi + 12 Psi / k", "2 Psi + 14 Psi / k", "16 Psi / k",
                                 "ValueError"),
    }
    for name, phrases in conventions.items():
        doc = " ".join(solved[name].__doc__.split())
        for phrase in phrases:
            assert " ".join(phrase.split()) in doc, (name, phrase)


# --- other correct implementations pass ----------------------------------------------------------
def ring_with_arrays(xs):
    """Correct, written rank by rank with a send buffer per step; returns arrays, not lists."""
    k = len(xs)
    buf = np.array(xs, dtype=float)  # (k, N), a copy
    pieces = np.array_split(np.arange(buf.shape[1]), k)
    sent = np.zeros(k, dtype=np.int64)
    for s in range(k - 1):
        outbox = {r: (pieces[(r - s) % k], buf[r, pieces[(r - s) % k]].copy()) for r in range(k)}
        for r, (idx, data) in outbox.items():
            buf[(r + 1) % k, idx] += data
            sent[r] += len(idx)
    for s in range(k - 1):
        outbox = {r: (pieces[(r + 1 - s) % k], buf[r, pieces[(r + 1 - s) % k]].copy())
                  for r in range(k)}
        for r, (idx, data) in outbox.items():
            buf[(r + 1) % k, idx] = data
            sent[r] += len(idx)
    return buf, sent


def shard_by_torch(n, rank, world_size):
    """Correct: the sampler itself."""
    return np.array(list(DistributedSampler(range(n), world_size, rank, shuffle=False)))


def accumulated_by_concatenation(w, micro_batches, grad_fn):
    """Correct: one gradient of the mean loss over every example at once."""
    X = np.concatenate([X for X, _ in micro_batches])
    y = np.concatenate([y for _, y in micro_batches])
    return grad_fn(w, X, y)


def test_other_correct_implementations_pass(exercises):
    harness.check_quietly(exercises["ring_allreduce"], ring_with_arrays)
    harness.check_quietly(exercises["shard_indices"], shard_by_torch)
    harness.check_quietly(exercises["accumulated_gradient"], accumulated_by_concatenation)
    harness.check_quietly(exercises["allreduce_time"],
                          lambda n, k, a, b: (k - 1) * 2.0 * (a + n / (k * b)))


# --- the misconceptions and mistakes, as a learner writes them, are named ------------------------
def tutorial_ring(xs):
    """The PyTorch tutorial's ring: the whole accumulated tensor passed on k - 1 times."""
    k = len(xs)
    accum = [np.array(x, dtype=float) for x in xs]
    passing = [a.copy() for a in accum]
    for _ in range(k - 1):
        passing = [passing[(r - 1) % k] for r in range(k)]  # every rank receives its left's
        accum = [a + p for a, p in zip(accum, passing, strict=True)]
    return accum, [(k - 1) * len(xs[0])] * k


def local_gradients(w, X_shards, y_shards, grad_fn):
    """15b: every rank trains on its own partition; nothing is all-reduced."""
    return [grad_fn(w, X, y) for X, y in zip(X_shards, y_shards, strict=True)]


def test_the_whole_tensor_ring_of_the_tutorial_is_named(exercises):
    message = harness.public_failure(exercises["ring_allreduce"], tutorial_ring)
    assert MISTAKE_PREFIX + "whole tensors passed round the ring" in message, message


def test_training_each_partition_on_its_own_is_named(exercises):
    message = harness.public_failure(exercises["data_parallel_gradient"], local_gradients)
    assert MISTAKE_PREFIX + "each rank kept its local gradient" in message, message


def test_loss_divided_by_the_number_of_micro_batches_is_named(exercises):
    def loss_over_m(w, micro_batches, grad_fn):
        return sum(grad_fn(w, X, y) for X, y in micro_batches) / len(micro_batches)

    message = harness.public_failure(exercises["accumulated_gradient"], loss_over_m)
    assert MISTAKE_PREFIX + "the plain mean of the micro-batches' gradients" in message, message


def test_contiguous_shards_and_the_eighteen_byte_count_are_named(exercises):
    def blocks(n, rank, world_size):
        if not 0 <= rank < world_size:
            raise ValueError("rank out of range")
        return np.array_split(np.arange(n), world_size)[rank]

    message = harness.public_failure(exercises["shard_indices"], blocks)
    assert MISTAKE_PREFIX + "contiguous blocks (np.array_split)" in message, message

    def eighteen(n_params, world_size, stage):
        if stage not in (0, 1, 2, 3):
            raise ValueError(stage)
        shard = [1 if stage < s else world_size for s in (3, 2, 1)]
        return 2 * n_params / shard[0] + 4 * n_params / shard[1] + 12 * n_params / shard[2]

    message = harness.public_failure(exercises["zero_memory_per_rank"], eighteen)
    assert MISTAKE_PREFIX + "18 bytes per parameter" in message, message


def test_the_whole_tensor_time_is_named(exercises):
    message = harness.public_failure(exercises["allreduce_time"],
                                     lambda n, k, a, b: 2 * (k - 1) * a + (k - 1) * n / b)
    assert MISTAKE_PREFIX + "(k - 1) n / bandwidth" in message, message


# --- the solutions agree with torch beyond the scenarios ---------------------------------------
def test_shard_indices_is_distributed_sampler_for_every_small_case(solved):
    for n in range(1, 14):
        for world_size in range(1, 9):
            for rank in range(world_size):
                expected = list(DistributedSampler(range(n), world_size, rank, shuffle=False))
                got = solved["shard_indices"](n, rank, world_size)
                assert got.tolist() == expected, (n, rank, world_size)


def test_shuffled_sampler_is_the_permutation_of_shard_indices(solved):
    for n, world_size, epoch in ((10, 3, 0), (7, 4, 3), (5, 8, 1)):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).numpy()
        for rank in range(world_size):
            sampler = DistributedSampler(range(n), world_size, rank, shuffle=True, seed=0)
            sampler.set_epoch(epoch)
            assert list(sampler) == perm[solved["shard_indices"](n, rank, world_size)].tolist()


def test_ring_allreduce_sends_the_ncclfactor_and_sums(solved):
    rng = np.random.default_rng(21)
    for k in range(1, 9):
        n = 3 * k
        xs = [rng.normal(size=n) for _ in range(k)]
        before = [x.copy() for x in xs]
        out, sent = solved["ring_allreduce"](xs)
        for x, b in zip(xs, before, strict=True):
            np.testing.assert_array_equal(x, b)  # inputs untouched
        for o in out:
            np.testing.assert_allclose(o, np.sum(xs, axis=0), rtol=1e-12, atol=1e-12)
        assert sent == [2 * (k - 1) * n // k] * k


def test_data_parallel_and_accumulated_gradients_match_autograd(solved):
    rng = np.random.default_rng(22)
    X, y = rng.normal(size=(24, 5)), rng.integers(0, 4, size=24)
    w = rng.normal(size=(5, 4))
    wt = torch.tensor(w, requires_grad=True)
    F.cross_entropy(torch.tensor(X) @ wt, torch.tensor(y)).backward()
    for k in (1, 2, 3, 4, 6, 8):
        shards = [solved["shard_indices"](24, r, k) for r in range(k)]
        g = solved["data_parallel_gradient"](w, [X[s] for s in shards], [y[s] for s in shards],
                                             losses.softmax_regression_grad)
        np.testing.assert_allclose(g, wt.grad.numpy(), rtol=1e-10, atol=1e-13)
    cuts = [0, 1, 6, 13, 24]
    micro = [(X[a:b], y[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    g = solved["accumulated_gradient"](w, micro, losses.softmax_regression_grad)
    np.testing.assert_allclose(g, wt.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_zero_memory_matches_the_papers_figure(solved):
    gb = [solved["zero_memory_per_rank"](7.5e9, 64, stage) / 1e9 for stage in range(4)]
    assert [round(v, 1) for v in gb] == [120.0, 31.4, 16.6, 1.9]
    assert solved["zero_memory_per_rank"](1e9, 1, 3) == 16e9


# --- the numbers the text quotes ------------------------------------------------------------------
def test_quoted_bucket_times_are_the_models(solved):
    """md_buckets quotes allreduce_time for 100 MB at 10 µs and 12.5 GB/s."""
    prose = text()
    table = parallel_lab.bucket_costs(solved["allreduce_time"], 100e6, [8, 256], latency=10e-6,
                                      bandwidth=12.5e9)
    at_8 = {size: seconds[0] * 1e3 for size, seconds in table.items()}
    quoted = (f"for k = 8, one 100 MB all-reduce takes {at_8[100e6]:.2f} ms, four 25 MB "
              f"buckets {at_8[25e6]:.2f} ms, a hundred 1 MB messages {at_8[1e6]:.2f} ms, a "
              f"thousand of 100 kB {at_8[0.1e6]:.2f} ms and 25000 of 4 kB {at_8[4e3]:.2f} ms")
    assert quoted in prose
    assert f"still takes {table[100e6][1] * 1e3:.2f} ms" in prose
    assert f"the 4 kB messages take {table[4e3][1] * 1e3:.2f} ms" in prose
    assert math.ceil(100e6 / 4e3) == 25000


def test_quoted_memory_and_data_sizes_are_computed(solved):
    prose = text()
    zero = solved["zero_memory_per_rank"]
    assert "31.4 GB per rank at stage 1, 16.6 GB at stage 2 and 1.9 GB at stage 3" in prose
    assert f"({zero(7.5e9, 2, 1) / 1e9:.1f} and {zero(7.5e9, 2, 2) / 1e9:.1f} GB)" in prose
    assert zero(7.5e9, 1, 0) == 120e9 and "needs 120 GB" in prose
    assert 1344 == 2**6 * 21 and all(1344 % k == 0 for k in (2, 4, 8))
    assert "1344 = $2^6 \\cdot 21$" in prose
    assert 1347 // 256 == 674 // 128 == 337 // 64 == 5 and "5 steps an epoch for every k" in prose


# --- the executed notebook ------------------------------------------------------------------------
@pytest.mark.slow
def test_solved_notebook_prints_what_the_text_quotes():
    nb = harness.executed_solution(LESSON)
    printed = harness.printed_text(nb)
    prose = text()
    # md_same_numbers: every run within float64's rounding of full batch; the padding gap
    deviations = [float(d) for d in
                  re.findall(r"largest \|w - w_full\| over the run (\S+),", printed)]
    assert len(deviations) == 5 and max(deviations) < 1e-15
    gap = re.search(r"relative difference (\S+)", printed).group(1)
    assert gap == "8.7e-03" and "by about 0.9 %" in prose
    # md_gloo: the table of drifts and accuracies
    rows = {m.group(1).strip(): m.group(2).split() for m in
            re.finditer(r"^ *(DDP|sum without /k|BatchNorm per rank|set_epoch forgotten)"
                         r"((?: +\S+)+)$", printed, re.M)}
    ddp, summed, bn, epoch = (rows[v] for v in ("DDP", "sum without /k", "BatchNorm per rank",
                                                "set_epoch forgotten"))
    assert float(ddp[0]) == 0.0 and max(float(ddp[2]), float(ddp[4])) < 1e-6
    assert f"within {ddp[2]} and {ddp[4]}" in prose
    reference = re.search(r"one process \(reference\) +(\S+) +(\S+) +(\S+)", printed).groups()
    assert len(set(reference)) == 1  # the same training for every k
    assert f"k = 2 drifts by {summed[2]} (test accuracy {summed[3]})" in prose
    assert f"k = 4 by {summed[4]}, diverging" in prose and float(summed[4]) > 1.0
    assert f"(test accuracy {summed[5]} instead of {reference[0]})" in prose
    assert f"drifts by {bn[2]} with k = 2 and {bn[4]} with k = 4" in prose
    assert epoch[0] == epoch[2] == epoch[4] and f"drifts by {epoch[0]} for every k" in prose
    assert "between the ranks' parameters, any variant, any k: 0.0" in printed
    assert "your shard_indices reproduces 14 of the 14 orders" in printed
    assert "set_epoch forgotten: True" in printed and "DDP: False" in printed
    harness.assert_draws_a_figure(nb, "experiment_threads", "experiment_buckets",
                                  "experiment_same_numbers", "experiment_gloo", "experiment_zero")


@pytest.mark.slow
def test_student_copy_experiments_say_what_to_implement():
    outputs = {harness.grade_id(c): str(c.outputs)
               for c in harness.executed_student_copy(LESSON).cells if c.cell_type == "code"}
    assert "implement `allreduce_time` first" in outputs["experiment_buckets"]
    same = outputs["experiment_same_numbers"]
    assert "implement `shard_indices` first" in same
    assert "implement `accumulated_gradient` first" in same
    assert "implement `shard_indices` first" in outputs["experiment_gloo"]
    assert "|Δ| vs 1 process" in outputs["experiment_gloo"]  # DDP itself needs no learner code
    assert "implement `zero_memory_per_rank` first" in outputs["experiment_zero"]
    assert "work per second" in outputs["experiment_threads"]
