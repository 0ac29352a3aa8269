"""The hosts' stand-in environments the tests use, built by build_envs.py under .venv-hosts/.

Without one, a test is skipped with the command that builds it; in CI (``CI=true``), where
.ci/run builds them before pytest, it fails instead. A Colab environment whose dlopt is not
this checkout's (built before src/ changed) is treated the same way: it would test old code.
"""

from __future__ import annotations

import filecmp
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ROOT / ".venv-hosts"
COLAB = HOSTS / "colab"
REPO2DOCKER = HOSTS / "repo2docker"
BUILD = "python tests/compat/build_envs.py"
CELL_RECORD = COLAB / "colab-cell.json"
COLAB_REQUIREMENTS = Path(__file__).resolve().parent / "colab-requirements.txt"

__all__ = ["cell_record", "colab_pins", "colab_python", "in_ci", "other_python", "repo2docker",
           "unavailable"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def unavailable(reason: str):
    """Skip with ``reason``; in CI, fail with it."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run builds it before pytest)", pytrace=False)
    pytest.skip(reason)


def colab_pins() -> dict[str, str]:
    """name -> version of every ``name==version`` line of colab-requirements.txt."""
    pins = {}
    for line in COLAB_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _site_packages(env: Path) -> Path:
    (found,) = env.glob("lib/python3.*/site-packages")
    return found


def _stale_files(installed: Path, source: Path) -> list[str]:
    """Files of dlopt that differ between the checkout's src/dlopt and the installed copy."""
    def files(folder: Path) -> set[str]:
        return {str(p.relative_to(folder)) for p in folder.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}

    ours, theirs = files(source), files(installed)
    differ = [name for name in ours & theirs
              if not filecmp.cmp(source / name, installed / name, shallow=False)]
    return sorted((ours ^ theirs) | set(differ))


def colab_python() -> Path:
    """The Colab environment's python, with this checkout's dlopt installed in it."""
    python = COLAB / "bin" / "python"
    if not (python.is_file() and CELL_RECORD.is_file()):
        unavailable(f"no Colab stand-in environment at {COLAB.relative_to(ROOT)}; "
                    f"build it with: {BUILD} colab")
    stale = _stale_files(_site_packages(COLAB) / "dlopt", ROOT / "src" / "dlopt")
    if stale:
        unavailable(f"the Colab environment's dlopt is not this checkout's ({stale[:3]} "
                    f"differ); install it again with: {BUILD} dlopt")
    return python


def cell_record() -> dict:
    """What build_envs.py recorded of the colab_setup command: the cell, the arguments it ran,
    and pip's distributions before and after."""
    colab_python()
    return json.loads(CELL_RECORD.read_text(encoding="utf-8"))


def repo2docker() -> Path:
    command = REPO2DOCKER / "bin" / "repo2docker"
    if not command.is_file():
        unavailable(f"no repo2docker at {command.relative_to(ROOT)}; "
                    f"install it with: {BUILD} repo2docker")
    return command


def other_python(version: str) -> Path:
    """The python of .venv-hosts/python<version> (dlopt's dependencies but torch)."""
    python = HOSTS / f"python{version}" / "bin" / "python"
    if not python.is_file():
        unavailable(f"no Python {version} environment at {python.parent.parent.relative_to(ROOT)}"
                    f"; build it with: {BUILD} python{version} (it needs Python {version} "
                    f"installed, as pyenv has it on this machine)")
    return python
