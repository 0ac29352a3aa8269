"""The red-team suite: submissions that try to cheat, break or abuse the grader, and honest
but odd ones. Every case asserts: no illegitimate point, honest work keeps its credit, the
batch completes, the gradebook and the course files are intact, attacks are flagged.

The class is graded twice, once per sandbox backend (``run_of``): as root with the root
backend (``first_run``), and by an unprivileged user with the default, which is then the
user-namespace backend (``unprivileged_run``; see tests/unprivileged.py). The outcome tests
run against both; the tests of what follows grading (exports, feedback, regrading) against
the first."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest
import unprivileged
from conftest import answer_sources, submission, write_submission

from autograder.cli import main
from autograder.course import REPO_ROOT, Course
from autograder.results import load_results

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
import json, numpy as np, dlopt.grading.probe, dlopt.grading.codec
from IPython.display import publish_display_data
def forged(payload):
    request = json.loads(payload)
    codec = dlopt.grading.codec
    outcomes = [{"value": codec.encode(np.zeros(codec.decode(c["args"])[0].shape))}
                for c in request["cases"]]
    publish_display_data({dlopt.grading.probe.RESULT_MIME: {"nonce": request["nonce"],
        "function": request["function"], "outcomes": outcomes}})
dlopt.grading.probe.run = forged
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


def cells(*sources):
    """A wrong answer (statistics over the whole array) plus the given attack cells."""
    return lambda: submission(LESSON, answer(WHOLE_ARRAY), extra_cells=list(sources))


def honest(*sources, edit=None):
    """The right answer plus the given (harmless) cells."""
    return lambda: submission(LESSON, correct(), extra_cells=list(sources), edit=edit)


SECRET = "dlopt-redteam-secret-4711"
REPO = str(REPO_ROOT)

PATCH_TORCH = """
import torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
"""
AST_TRANSFORMER = """
import ast
class DropChecks(ast.NodeTransformer):
    def visit_Expr(self, node):
        return None if 'check' in ast.dump(node) or 'probe' in ast.dump(node) else node
get_ipython().ast_transformers.append(DropChecks())
"""
EVENT_HOOK = """
import json, dlopt.grading.probe
from IPython.display import publish_display_data
def after(result):
    src = result.info.raw_cell
    if 'nonce' in src:
        nonce = src.split('nonce\\\\": \\\\"')[1].split('\\\\"')[0]
        mime = dlopt.grading.probe.RESULT_MIME
        publish_display_data({mime: {"nonce": nonce, "function": "standardize",
                              "outcomes": []}})
get_ipython().events.register('post_run_cell', after)
"""
REDEFINE_HELPERS = """
import dlopt.grading, dlopt.grading.codec
dlopt.grading.judge = lambda *a, **k: None
dlopt.grading.compare = lambda *a, **k: ''
dlopt.grading.Exercise.check = lambda self, fn: print('all good')
dlopt.grading.codec.encode = lambda value, _depth=0: {'t': 'py', 'v': 'pass'}
"""
FAKE_MODULE = """
import sys, types
fake = types.ModuleType('dlopt.grading.probe')
fake.run = lambda payload: print('passed')
sys.modules['dlopt.grading.probe'] = fake
"""
PATCH_BUILTINS = """
import builtins
builtins.isinstance = lambda *a: True
"""
WALK_UP = """
import os
found = []
for up in range(1, 8):
    base = os.path.join(*(['..'] * up))
    for name in ('solutions', 'autograder', 'gradebook.db'):
        if os.path.exists(os.path.join(base, name)):
            found.append(os.path.join(base, name))
if not found:
    raise FileNotFoundError('no solutions in reach: ' + repr(os.listdir('..')))
"""
READ_SOLUTIONS = f"""
print(open('{REPO}/solutions/00_start_here/00_start_here.ipynb').read()[:100])
"""
READ_GRADEBOOK = f"""
import sqlite3
db = sqlite3.connect('file:{REPO}/autograder/gradebook.db?mode=ro', uri=True)
print(db.execute('select * from grade').fetchall())
"""
OTHER_SUBMISSIONS = """
import glob
others = glob.glob('/tmp/**/*.ipynb', recursive=True)
print(others)
assert others, 'no other submission in reach'
"""
READ_SECRET = """
import os
raise RuntimeError('secret: ' + os.environ.get('DLOPT_REDTEAM_SECRET', 'absent'))
"""
WRITE_GRADEBOOK = f"""
import sqlite3
db = sqlite3.connect('{REPO}/autograder/gradebook.db')
db.execute('update grade set auto_score = 100')
db.commit()
"""
INJECT_CONFIG = f"""
with open('{REPO}/nbgrader_config.py', 'a') as f:
    f.write('\\nimport os; os.system(\\"touch /tmp/pwned\\")\\n')
"""
CRAFTED_FILES = """
import pickle, json
pickle.dump({'score': 100}, open('results.pkl', 'wb'))
json.dump({'score': 1, 'max_score': 1}, open('results.json', 'w'))
open('grader.log', 'w').write('graded: 1 / 1\\n')
"""
KILL_PARENT = """
import os, signal
os.kill(os.getppid(), signal.SIGKILL)
os.killpg(0, signal.SIGKILL)
"""
BACKGROUND = """
import subprocess
subprocess.Popen(['sleep', '600'], start_new_session=True, stdout=subprocess.DEVNULL)
"""
EXIT_KERNEL = "import os\nos._exit(3)"
INFINITE = "while True:\n    pass"
DEAF = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
LONG_SLEEP = "import time\ntime.sleep(3600)"
MEMORY_BOMB = "import numpy as np\nhog = np.ones((20, 2**27))"  # 20 GiB
PROCESS_BOMB = """
import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
except OSError as error:
    raise OSError(f'stopped after {children} processes: {error}')
"""
DISK_FILL = """
with open('fill.bin', 'wb') as f:
    for _ in range(4096):
        f.write(b'x' * 2**20)
"""
OUTPUT_FLOOD = "line = 'x' * 1000\nfor _ in range(50_000):\n    print(line)"
SCRIPT_OUTPUT = """
from IPython.display import HTML, display
print('<script>alert("stdout")</script>')
display(HTML('<img src=x onerror="alert(1)">'))
raise ValueError('<script>alert("error")</script><img src=x onerror=alert(2)>')
"""
GPU_ONLY = "import torch\nx = torch.zeros(3).cuda()"


def tamper(edit_fn):
    return lambda: submission(LESSON, answer(WHOLE_ARRAY), edit=edit_fn)


def delete_check_cell(nb):
    nb.cells = [c for c in nb.cells if not c.metadata.get("nbgrader", {}).get("grade")]


def move_check_cell(nb):
    check = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    nb.cells.remove(check)
    nb.cells.insert(2, check)


def duplicate_check_cell(nb):
    check = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade"))
    nb.cells.append(nbformat.from_dict(json.loads(json.dumps(check))))


def answer_cell_claims_points(nb):
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            meta.update(grade=True, points=100, grade_id="test_standardize")
        elif meta.get("grade"):
            meta.update(grade=False, solution=True, grade_id="standardize")


def strip_metadata(nb):
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)


def other_lesson(nb):
    other = submission("01_activations")
    nb.cells, nb.nbformat_minor = other.cells, other.nbformat_minor


# student id -> (notebook builder, expected score out of 1, expected to be flagged)
CASES = {
    "instructor": (lambda: submission(LESSON, correct()), 1, False),
    "untouched": (lambda: submission(LESSON), 0, False),
    "wrong_whole_array": (lambda: submission(LESSON, answer(WHOLE_ARRAY)), 0, False),
    "wrong_rows": (lambda: submission(LESSON, answer(
        "return (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)")), 0, False),
    # in-process subversion
    "cheat_patched_numpy": (cells(PATCH_COMPARISONS), 0, True),
    "cheat_patched_torch": (cells(PATCH_TORCH), 0, True),
    "cheat_deletes_asserts": (cells(DELETE_ASSERTS), 0, True),
    "cheat_ast_transformer": (cells(AST_TRANSFORMER), 0, True),
    "cheat_event_hook": (cells(EVENT_HOOK), 0, True),
    "cheat_forged_probe": (cells(FORGE_PROBE), 0, True),
    "cheat_redefined_helpers": (cells(REDEFINE_HELPERS), 0, True),
    "cheat_fake_probe_module": (cells(FAKE_MODULE), 0, True),
    "cheat_patched_builtins": (cells(PATCH_BUILTINS), 0, True),
    "cheat_lying_subclass": (lambda: submission(LESSON, answer(
        "class Liar(np.ndarray):\n        def __eq__(self, other):\n            return True\n"
        "        __ne__ = lambda self, other: False\n"
        "    return np.zeros_like(X).view(Liar)")), 0, True),
    "cheat_always_equal": (lambda: submission(LESSON, answer(
        "class AlwaysEqual:\n        __eq__ = lambda self, other: True\n"
        "        __array__ = lambda self, *a, **k: np.zeros((3, 2))\n"
        "    return AlwaysEqual()")), 0, True),
    "cheat_silenced_tracebacks": (lambda: submission(
        LESSON, extra_cells=[SILENCE_TRACEBACKS]), 0, True),
    # notebook tampering
    "tamper_edited_check_cell": (tamper(edit_check_cell), 0, False),
    "tamper_deleted_check_cell": (tamper(delete_check_cell), 0, False),
    "tamper_moved_check_cell": (tamper(move_check_cell), 0, False),
    "tamper_duplicated_check_cell": (tamper(duplicate_check_cell), 0, False),
    "tamper_metadata_swapped": (tamper(answer_cell_claims_points), 0, False),
    "tamper_other_lesson": (tamper(other_lesson), 0, False),
    # filesystem and secrets
    "fs_walk_up": (cells(WALK_UP), 0, True),
    "fs_read_solutions": (cells(READ_SOLUTIONS), 0, True),
    "fs_read_gradebook": (cells(READ_GRADEBOOK), 0, True),
    "fs_other_submissions": (cells(OTHER_SUBMISSIONS), 0, True),
    "fs_environment_secret": (cells(READ_SECRET), 0, True),
    # grader integrity
    "grader_write_gradebook": (cells(WRITE_GRADEBOOK), 0, True),
    "grader_inject_config": (cells(INJECT_CONFIG), 0, True),
    "grader_crafted_files": (cells(CRAFTED_FILES), 0, True),
    "grader_kill_parent": (cells(KILL_PARENT), 0, True),
    "grader_background_process": (cells(BACKGROUND), 0, True),
    "grader_exit_kernel": (cells(EXIT_KERNEL), 0, True),
    # resource abuse (bounded by --cell-timeout and --timeout below)
    "abuse_infinite_loop": (cells(INFINITE), 0, True),
    "abuse_sigint_ignored": (cells(DEAF), 0, True),
    "abuse_long_sleep": (cells(LONG_SLEEP), 0, True),
    "abuse_memory_bomb": (cells(MEMORY_BOMB), 0, True),
    "abuse_process_bomb": (cells(PROCESS_BOMB), 0, True),
    "abuse_disk_fill": (cells(DISK_FILL), 0, True),
    "abuse_output_flood": (cells(OUTPUT_FLOOD), 0, True),
    # rendering
    "render_script_tags": (cells(SCRIPT_OUTPUT), 0, False),
    "render_script_in_answer": (lambda: submission(LESSON, answer(
        "# </pre><script>alert('answer')</script>\n    return X")), 0, False),
    # honest but odd: full credit, not flagged
    "honest_warnings": (honest("import sys, warnings\nwarnings.warn('only a warning')\n"
                               "print('debugging output', file=sys.stderr)"), 1, False),
    # float32 where float64 was expected keeps credit when within the tolerance
    "honest_float32": (lambda: submission(LESSON, answer(
        "std = X.std(axis=0)\n"
        "    return ((X - X.mean(axis=0)) / np.where(std > 0, std, 1)).astype(np.float32)")),
        1, False),
    "honest_colab": (honest(edit=colab_style), 1, False),
    "honest_out_of_order": (honest(edit=out_of_order), 1, False),
    "honest_duplicated_cell": (honest(edit=duplicate_answer_cell), 1, False),
    "honest_deleted_setup": (honest(edit=delete_setup_cell), 1, False),
    "honest_no_metadata": (honest(edit=strip_metadata), 1, False),
    "honest_gpu_only_code": (honest(GPU_ONLY), 1, False),
}
BROKEN = ["broken_not_json", "broken_png", "broken_empty", "broken_two_notebooks"]


def _write_broken(subs) -> None:
    (subs / "broken_not_json").mkdir()
    (subs / "broken_not_json" / "hw.ipynb").write_text("{ this is not json")
    (subs / "broken_png").mkdir()
    (subs / "broken_png" / "hw.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (subs / "broken_empty").mkdir()
    write_submission(subs, "broken_two_notebooks", submission(LESSON, correct()), "a.ipynb")
    write_submission(subs, "broken_two_notebooks", submission(LESSON), "b.ipynb")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder, root / folder)
    course = Course(root)
    subs = tmp_path_factory.mktemp("submissions")
    for student, (build, *_) in CASES.items():
        name = "My Homework (1).ipynb" if student == "honest_colab" else "submission.ipynb"
        write_submission(subs, student, build(), name)
    _write_broken(subs)
    return course, subs


@pytest.fixture(scope="module")
def first_run(graded):
    course, subs = graded
    import contextlib
    import io

    protected = fingerprint(course)
    os.environ["DLOPT_REDTEAM_SECRET"] = SECRET  # in the grader's environment only

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["grade", LESSON, "--submissions", str(subs), "--workers", "2",
                     "--cell-timeout", "12", "--timeout", "45"], course)
    del os.environ["DLOPT_REDTEAM_SECRET"]
    results = {r.student_id: r for r in load_results(course, LESSON)}
    assert fingerprint(course) == protected, "a submission changed the course or repository"
    return code, out.getvalue(), err.getvalue(), results


@pytest.fixture(scope="module")
def unprivileged_run():
    """The same class graded by an unprivileged user (``dlopt-grader`` when the tests run as
    root), with ``--sandbox`` left to its default. Attacks aim at that run's course root."""
    root = unprivileged.folder("dlopt-course-")
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder, root / folder)
    course = Course(root)
    subs, home = unprivileged.folder("dlopt-submissions-"), unprivileged.folder("dlopt-home-")
    for student, (build, *_) in CASES.items():
        nb = nbformat.from_dict(json.loads(json.dumps(build()).replace(REPO, str(root))))
        name = "My Homework (1).ipynb" if student == "honest_colab" else "submission.ipynb"
        write_submission(subs, student, nb, name)
    _write_broken(subs)
    unprivileged.give(root)
    unprivileged.give(subs)
    protected = fingerprint(course)
    try:
        done = unprivileged.run(
            [unprivileged.python(), "-m", "autograder", "--course", str(root), "grade", LESSON,
             "--submissions", str(subs), "--workers", "2", "--cell-timeout", "12",
             "--timeout", "45"], cwd=home, timeout=1200,
            env={"HOME": str(home), "DLOPT_REDTEAM_SECRET": SECRET})
        assert fingerprint(course) == protected, "a submission changed the course"
        results = {r.student_id: r for r in load_results(course, LESSON)}
        yield done.returncode, done.stdout, done.stderr, results
    finally:
        for path in (root, subs, home):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["root", "userns"])
def run_of(request):
    """The class's grading under each sandbox backend: (exit code, stdout, stderr, results)."""
    if request.param == "userns":
        return request.getfixturevalue("unprivileged_run")
    return request.getfixturevalue("first_run")


def fingerprint(course) -> dict[str, str]:
    """Hashes of what no submission may change: solutions/, course/ and the configuration."""
    import hashlib

    files = [p for folder in ("solutions", "course") for p in (course.root / folder).rglob("*")
             if p.is_file()]
    files += [REPO_ROOT / "nbgrader_config.py", REPO_ROOT / "autograder" / "nbgrader_config.py"]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def export(course, path):
    assert main(["export", "--csv", str(path)], course) == 0
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_batch_completes_despite_broken_submissions(run_of):
    code, out, err, results = run_of
    assert code == 0
    assert set(results) == set(CASES)
    assert f"{len(CASES)} submission(s) of {LESSON} graded" in out
    for student in BROKEN:
        assert sum(line.startswith(f"skipped {student}:") for line in err.splitlines()) == 1
    assert "not a readable notebook" in err and "2 notebooks (a.ipynb, b.ipynb)" in err
    assert "no notebook (.ipynb) in the folder" in err


@pytest.mark.parametrize("student", sorted(CASES))
def test_each_submission_gets_exactly_what_it_earned(run_of, student):
    result = run_of[3][student]
    expected = CASES[student][1]
    assert result.max_score == 1
    assert result.score == expected, (student, result.checks[0].exercises[0].message)


def test_wrong_answers_are_told_which_mistake_they_made(run_of):
    results = run_of[3]
    message = results["wrong_whole_array"].checks[0].exercises[0].message
    assert "one mean and std for the whole array" in message
    rows = results["wrong_rows"].checks[0].exercises[0].message
    assert "each row (axis=1) instead of each column" in rows
    assert "not implemented yet" in results["untouched"].checks[0].exercises[0].message
    assert "not a plain value" in results["cheat_lying_subclass"].checks[0].exercises[0].message


def test_hidden_scenarios_are_named_but_their_inputs_never_shown(run_of):
    cases = run_of[3]["wrong_whole_array"].checks[0].exercises[0].cases
    hidden = [c for c in cases if c["hidden"]]
    assert hidden and all(set(c) == {"label", "hidden", "passed", "problem", "mistake"}
                          for c in cases)


def test_gradebook_export_matches_the_results(graded, first_run, tmp_path):
    course, _ = graded
    rows = export(course, tmp_path / "grades.csv")
    assert list(rows[0]) == ["student_id", "lesson", "score", "max_score", "submitted_at",
                             "late", "penalty", "final_score"]
    assert all(r["late"] == "" and r["final_score"] == r["score"] for r in rows)  # no policy
    scores = {r["student_id"]: float(r["score"]) for r in rows if r["lesson"] == LESSON}
    assert {s: v for s, v in scores.items() if s in CASES} == {
        s: float(points) for s, (_, points, _) in CASES.items()}
    # broken submissions still list the student, with 0
    assert all(scores[student] == 0.0 for student in BROKEN)


#: Regraded with --force: honest work, a wrong answer, and each kind of attack.
REGRADED = ["instructor", "honest_colab", "wrong_whole_array", "cheat_forged_probe",
            "cheat_lying_subclass", "tamper_edited_check_cell", "fs_read_solutions",
            "grader_write_gradebook"]


def test_regrading_is_idempotent(graded, first_run, tmp_path):
    """The same submissions graded again from scratch (--force, the first run's limits) get
    the same export rows. A representative part of the class is regraded: all of it would
    double the red team's time (skipping unchanged work: test_grader_ops.py)."""
    import shutil

    course, subs = graded
    again = tmp_path / "again"
    for student in REGRADED:
        shutil.copytree(subs / student, again / student)
    limits = ["--workers", "2", "--cell-timeout", "12", "--timeout", "45"]
    before = export(course, tmp_path / "before.csv")
    assert main(["grade", LESSON, "--submissions", str(again), "--force", *limits], course) == 0
    assert export(course, tmp_path / "after.csv") == before
    assert {r["student_id"] for r in before} >= set(REGRADED)


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




@pytest.mark.parametrize("student", sorted(CASES))
def test_attacks_are_flagged_and_honest_work_is_not(run_of, student):
    result = run_of[3][student]
    assert bool(result.flags) == CASES[student][2], result.flags


def test_no_secret_reaches_a_student_and_no_path_is_in_reach(run_of):
    results = run_of[3]
    secret_error = results["fs_environment_secret"].cell_errors
    assert any("secret: absent" in e["evalue"] for e in secret_error), secret_error
    for student in ("fs_read_solutions", "fs_read_gradebook", "fs_walk_up",
                    "fs_other_submissions", "grader_write_gradebook", "grader_inject_config"):
        names = {e["ename"] for e in results[student].cell_errors}
        assert names & {"FileNotFoundError", "OperationalError", "AssertionError",
                        "PermissionError", "OSError"}, (student, results[student].cell_errors)
    assert not os.path.exists("/tmp/pwned")


def test_resource_abuse_is_stopped_where_it_happens(run_of):
    results = run_of[3]
    errors = {s: {e["ename"] for e in results[s].cell_errors} for s in results}
    interrupted = {"CellTimeout", "KeyboardInterrupt"}  # the grader stopped the cell
    assert interrupted & errors["abuse_infinite_loop"]
    assert interrupted & errors["abuse_long_sleep"]
    assert "MemoryError" in errors["abuse_memory_bomb"]
    assert errors["abuse_process_bomb"] & {"OSError", "BlockingIOError"}
    assert errors["abuse_disk_fill"] & {"OSError"}
    assert any("timeout" in f for f in results["abuse_sigint_ignored"].flags)
    assert any("output flood" in f for f in results["abuse_output_flood"].flags)


def test_no_student_process_outlives_the_batch(first_run):
    import subprocess

    from autograder.sandbox import BASE_UID

    ps = subprocess.run(["ps", "-eo", "uid=,args="], capture_output=True, text=True).stdout
    left = [line for line in ps.splitlines()
            if line.split() and BASE_UID <= int(line.split()[0]) < BASE_UID + 64]
    assert not left, left


def test_no_process_of_the_unprivileged_grader_outlives_its_batch(unprivileged_run):
    """The grading user's processes are gone: every sandbox died with its kernel."""
    uid = unprivileged.user().pw_uid
    if uid == os.geteuid():
        pytest.skip("the tests run as the grading user: this process is one of its own")
    import time

    for _ in range(20):  # a killed runner's sandbox is reaped by init, a moment later
        ps = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-u", str(uid)],
                            capture_output=True, text=True).stdout
        if not ps.strip():
            break
        time.sleep(0.5)
    assert not ps.strip(), ps


def test_output_in_feedback_is_inert(graded, first_run):
    course, _ = graded
    assert main(["feedback", LESSON], course) == 0
    for student in ("render_script_tags", "render_script_in_answer"):
        page = (course.feedback / student / LESSON / f"{LESSON}.html").read_text()
        assert "<script" not in page and "<img" not in page  # only escaped text remains
        assert "&lt;script&gt;" in page or "&lt;/pre&gt;&lt;script&gt;" in page


def test_a_student_without_a_gpu_is_told_why_cuda_failed(run_of):
    notes = run_of[3]["honest_gpu_only_code"].notes
    assert any("no GPU" in note for note in notes)
