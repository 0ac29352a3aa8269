"""nbgrader's gradebook, written by one writer, one whole submission per transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from nbgrader.api import (
    Comment,
    Grade,
    Gradebook,
    MissingEntry,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
)

from autograder.course import Course

COURSE_ID = "dlopt"


def open_gradebook(course: Course) -> Gradebook:
    course.grader_dir.mkdir(parents=True, exist_ok=True)
    return Gradebook(course.db_url, course_id=COURSE_ID)


def has_lesson(course: Course, lesson: str) -> bool:
    if not course.gradebook.exists():
        return False
    with open_gradebook(course) as gb:
        try:
            return bool(gb.find_assignment(lesson).notebooks)
        except MissingEntry:
            return False


def record_submission(course: Course, lesson: str, student_id: str,
                      scores: dict[str, float], flagged: bool,
                      submitted_at: datetime | None = None) -> None:
    """Store a student's automatic scores for ``lesson``, all of them or none.

    ``scores`` maps each check cell's grade_id to its points. Manual scores an instructor
    gave in formgrader are kept; automatic ones are replaced. ``submitted_at`` is when the
    work was handed in (nbgrader's submission timestamp; the grading time if not known).
    """
    with open_gradebook(course) as gb:
        session = gb.db
        try:
            with session.no_autoflush:
                _stage_submission(session, gb.find_assignment(lesson), student_id, scores,
                                  flagged, submitted_at or datetime.now(timezone.utc))
            session.commit()
        except Exception:
            session.rollback()
            raise


def _stage_submission(session, assignment, student_id, scores, flagged, submitted_at) -> None:
    student = session.query(Student).filter_by(id=student_id).one_or_none()
    if student is None:
        student = Student(id=student_id)
        session.add(student)
    submission = (session.query(SubmittedAssignment)
                  .filter_by(assignment=assignment, student=student).one_or_none())
    if submission is None:
        submission = SubmittedAssignment(assignment=assignment, student=student)
        session.add(submission)
    submission.timestamp = submitted_at.astimezone(timezone.utc).replace(tzinfo=None)
    for notebook in assignment.notebooks:
        sub_nb = next((n for n in submission.notebooks if n.notebook == notebook), None)
        if sub_nb is None:
            sub_nb = SubmittedNotebook(notebook=notebook, assignment=submission)
            session.add(sub_nb)
        sub_nb.flagged = flagged
        grades = {g.cell: g for g in sub_nb.grades}
        for cell in notebook.grade_cells:
            grade = grades.get(cell)
            if grade is None:
                grade = Grade(cell=cell, notebook=sub_nb)
                session.add(grade)
            grade.auto_score = min(float(scores.get(cell.name, 0.0)), cell.max_score)
            grade.needs_manual_grade = False
        commented = {c.cell for c in sub_nb.comments}
        for cell in notebook.solution_cells:  # formgrader expects one per answer cell
            if cell not in commented:
                session.add(Comment(cell=cell, notebook=sub_nb))


def add_student(course: Course, student_id: str) -> None:
    with open_gradebook(course) as gb:
        gb.update_or_create_student(student_id)


@dataclass(frozen=True)
class ScoreRow:
    """One student's raw score for one lesson, and when the work was handed in."""

    student_id: str
    lesson: str
    score: float
    max_score: float
    submitted_at: datetime | None  # aware, UTC; None without a submission


def scores_table(course: Course) -> list[ScoreRow]:
    """A row for every student and every graded lesson.

    A lesson counts once at least one submission of it was graded; a student without a
    submission for it scores 0 (as nbgrader's own export does).
    """
    if not course.gradebook.exists():
        return []
    rows = []
    with open_gradebook(course) as gb:
        lessons = sorted((a for a in gb.assignments if a.submissions), key=lambda a: a.name)
        for student in sorted(gb.students, key=lambda s: s.id):
            for assignment in lessons:
                try:
                    found = gb.find_submission(assignment.name, student.id)
                    score, when = found.score, found.timestamp
                except MissingEntry:
                    score, when = 0.0, None
                rows.append(ScoreRow(student.id, assignment.name, float(score),
                                     float(assignment.max_score),
                                     when.replace(tzinfo=timezone.utc) if when else None))
    return rows
