"""The grader's fingerprint: what changes it (anything that decides a verdict) and what does not.

Fast unit tests, no kernels: a small exported reference built here, and a copy of the dlopt
package that the fingerprint reads instead of the installed one. Grading for real, with a
changed driver, is in test_regrading.py.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from autograder import fingerprint
from autograder.course import REPO_ROOT, Course
from autograder.grade_one import RunOptions
from autograder.reference import CheckCell, Reference
from dlopt.grading import CaseData, ExerciseData, Outcome
from dlopt.kit.objectives import quadratic

LESSON = "00_start_here"
OPTIONS = RunOptions()
NB = hashlib.sha256(b"a notebook").hexdigest()  # a submission, as the batch reads it


def reference(expected: float = 1.0) -> Reference:
    """A reference as the instructor's notebook exports it: one check, one exercise."""
    case = CaseData("a quadratic", False, (np.array([1.0, 2.0]), quadratic), {},
                    expected=Outcome(value=np.array([expected, 0.0])),
                    mistake_outputs=[Outcome(value=np.zeros(2))])
    hidden = replace(case, label="hidden", hidden=True)
    exercise = ExerciseData("step", 1e-7, 0.0, ["forgot the sign"], [case, hidden])
    return Reference(LESSON, [CheckCell("test_step", 1.0, [exercise.to_plain()])])


@pytest.fixture
def course(tmp_path) -> Course:
    root = tmp_path / "course_root"
    release = root / "course" / LESSON / f"{LESSON}.ipynb"
    release.parent.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "course" / LESSON / f"{LESSON}.ipynb", release)
    return Course(root)


@pytest.fixture
def dlopt_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the dlopt package, read by the fingerprint in place of the installed one."""
    import dlopt

    copy = tmp_path / "site" / "dlopt"
    shutil.copytree(Path(dlopt.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(fingerprint, "package_dirs", lambda: [copy])
    return copy


def parts(course, ref=None, options=OPTIONS) -> dict:
    return fingerprint.grader_parts(course, LESSON, ref or reference(), options)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.startswith(old), f"{path.name} no longer starts with {old!r}: update this test"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def changed(before: dict, after: dict) -> list[str]:
    assert fingerprint.fingerprint(NB, before).digest != \
        fingerprint.fingerprint(NB, after).digest
    return fingerprint.changes(before, after)


def test_the_same_inputs_give_the_same_fingerprint(course, dlopt_copy):
    first, second = parts(course), parts(course)
    assert first == second
    assert fingerprint.fingerprint(NB, first) == fingerprint.fingerprint(NB, second)
    assert fingerprint.fingerprint(NB, first).parts["submission"] == NB
    json.dumps(first)  # it is stored in results.json


def test_the_submission_changes_it(course, dlopt_copy):
    grader = parts(course)
    a = fingerprint.fingerprint(NB, grader)
    b = fingerprint.fingerprint(fingerprint.sha256(b"another notebook"), grader)
    assert a.digest != b.digest and fingerprint.changes(a.parts, b.parts) == ["submission: changed"]


def test_reference_data_changes_it(course, dlopt_copy):
    """An oracle or a named mistake that gives other numbers, a new hidden scenario, other
    points: all of it is in the exported data."""
    before = parts(course)
    assert changed(before, parts(course, reference(expected=1.5))) == ["reference: changed"]
    more_points = reference()
    more_points.checks[0].points = 2.0
    assert changed(before, parts(course, more_points)) == ["reference: changed"]


@pytest.mark.parametrize("module", [
    "grading/drivers/update_rule.py",
    "grading/probe.py",
    "grading/judge.py",
    "grading/scenario.py",
    "grading/codec.py",
    "kit/learner.py",  # imported by drivers
    "kit/objectives.py",  # named by a scenario (and imported by a driver)
])
def test_a_grading_module_or_what_it_imports_changes_it(course, dlopt_copy, module):
    before = parts(course)
    with (dlopt_copy / module).open("a", encoding="utf-8") as f:
        f.write("\nSTRICTER = True\n")
    name = "dlopt." + module.removesuffix(".py").replace("/", ".")
    assert changed(before, parts(course)) == [f"code/{name}: changed"]


def test_a_new_driver_changes_it(course, dlopt_copy):
    before = parts(course)
    (dlopt_copy / "grading" / "drivers" / "twice.py").write_text(
        "def run_twice(fn, x):\n    return fn(fn(x))\n", encoding="utf-8")
    assert changed(before, parts(course)) == ["code/dlopt.grading.drivers.twice: added"]


def test_a_library_version_changes_it(course, dlopt_copy, monkeypatch):
    before = parts(course)
    real = importlib.metadata.version

    def upgraded(name):
        return "99.0" if name == "numpy" else real(name)

    monkeypatch.setattr(importlib.metadata, "version", upgraded)
    assert changed(before, parts(course)) == [
        f"versions/numpy: {real('numpy')} -> 99.0"]
    assert before["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert before["versions"]["torch"] == real("torch")


def test_the_run_limits_change_it(course, dlopt_copy):
    before = parts(course)
    assert changed(before, parts(course, options=RunOptions(cell_timeout=5))) == [
        "options/cell_timeout: 60 -> 5"]


def test_the_release_changes_it(course, dlopt_copy):
    before = parts(course)
    with course.release_notebook(LESSON).open("a", encoding="utf-8") as f:
        f.write("\n")
    assert changed(before, parts(course)) == ["release: changed"]


@pytest.mark.parametrize("module", [
    "lessons/l01_activations/widgets.py",  # a lesson's plots and widgets
    "lessons/l07_dropout/dropout_plots.py",
    "kit/plotting.py",  # kit helpers no check imports
    "kit/figure_widget.py",
])
def test_lesson_labs_and_unused_kit_helpers_do_not(course, dlopt_copy, module):
    before = parts(course)
    with (dlopt_copy / module).open("a", encoding="utf-8") as f:
        f.write("\n\ndef added_by_a_test():\n    return 42\n")
    assert parts(course) == before


def test_comments_and_docstrings_do_not(course, dlopt_copy):
    before = parts(course)
    driver = dlopt_copy / "grading" / "drivers" / "update_rule.py"
    edit(driver, '"""', '"""Reworded. ')  # the module's docstring
    with driver.open("a", encoding="utf-8") as f:
        f.write("\n# a comment\n\n\n")
    assert parts(course) == before


def test_a_module_named_by_a_scenario_is_covered_with_its_package():
    """Lesson 05's scenarios pass a function of a lesson module: that module decides verdicts
    there (with the package ``__init__`` that importing it runs), its siblings do not."""
    modules = fingerprint.verdict_modules({"dlopt.lessons.l05_regularization.ridge"})
    assert {"dlopt.lessons", "dlopt.lessons.l05_regularization",
            "dlopt.lessons.l05_regularization.ridge"} <= modules.keys()
    assert "dlopt.lessons.l05_regularization.overfit_lab" not in modules
    ref = reference()
    assert fingerprint.referenced_modules(ref) == {"dlopt.kit.objectives"}


def test_the_modules_read_from_imports_are_those_python_loads():
    """The import graph read from the sources holds every dlopt module that importing the
    grading package and all its drivers loads, in a fresh interpreter."""
    script = ("import importlib, json, pkgutil, sys, dlopt.grading as g\n"
              "for m in pkgutil.walk_packages(g.__path__, 'dlopt.grading.'):\n"
              "    importlib.import_module(m.name)\n"
              "print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] == 'dlopt')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = set(json.loads(done.stdout))
    static = set(fingerprint.verdict_modules())
    assert loaded <= static, loaded - static
    assert not any(name.startswith("dlopt.lessons") for name in static)
    assert {"dlopt.grading.probe", "dlopt.grading.drivers.update_rule",
            "dlopt.kit.learner", "dlopt.kit.threads"} <= static
