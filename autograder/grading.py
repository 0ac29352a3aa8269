"""``grade``: run every submission in its own kernel and decide verdicts here, in the grader.

For each student: assemble the notebook to run (the student's code, the instructor's given
cells, one probe per exercise), execute it in a fresh kernel in a scratch folder, read back
the probes' plain data, and judge it against the instructor's exported expectations with
:func:`dlopt.grading.judge`. Submissions run in parallel (``--workers``); only the main thread
writes the gradebook, one whole submission per transaction.
"""

from __future__ import annotations

import hashlib
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
from dlopt import grading as dlopt_check
from dlopt.grading import EXPORT_ENV, ExerciseData, Outcome, judge
from dlopt.grading import codec as dlopt_codec
from dlopt.grading.probe import RESULT_MIME

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
    fingerprint: str = ""  # hashes of the submission and of what graded it (skip if unchanged)


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


def results_path(course: Course, lesson: str, student_id: str) -> Path:
    return course.autograded / student_id / lesson / "results.json"


def record(course: Course, result: SubmissionResult, original: Path,
           release: nbformat.NotebookNode, submission: nbformat.NotebookNode) -> None:
    """Keep a graded submission: files in nbgrader's layout, then the gradebook, then
    results.json last: it marks the submission done, so a batch killed at any point and run
    again regrades what was not finished and nothing twice."""
    lesson, sid = result.lesson, result.student_id
    submitted = course.submitted / sid / lesson / f"{lesson}.ipynb"
    submitted.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(original, submitted)
    _atomic_write(course.autograded / sid / lesson / f"{lesson}.ipynb",
                  nbformat.writes(autograded_notebook(release, submission, result)))
    gradebook.record_submission(course, lesson, sid, {c.grade_id: c.score for c in result.checks},
                                flagged=bool(result.flags))
    _atomic_write(results_path(course, lesson, sid), json.dumps(asdict(result), indent=1))


def _previous(course: Course, lesson: str, student_id: str, fingerprint: str):
    path = results_path(course, lesson, student_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return _result_from_dict(data) if data.get("fingerprint") == fingerprint else None


def _result_from_dict(data: dict) -> SubmissionResult:
    data = dict(data)
    data["checks"] = [CheckResult(**{**c, "exercises": [ExerciseResult(**e)
                                                         for e in c["exercises"]]})
                      for c in data["checks"]]
    return SubmissionResult(**data)


def load_results(course: Course, lesson: str) -> list[SubmissionResult]:
    return [_result_from_dict(json.loads(path.read_text(encoding="utf-8")))
            for path in sorted(course.autograded.glob(f"*/{lesson}/results.json"))]


# ---------------------------------------------------------------------------------------------
# The batch
# ---------------------------------------------------------------------------------------------
@dataclass
class Job:
    """Everything needed to grade one submission, anywhere (a thread here, or a Dask worker)."""

    student_id: str
    notebook: dict
    reference: Reference
    release: dict
    cell_timeout: float
    budget: float
    sandbox: bool
    hidden: list[str]  # paths the student's kernel must not see
    fingerprint: str


MAX_SLOTS = 64
_slots: queue.Queue[int] = queue.Queue()  # sandbox uids in use in this process
for _slot in range(MAX_SLOTS):
    _slots.put(_slot)


def run_job(job: Job) -> SubmissionResult:
    """Grade one submission in a scratch folder of its own; the folder is removed after."""
    scratch = Path(tempfile.mkdtemp(prefix="dlopt-grading-"))
    slot = _slots.get()  # a uid no concurrent kernel of this process uses
    try:
        isolation = None
        if job.sandbox:
            if reason := sandboxing.available():
                raise RuntimeError(f"cannot isolate student code on this machine: {reason}")
            isolation = {"uid": sandboxing.BASE_UID + slot,
                         "hide": sorted({*job.hidden, tempfile.gettempdir(), "/dev/shm"}),
                         "keep": sandboxing.paths_to_keep(),
                         "limits": asdict(sandboxing.Limits(cpu_seconds=int(job.budget) + 30))}
        result, _ = grade_notebook(
            job.reference, nbformat.from_dict(job.release), nbformat.from_dict(job.notebook),
            job.student_id, scratch / "work", cell_timeout=job.cell_timeout, budget=job.budget,
            sandbox=isolation)
        result.fingerprint = job.fingerprint
        return result
    finally:
        _slots.put(slot)
        shutil.rmtree(scratch, ignore_errors=True)


def _sha256(*blobs: bytes) -> str:
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(hashlib.sha256(blob).digest())
    return digest.hexdigest()


def grader_fingerprint(course: Course, lesson: str) -> str:
    """Changes when the lesson, its checks or the grading code change."""
    code = [p.read_bytes() for p in sorted((REPO_ROOT / "autograder").glob("*.py"))]
    code += [Path(dlopt_check.__file__).read_bytes(), Path(dlopt_codec.__file__).read_bytes()]
    return _sha256(course.source_notebook(lesson).read_bytes(),
                   course.release_notebook(lesson).read_bytes(), *code)


def _submit_all(jobs: list[Job], workers: int, scheduler: str | None):
    """Yield (job, result or exception) as submissions finish, here or on a Dask cluster."""
    if scheduler:
        try:
            from dask.distributed import Client
            from dask.distributed import as_completed as dask_completed
        except ImportError:  # pragma: no cover - dask is in requirements.txt
            raise UsageError("--scheduler needs dask.distributed (pip install distributed)") \
                from None
        try:
            client = Client(scheduler, timeout=30)
        except OSError as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            futures = {client.submit(run_job, job, pure=False, key=f"grade-{job.student_id}-"
                                     f"{job.fingerprint[:12]}"): job for job in jobs}
            for future in dask_completed(futures):
                try:
                    yield futures[future], future.result()
                except Exception as exc:  # noqa: BLE001 - reported per submission
                    yield futures[future], exc
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            try:
                yield futures[future], future.result()
            except Exception as exc:  # noqa: BLE001 - reported per submission
                yield futures[future], exc


def grade(course: Course, lesson: str, submissions: Path, *, workers: int | None = None,
          cell_timeout: float = 60, budget: float = 300, sandbox: bool = True,
          scheduler: str | None = None, force: bool = False, out=None,
          err=None) -> list[SubmissionResult]:
    """Grade every student folder in ``submissions`` for ``lesson``; return the results.

    With ``sandbox`` (the default) every student kernel runs in :mod:`autograder.sandbox`;
    grading refuses to start where the sandbox cannot run. ``sandbox=False`` runs student
    code with the grader's own rights, for trusted submissions only. ``scheduler`` grades on
    a Dask cluster; this process stays the only gradebook writer. A submission graded before,
    unchanged, by the same lesson and grader, is not graded again unless ``force``.
    """
    out, err = out or sys.stdout, err or sys.stderr
    lesson = course.check_lesson(lesson)
    if sandbox and not scheduler and (reason := sandboxing.available()):
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
    graders = grader_fingerprint(course, lesson)

    results, pending = [], []
    for item in found:
        try:
            if item.problem:
                raise SubmissionProblem(item.problem)
            nb = read_submission(item.notebook)
        except SubmissionProblem as exc:
            print(f"skipped {item.student_id}: {exc}", file=err)
            if STUDENT_ID.match(item.student_id):  # listed, so the export shows a 0
                gradebook.add_student(course, item.student_id)
            continue
        fingerprint = f"{_sha256(item.notebook.read_bytes())}:{graders}"
        previous = None if force else _previous(course, lesson, item.student_id, fingerprint)
        if previous is not None:
            print(f"unchanged {item.student_id}: {previous.score:g} / {previous.max_score:g}",
                  file=out)
            results.append(previous)
        else:
            pending.append((item, nb, fingerprint))
    if pending:
        reference = build_reference(course, lesson)
        hidden = sorted({str(course.root), str(REPO_ROOT), os.path.expanduser("~")})
        jobs = {item.student_id: (item, nb) for item, nb, _ in pending}
        batch = [Job(item.student_id, nb, reference, release, cell_timeout, budget, sandbox,
                     hidden, fingerprint) for item, nb, fingerprint in pending]
        n_workers = max(1, min(workers or os.cpu_count() or 1, MAX_SLOTS))
        for job, outcome in _submit_all(batch, n_workers, scheduler):
            item, nb = jobs[job.student_id]
            if isinstance(outcome, Exception):
                print(f"skipped {item.student_id}: the grader failed on this submission "
                      f"({type(outcome).__name__}: {outcome})", file=err)
                continue
            record(course, outcome, item.notebook, release, nb)
            flag = f"  [flagged: {'; '.join(outcome.flags)}]" if outcome.flags else ""
            print(f"graded {item.student_id}: {outcome.score:g} / {outcome.max_score:g}{flag}",
                  file=out, flush=True)
            results.append(outcome)
    return sorted(results, key=lambda r: r.student_id)
