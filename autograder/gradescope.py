"""``gradescope``: the autograder package Gradescope runs for one lesson, and what runs in it.

``python -m autograder gradescope LESSON -o DIR_OR_ZIP`` writes the package Gradescope unpacks
into ``/autograder/source``:

- ``setup.sh``: Gradescope runs it once, as root, when it builds the image: Python 3.11, a
  virtual environment at ``/autograder/venv`` with the course's pinned requirements, and the
  course's ``dlopt`` package (its student-safe code: drivers, probes, judge);
- ``run_autograder``: Gradescope runs it for every submission;
- the grader (``autograder/``), ``dlopt``'s sources (``dlopt-package/``), ``requirements.txt``,
  and ``lesson.json``: the release notebook and the instructor's exported reference (expected
  outputs of the public and hidden scenarios, and of the named mistakes: data, no solution
  code), plus the visibility settings (``visibility``, ``stdout_visibility``), which an
  instructor may edit in the package before uploading it.

Inside Gradescope's container (``$AUTOGRADER_ROOT``, ``/autograder`` by default)
``python -m autograder.gradescope`` grades the one notebook found in ``submission/`` exactly
as ``python -m autograder grade`` does (same assembly, probes, judge and sandbox: Gradescope
runs it as root, so the root backend isolates the student's kernel from ``source/`` and
``results/``) and writes ``results/results.json``: one test per exercise (its share of the
check's points, and the feedback message; hidden scenarios by label only), and the total.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat

from autograder.course import CHECKOUT, Course, UsageError
from autograder.reference import Reference, cached_reference, default_cache
from autograder.results import SubmissionResult

ROOT_ENV = "AUTOGRADER_ROOT"  # where Gradescope lays out the autograder: /autograder
DEFAULT_ROOT = "/autograder"
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
SETTINGS = "lesson.json"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (Ubuntu).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv util-linux
python3.11 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet --upgrade pip
/autograder/venv/bin/python -m pip install --quiet \\
    --extra-index-url https://download.pytorch.org/whl/cpu -r /autograder/source/requirements.txt
/autograder/venv/bin/python -m pip install --quiet --no-deps /autograder/source/dlopt-package
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission: grade submission/ into results/results.json.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
cd "$ROOT/source"
PYTHONPATH="$ROOT/source" exec "$PYTHON" -m autograder.gradescope
"""


# ---------------------------------------------------------------------------------------------
# What a result becomes in Gradescope's results.json
# ---------------------------------------------------------------------------------------------
def results_json(result: SubmissionResult, *, visibility: str = "visible",
                 stdout_visibility: str = "hidden") -> dict:
    """Gradescope's results.json for one graded submission: a test per exercise."""
    tests = []
    for check in result.checks:
        share = check.points / max(len(check.exercises), 1)
        for exercise in check.exercises:
            tests.append({"name": f"{check.grade_id}: {exercise.function}",
                          "score": share if exercise.passed else 0.0, "max_score": share,
                          "status": "passed" if exercise.passed else "failed",
                          "output": exercise.message, "visibility": visibility})
    output = f"{result.lesson}: {result.score:g} / {result.max_score:g}"
    if result.notes:
        output += "\n" + "\n".join(result.notes)
    return {"score": result.score, "output": output, "visibility": visibility,
            "stdout_visibility": stdout_visibility, "tests": tests}


# ---------------------------------------------------------------------------------------------
# Building the package
# ---------------------------------------------------------------------------------------------
def _requirements() -> str:
    """The course's exact pins, without the local packages (installed from source/)."""
    lines = (CHECKOUT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines
                     if line.strip() and not line.lstrip().startswith(("-e", ".", "#"))) + "\n"


def _copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "cache",
                                                            "submitted", "autograded",
                                                            "feedback", "reports", "*.db"))


def build_package(course: Course, lesson: str, out: Path, *, visibility: str = "visible",
                  stdout_visibility: str = "hidden") -> Path:
    """Write the autograder package for ``lesson`` to ``out`` (a folder, or a ``.zip``)."""
    lesson = course.check_lesson(lesson)
    for name, value in (("visibility", visibility), ("stdout visibility", stdout_visibility)):
        if value not in VISIBILITIES:
            raise UsageError(f"{name} must be one of {', '.join(VISIBILITIES)}, not '{value}'")
    if out.suffix == ".zip" and out.is_dir():
        raise UsageError(f"'{out}' is a folder; give a new folder or a .zip file name")
    if out.suffix != ".zip" and (out.is_file() or (out.is_dir() and any(out.iterdir()))):
        raise UsageError(f"'{out}' is a file or a folder that is not empty; give a new folder "
                         f"or a .zip file name")
    release = course.release_notebook(lesson)
    if not release.exists():
        raise UsageError(f"{release} is missing: run 'python -m autograder release {lesson}' "
                         f"first")
    if CHECKOUT is None:
        raise UsageError("the Gradescope package is built from a checkout of the course "
                         "repository (its requirements.txt and src/): run the checkout's grader")
    reference = cached_reference(course, lesson, default_cache(course))
    with tempfile.TemporaryDirectory(prefix="gradescope-") as scratch:
        package = source = Path(scratch) / "package"  # what lands in /autograder/source
        _copy_tree(Path(__file__).resolve().parent, source / "autograder")
        dlopt_package = source / "dlopt-package"
        _copy_tree(CHECKOUT / "src", dlopt_package / "src")
        shutil.copy2(CHECKOUT / "pyproject.toml", dlopt_package / "pyproject.toml")
        (source / "requirements.txt").write_text(_requirements(), encoding="utf-8")
        settings = {"lesson": lesson, "visibility": visibility,
                    "stdout_visibility": stdout_visibility,
                    "reference": reference.to_plain(),
                    "release": nbformat.read(release, as_version=4)}
        (source / SETTINGS).write_text(json.dumps(settings), encoding="utf-8")
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            path = package / name
            path.write_text(text, encoding="utf-8")
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        if out.suffix == ".zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".tmp")
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(package.rglob("*")):
                    if path.is_file():
                        info = zipfile.ZipInfo.from_file(path, path.relative_to(package))
                        archive.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
            os.replace(tmp, out)
        else:
            shutil.copytree(package, out, dirs_exist_ok=True)
    return out


# ---------------------------------------------------------------------------------------------
# Inside Gradescope: grade the submission
# ---------------------------------------------------------------------------------------------
def _the_notebook(submission: Path) -> tuple[Path | None, str]:
    """The one notebook in Gradescope's submission folder, or (None, why not)."""
    from autograder.submissions import IGNORED_NAMES

    notebooks = sorted(p for p in submission.rglob("*.ipynb") if p.is_file() and not any(
        part.startswith(".") or part in IGNORED_NAMES for part in p.relative_to(submission).parts))
    if not notebooks:
        return None, "no notebook (.ipynb) was submitted"
    if len(notebooks) > 1:
        names = ", ".join(str(p.relative_to(submission)) for p in notebooks)
        return None, f"{len(notebooks)} notebooks were submitted ({names}): submit exactly one"
    return notebooks[0], ""


def grade_submission(root: Path) -> dict:
    """Grade ``root/submission`` with ``root/source/lesson.json``; return results.json."""
    from autograder import sandbox as sandboxing
    from autograder.grade_one import RunOptions, grade_notebook, isolation_for
    from autograder.submissions import SubmissionProblem, read_submission

    settings = json.loads((root / "source" / SETTINGS).read_text(encoding="utf-8"))
    reference = Reference.from_plain(settings["reference"])
    visibility = {"visibility": settings.get("visibility", "visible"),
                  "stdout_visibility": settings.get("stdout_visibility", "hidden")}
    path, problem = _the_notebook(root / "submission")
    try:
        if path is None:
            raise SubmissionProblem(problem)
        notebook = read_submission(path)
    except SubmissionProblem as exc:
        return {"score": 0.0, "output": f"Your submission could not be graded: {exc}.",
                **visibility, "tests": []}
    options = RunOptions()
    isolation, backend = None, sandboxing.choose(options.sandbox)  # root, in Gradescope
    if not (reason := sandboxing.unavailable(backend)):
        isolation = isolation_for(backend, sandboxing.BASE_UID,
                                  [str(root), os.path.expanduser("~")],
                                  options.budget)
    else:
        print(f"warning: no sandbox ({reason}); the student's code runs with the grader's "
              f"rights", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="dlopt-grading-") as scratch:
        result, _ = grade_notebook(reference, nbformat.from_dict(settings["release"]), notebook,
                                   "gradescope", Path(scratch) / "work",
                                   cell_timeout=options.cell_timeout, budget=options.budget,
                                   sandbox=isolation)
    return results_json(result, **visibility)


def main() -> int:
    root = Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
    results = grade_submission(root)
    target = root / "results" / "results.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1), encoding="utf-8")
    os.replace(tmp, target)
    print(results["output"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
