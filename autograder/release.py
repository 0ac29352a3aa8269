"""``release``: regenerate course/ from solutions/: nbgrader's generate_assignment, then baking.

nbgrader clears the solutions and the hidden tests. The check cells it leaves would still hold
the instructor's exercise definitions (references, named mistakes as code, helpers), several
of which are the answer or one argument away from it, and which import instructor material
students do not install. So each lesson's instructor notebook is run once (exported as the
grader does, :mod:`autograder.reference`), and every check cell of the release is *baked*:
replaced by its docstring and one call per exercise it checks,

    from dlopt.grading import check
    check("adam_step", adam_step, "eNrtXQl0VNd5...")

whose string carries the exercise's public scenarios as plain data (inputs, the instructor's
outputs, each named mistake's outputs and message, tolerances, driver by reference;
:mod:`dlopt.grading.baked`). Hidden scenarios never reach course/. A baked cell keeps its
nbgrader grade_id, points and lock, with its checksum recomputed.

Each release's ``colab_setup`` cell is written here too (:func:`write_colab_setup`): it installs
dlopt on Colab from the repository and release tag of ``[tool.dlopt-course]`` in pyproject.toml.
"""

from __future__ import annotations

import ast
import keyword
import logging
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import tomllib
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from nbgrader.utils import compute_checksum

from autograder.assemble import is_check_cell, nbgrader_meta
from autograder.course import REPO_ROOT, Course, UsageError
from autograder.reference import Reference, cached_reference, default_cache
from dlopt.grading.baked import pack, public_only

BAKED_IMPORT = "from dlopt.grading import check"
#: One baked call: ``check("name", name, "<base64>")`` on a line of its own.
BAKED_CALL = re.compile(r'^check\("(\w+)", (\w+), "([A-Za-z0-9+/=]*)"\)$', re.M)


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
    errors = _ErrorRecords()
    converter.log.addHandler(errors)
    try:
        converter.start()
    except Exception as exc:  # nbgrader raises NbGraderException with the details logged
        raise UsageError(f"nbgrader could not generate {lesson}: "
                         f"{errors.cause() or exc}") from exc
    finally:
        converter.log.removeHandler(errors)


class _ErrorRecords(logging.Handler):
    """What nbgrader logged at ERROR while it ran: its exceptions say only "see the above
    traceback", so the cause is taken from here, for the one line the instructor reads."""

    GENERIC = ("There was an error processing", "Please see")

    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def cause(self) -> str:
        """The last line of the first traceback logged (``Type: message``), else nbgrader's
        first specific message, on one line; '' if it logged nothing useful."""
        for message in self.messages:
            if message.startswith("Traceback (most recent call last)"):
                return message.strip().splitlines()[-1].strip()
        specific = [m for m in self.messages if not m.startswith(self.GENERIC)]
        return " ".join(specific[0].split()) if specific else ""


# ---------------------------------------------------------------------------------------------
# Baking the check cells
# ---------------------------------------------------------------------------------------------
def opening_docstring(source: str) -> str:
    """The cell's opening string literal exactly as written (what it checks), or ''."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return ""
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return ast.get_source_segment(source, body[0]) or ""
    return ""


def baked_source(docstring: str, exercises: list[dict]) -> str:
    """A check cell's source in the student's release: the docstring, then one call per exercise.

    Parameters
    ----------
    docstring : str
        The instructor's cell's opening docstring, as written ('' for none).
    exercises : list of dict
        The cell's exports (:meth:`~dlopt.grading.ExerciseData.to_plain`, public and hidden
        scenarios), in the order the cell checks them; only public scenarios are baked.

    Returns
    -------
    str
    """
    lines = [docstring] if docstring else []
    lines.append(BAKED_IMPORT)
    for plain in exercises:
        function = plain["function"]
        if not function.isidentifier() or keyword.iskeyword(function):
            raise UsageError(f"cannot bake a check of {function!r}: not a Python name")
        lines.append(f'check("{function}", {function}, "{pack(public_only(plain))}")')
    return "\n".join(lines)


def baked_calls(source: str) -> list[tuple[str, str]]:
    """``(function, data)`` of every baked ``check`` call in a released check cell, in order."""
    return [(name, data) for name, given, data in BAKED_CALL.findall(source) if name == given]


def bake(nb: nbformat.NotebookNode, reference: Reference) -> None:
    """Replace, in place, every check cell of a generated release by its baked form.

    Raises :class:`UsageError` when a check cell has no export or an export has no check cell.
    """
    exports = reference.exports()
    baked = set()
    for cell in nb.cells:
        if not is_check_cell(cell):
            continue
        meta = nbgrader_meta(cell)
        grade_id = meta.get("grade_id")
        if grade_id not in exports:
            raise UsageError(f"check cell '{grade_id}' of {reference.lesson} exported no "
                             f"exercise: it cannot be baked into the release")
        cell.source = baked_source(opening_docstring(cell.source), exports[grade_id])
        meta["checksum"] = compute_checksum(cell)
        baked.add(grade_id)
    missing = sorted(set(exports) - baked)
    if missing:
        raise UsageError(f"{reference.lesson}: exports of {missing} match no check cell of the "
                         f"release")


# ---------------------------------------------------------------------------------------------
# The Colab install cell
# ---------------------------------------------------------------------------------------------
COLAB_SETUP_ID = "colab_setup"
COLAB_SETUP = """\
# On Google Colab only: install the course's helper package dlopt, release {tag}, and nothing else
# (--no-deps: Colab keeps its own numpy, torch, matplotlib and ipywidgets, which dlopt works with).
# Elsewhere: nothing happens.
import sys

if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "{requirement}"], check=True)"""


def course_release(course: Course) -> tuple[str, str]:
    """``(repository URL, release tag)`` of ``[tool.dlopt-course]`` in the course's
    pyproject.toml (the repository's when the course root has none): the one place they are
    written down for every notebook."""
    found = [p for p in (course.root / "pyproject.toml", REPO_ROOT / "pyproject.toml")
             if p.is_file()]
    if not found:
        raise UsageError(f"no pyproject.toml in {course.root}: it names the release students "
                         f"install ([tool.dlopt-course])")
    pyproject = found[0]
    table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}) \
        .get("dlopt-course", {})
    if not {"repository", "release"} <= table.keys():
        raise UsageError(f"{pyproject}: [tool.dlopt-course] needs 'repository' and 'release'")
    return table["repository"], table["release"]


def colab_requirement(repository: str, tag: str) -> str:
    """What Colab's cell asks pip for: dlopt from the repository at the release tag."""
    return f"dlopt @ git+{repository}@{tag}"


def colab_setup_source(repository: str, tag: str) -> str:
    """The released notebook's colab_setup cell for that repository and release."""
    return COLAB_SETUP.format(tag=tag, requirement=colab_requirement(repository, tag))


def write_colab_setup(nb: nbformat.NotebookNode, source: str) -> None:
    """Put ``source`` into the notebook's colab_setup cell (in place); its checksum too."""
    cells = [c for c in nb.cells if nbgrader_meta(c).get("grade_id") == COLAB_SETUP_ID]
    if len(cells) != 1:
        raise UsageError(f"expected one '{COLAB_SETUP_ID}' cell, found {len(cells)}")
    cells[0].source = source
    nbgrader_meta(cells[0])["checksum"] = compute_checksum(cells[0])


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
def release(course: Course, lessons: list[str] | None = None, *,
            cache: Path | bool = True) -> list[Path]:
    """Regenerate course/LESSON for each lesson (all by default); return the notebooks written.

    Each lesson's instructor notebook is exported (:func:`~autograder.reference.cached_reference`)
    and its release generated by nbgrader, then baked (:func:`bake`).

    Parameters
    ----------
    course : Course
    lessons : list of str, optional
        Lesson folders; all of ``solutions/`` by default.
    cache : Path or bool
        Where exports are cached: ``True`` for ``autograder/cache/reference``, a folder, or
        ``False`` to run every instructor notebook afresh.

    Returns
    -------
    list of Path

    Notes
    -----
    Deterministic: each lesson is generated into a scratch folder and then moved into place,
    so running it twice changes nothing, and a failure leaves that lesson of course/ as it was.
    """
    lessons = [course.check_lesson(lesson) for lesson in (lessons or course.lessons())]
    if not lessons:
        raise UsageError(f"no lessons found in {course.solutions}")
    folder = default_cache(course) if cache is True else (cache or None)
    written = []
    # One throwaway gradebook for the whole release: releasing must not touch the
    # instructor's grades, and setting up a new one costs nbgrader seconds each time.
    with tempfile.TemporaryDirectory(prefix="release-db-") as db_folder:
        db_url = f"sqlite:///{Path(db_folder) / 'release.db'}"
        for lesson in lessons:
            written.append(_release_one(course, lesson, cached_reference(course, lesson, folder),
                                        db_url))
    return written


def _release_one(course: Course, lesson: str, reference: Reference, db_url: str) -> Path:
    """Generate, bake and move into place one lesson of course/; the notebook written."""
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        _generate(course, lesson, Path(scratch) / "out", db_url=db_url)
        generated = Path(scratch) / "out" / lesson
        notebook = generated / f"{lesson}.ipynb"
        nb = nbformat.read(notebook, as_version=4)
        bake(nb, reference)
        write_colab_setup(nb, colab_setup_source(*course_release(course)))
        nbformat.write(nb, notebook)
        target = course.release / lesson
        course.release.mkdir(exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(generated, target)
    return course.release_notebook(lesson)


def record_in_gradebook(course: Course, lesson: str) -> None:
    """Record a lesson's notebooks and grade cells in the gradebook (nbgrader's way)."""
    course.grader_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        _generate(course, lesson, Path(scratch) / "out", db_url=course.db_url)
