"""Grading round trip: honest work keeps its credit, wrong work names its mistake, cheats earn
nothing, broken submissions never stop the batch, and the gradebook stays intact."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import nbformat
import pytest
from conftest import LESSONS, answer_sources, submission, write_submission

from autograder.cli import main
from autograder.course import REPO_ROOT, Course
from autograder.grading import load_results

pytestmark = pytest.mark.slow
LESSON = "00_start_here"
STUB = 'raise NotImplementedError("replace this line with your code")'
WHOLE_ARRAY = STUB.replace(STUB, "return (X - X.mean()) / X.std()")


def answer(body: str) -> dict[str, str]:
    """The standardize answer cell with its body replaced by ``body``."""
    stub = submission(LESSON).cells
    source = next(c.source for c in stub if c.metadata["nbgrader"].get("grade_id") ==
                  "standardize")
    return {"standardize": source.replace(STUB, body)}


def correct() -> dict[str, str]:
    return answer_sources(LESSON)


FORGE_PROBE = '''
import json, numpy as np, dlopt.probe, dlopt.codec
from IPython.display import publish_display_data
def forged(payload):
    request = json.loads(payload)
    outcomes = [{"value": dlopt.codec.encode(np.zeros(dlopt.codec.decode(c["args"])[0].shape))}
                for c in request["cases"]]
    publish_display_data({dlopt.probe.RESULT_MIME: {"nonce": request["nonce"],
        "function": request["function"], "outcomes": outcomes}})
dlopt.probe.run = forged
'''

DELETE_ASSERTS = '''
def _no_asserts(lines):
    dropped = ("assert", "standardize_checks")
    return [line for line in lines if not line.lstrip().startswith(dropped)]
get_ipython().input_transformers_post.append(_no_asserts)
'''

PATCH_COMPARISONS = '''
import numpy, torch
numpy.allclose = lambda *a, **k: True
numpy.isclose = lambda a, b, **k: numpy.ones(numpy.shape(a), bool)
numpy.array_equal = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
torch.allclose = lambda *a, **k: True
'''

SILENCE_TRACEBACKS = '''
import sys
get_ipython().showtraceback = lambda *a, **k: None
sys.excepthook = lambda *a: None
'''


def edit_check_cell(nb):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_standardize":
            cell.source = "pass  # nothing to see here"
            cell.metadata["nbgrader"]["points"] = 100


def colab_style(nb):
    nb.metadata["colab"] = {"provenance": [], "name": "00_start_here.ipynb"}
    nb.metadata["accelerator"] = "GPU"
    for i, cell in enumerate(nb.cells):
        cell.metadata["id"] = f"colab{i}"
        if cell.cell_type == "code":
            cell.metadata["outputId"] = f"out{i}"


def out_of_order(nb):
    for k, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = 40 - k
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="old output\n")]


def duplicate_answer_cell(nb):
    index = next(i for i, c in enumerate(nb.cells)
                 if c.metadata.get("nbgrader", {}).get("grade_id") == "standardize")
    first_try = nbformat.from_dict(json.loads(json.dumps(nb.cells[index])))
    first_try.source = answer("return X")["standardize"]  # a wrong first attempt, kept above
    nb.cells.insert(index, first_try)


def delete_setup_cell(nb):
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "setup"]


# student id -> (notebook, expected score out of 1)
CASES = {
    "instructor": (lambda: submission(LESSON, correct()), 1),
    "untouched": (lambda: submission(LESSON), 0),
    "wrong_whole_array": (lambda: submission(LESSON, answer(WHOLE_ARRAY)), 0),
    "wrong_rows": (lambda: submission(LESSON, answer(
        "return (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)")), 0),
    "cheat_patched_comparisons": (lambda: submission(
        LESSON, answer(WHOLE_ARRAY), extra_cells=[PATCH_COMPARISONS]), 0),
    "cheat_deletes_asserts": (lambda: submission(
        LESSON, answer(WHOLE_ARRAY), extra_cells=[DELETE_ASSERTS]), 0),
    "cheat_forged_probe": (lambda: submission(LESSON, answer(WHOLE_ARRAY),
                                              extra_cells=[FORGE_PROBE]), 0),
    "cheat_lying_subclass": (lambda: submission(LESSON, answer(
        "class Liar(np.ndarray):\n        def __eq__(self, other):\n            return True\n"
        "        __ne__ = lambda self, other: False\n"
        "    return np.zeros_like(X).view(Liar)")), 0),
    "cheat_always_equal": (lambda: submission(LESSON, answer(
        "class AlwaysEqual:\n        __eq__ = lambda self, other: True\n"
        "        __array__ = lambda self, *a, **k: np.zeros((3, 2))\n"
        "    return AlwaysEqual()")), 0),
    "cheat_silenced_tracebacks": (lambda: submission(
        LESSON, extra_cells=[SILENCE_TRACEBACKS]), 0),
    "cheat_edited_check_cell": (lambda: submission(LESSON, answer(WHOLE_ARRAY),
                                                   edit=edit_check_cell), 0),
    "honest_warnings": (lambda: submission(LESSON, correct(), extra_cells=[
        "import sys, warnings\nwarnings.warn('this is only a warning')\n"
        "print('debugging output', file=sys.stderr)"]), 1),
    # float32 where float64 was expected keeps credit when within the tolerance
    "honest_float32": (lambda: submission(LESSON, answer(
        "std = X.std(axis=0)\n"
        "    return ((X - X.mean(axis=0)) / np.where(std > 0, std, 1)).astype(np.float32)")), 1),
    "honest_colab": (lambda: submission(LESSON, correct(), edit=colab_style), 1),
    "honest_out_of_order": (lambda: submission(LESSON, correct(), edit=out_of_order), 1),
    "honest_duplicated_cell": (lambda: submission(LESSON, correct(),
                                                  edit=duplicate_answer_cell), 1),
    "honest_deleted_setup": (lambda: submission(LESSON, correct(), edit=delete_setup_cell), 1),
}
BROKEN = ["broken_not_json", "broken_png", "broken_empty", "broken_two_notebooks"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("course")
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder, root / folder)
    course = Course(root)
    subs = tmp_path_factory.mktemp("submissions")
    for student, (build, _) in CASES.items():
        name = "My Homework (1).ipynb" if student == "honest_colab" else "submission.ipynb"
        write_submission(subs, student, build(), name)
    (subs / "broken_not_json").mkdir()
    (subs / "broken_not_json" / "hw.ipynb").write_text("{ this is not json")
    (subs / "broken_png").mkdir()
    (subs / "broken_png" / "hw.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (subs / "broken_empty").mkdir()
    write_submission(subs, "broken_two_notebooks", submission(LESSON, correct()), "a.ipynb")
    write_submission(subs, "broken_two_notebooks", submission(LESSON), "b.ipynb")
    return course, subs


@pytest.fixture(scope="module")
def first_run(graded):
    course, subs = graded
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["grade", LESSON, "--submissions", str(subs), "--workers", "2"], course)
    results = {r.student_id: r for r in load_results(course, LESSON)}
    return code, out.getvalue(), err.getvalue(), results


def export(course, path):
    assert main(["export", "--csv", str(path)], course) == 0
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_batch_completes_despite_broken_submissions(first_run):
    code, out, err, results = first_run
    assert code == 0
    assert set(results) == set(CASES)
    assert f"{len(CASES)} submission(s) of {LESSON} graded" in out
    for student in BROKEN:
        assert sum(line.startswith(f"skipped {student}:") for line in err.splitlines()) == 1
    assert "not a readable notebook" in err and "2 notebooks (a.ipynb, b.ipynb)" in err
    assert "no notebook (.ipynb) in the folder" in err


@pytest.mark.parametrize("student", sorted(CASES))
def test_each_submission_gets_exactly_what_it_earned(first_run, student):
    result = first_run[3][student]
    expected = CASES[student][1]
    assert result.max_score == 1
    assert result.score == expected, (student, result.checks[0].exercises[0].message)


def test_wrong_answers_are_told_which_mistake_they_made(first_run):
    results = first_run[3]
    message = results["wrong_whole_array"].checks[0].exercises[0].message
    assert "one mean and std for the whole array" in message
    rows = results["wrong_rows"].checks[0].exercises[0].message
    assert "each row (axis=1) instead of each column" in rows
    assert "not implemented yet" in results["untouched"].checks[0].exercises[0].message
    assert "not a plain value" in results["cheat_lying_subclass"].checks[0].exercises[0].message


def test_hidden_scenarios_are_named_but_their_inputs_never_shown(first_run):
    cases = first_run[3]["wrong_whole_array"].checks[0].exercises[0].cases
    hidden = [c for c in cases if c["hidden"]]
    assert hidden and all(set(c) == {"label", "hidden", "passed", "problem", "mistake"}
                          for c in cases)


def test_gradebook_export_matches_the_results(graded, first_run, tmp_path):
    course, _ = graded
    rows = export(course, tmp_path / "grades.csv")
    assert list(rows[0]) == ["student_id", "lesson", "score", "max_score"]
    scores = {r["student_id"]: float(r["score"]) for r in rows if r["lesson"] == LESSON}
    assert {s: v for s, v in scores.items() if s in CASES} == {
        s: float(points) for s, (_, points) in CASES.items()}
    # broken submissions still list the student, with 0
    assert all(scores[student] == 0.0 for student in BROKEN)


def test_regrading_is_idempotent(graded, first_run, tmp_path):
    course, subs = graded
    before = export(course, tmp_path / "before.csv")
    assert main(["grade", LESSON, "--submissions", str(subs)], course) == 0
    assert export(course, tmp_path / "after.csv") == before


def test_feedback_pages_escape_student_output(graded, first_run):
    course, _ = graded
    assert main(["feedback", LESSON], course) == 0
    page = (course.feedback / "wrong_whole_array" / LESSON / f"{LESSON}.html").read_text()
    assert "Score: 0 / 1" in page and "one mean and std for the whole array" in page
    assert "hidden" in page and "default-src 'none'" in page
    cheat = (course.feedback / "cheat_lying_subclass" / LESSON / f"{LESSON}.html").read_text()
    assert "class Liar(np.ndarray)" in cheat and "<script" not in cheat


def test_autograded_notebook_keeps_nbgrader_layout(graded, first_run):
    course, _ = graded
    nb = nbformat.read(course.autograded / "instructor" / LESSON / f"{LESSON}.ipynb", 4)
    check = next(c for c in nb.cells if c.metadata["nbgrader"].get("grade_id") ==
                 "test_standardize")
    assert check.outputs[0]["text"].startswith("✓ standardize")
    assert (course.submitted / "honest_colab" / LESSON / f"{LESSON}.ipynb").exists()


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


def test_nbgrader_own_commands_read_our_gradebook(graded, first_run, tmp_path):
    """Instructors keep nbgrader's workflow: its export sees the grades we recorded."""
    import shutil

    course, _ = graded
    (course.root / "autograder").mkdir(exist_ok=True)
    shutil.copy(REPO_ROOT / "nbgrader_config.py", course.root)
    shutil.copy(REPO_ROOT / "autograder" / "nbgrader_config.py", course.root / "autograder")
    command = [sys.executable, "-m", "nbgrader", "export", "--to", str(tmp_path / "nbgrader.csv")]
    done = subprocess.run(command, cwd=course.root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "nbgrader.csv", newline="") as f:
        rows = {r["student_id"]: float(r["score"]) for r in csv.DictReader(f)}
    assert rows["instructor"] == 1.0 and rows["cheat_forged_probe"] == 0.0


def test_runaway_cells_are_stopped_and_the_batch_goes_on(graded, first_run, tmp_path):
    course, _ = graded
    busy_loop = "import time\nwhile True:\n    time.sleep(0.01)"
    deaf_loop = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n" + busy_loop
    write_submission(tmp_path, "loops_then_answers", submission(
        LESSON, correct(), extra_cells=[busy_loop]))
    write_submission(tmp_path, "ignores_sigint", submission(
        LESSON, correct(), extra_cells=[deaf_loop]))
    write_submission(tmp_path, "instructor", submission(LESSON, correct()))
    code = main(["grade", LESSON, "--submissions", str(tmp_path), "--cell-timeout", "3",
                 "--timeout", "20"], course)
    assert code == 0
    results = {r.student_id: r for r in load_results(course, LESSON)}
    assert results["loops_then_answers"].score == 1  # interrupted, then the rest ran
    assert results["ignores_sigint"].score == 0
    assert any("timeout" in flag for flag in results["ignores_sigint"].flags)
    assert results["instructor"].score == 1


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
