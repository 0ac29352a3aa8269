"""The expected side of grading: run the instructor's notebook and export every exercise.

The instructor's solutions notebook runs in its own kernel with ``DLOPT_EXPORT_EXERCISES=1``:
each check cell then publishes its scenarios (public and hidden), the instructor's outputs and
the outputs of each named mistake, as plain data. That is trusted code; the student's kernel
never sees hidden scenarios (the release bakes the public ones into its check cells).

:func:`cached_reference` keeps each export in a folder of its own (``autograder/cache/reference``
by default, ignored by git), under a key that hashes everything the export depends on: the
solutions notebook, every file of the ``dlopt`` and ``dlopt_instructor`` packages, the modules
here that run it, and the versions of Python and the numerical libraries. Releasing twice
runs each notebook once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

from autograder.assemble import EXPERIMENT_TAG, is_check_cell, nbgrader_meta, with_cell_ids
from autograder.course import Course, UsageError
from autograder.runner import execute
from dlopt.grading import EXERCISE_MIME, EXPORT_ENV

#: Bumped when the cached layout or what a key covers changes.
CACHE_VERSION = "1"
#: Packages whose files decide what the instructor's notebook exports.
EXPORTING_PACKAGES = ("dlopt", "dlopt_instructor")
#: The grader's modules that run the notebook and collect its exports.
EXPORTING_MODULES = ("reference.py", "runner.py", "assemble.py")
#: Libraries whose versions may change the numbers (references, mistakes, seeded draws).
LIBRARIES = ("numpy", "scipy", "torch", "scikit-learn", "matplotlib")


@dataclass
class CheckCell:
    grade_id: str
    points: float
    exercises: list[dict]  # ExerciseData.to_plain() of each exercise the cell checks


@dataclass
class Reference:
    lesson: str
    checks: list[CheckCell]

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)

    def exports(self) -> dict[str, list[dict]]:
        return {c.grade_id: c.exercises for c in self.checks}

    def to_plain(self) -> dict:
        """JSON-able form (for the cache)."""
        return asdict(self)

    @classmethod
    def from_plain(cls, data: dict) -> Reference:
        return cls(str(data["lesson"]), [
            CheckCell(str(c["grade_id"]), float(c["points"]), list(c["exercises"]))
            for c in data["checks"]])


def _first_error(cell) -> str:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}"
    return ""


def build_reference(course: Course, lesson: str, *, cell_timeout: float = 120,
                    budget: float = 600) -> Reference:
    """Run the instructor's notebook for ``lesson`` (experiments skipped) and collect exports."""
    source = nbformat.read(course.source_notebook(lesson), as_version=4)
    nb = new_notebook(metadata=source.metadata)
    nb.cells = [c for c in source.cells if c.cell_type == "code"
                and EXPERIMENT_TAG not in c.metadata.get("tags", [])]
    with_cell_ids(nb)
    with tempfile.TemporaryDirectory(prefix="reference-") as scratch:
        run = execute(nb, Path(scratch), cell_timeout=cell_timeout, budget=budget,
                      env={EXPORT_ENV: "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    if run.status != "ok":
        raise UsageError(f"the instructor's notebook for {lesson} did not run: {run.detail}")
    checks = []
    for cell in run.notebook.cells:
        problem = _first_error(cell)
        gid = nbgrader_meta(cell).get("grade_id", "?")
        if problem:
            raise UsageError(f"the instructor's notebook for {lesson} fails in cell '{gid}': "
                             f"{problem}")
        if is_check_cell(cell):
            exercises = [out["data"][EXERCISE_MIME] for out in cell.outputs
                         if out.output_type == "display_data" and EXERCISE_MIME in out["data"]]
            if not exercises:
                raise UsageError(f"check cell '{gid}' of {lesson} defines no dlopt check: "
                                 f"the grader cannot grade it outside the student's kernel")
            checks.append(CheckCell(gid, float(nbgrader_meta(cell).get("points", 0)), exercises))
    return Reference(lesson, checks)


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------
def _package_files(package: str) -> list[tuple[str, Path]]:
    """Every file of ``package`` (found without importing it), by path inside the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    files = []
    for root in map(Path, spec.submodule_search_locations):
        files += [(f"{package}/{path.relative_to(root).as_posix()}", path)
                  for path in root.rglob("*") if path.is_file()
                  and "__pycache__" not in path.parts and path.suffix != ".pyc"]
    return sorted(files)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def reference_key(course: Course, lesson: str) -> str:
    """A SHA-256 that changes whenever the export of ``lesson`` may change.

    It covers the solutions notebook, every file of :data:`EXPORTING_PACKAGES`, the grader's
    :data:`EXPORTING_MODULES`, and the versions of Python and :data:`LIBRARIES` (read from
    package metadata: nothing is imported).
    """
    digest = hashlib.sha256(f"dlopt-reference-cache {CACHE_VERSION}\n".encode())

    def add(name: str, data: bytes) -> None:
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)

    add("notebook", course.source_notebook(lesson).read_bytes())
    here = Path(__file__).resolve().parent
    for name in EXPORTING_MODULES:
        add(f"autograder/{name}", (here / name).read_bytes())
    for package in EXPORTING_PACKAGES:
        for name, path in _package_files(package):
            add(name, path.read_bytes())
    versions = {"python": platform.python_version(), "machine": platform.machine(),
                **{name: _version(name) for name in LIBRARIES}}
    add("versions", json.dumps(versions, sort_keys=True).encode())
    return digest.hexdigest()


#: Environment variable naming a reference cache shared by several course folders.
CACHE_ENV = "AUTOGRADER_REFERENCE_CACHE"


def default_cache(course: Course) -> Path:
    """Where :func:`cached_reference` keeps exports unless told otherwise.

    ``$AUTOGRADER_REFERENCE_CACHE`` when set (one cache for several copies of a course: the
    key covers everything an export depends on, not the folder it came from), otherwise
    ``autograder/cache/reference`` in the course (git-ignored).
    """
    shared = os.environ.get(CACHE_ENV)
    return Path(shared).expanduser() if shared else course.grader_dir / "cache" / "reference"


def cached_reference(course: Course, lesson: str, cache: Path | None) -> Reference:
    """:func:`build_reference`, run only when ``cache`` holds no export under today's key.

    Parameters
    ----------
    course : Course
    lesson : str
    cache : Path or None
        Folder of cached exports (created if missing); ``None`` always runs the notebook.

    Returns
    -------
    Reference
        The export; a fresh one is stored in ``cache`` (older ones of the lesson removed).
    """
    if cache is None:
        return build_reference(course, lesson)
    key = reference_key(course, lesson)
    path = cache / f"{lesson}-{key}.json"
    try:
        reference = Reference.from_plain(json.loads(path.read_text(encoding="utf-8")))
        if reference.lesson == lesson:
            return reference
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or unreadable: run the notebook
    reference = build_reference(course, lesson)
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"{lesson}-*.json"):
        old.unlink(missing_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(reference.to_plain(), sort_keys=True), encoding="utf-8")
    os.replace(scratch, path)
    return reference
