"""What the GPU-part benchmarks share: their device options and the line saying where they ran."""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import dataclass

import torch

from dlopt.kit.env import best_device


def add_device_options(parser: argparse.ArgumentParser, *, repeat: int,
                       warmup: int | None = None) -> None:
    """``--device``, ``--repeat``, ``--warmup`` (when given a default) and ``--threads``."""
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the best one)")
    parser.add_argument("--repeat", type=int, default=repeat)
    if warmup is not None:
        parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: steadiest on a shared machine; 0: all)")


@dataclass(frozen=True)
class BenchDevice:
    device: str  # as torch names it: "cpu", "cuda", "cuda:1"
    kind: str  # "cuda" or "cpu"
    threads: int | None  # torch CPU threads while timing; None: the library's default
    name: str  # the GPU's or the processor's name

    def describe(self, *versions: str) -> str:
        """The line every benchmark prints first: device, machine, versions, threads, load."""
        used = torch.get_num_threads() if self.threads is None else self.threads
        return (f"device: {self.device} ({self.name}, {os.cpu_count()} CPUs, "
                f"{', '.join(versions + (f'torch {torch.__version__}',))}, "
                f"{used} CPU thread(s)); load average {os.getloadavg()[0]:.1f}")


def resolve(args: argparse.Namespace) -> BenchDevice:
    device = args.device or best_device()
    kind = "cuda" if device.startswith("cuda") else "cpu"
    name = (torch.cuda.get_device_name(torch.device(device)) if kind == "cuda"
            else platform.processor() or platform.machine())
    return BenchDevice(device, kind, None if args.threads == 0 else args.threads, name)
