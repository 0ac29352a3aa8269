"""Grades follow every change of what decides a verdict, and only those: real grading.

A scratch course grades one submission of lesson 03 with a copy of the dlopt package put
first on the path of the grader and of every kernel it starts (the instructor's and the
student's). Then the copy is changed and the same command runs again:

- a changed driver regrades the submission and gives the verdict the new driver gives, even
  though the instructor's exported data did not change (the old fingerprint hashed only the
  notebooks, the grader and two dlopt modules, and reported such grades as unchanged);
- a changed lesson plot module, or a kit helper no check uses, regrades nothing.

The grading runs with ``--no-sandbox``: the sandbox gives a kernel a fixed environment and
hides /tmp, so it would import the installed dlopt, not the copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import answer_sources, submission, write_submission

from autograder.course import REPO_ROOT, Course
from autograder.results import load_results, read_result

pytestmark = pytest.mark.slow
LESSON = "03_gradient_descent"  # the smallest lesson whose checks use a driver
STUDENT = "in_place"

# The driver change under test: run_update_rule hands each step a copy of w, so a rule that
# updates w in place (which the driver refuses today) gives the right trajectory.
DRIVER_TAKES_COPIES = '''

import functools as _functools

import numpy as _np

_refusing_run_update_rule = run_update_rule


def run_update_rule(step, w0, *args, **kwargs):
    @_functools.wraps(step)
    def on_a_copy(w, dw, state, **hyperparameters):
        return step(_np.array(w, dtype=_np.float64), dw, state, **hyperparameters)

    return _refusing_run_update_rule(on_a_copy, w0, *args, **kwargs)
'''


def grade(where: Path) -> subprocess.CompletedProcess:
    """``python -m autograder grade`` for the course in ``where``, with ``where/site`` (the
    copy of dlopt) first on the path of the grader and of every kernel."""
    script = ("import sys; from pathlib import Path; from autograder.cli import main; "
              "from autograder.course import Course; "
              f"sys.exit(main(['grade', {LESSON!r}, '--submissions', {str(where / 'subs')!r}, "
              f"'--workers', '1', '--no-sandbox'], Course(Path({str(where / 'root')!r}))))")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(where / "site"), str(REPO_ROOT)])}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> Path:
    """A course, a dlopt copy and one submission, graded once: the rule of ``sgd_step``
    updates ``w`` in place, which the driver refuses."""
    import dlopt

    where = tmp_path_factory.mktemp("graded")
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder / LESSON, where / "root" / folder / LESSON)
    shutil.copytree(Path(dlopt.__file__).parent, where / "site" / "dlopt",
                    ignore=shutil.ignore_patterns("__pycache__"))
    answers = answer_sources(LESSON)
    right = "return w - lr * (dw + weight_decay * w), state"
    assert right in answers["sgd_step"], "the solution of sgd_step changed: update this test"
    answers["sgd_step"] = answers["sgd_step"].replace(
        right, "w -= lr * (dw + weight_decay * w)\n    return w, state")
    write_submission(where / "subs", STUDENT, submission(LESSON, answers))
    done = grade(where)
    assert f"graded {STUDENT}:" in done.stdout
    return where


@pytest.fixture
def course_dir(graded, tmp_path) -> Path:
    """A copy of the graded course (its results and gradebook included), for one test."""
    shutil.copytree(graded, tmp_path / "c")
    return tmp_path / "c"


def sgd_step_result(where: Path):
    result = read_result(Course(where / "root"), LESSON, STUDENT)
    check = next(c for c in result.checks if c.grade_id == "test_sgd_step")
    return result, check


def test_the_first_grading_refuses_the_in_place_rule(graded):
    result, check = sgd_step_result(graded)
    assert check.score == 0 and "in place" in check.exercises[0].message
    assert result.score == result.max_score - check.points  # every other answer is right
    assert result.regraded_because == ["not graded before"]
    parts = result.fingerprint_parts
    assert {"submission", "reference", "release", "code", "versions", "options"} <= parts.keys()
    assert "dlopt.grading.drivers.update_rule" in parts["code"]
    assert not any(name.startswith("dlopt.lessons") for name in parts["code"])


def test_a_changed_driver_regrades_with_the_new_verdict(course_dir):
    before, _ = sgd_step_result(course_dir)
    with (course_dir / "site" / "dlopt" / "grading" / "drivers" / "update_rule.py").open(
            "a", encoding="utf-8") as f:
        f.write(DRIVER_TAKES_COPIES)
    done = grade(course_dir)
    assert f"graded {STUDENT}:" in done.stdout and "unchanged" not in done.stdout
    result, check = sgd_step_result(course_dir)
    assert check.score == check.points and check.exercises[0].passed
    assert result.score == result.max_score
    # The instructor's exported data is the same: only the driver's code tells the grades apart.
    assert result.fingerprint_parts["reference"] == before.fingerprint_parts["reference"]
    assert result.regraded_because == ["code/dlopt.grading.drivers.update_rule: changed"]
    recorded = json.loads((course_dir / "root" / "autograder" / "autograded" / STUDENT / LESSON
                           / "results.json").read_text())
    assert recorded["regraded_because"] == result.regraded_because


def test_a_changed_lesson_plot_or_unused_helper_regrades_nothing(course_dir):
    before = load_results(Course(course_dir / "root"), LESSON)
    site = course_dir / "site" / "dlopt"
    for module in ("lessons/l03_gradient_descent/explorer.py", "kit/plotting.py"):
        with (site / module).open("a", encoding="utf-8") as f:
            f.write("\n\ndef added_by_a_test():\n    return 42\n")
    done = grade(course_dir)
    assert f"unchanged {STUDENT}:" in done.stdout and f"graded {STUDENT}" not in done.stdout
    assert load_results(Course(course_dir / "root"), LESSON) == before
