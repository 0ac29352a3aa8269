"""Operating the grader at class scale: skipping, resuming, Dask, exports and lint."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import answer_sources, submission, write_submission

from autograder.cli import main
from autograder.course import REPO_ROOT, Course
from autograder.lint import lint
from autograder.results import load_results

pytestmark = pytest.mark.slow
LESSON = "00_start_here"
STUB = 'raise NotImplementedError("replace this line with your code")'


def make_course(tmp_path) -> Course:
    root = tmp_path / "root"
    for folder in ("solutions", "course"):
        shutil.copytree(REPO_ROOT / folder / LESSON, root / folder / LESSON)
    return Course(root)


def class_of(tmp_path, n: int):
    subs = tmp_path / "subs"
    for k in range(n):
        answers = answer_sources(LESSON) if k % 2 == 0 else None
        write_submission(subs, f"student{k:02d}", submission(LESSON, answers))
    return subs


def scores(course):
    return {r.student_id: r.score for r in load_results(course, LESSON)}


def test_unchanged_submissions_are_skipped_and_force_regrades_them(tmp_path, capsys):
    course = make_course(tmp_path)
    subs = class_of(tmp_path, 2)
    assert main(["grade", LESSON, "--submissions", str(subs)], course) == 0
    first = scores(course)
    capsys.readouterr()
    assert main(["grade", LESSON, "--submissions", str(subs)], course) == 0
    out = capsys.readouterr().out
    assert out.count("unchanged student") == 2 and "graded student" not in out
    nb = nbformat.read(subs / "student01" / "submission.ipynb", 4)
    write_submission(subs, "student01", submission(LESSON, answer_sources(LESSON)))
    assert main(["grade", LESSON, "--submissions", str(subs)], course) == 0
    out = capsys.readouterr().out
    assert "graded student01: 1 / 1" in out and "unchanged student00" in out
    nbformat.write(nb, subs / "student01" / "submission.ipynb")
    assert main(["grade", LESSON, "--submissions", str(subs), "--force"], course) == 0
    assert capsys.readouterr().out.count("graded student") == 2
    assert scores(course) == first


def test_a_batch_killed_mid_way_resumes_without_losing_or_duplicating(tmp_path):
    course = make_course(tmp_path)
    subs = class_of(tmp_path, 6)
    script = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
              f"from autograder.cli import main; from autograder.course import Course; "
              f"from pathlib import Path; sys.exit(main(['grade', {LESSON!r}, '--submissions', "
              f"{str(subs)!r}, '--workers', '1'], Course(Path({str(course.root)!r}))))")
    batch = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    graded = 0
    deadline = time.monotonic() + 300
    while graded < 2 and time.monotonic() < deadline:
        line = batch.stdout.readline()
        graded += line.startswith("graded ")
    batch.send_signal(signal.SIGKILL)  # kill -9, mid-batch
    batch.wait()
    batch.stdout.close()
    assert 2 <= len(load_results(course, LESSON)) < 6
    assert main(["grade", LESSON, "--submissions", str(subs)], course) == 0
    results = scores(course)
    assert len(results) == 6
    assert results == {f"student{k:02d}": float(k % 2 == 0) for k in range(6)}
    rows = export_rows(course, tmp_path / "grades.csv")
    assert len(rows) == 6 and len({r["student_id"] for r in rows}) == 6


def export_rows(course, path):
    assert main(["export", "--csv", str(path)], course) == 0
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dask_processes_started_elsewhere_grade_exactly_like_local_grading(tmp_path):
    """A real ``dask scheduler`` and ``dask worker`` (two processes), started as an instructor
    would, from a folder outside the checkout and without PYTHONPATH: they find the grader
    because it is installed with the environment (instructor/pyproject.toml)."""
    from dask.distributed import Client

    local, remote = make_course(tmp_path / "a"), make_course(tmp_path / "b")
    subs = class_of(tmp_path, 3)
    assert main(["grade", LESSON, "--submissions", str(subs)], local) == 0

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    logs = [open(elsewhere / name, "w") for name in ("scheduler.log", "worker.log")]
    processes = [subprocess.Popen(command, cwd=elsewhere, env=env, stdout=log, stderr=log)
                 for command, log in zip(
                     ([dask, "scheduler", "--host", "127.0.0.1", "--port",
                       address.rsplit(":", 1)[1], "--no-dashboard"],
                      [dask, "worker", address, "--nworkers", "2", "--nthreads", "1",
                       "--no-dashboard"]), logs, strict=True)]
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            where = client.run(lambda: __import__("autograder").__file__)
        assert all(path.startswith(str(REPO_ROOT)) for path in where.values()), where
        assert main(["grade", LESSON, "--submissions", str(subs), "--scheduler", address],
                    remote) == 0
    finally:
        for process in processes[::-1]:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()

    def comparable(course):
        return {r.student_id: (r.score, [e.message for c in r.checks for e in c.exercises])
                for r in load_results(course, LESSON)}

    assert comparable(remote) == comparable(local), (elsewhere / "worker.log").read_text()
    assert export_rows(remote, tmp_path / "r.csv") == export_rows(local, tmp_path / "l.csv")


def test_an_unreachable_scheduler_is_one_clear_error(tmp_path, capsys):
    course = make_course(tmp_path)
    subs = class_of(tmp_path, 1)
    code = main(["grade", LESSON, "--submissions", str(subs), "--scheduler",
                 "tcp://127.0.0.1:9"], course)
    assert code == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err


def test_gradescope_and_canvas_exports(tmp_path):
    course = make_course(tmp_path)
    subs = class_of(tmp_path, 2)
    assert main(["grade", LESSON, "--submissions", str(subs)], course) == 0
    assert main(["export", "--gradescope", str(tmp_path / "gs"), "--canvas",
                 str(tmp_path / "canvas.csv")], course) == 0
    result = json.loads((tmp_path / "gs" / "student00" / LESSON / "results.json").read_text())
    assert result["score"] == 1 and result["tests"][0]["status"] == "passed"
    assert {"name", "score", "max_score", "output", "visibility"} <= set(result["tests"][0])
    failed = json.loads((tmp_path / "gs" / "student01" / LESSON / "results.json").read_text())
    assert failed["score"] == 0 and "not implemented yet" in failed["tests"][0]["output"]
    with open(tmp_path / "canvas.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert rows[0][5:] == [LESSON] and rows[1][0].strip() == "Points Possible"
    assert rows[1][5] == "1"
    assert {r[3]: r[5] for r in rows[2:]} == {"student00": "1", "student01": "0"}


def test_export_needs_a_destination(capsys):
    assert main(["export"]) == 2
    assert "say where to export" in capsys.readouterr().err


def test_lint_passes_on_the_course_without_running():
    assert lint(Course(REPO_ROOT), run=False) == []


def test_lint_exports_lesson_00_and_finds_it_clean():
    assert lint(Course(REPO_ROOT), [LESSON]) == []


def test_lint_names_every_problem_of_a_careless_lesson(tmp_path):
    course = make_course(tmp_path)
    path = course.source_notebook(LESSON)
    nb = nbformat.read(path, 4)
    check = next(c for c in nb.cells if c.metadata["nbgrader"].get("grade"))
    start = check.source.index("### BEGIN HIDDEN TESTS")
    end = check.source.index("### END HIDDEN TESTS") + len("### END HIDDEN TESTS")
    check.source = (check.source[:start] + "noise = np.random.randn(3)\n"
                    + check.source[end:] + "\nstandardize(np.ones((2, 2))).shape == (2, 2)")
    nb.cells[5].metadata["nbgrader"]["grade_id"] = nb.cells[4].metadata["nbgrader"]["grade_id"]
    nbformat.write(nb, path)
    static = [str(p) for p in lint(course, [LESSON], run=False)]
    assert any("also used by cell" in p for p in static)
    assert any("has no hidden scenarios" in p for p in static)
    assert any("ends in a bare boolean" in p for p in static)
    assert any("must end with exercise.check" in p for p in static)
    assert any("numpy's global random state" in p for p in static)


def test_lint_counts_mistakes_and_hidden_scenarios_from_the_export(tmp_path):
    course = make_course(tmp_path)
    path = course.source_notebook(LESSON)
    nb = nbformat.read(path, 4)
    check = next(c for c in nb.cells if c.metadata["nbgrader"].get("grade"))
    start = check.source.index("    mistakes=[")
    end = check.source.index("    ],\n    atol=")
    check.source = check.source[:start] + (
        "    mistakes=[Mistake('forgot the mean', lambda X: X / X.std(axis=0))"
        ",\n") + check.source[end:]
    nbformat.write(nb, path)
    problems = [str(p) for p in lint(course, [LESSON])]
    assert any("names 1 mistake(s); at least 3 are required" in p for p in problems), problems


# --- the command line from anywhere, and what it says as it goes -----------------------------
def test_commands_work_from_another_folder_on_another_course_without_activation(tmp_path):
    """``--course PATH`` from any working folder, and a venv's python run by its path with a
    PATH that does not hold the venv (cron, IDEs, hub services): nbgrader's ``alembic`` is
    still found. The grader itself is not installed as a package yet: PYTHONPATH names it."""
    course = make_course(tmp_path)
    (course.release / LESSON).rename(tmp_path / "old-release")  # released afresh below
    subs = class_of(tmp_path, 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in __import__("os").environ.items()
           if key not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PATH="/usr/bin:/bin", PYTHONPATH=str(REPO_ROOT))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "autograder", "--course", str(course.root),
                               *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=600)

    done = run("release", LESSON)
    assert done.returncode == 0, done.stderr
    assert (course.release_notebook(LESSON).read_bytes()
            == (tmp_path / "old-release" / f"{LESSON}.ipynb").read_bytes())
    done = run("grade", LESSON, "--submissions", str(subs), "--workers", "1")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("graded ")]
    assert len(lines) == 2, done.stdout
    assert lines[0].split("  [")[1].startswith("1/2, about ") and lines[1].endswith("  [2/2]")
    assert scores(course) == {"student00": 1.0, "student01": 0.0}


def test_a_course_that_is_not_one_is_a_clear_error(tmp_path):
    for path, words in ((tmp_path / "missing", "no such folder"),
                        (tmp_path, "no solutions/ folder there")):
        done = subprocess.run([sys.executable, "-m", "autograder", "--course", str(path),
                               "release"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 2 and words in done.stderr
        assert done.stderr.strip().count("\n") == 0, done.stderr


def test_nbgrader_failures_say_their_cause_on_one_line(tmp_path, monkeypatch):
    from autograder.course import UsageError
    from autograder.release import release

    course = make_course(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))  # nbgrader cannot run alembic
    with pytest.raises(UsageError) as caught:
        release(course, [LESSON])
    message = str(caught.value)
    assert message.startswith(f"nbgrader could not generate {LESSON}: FileNotFoundError")
    assert "'alembic'" in message and "\n" not in message and "above traceback" not in message


def test_progress_counts_failures_and_estimates_the_time_left():
    import io

    from autograder.progress import Progress

    now = [100.0]
    out = io.StringIO()
    progress = Progress(4, out, clock=lambda: now[0])
    assert progress.status() == "0/4"
    now[0] += 40
    progress.finished("graded a: 1 / 1")
    now[0] += 20
    progress.finished("skipped b: the grader failed", failed=True)
    now[0] += 30  # 90 s for 3 submissions: 30 s each, one left
    progress.finished("graded c: 0 / 1")
    assert progress.status() == "3/4, 1 failed, about 30 s left"
    now[0] += 6000
    progress.finished("graded d: 1 / 1")
    assert out.getvalue().splitlines() == [
        "graded a: 1 / 1  [1/4, about 2 min left]",
        "skipped b: the grader failed  [2/4, 1 failed, about 60 s left]",
        "graded c: 0 / 1  [3/4, 1 failed, about 30 s left]",
        "graded d: 1 / 1  [4/4, 1 failed]"]


def test_concurrent_graders_never_share_a_sandbox_uid():
    """Two grading processes (two batches, two Dask workers) and two threads of one: each
    root-backend kernel gets a uid of its own, held machine-wide while it runs."""
    from autograder.grade_one import sandbox_uid

    hold = ("import sys\nfrom autograder.grade_one import sandbox_uid\n"
            "with sandbox_uid() as uid:\n    print(uid, flush=True)\n    sys.stdin.read()\n")
    other = subprocess.Popen([sys.executable, "-c", hold], cwd=REPO_ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        theirs = int(other.stdout.readline())
        with sandbox_uid() as first, sandbox_uid() as second:
            assert len({theirs, first, second}) == 3
        with sandbox_uid() as again:
            assert again != theirs  # released ones are reused, held ones are not
    finally:
        other.communicate("")
