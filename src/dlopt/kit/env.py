"""What the learner's environment has: versions, devices, widgets, and where it runs.

Used by lesson 00 (the environment report) and lessons 08, 09 and 10 (:func:`best_device`).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

__all__ = ["best_device", "environment_report", "print_environment_report"]

_PACKAGES = ("numpy", "scipy", "matplotlib", "scikit-learn", "torch", "ipywidgets", "dlopt")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def best_device() -> str:
    """``"cuda"`` if an NVIDIA GPU is usable, else ``"mps"`` (Apple silicon), else ``"cpu"``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _host() -> str:
    if "google.colab" in sys.modules:
        return "Google Colab"
    if "BINDER_SERVICE_HOST" in os.environ or "BINDER_REQUEST" in os.environ:
        return "Binder"
    if "JUPYTERHUB_USER" in os.environ:
        return "a JupyterHub"
    return "a local machine"


def environment_report() -> dict:
    """Versions, device and host as a dict (what :func:`print_environment_report` prints)."""
    import torch

    device = best_device()
    if device == "cuda":
        device_name = torch.cuda.get_device_name(0)
    elif device == "mps":
        device_name = "Apple GPU (MPS)"
    else:
        device_name = f"CPU ({os.cpu_count()} cores)"
    return {
        "python": platform.python_version(),
        "host": _host(),
        "device": device,
        "device_name": device_name,
        "packages": {name: _version(name) for name in _PACKAGES},
    }


def print_environment_report() -> dict:
    """Print the environment report and say what it means for the course; return it."""
    report = environment_report()
    print(f"Python {report['python']} on {report['host']}")
    for name, version in report["packages"].items():
        print(f"  {name:<13} {version}")
    print(f"Compute device: {report['device']} - {report['device_name']}")
    if report["device"] == "cpu":
        print("  No GPU: every lesson runs on the CPU; the GPU cells in lessons 08-09 say what "
              "they would measure.")
    missing = [n for n, v in report["packages"].items() if v == "not installed"]
    if missing:
        print(f"Missing: {', '.join(missing)} - see the README's install command.")
    return report
