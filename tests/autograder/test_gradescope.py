"""The Gradescope autograder package: built by ``python -m autograder gradescope``, run the way
Gradescope runs it (``run_autograder`` in a folder laid out as ``/autograder``, named by
``$AUTOGRADER_ROOT``), it gives the same scores and messages as ``python -m autograder grade``
for honest, mistaken, broken and cheating submissions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import write_submission
from test_redteam import CASES, LESSON

from autograder.cli import main
from autograder.course import REPO_ROOT, Course
from autograder.results import load_results

pytestmark = pytest.mark.slow
STUDENTS = ["instructor", "wrong_whole_array", "cheat_forged_probe", "fs_read_solutions"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The lesson graded by ``grade``, and its Gradescope package as a .zip."""
    tmp = tmp_path_factory.mktemp("gradescope")
    root = tmp / "course"
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder / LESSON, root / folder / LESSON)
    course = Course(root)
    subs = tmp / "subs"
    for student in STUDENTS:
        write_submission(subs, student, CASES[student][0]())
    (subs / "broken").mkdir()
    (subs / "broken" / "submission.ipynb").write_text("{ this is not a notebook")
    assert main(["grade", LESSON, "--submissions", str(subs)], course) == 0
    package = tmp / "autograder.zip"
    assert main(["gradescope", LESSON, "-o", str(package), "--visibility",
                 "after_due_date"], course) == 0
    return {r.student_id: r for r in load_results(course, LESSON)}, subs, package


def run_on_gradescope(package, notebook_folder, tmp_path) -> dict:
    """Lay out ``/autograder`` in ``tmp_path`` as Gradescope does, run run_autograder."""
    root = tmp_path / "autograder"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(root / "source")
    for name in ("setup.sh", "run_autograder"):  # zip keeps the mode bits; extractall does not
        os.chmod(root / "source" / name, 0o755)
    shutil.copytree(notebook_folder, root / "submission")
    (root / "results").mkdir()
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def test_the_package_holds_what_gradescope_needs_and_no_solution(graded, tmp_path):
    _, _, package = graded
    names = zipfile.ZipFile(package).namelist()
    assert {"setup.sh", "run_autograder", "lesson.json", "requirements.txt",
            "autograder/gradescope.py", "dlopt-package/pyproject.toml"} <= set(names)
    assert not [n for n in names if n.startswith(("solutions/", "instructor/"))
                or "dlopt_instructor" in n or n.endswith(".db")]
    settings = json.loads(zipfile.ZipFile(package).read("lesson.json"))
    assert settings["lesson"] == LESSON and settings["visibility"] == "after_due_date"
    source = json.dumps(settings["release"])
    assert "### BEGIN SOLUTION" not in source and "HIDDEN TESTS" not in source
    for script in ("setup.sh", "run_autograder"):
        path = tmp_path / script
        path.write_bytes(zipfile.ZipFile(package).read(script))
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0, script


@pytest.mark.parametrize("student", [*STUDENTS, "broken"])
def test_gradescope_gives_what_grade_gives(graded, student, tmp_path):
    results, subs, package = graded
    data = run_on_gradescope(package, subs / student, tmp_path)
    assert data["visibility"] == "after_due_date" and data["stdout_visibility"] == "hidden"
    if student == "broken":  # grade skips it (0 in the export); Gradescope says why
        assert student not in results
        assert data["score"] == 0 and data["tests"] == []
        assert "could not be graded" in data["output"] and "not a readable notebook" in \
            data["output"]
        return
    result = results[student]
    assert data["score"] == pytest.approx(result.score) == CASES[student][1]
    expected = [(f"{c.grade_id}: {e.function}", e.message) for c in result.checks
                for e in c.exercises]
    assert [(t["name"], t["output"]) for t in data["tests"]] == expected
    assert sum(t["max_score"] for t in data["tests"]) == pytest.approx(result.max_score)
    for test in data["tests"]:  # hidden scenarios by label only: no inputs, no values
        assert "array(" not in test["output"] and "[[" not in test["output"]


def test_bad_package_requests_are_one_clear_error(graded, tmp_path, capsys):
    results, _, package = graded
    course = Course(tmp_path / "nothing")
    assert main(["gradescope", "99_none", "-o", str(tmp_path / "x.zip")], course) == 2
    not_empty = tmp_path / "full"
    not_empty.mkdir()
    (not_empty / "file").write_text("x")
    assert main(["gradescope", LESSON, "-o", str(not_empty)]) == 2
    assert main(["gradescope", LESSON, "-o", str(tmp_path / "y.zip"), "--visibility",
                 "sometimes"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert "not empty" in errors[1] and "visibility must be one of" in errors[2]
