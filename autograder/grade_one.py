"""Grading one submission: assemble the notebook, run it in the student's kernel, judge here.

The student's code runs (sandboxed) with one probe cell per exercise after it; the probes
report plain data, and the verdict is decided in this process with
:func:`dlopt.grading.judge`, against the instructor's exported expectations. Nothing in here
writes a file of the course: a :class:`Job` goes to a thread or a Dask worker and only a
:class:`~autograder.results.SubmissionResult` comes back, so the batch's single writer records
it (:mod:`autograder.record`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

from autograder import sandbox as sandboxing
from autograder.assemble import assemble, nbgrader_meta
from autograder.reference import Reference
from autograder.results import CheckResult, ExerciseResult, SubmissionResult
from autograder.runner import execute
from autograder.suspicion import runtime_flags, scan_code
from dlopt.grading import EXPORT_ENV, ExerciseData, Outcome, judge
from dlopt.grading.probe import RESULT_MIME


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
    started = time.monotonic()
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
                [asdict(c) for c in verdict.cases], verdict.not_implemented))
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
    result.runtime_s = round(time.monotonic() - started, 3)
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


@dataclass(frozen=True)
class RunOptions:
    """The limits a student's notebook runs under (they decide verdicts: see fingerprint)."""

    cell_timeout: float = 60  # seconds per cell
    budget: float = 300  # seconds per notebook
    sandbox: str = "auto"  # a backend of autograder.sandbox; "none": the grader's rights


@dataclass
class Job:
    """Everything needed to grade one submission, anywhere (a thread here, or a Dask worker)."""

    student_id: str
    notebook: dict
    reference: Reference
    release: dict
    options: RunOptions
    hidden: list[str]  # paths the student's kernel must not see
    fingerprint: str


def isolation_for(backend: str, uid: int, hidden: list[str], budget: float) -> dict:
    """The sandbox of one student kernel (see :mod:`autograder.sandbox`): ``backend`` (root
    or userns), ``hidden`` and the temporary folders hidden, the Python installation and dlopt
    kept, CPU time capped a little above the notebook's ``budget``; ``uid`` is the root
    backend's."""
    isolation = {"backend": backend, "hide": sorted({*hidden, tempfile.gettempdir(), "/dev/shm"}),
                 "keep": sandboxing.paths_to_keep(),
                 "limits": asdict(sandboxing.Limits(cpu_seconds=int(budget) + 30))}
    if backend == "root":
        isolation["uid"] = uid
    return isolation


def sandbox_for(requested: str) -> str:
    """The backend to run under (``auto`` resolved on this host), or an error saying why none
    can run here."""
    backend = sandboxing.choose(requested)
    if reason := sandboxing.unavailable(backend):
        raise RuntimeError(f"cannot isolate student code on this machine: {reason}")
    return backend


MAX_SLOTS = 64  # sandbox uids: BASE_UID .. BASE_UID + 63


@contextmanager
def sandbox_uid() -> Iterator[int]:
    """A uid for one root-backend kernel that no other kernel on this machine uses meanwhile,
    whichever grading process (threads, Dask workers, another batch) runs it: each uid is
    held with an exclusive lock on a file of its own."""
    folder = Path(tempfile.gettempdir()) / "dlopt-sandbox-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    for uid in range(sandboxing.BASE_UID, sandboxing.BASE_UID + MAX_SLOTS):
        lock = open(folder / f"{uid}.lock", "w")  # noqa: SIM115 - held while the kernel runs
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        try:
            yield uid
        finally:
            lock.close()  # and with it the lock
        return
    raise RuntimeError(f"all {MAX_SLOTS} sandbox uids are in use on this machine")


def run_job(job: Job) -> SubmissionResult:
    """Grade one submission in a scratch folder of its own; the folder is removed after."""
    scratch = Path(tempfile.mkdtemp(prefix="dlopt-grading-"))
    try:
        options = job.options
        backend = sandbox_for(options.sandbox)  # on a Dask worker: that worker's backend
        with sandbox_uid() if backend == "root" else nullcontext(0) as uid:
            isolation = None if backend == "none" else isolation_for(
                backend, uid, job.hidden, options.budget)
            result, _ = grade_notebook(
                job.reference, nbformat.from_dict(job.release),
                nbformat.from_dict(job.notebook), job.student_id, scratch / "work",
                cell_timeout=options.cell_timeout, budget=options.budget, sandbox=isolation)
        result.fingerprint = job.fingerprint
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
