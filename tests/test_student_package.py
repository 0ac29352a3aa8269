"""What students install: dlopt's wheel, built from this checkout, holds no instructor material.

Oracles, hand-written references and named mistakes live in ``dlopt_instructor``
(instructor/), which only the instructor's environment installs. This builds the wheel that
``pip install dlopt`` (and Colab's setup cell) would install and reads what is inside.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> dict[str, str]:
    """Build dlopt's wheel from a copy of the checkout; return {path in wheel: text}."""
    work = tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "src", work / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(out), str(work)],
                   check=True, capture_output=True, text=True)
    (wheel,) = out.glob("dlopt-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return {name: zf.read(name).decode("utf-8", "replace") for name in zf.namelist()}


def test_the_wheel_holds_the_dlopt_package_only(wheel_files):
    packages = {name.split("/")[0] for name in wheel_files if not name.endswith(".dist-info/")}
    packages = {p for p in packages if not p.endswith(".dist-info")}
    assert packages == {"dlopt"}, f"the student wheel carries {sorted(packages)}"
    for role in ("grading", "kit", "lessons"):
        assert f"dlopt/{role}/__init__.py" in wheel_files


def test_nothing_in_the_wheel_reaches_for_instructor_material(wheel_files):
    modules = {name: text for name, text in wheel_files.items() if name.endswith(".py")}
    offenders = [name for name, text in modules.items()
                 if re.search(r"^\s*(from|import)\s+dlopt_instructor\b", text, re.M)]
    assert not offenders, f"student modules import dlopt_instructor: {offenders}"
    # the modules that held oracles and mistakes before the regrouping are gone from it
    gone = {"oracles", "backprop_oracles", "bn_oracles", "schedule_oracles", "torch_variants",
            "rule_variants", "mistakes"}
    leaked = [name for name in modules if Path(name).stem in gone]
    assert not leaked, f"instructor modules in the student wheel: {leaked}"
