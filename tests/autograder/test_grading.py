"""The grading workflow: bad input on the command line, and each lesson's own round trip."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import LESSONS, answer_sources, submission, write_submission

from autograder.cli import main
from autograder.course import REPO_ROOT, Course
from autograder.results import load_results

pytestmark = pytest.mark.slow
LESSON = "00_start_here"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, words", [
    (["grade", LESSON, "--submissions", "/nonexistent/folder"], "does not exist"),
    (["grade", "99_nothing", "--submissions", "."], "unknown lesson '99_nothing'"),
    (["feedback", "99_nothing"], "unknown lesson"),
    (["export", "--csv", "/"], "is a folder"),
    (["release", "42_unknown"], "unknown lesson"),
])
def test_bad_input_gets_one_clear_line_and_a_nonzero_exit(args, words):
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and words in done.stderr, done.stderr


def test_an_empty_submissions_folder_is_refused(tmp_path):
    done = run_cli("grade", LESSON, "--submissions", str(tmp_path))
    assert done.returncode == 2 and "holds no student folders" in done.stderr


def test_a_notebook_instead_of_a_folder_is_refused(tmp_path):
    path = write_submission(tmp_path, "alice", submission(LESSON))
    done = run_cli("grade", LESSON, "--submissions", str(path))
    assert done.returncode == 2 and "is not a folder" in done.stderr


def test_lesson01_round_trip(tmp_path):
    """The activations lesson: full marks for the instructor, 0 untouched, and a named
    misconception costs exactly the points of its function."""
    import shutil

    lesson = "01_activations"
    root = tmp_path / "root"
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder, root / folder)
    course = Course(root)
    answers = answer_sources(lesson)
    relu_is_one = dict(answers)  # the relu answer cell holds relu and relu_grad
    relu_is_one["relu"] = answers["relu"].replace(
        "return (np.asarray(x) > 0).astype(np.float64)", "return np.ones_like(x)")
    assert relu_is_one["relu"] != answers["relu"]
    subs = tmp_path / "subs"
    write_submission(subs, "instructor", submission(lesson, answers))
    write_submission(subs, "untouched", submission(lesson))
    write_submission(subs, "relu_grad_is_one", submission(lesson, relu_is_one))
    assert main(["grade", lesson, "--submissions", str(subs)], course) == 0
    results = {r.student_id: r for r in load_results(course, lesson)}
    full = results["instructor"].max_score
    assert full >= 10 and results["instructor"].score == full
    assert results["untouched"].score == 0
    wrong = results["relu_grad_is_one"]
    relu = next(c for c in wrong.checks if c.grade_id == "test_relu")
    assert wrong.score == full - relu.points / 2
    message = next(e.message for e in relu.exercises if e.function == "relu_grad")
    assert "\"ReLU's gradient is 1\" holds only for x > 0" in message


@pytest.mark.parametrize("lesson", [lesson for lesson in LESSONS if lesson != LESSON])
def test_every_lesson_grades_its_own_solution_full_and_its_release_zero(lesson, tmp_path):
    import shutil

    root = tmp_path / "root"
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder / lesson, root / folder / lesson)
    course = Course(root)
    subs = tmp_path / "subs"
    write_submission(subs, "instructor", submission(lesson, answer_sources(lesson)))
    write_submission(subs, "untouched", submission(lesson))
    assert main(["grade", lesson, "--submissions", str(subs)], course) == 0
    results = {r.student_id: r for r in load_results(course, lesson)}
    messages = [e.message for c in results["instructor"].checks for e in c.exercises
                if not e.passed]
    assert results["instructor"].score == results["instructor"].max_score > 0, messages
    assert results["untouched"].score == 0
    assert not results["instructor"].flags


def test_lesson10_round_trip_names_the_misconceptions_and_takes_only_their_points(tmp_path):
    """The compression lesson: a reversed pruning condition and a distillation loss without
    T**2 each cost exactly their check, and the feedback names the mistake."""
    import shutil

    lesson = "10_compression"
    root = tmp_path / "root"
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder / lesson, root / folder / lesson)
    course = Course(root)
    answers = answer_sources(lesson)
    largest = dict(answers)
    largest["magnitude_prune_mask"] = answers["magnitude_prune_mask"].replace(
        "keep[order[:n_prune]] = False", "keep[order[::-1][:n_prune]] = False")
    unscaled = dict(answers)
    unscaled["distillation_loss"] = answers["distillation_loss"].replace(
        "kd = T**2 * np.sum", "kd = np.sum").replace("alpha * T * (np.exp", "alpha / T * (np.exp")
    assert largest != answers and unscaled != answers
    subs = tmp_path / "subs"
    write_submission(subs, "instructor", submission(lesson, answers))
    write_submission(subs, "largest_pruned", submission(lesson, largest))
    write_submission(subs, "no_t_squared", submission(lesson, unscaled))
    assert main(["grade", lesson, "--submissions", str(subs)], course) == 0
    results = {r.student_id: r for r in load_results(course, lesson)}
    full = results["instructor"].max_score
    assert full == 10 and results["instructor"].score == full
    for student, check_id, words in (
            ("largest_pruned", "test_magnitude_prune_mask", "the condition is reversed"),
            ("no_t_squared", "test_distillation_loss", "no T**2")):
        result = results[student]
        check = next(c for c in result.checks if c.grade_id == check_id)
        assert result.score == full - check.points, student
        messages = [e.message for e in check.exercises]
        assert any(words in message for message in messages), messages
