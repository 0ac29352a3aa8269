"""The learner's multi-tensor Adam against torch.optim.Adam(foreach=True), on many tensors.

Target: the learner's ``ForeachAdam`` (lesson 08) takes at most 1.3x the time of
``torch.optim.Adam(foreach=True)`` per step on a CPU, and at most 1.2x on a GPU.

The learner's classes are the instructor's answers, taken from
``solutions/08_pytorch_from_numpy`` by executing its answer cells. The parameters are shaped like
a small GPT-style transformer's (token and position embeddings; per layer a fused QKV projection,
an output projection, a 4x MLP, two layer norms, with biases): on a GPU about 28 million
parameters in 100 tensors by default, on a CPU about 4.3 million in 52. Gradients are random and
fixed; only ``step()`` is timed (the first steps, which create the state, are warm-up).

The optimizers are timed in interleaved rounds (A, B, C, D, then A, B, C, D again...), so that a
change in the machine's load affects all of them alike; each round times ``--repeat`` steps
after ``--warmup`` discarded ones, on CUDA with CUDA events. The script prints the median and
the interquartile range of every optimizer, the ratio of the medians against torch's foreach
Adam, and the ratio to the target. It asserts nothing: the unit tests never depend on timing.

Run from the repository root:  python benchmarks/foreach_adam.py [--device cpu|cuda]
[--d-model 256 --layers 4] [--rounds 5 --repeat 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, however it is loaded
from bench_device import add_device_options, resolve  # noqa: E402
from solution_answers import answer_functions  # noqa: E402

from dlopt.kit.timing import Timing
from dlopt.lessons.l09_performance.gpu_timing import cpu_threads, measure_device

ROOT = Path(__file__).resolve().parents[1]
LESSON_08 = "08_pytorch_from_numpy"
TARGET = {"cpu": 1.3, "cuda": 1.2}


def transformer_shapes(d_model: int, layers: int, vocab: int, context: int) -> list[tuple]:
    """Parameter shapes of a small GPT-style transformer."""
    d = d_model
    shapes = [(vocab, d), (context, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,),
                   (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    return shapes + [(d,), (d,)]


def make_params(shapes, device: str, seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        w = torch.nn.Parameter((torch.randn(shape, generator=gen) * 0.02).to(device))
        w.grad = (torch.randn(shape, generator=gen) * 1e-3).to(device)
        params.append(w)
    return params


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_options(parser, repeat=10, warmup=3)
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    bench = resolve(args)
    device, kind, threads = bench.device, bench.kind, bench.threads
    d_model = args.d_model or (512 if kind == "cuda" else 256)
    layers = args.layers or (8 if kind == "cuda" else 4)
    vocab = 8192 if kind == "cuda" else 4096
    shapes = transformer_shapes(d_model, layers, vocab, 512)
    n_params = sum(int(np.prod(s)) for s in shapes)

    lesson = answer_functions(LESSON_08)
    if lesson is None or "ForeachAdam" not in lesson:
        raise SystemExit(f"solutions/{LESSON_08} with a ForeachAdam class is needed; not found")
    optimizers = {
        "learner's ForeachAdam": lesson["ForeachAdam"],
        "torch Adam(foreach=True)": functools.partial(torch.optim.Adam, foreach=True),
        "learner's Adam (per tensor)": lesson["Adam"],
        "torch Adam(foreach=False)": functools.partial(torch.optim.Adam, foreach=False),
    }
    print(bench.describe())
    print(f"parameters: {n_params / 1e6:.1f} M in {len(shapes)} tensors (d_model {d_model}, "
          f"{layers} layers); {args.rounds} rounds x {args.repeat} steps after {args.warmup} "
          f"warm-up steps\n")

    runs: dict[str, list[float]] = {label: [] for label in optimizers}
    with cpu_threads(threads):
        states = {}
        for label, factory in optimizers.items():
            params = make_params(shapes, device)
            states[label] = factory(params, lr=1e-3)
        for _ in range(args.rounds):
            for label, opt in states.items():
                timing = measure_device(opt.step, device, repeat=args.repeat, warmup=args.warmup)
                runs[label].extend(timing.runs)
    # the learner's and torch's foreach Adam took the same steps: they must agree
    a = states["learner's ForeachAdam"].param_groups[0]["params"]
    b = states["torch Adam(foreach=True)"].param_groups[0]["params"]
    with torch.no_grad():
        max_diff = max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))

    reference = statistics.median(runs["torch Adam(foreach=True)"])
    print(f"{'optimizer':<28} {'median ± IQR per step':>28} {'vs torch foreach':>17}")
    for label, times in runs.items():
        timing = Timing(tuple(times))
        print(f"{label:<28} {str(timing):>28} {timing.median / reference:16.2f}x")
    ratio = statistics.median(runs["learner's ForeachAdam"]) / reference
    target = TARGET[kind]
    print(f"\nlearner's ForeachAdam / torch Adam(foreach=True): {ratio:.2f}x "
          f"(target <= {target}x on {'a GPU' if kind == 'cuda' else 'a CPU'}: "
          f"{'met' if ratio <= target else 'NOT met'}; ratio to target {ratio / target:.2f})")
    print(f"largest difference between the two optimizers' parameters after "
          f"{args.rounds * (args.repeat + args.warmup)} steps: {max_diff:.1e}")


if __name__ == "__main__":
    main()
