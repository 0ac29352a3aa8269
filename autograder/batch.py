"""The batch: many submissions at once, resumable, with a single gradebook writer.

Submissions whose fingerprint matches their recorded result are not graded again (that is
what makes a killed batch resumable, and re-runs cheap). The others are graded in parallel,
in threads here (each one waits on its own kernel process) or on a Dask cluster; either way
only plain results come back, and this process's main thread records them one at a time, so
the gradebook never has two writers and a submission is never half-recorded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TextIO

import nbformat

from autograder.course import CHECKOUT, Course, UsageError
from autograder.fingerprint import Fingerprint, changes, fingerprint
from autograder.grade_one import MAX_SLOTS, Job, RunOptions, run_job
from autograder.progress import Progress
from autograder.record import record, record_time
from autograder.reference import Reference
from autograder.results import SubmissionResult, read_result
from autograder.submissions import Readable
from autograder.timestamps import iso


@dataclass
class Pending:
    """A submission to grade, what will identify its grade, and why it is graded again."""

    submission: Readable
    fingerprint: Fingerprint
    because: list[str]


def split_unchanged(course: Course, lesson: str, readable: list[Readable], grader: dict, *,
                    force: bool, out: TextIO) -> tuple[list[SubmissionResult], list[Pending]]:
    """Recorded results still valid for ``grader`` (``unchanged STUDENT: score`` each), and
    the submissions to grade; ``force`` regrades every one."""
    kept, pending = [], []
    for item in readable:
        current = fingerprint(item.sha256, grader)
        previous = read_result(course, lesson, item.student_id)
        if previous is not None and previous.fingerprint == current.digest and not force:
            print(f"unchanged {item.student_id}: {previous.score:g} / {previous.max_score:g}",
                  file=out)
            if (previous.submitted_at, previous.submitted_from) != (
                    iso(item.submitted_at), item.submitted_from):
                previous.submitted_at = iso(item.submitted_at)
                previous.submitted_from = item.submitted_from
                record_time(course, previous)
            kept.append(previous)
        else:
            pending.append(Pending(item, current, _why(previous, current)))
    return kept, pending


def _why(previous: SubmissionResult | None, current: Fingerprint) -> list[str]:
    if previous is None:
        return ["not graded before"]
    if previous.fingerprint == current.digest:
        return ["--force"]
    if not previous.fingerprint_parts:
        return ["graded before by a grader that did not record what its fingerprint covered"]
    return changes(previous.fingerprint_parts, current.parts)


def _submit_all(jobs: list[Job], workers: int,
                scheduler: str | None) -> Iterator[tuple[Job, SubmissionResult | Exception]]:
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


def grade_pending(course: Course, reference: Reference, release: nbformat.NotebookNode,
                  pending: list[Pending], options: RunOptions, *, workers: int | None,
                  scheduler: str | None, out: TextIO, err: TextIO) -> list[SubmissionResult]:
    """Grade ``pending`` in parallel and record each result as it arrives (this thread only)."""
    if not pending:
        return []
    hidden = sorted({str(course.root), os.path.expanduser("~"), *([str(CHECKOUT)] if CHECKOUT
                                                                   else [])})
    todo = {p.submission.student_id: p for p in pending}
    jobs = [Job(p.submission.student_id, p.submission.notebook, reference, release, options,
                hidden, p.fingerprint.digest) for p in pending]
    n_workers = max(1, min(workers or os.cpu_count() or 1, MAX_SLOTS))
    results = []
    progress = Progress(len(jobs), out)
    try:
        for job, outcome in _submit_all(jobs, n_workers, scheduler):
            item = todo[job.student_id]
            if isinstance(outcome, Exception):
                progress.finished(f"skipped {job.student_id}: the grader failed on this "
                                  f"submission ({type(outcome).__name__}: {outcome})",
                                  failed=True, stream=err)
                continue
            outcome.fingerprint = item.fingerprint.digest
            outcome.fingerprint_parts = item.fingerprint.parts
            outcome.regraded_because = item.because
            outcome.submitted_at = iso(item.submission.submitted_at)
            outcome.submitted_from = item.submission.submitted_from
            record(course, outcome, item.submission.path, release, item.submission.notebook)
            flag = f"  [flagged: {'; '.join(outcome.flags)}]" if outcome.flags else ""
            progress.finished(f"graded {job.student_id}: {outcome.score:g} / "
                              f"{outcome.max_score:g}{flag}")
            results.append(outcome)
    finally:
        progress.close()
    return results
