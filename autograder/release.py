"""``release``: regenerate course/ from solutions/ with nbgrader's generate_assignment."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory

from autograder.course import Course, UsageError


def _generate(course: Course, lesson: str, release_dir: Path, *, db_url: str) -> None:
    """Run nbgrader's GenerateAssignment for one lesson into ``release_dir``.

    The lesson's notebooks and grade cells are recorded in the gradebook at ``db_url``, as
    nbgrader's own command does (its SaveCells step needs one even for a plain release).
    """
    overrides = {"CourseDirectory.release_directory": str(release_dir),
                 "CourseDirectory.db_url": db_url,
                 "BaseConverter.force": True}
    config = course.nbgrader_config(**overrides)
    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = lesson
    converter = GenerateAssignment(coursedir=coursedir, config=config)
    converter.log.setLevel(logging.WARNING)
    try:
        converter.start()
    except Exception as exc:  # nbgrader raises NbGraderException with the details logged
        raise UsageError(f"nbgrader could not generate {lesson}: {exc}") from exc


def release(course: Course, lessons: list[str] | None = None) -> list[Path]:
    """Regenerate course/LESSON for each lesson (all by default); return the notebooks written.

    Deterministic: each lesson is generated into a scratch folder and then moved into place,
    so running it twice changes nothing, and a failure leaves course/ as it was.
    """
    lessons = [course.check_lesson(lesson) for lesson in (lessons or course.lessons())]
    if not lessons:
        raise UsageError(f"no lessons found in {course.solutions}")
    written = []
    for lesson in lessons:
        with tempfile.TemporaryDirectory(prefix="release-") as scratch:
            # A throwaway gradebook: releasing must not touch the instructor's grades.
            _generate(course, lesson, Path(scratch) / "out",
                      db_url=f"sqlite:///{Path(scratch) / 'release.db'}")
            generated = Path(scratch) / "out" / lesson
            target = course.release / lesson
            course.release.mkdir(exist_ok=True)
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(generated, target)
        written.append(course.release_notebook(lesson))
    return written


def record_in_gradebook(course: Course, lesson: str) -> None:
    """Record a lesson's notebooks and grade cells in the gradebook (nbgrader's way)."""
    course.grader_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        _generate(course, lesson, Path(scratch) / "out", db_url=course.db_url)
