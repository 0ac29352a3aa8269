"""Build the hosts' stand-in environments under .venv-hosts/ (CI runs this before pytest).

    python tests/compat/build_envs.py            # every environment below
    python tests/compat/build_envs.py colab      # some of them: colab, repo2docker, python3.12, ...
    python tests/compat/build_envs.py dlopt      # only dlopt again in colab, after src/ changed

- ``colab``: a fresh virtual environment with Colab's versions (colab-requirements.txt), then
  dlopt installed with the student notebooks' own colab_setup command (colab_cell.py), from
  this checkout instead of GitHub. pip's list of distributions before and after that command
  is written to ``.venv-hosts/colab/colab-cell.json``: the tests check that it added dlopt and
  changed nothing else. Then ``pip check``.
- ``repo2docker``: jupyter-repo2docker alone, to print what Binder builds from binder/
  (tests/compat/test_binder.py); nothing is built, no Docker is needed.
- ``python3.12``, ``python3.13``: those Pythons (pyenv's here) with dlopt's dependencies but
  torch, at requirements.txt's pins, and pytest (tests/compat/test_pythons.py).

Uses pip's cache; prints each step's seconds. The tests skip without these environments,
except in CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import colab_cell  # noqa: E402 - a sibling module; this file runs as a script

ROOT = colab_cell.ROOT
HOSTS = ROOT / ".venv-hosts"
COLAB = HOSTS / "colab"
REPO2DOCKER = HOSTS / "repo2docker"
COLAB_REQUIREMENTS = Path(__file__).resolve().parent / "colab-requirements.txt"
REPO2DOCKER_VERSION = "2026.4.0"
CELL_RECORD = "colab-cell.json"


def run(*command: str | Path) -> str:
    print("+", " ".join(str(c) for c in command), flush=True)
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"error: exit code {done.returncode}")
    return done.stdout


def python(env: Path) -> Path:
    return env / "bin" / "python"


def fresh_venv(env: Path) -> None:
    run(sys.executable, "-m", "venv", "--clear", env)


def distributions(env: Path) -> dict[str, str]:
    listed = json.loads(run(python(env), "-m", "pip", "list", "--format", "json"))
    return {d["name"].lower().replace("_", "-"): d["version"] for d in listed}


def build_colab() -> None:
    fresh_venv(COLAB)
    run(python(COLAB), "-m", "pip", "install", "--quiet", "-r", COLAB_REQUIREMENTS)
    install_dlopt()


def install_dlopt() -> None:
    """Run the colab_setup cell's pip command in the Colab environment (again: an installed
    dlopt is removed first, so that the record shows what the cell does on a fresh Colab)."""
    if "dlopt" in distributions(COLAB):
        run(python(COLAB), "-m", "pip", "uninstall", "--yes", "--quiet", "dlopt")
    cell = colab_cell.cell_source(colab_cell.released_notebooks()[0])
    before = distributions(COLAB)
    with tempfile.TemporaryDirectory(prefix="dlopt-release-") as scratch:
        arguments = colab_cell.swap_requirement(colab_cell.pip_arguments(cell),
                                                colab_cell.package_copy(Path(scratch)))
        run(python(COLAB), "-m", "pip", *arguments)
    after = distributions(COLAB)
    (COLAB / CELL_RECORD).write_text(json.dumps(
        {"cell": cell, "arguments": arguments, "before": before, "after": after}, indent=1))
    run(python(COLAB), "-m", "pip", "check")


def build_repo2docker() -> None:
    fresh_venv(REPO2DOCKER)
    run(python(REPO2DOCKER), "-m", "pip", "install", "--quiet",
        f"jupyter-repo2docker=={REPO2DOCKER_VERSION}")


# Pythons besides the course's 3.11 that hosts run (3.12: many hubs; 3.13: Colab). No torch
# for them here (only a CUDA build of several GB is on PyPI for them): what runs with them is
# dlopt's own code and its unit tests that need no torch (tests/compat/test_pythons.py).
OTHER_PYTHONS = ("3.12", "3.13")
PURE_PACKAGES = ("numpy", "matplotlib", "scikit-learn", "ipywidgets", "pytest", "nbformat")


def find_python(version: str) -> Path | None:
    """An interpreter of ``version`` on this machine (pyenv's, or the system's), or None."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}"), reverse=True)
    candidates += [Path(f"/usr/bin/python{version}"), Path(f"/usr/local/bin/python{version}")]
    for candidate in candidates:
        if candidate.is_file() and subprocess.run(
                [candidate, "-c", f"import sys; assert sys.version.startswith('{version}.')"],
                capture_output=True).returncode == 0:
            return candidate
    return None


def build_other_python(version: str) -> None:
    """A virtual environment of that Python with dlopt's dependencies but torch, at the
    instructor's pins (requirements.txt), and pytest."""
    interpreter = find_python(version)
    if interpreter is None:
        print(f"Python {version} is not installed on this machine: skipped")
        return
    env = HOSTS / f"python{version}"
    run(interpreter, "-m", "venv", "--clear", env)
    pins = [line.split("#")[0].strip() for line in
            (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    wanted = [pin for pin in pins if pin.split("==")[0].lower() in PURE_PACKAGES]
    run(python(env), "-m", "pip", "install", "--quiet", *wanted)


BUILDERS = {"colab": build_colab, "repo2docker": build_repo2docker} | {
    f"python{v}": (lambda v=v: build_other_python(v)) for v in OTHER_PYTHONS}
ONLY_IF_ASKED = {"dlopt": install_dlopt}  # after a change to src/: seconds, not minutes


def main(names: list[str]) -> None:
    steps = BUILDERS | ONLY_IF_ASKED
    unknown = set(names) - steps.keys()
    if unknown:
        raise SystemExit(f"unknown steps {sorted(unknown)}; choose from {list(steps)}")
    for name in names or BUILDERS:
        start = time.perf_counter()
        steps[name]()
        print(f"{name}: built in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
