"""dlopt under the other Pythons hosts run: 3.12 (many hubs) and 3.13 (Colab).

The course's own environment, and the Colab stand-in, are Python 3.11 (tests/compat/README.md).
For 3.12 and 3.13 this machine has the interpreters (pyenv) but no torch (PyPI has only CUDA
builds of several GB for them), so what is checked there is what needs no torch, from this
checkout's src/ (build_envs.py makes the environments, at requirements.txt's pins):

- pip accepts dlopt for that Python (requires-python);
- every module of dlopt compiles, and every one that does not import torch imports, with
  warnings as errors (deprecations of 3.12 and 3.13 included);
- the unit tests of tests/grading and tests/kit pass; those that cannot be collected or run
  without torch (ModuleNotFoundError: torch) are left out, and only for that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest

from . import colab_cell
from .hosts import ROOT, other_python

VERSIONS = ("3.12", "3.13")
# dlopt's torch-free core: these must import under every supported Python.
CORE = ("dlopt.grading", "dlopt.grading.baked", "dlopt.grading.codec", "dlopt.kit.data",
        "dlopt.kit.figure_widget", "dlopt.kit.plotting", "dlopt.kit.learner")

IMPORT_ALL = """
import importlib, json, pkgutil, sys, warnings
warnings.simplefilter("error")
import dlopt
found = {"ok": [], "torch": [], "failed": {}, "version": sys.version.split()[0]}
for path in sorted(pkgutil.walk_packages(dlopt.__path__, "dlopt."), key=lambda m: m.name):
    try:
        compile(open(importlib.util.find_spec(path.name).origin).read(), path.name, "exec")
        importlib.import_module(path.name)
        found["ok"].append(path.name)
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            found["torch"].append(path.name)
        else:
            found["failed"][path.name] = repr(exc)
    except Exception as exc:
        found["failed"][path.name] = repr(exc)
print(json.dumps(found))
"""


def environment() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}",
                PYTHONDONTWRITEBYTECODE="1")


@pytest.mark.parametrize("version", VERSIONS)
def test_pip_accepts_dlopt_for_this_python(version, tmp_path):
    python = other_python(version)
    report = tmp_path / "report.json"
    done = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--dry-run",
                           "--quiet", "--report", str(report),
                           str(colab_cell.package_copy(tmp_path))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    assert [i["metadata"]["name"] for i in installs] == ["dlopt"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_module_compiles_and_imports_without_torch(version):
    done = subprocess.run([str(other_python(version)), "-c", IMPORT_ALL], capture_output=True,
                          text=True, timeout=300, env=environment(), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found["version"].startswith(version + ".")
    assert not found["failed"], f"under Python {found['version']}: {found['failed']}"
    missing = [name for name in CORE if name not in found["ok"]]
    assert not missing, f"need torch under Python {version}: {missing}"


def needs_torch(trouble: ET.Element) -> bool:
    """A failure or error of a JUnit test case whose exception is torch's absence: a test
    module that imports it (collection), or a test whose own exception says so."""
    if trouble.get("message") == "collection failure":
        lines = [line for line in (trouble.text or "").splitlines() if line.strip()]
        return bool(lines) and lines[-1].endswith("No module named 'torch'")
    return (trouble.get("message") or "").startswith(
        "ModuleNotFoundError: No module named 'torch'")


@pytest.mark.parametrize("version", VERSIONS)
def test_the_unit_tests_that_need_no_torch_pass(version, tmp_path):
    junit = tmp_path / "junit.xml"
    done = subprocess.run(
        [str(other_python(version)), "-m", "pytest", "tests/grading", "tests/kit",
         "-o", "addopts=-ra --strict-markers --strict-config", "-o",
         f"cache_dir={tmp_path / 'cache'}",
         "--continue-on-collection-errors", f"--junitxml={junit}", "-q"],
        capture_output=True, text=True, timeout=600, env=environment(), cwd=ROOT)
    cases = ET.parse(junit).getroot().iter("testcase")
    passed, problems, without_torch = 0, [], []
    for case in cases:
        trouble = case.find("failure") if case.find("failure") is not None else case.find("error")
        if trouble is None:
            passed += case.find("skipped") is None
        elif needs_torch(trouble):
            without_torch.append(f"{case.get('classname')}::{case.get('name')}")
        else:
            problems.append(f"{case.get('classname')}::{case.get('name')}: "
                            f"{(trouble.get('message') or '')[:300]}")
    assert not problems, f"under Python {version}:\n" + "\n".join(problems)
    assert passed >= 40, f"only {passed} tests passed under Python {version}:\n" \
        f"{done.stdout[-2000:]}"
