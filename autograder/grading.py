"""``grade``: run every submission in its own kernel and decide verdicts here, in the grader.

For each student: assemble the notebook to run (the student's code, the instructor's given
cells, one probe per exercise), execute it in a fresh kernel in a scratch folder, read back
the probes' plain data, and judge it against the instructor's exported expectations with
:func:`dlopt.check.judge`. Submissions run in parallel (``--workers``); only the main thread
writes the gradebook, one whole submission per transaction.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from autograder import gradebook
from autograder import sandbox as sandboxing
from autograder.assemble import assemble, is_answer_cell, is_check_cell, nbgrader_meta
from autograder.course import REPO_ROOT, Course, UsageError
from autograder.reference import Reference, build_reference
from autograder.release import record_in_gradebook
from autograder.runner import execute
from autograder.suspicion import runtime_flags, scan_code
from dlopt.check import EXPORT_ENV, ExerciseData, Outcome, judge
from dlopt.probe import RESULT_MIME

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
IGNORED_NAMES = {"__MACOSX", ".ipynb_checkpoints"}


class SubmissionProblem(Exception):
    """A submission that cannot be graded (unreadable, missing, ambiguous)."""


@dataclass
class ExerciseResult:
    function: str
    passed: bool
    message: str
    cases: list[dict]


@dataclass
class CheckResult:
    grade_id: str
    points: float
    score: float
    exercises: list[ExerciseResult]


@dataclass
class SubmissionResult:
    student_id: str
    lesson: str
    score: float
    max_score: float
    checks: list[CheckResult]
    flags: list[str] = field(default_factory=list)  # what the instructor should look at
    cell_errors: list[dict] = field(default_factory=list)  # errors in the student's own cells
    notes: list[str] = field(default_factory=list)  # what the student should know about the run


# ---------------------------------------------------------------------------------------------
# Finding and reading submissions
# ---------------------------------------------------------------------------------------------
@dataclass
class Found:
    student_id: str
    notebook: Path | None
    problem: str = ""


def find_submissions(submissions: Path) -> list[Found]:
    """One entry per student folder of ``submissions``; raises UsageError if there are none."""
    if not submissions.exists():
        raise UsageError(f"submissions folder '{submissions}' does not exist")
    if not submissions.is_dir():
        raise UsageError(f"'{submissions}' is not a folder (expected one folder per student)")
    folders = sorted(p for p in submissions.iterdir()
                     if p.is_dir() and not p.name.startswith(".") and p.name not in IGNORED_NAMES)
    if not folders:
        raise UsageError(f"'{submissions}' holds no student folders (expected DIR/STUDENT_ID/"
                         f"NOTEBOOK.ipynb)")
    found = []
    for folder in folders:
        if not STUDENT_ID.match(folder.name):
            found.append(Found(folder.name, None, "the folder name is not a valid student id "
                                                  "(letters, digits, . _ @ + - only)"))
            continue
        notebooks = sorted(p for p in folder.rglob("*.ipynb") if p.is_file() and not any(
            part.startswith(".") or part in IGNORED_NAMES
            for part in p.relative_to(folder).parts))
        if not notebooks:
            found.append(Found(folder.name, None, "no notebook (.ipynb) in the folder"))
        elif len(notebooks) > 1:
            names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
            found.append(Found(folder.name, None, f"{len(notebooks)} notebooks ({names}): "
                                                  f"keep exactly one"))
        else:
            found.append(Found(folder.name, notebooks[0]))
    return found


def read_submission(path: Path) -> nbformat.NotebookNode:
    """Parse a submitted notebook leniently (Colab's and old Jupyter's files are fine)."""
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        raise SubmissionProblem(f"{path.name} is larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
    try:
        text = path.read_text(encoding="utf-8")
        nb = nbformat.reads(text, as_version=4)
    except UnicodeDecodeError:
        raise SubmissionProblem(f"{path.name} is not a notebook (not UTF-8 text)") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for bad files
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SubmissionProblem(f"{path.name} is not a readable notebook ({reason})") from None
    cells = nb.get("cells")
    if not isinstance(cells, list) or not all(
            isinstance(c, dict) and isinstance(c.get("source", ""), str) for c in cells):
        raise SubmissionProblem(f"{path.name} is not a readable notebook (no list of cells)")
    return nb


# ---------------------------------------------------------------------------------------------
# Grading one submission
# ---------------------------------------------------------------------------------------------
def _probe_results(cell, nonce: str) -> list[dict] | None:
    results = [out["data"][RESULT_MIME] for out in cell.get("outputs", [])
               if out.get("output_type") == "display_data"
               and RESULT_MIME in out.get("data", {})]
    genuine = [r for r in results if isinstance(r, dict) and r.get("nonce") == nonce]
    if len(results) != 1 or len(genuine) != 1:
        return None
    outcomes = genuine[0].get("outcomes")
    return outcomes if isinstance(outcomes, list) else None


def _cell_errors(executed, origins) -> list[dict]:
    errors = []
    for index, (cell, origin) in enumerate(zip(executed.cells, origins, strict=False)):
        if origin == "probe":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append({"cell": index, "origin": origin,
                               "grade_id": nbgrader_meta(cell).get("grade_id"),
                               "ename": str(out.get("ename"))[:100],
                               "evalue": str(out.get("evalue"))[:500]})
    return errors


def grade_notebook(reference: Reference, release: nbformat.NotebookNode,
                   submission: nbformat.NotebookNode, student_id: str, workdir: Path, *,
                   cell_timeout: float, budget: float,
                   sandbox: dict | None = None) -> tuple[SubmissionResult, object]:
    """Grade one parsed submission; returns the result and the executed notebook.

    ``sandbox`` (see :mod:`autograder.sandbox`) isolates the student's kernel; without it
    the kernel runs with the grader's rights.
    """
    assembled = assemble(release, submission, reference.exports())
    run = execute(assembled.notebook, workdir, cell_timeout=cell_timeout, budget=budget,
                  env=kernel_environment(sandboxed=sandbox is not None), sandbox=sandbox)
    flags, notes = [], []
    if run.status != "ok":
        flags.append(f"execution {run.status}: {run.detail}")
        notes.append(f"Your notebook did not run to the end: {run.detail}.")
    probe_cells = {(gid, k): i for i, (gid, k, _) in assembled.probes.items()}
    checks = []
    for check in reference.checks:
        exercises = []
        for k, plain in enumerate(check.exercises):
            data = ExerciseData.from_plain(plain)
            index = probe_cells[(check.grade_id, k)]
            nonce = assembled.probes[index][2]
            cells = run.notebook.cells
            outcomes = _probe_results(cells[index], nonce) if index < len(cells) else None
            if outcomes is None:
                ran = index < len(cells) and cells[index].get("outputs")
                if ran:
                    flags.append(f"{data.function}: the probe's result was missing, duplicated "
                                 f"or forged (output tampering?)")
                outcomes = []
            actual = [Outcome.from_plain(o if isinstance(o, dict) else {})
                      for o in outcomes[:len(data.cases)]]
            try:
                verdict = judge(data, actual)
            except Exception as exc:  # noqa: BLE001 - a grader bug must not sink the batch
                flags.append(f"{data.function}: the grader could not compare ({exc!r})")
                exercises.append(ExerciseResult(data.function, False, (
                    f"✗ {data.function}: the grader could not compare your results; "
                    f"your instructor has been told."), []))
                continue
            exercises.append(ExerciseResult(
                data.function, verdict.passed, verdict.message,
                [asdict(c) for c in verdict.cases]))
        passed = sum(e.passed for e in exercises)
        score = round(check.points * passed / len(exercises), 4) if exercises else 0.0
        checks.append(CheckResult(check.grade_id, check.points, score, exercises))
    errors = _cell_errors(run.notebook, assembled.origins)
    student_code = [cell.source for cell, origin in zip(
        assembled.notebook.cells, assembled.origins, strict=True) if origin == "student"]
    truncated = any("[grader:" in out.get("text", "") for cell in run.notebook.cells
                    for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    flags += scan_code(student_code) + runtime_flags(errors, truncated)
    if any("cuda" in f"{e['ename']} {e['evalue']}".lower() for e in errors):
        notes.append("The grader has no GPU: code that needs CUDA raised an error. Guard it "
                     "with torch.cuda.is_available() (your functions were still graded).")
    if truncated:
        notes.append("Some cells printed so much that their output was cut.")
    result = SubmissionResult(student_id, reference.lesson, sum(c.score for c in checks),
                              reference.max_score, checks, flags, errors, notes)
    return result, run.notebook


def kernel_environment(*, sandboxed: bool) -> dict[str, str]:
    """The student's kernel environment: nothing of the grader's when sandboxed."""
    env = {EXPORT_ENV: "0", "MPLBACKEND": "Agg", "PYTHONNOUSERSITE": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    if sandboxed:
        env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"), LANG="C.UTF-8")
        for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # machine fixes, not secrets
            if key in os.environ:
                env[key] = os.environ[key]
    return env


# ---------------------------------------------------------------------------------------------
# What a graded submission leaves behind (nbgrader's folder layout)
# ---------------------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def autograded_notebook(release: nbformat.NotebookNode, submission: nbformat.NotebookNode,
                        result: SubmissionResult) -> nbformat.NotebookNode:
    """The release notebook with the student's answers and each check's verdict as its output."""
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    answers: dict[str, list[str]] = {}
    for cell in submission.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid and cell.get("cell_type") == "code":
            answers.setdefault(gid, []).append(cell.get("source", ""))
    verdicts = {c.grade_id: c for c in result.checks}
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if is_answer_cell(cell) and cell.cell_type == "code":
            cell.source = "\n\n".join(answers.get(gid, ["# (this answer cell was deleted)"]))
        if is_check_cell(cell) and gid in verdicts:
            check = verdicts[gid]
            text = "\n".join(e.message for e in check.exercises)
            if check.score >= check.points:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
            else:
                cell.outputs = [nbformat.v4.new_output(
                    "error", ename="CheckFailed", evalue=text, traceback=text.splitlines())]
    return nb


def save_artifacts(course: Course, result: SubmissionResult, original: Path,
                   release: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> None:
    lesson, sid = result.lesson, result.student_id
    submitted = course.submitted / sid / lesson / f"{lesson}.ipynb"
    submitted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, submitted)
    graded_dir = course.autograded / sid / lesson
    _atomic_write(graded_dir / f"{lesson}.ipynb",
                  nbformat.writes(autograded_notebook(release, submission, result)))
    _atomic_write(graded_dir / "results.json", json.dumps(asdict(result), indent=1))


def load_results(course: Course, lesson: str) -> list[SubmissionResult]:
    results = []
    for path in sorted(course.autograded.glob(f"*/{lesson}/results.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        data["checks"] = [CheckResult(**{**c, "exercises": [ExerciseResult(**e)
                                                             for e in c["exercises"]]})
                          for c in data["checks"]]
        results.append(SubmissionResult(**data))
    return results


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------
def grade(course: Course, lesson: str, submissions: Path, *, workers: int | None = None,
          cell_timeout: float = 60, budget: float = 300, sandbox: bool = True, out=None,
          err=None) -> list[SubmissionResult]:
    """Grade every student folder in ``submissions`` for ``lesson``; return the results.

    With ``sandbox`` (the default) every student kernel runs in :mod:`autograder.sandbox`;
    grading refuses to start where the sandbox cannot run. ``sandbox=False`` runs student
    code with the grader's own rights, for trusted submissions only.
    """
    out, err = out or sys.stdout, err or sys.stderr
    lesson = course.check_lesson(lesson)
    if sandbox and (reason := sandboxing.available()):
        raise UsageError(f"cannot isolate student code here: {reason}. Grade on a Linux host "
                         f"as root, or pass --no-sandbox for trusted submissions only")
    if not sandbox:
        print("warning: grading WITHOUT a sandbox: student code runs with your rights and "
              "can read solutions/ and the gradebook", file=err)
    found = find_submissions(submissions)
    release_path = course.release_notebook(lesson)
    if not release_path.exists():
        raise UsageError(f"{release_path} is missing: run 'python -m autograder release "
                         f"{lesson}' first")
    release = nbformat.read(release_path, as_version=4)
    if not gradebook.has_lesson(course, lesson):
        record_in_gradebook(course, lesson)
    reference = build_reference(course, lesson)

    jobs = []
    for item in found:
        try:
            if item.problem:
                raise SubmissionProblem(item.problem)
            jobs.append((item, read_submission(item.notebook)))
        except SubmissionProblem as exc:
            print(f"skipped {item.student_id}: {exc}", file=err)
            if STUDENT_ID.match(item.student_id):  # listed, so the export shows a 0
                gradebook.add_student(course, item.student_id)

    scratch_root = Path(tempfile.mkdtemp(prefix="dlopt-grading-"))
    n_workers = max(1, workers or os.cpu_count() or 1)
    slots: queue.Queue[int] = queue.Queue()  # one sandbox uid per worker slot
    for slot in range(n_workers):
        slots.put(slot)
    hidden = sorted({str(course.root), str(REPO_ROOT), str(scratch_root), tempfile.gettempdir(),
                     "/dev/shm", os.path.expanduser("~")})

    def run_one(student_id: str, nb):
        slot = slots.get()
        try:
            isolation = None
            if sandbox:
                isolation = {"uid": sandboxing.BASE_UID + slot, "hide": hidden,
                             "keep": sandboxing.paths_to_keep(),
                             "limits": asdict(sandboxing.Limits(cpu_seconds=int(budget) + 30))}
            return grade_notebook(reference, release, nb, student_id, scratch_root / student_id,
                                  cell_timeout=cell_timeout, budget=budget, sandbox=isolation)
        finally:
            slots.put(slot)

    results = []
    try:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            futures = {pool.submit(run_one, item.student_id, nb): (item, nb)
                       for item, nb in jobs}
            for future in as_completed(futures):
                item, nb = futures[future]
                try:
                    result, _ = future.result()
                except Exception as exc:  # noqa: BLE001 - one submission never stops the batch
                    print(f"skipped {item.student_id}: the grader failed on this submission "
                          f"({type(exc).__name__}: {exc})", file=err)
                    continue
                save_artifacts(course, result, item.notebook, release, nb)
                gradebook.record_submission(
                    course, lesson, item.student_id,
                    {c.grade_id: c.score for c in result.checks}, flagged=bool(result.flags))
                flag = f"  [flagged: {'; '.join(result.flags)}]" if result.flags else ""
                print(f"graded {item.student_id}: {result.score:g} / {result.max_score:g}"
                      f"{flag}", file=out, flush=True)
                results.append(result)
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)
    return sorted(results, key=lambda r: r.student_id)
