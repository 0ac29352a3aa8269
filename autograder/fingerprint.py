"""What decides a verdict, hashed: a re-run regrades a submission when any of it changed.

A recorded grade is reused ("unchanged") only while its fingerprint is the same. The
fingerprint hashes the submission (its bytes as handed in) and everything that decides a
verdict for it:

- ``reference``: the data exported from the instructor's notebook (scenarios, public and
  hidden, the instructor's outputs, every named mistake's outputs, tolerances, points), as
  canonical JSON. Oracles, mistakes and the solution are judged by what they produce: a
  changed oracle that gives other numbers regrades; a refactor that gives the same does not.
- ``release``: the released notebook, whose given cells run with the student's code.
- ``code``: every module of the grading contract (``dlopt.grading``: scenario, judge,
  exercise, codec, probe, every driver), every ``dlopt`` module those import, found by
  reading their imports rather than from a list kept by hand, and the modules that scenario
  arguments name (``dlopt.kit.objectives.quadratic``); and the grader itself
  (``autograder/*.py``). Lesson labs and plots (``dlopt.lessons``) and the kit helpers that
  no check uses never decide a verdict, so editing them regrades nothing.
- ``versions``: Python, numpy and torch of the interpreter the kernels run (the reference's
  and the students').
- ``options``: the limits a run had (cell timeout, notebook budget, sandbox): a cell stopped
  at 10 s may pass at 60.

``results.json`` keeps these parts (``fingerprint_parts``) and, when a submission is graded
again, what had changed (``regraded_because``), so an instructor can see why.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from autograder.course import Course
from autograder.grade_one import RunOptions
from autograder.reference import Reference
from autograder.runner import KERNEL_NAME

GRADING_PACKAGE = "dlopt.grading"
TOP_PACKAGE = "dlopt"
LIBRARIES = ("numpy", "torch")
GRADER_CODE = Path(__file__).resolve().parent  # autograder/


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value) -> bytes:
    """One byte string per value: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("ascii")


# ---------------------------------------------------------------------------------------------
# The reference data
# ---------------------------------------------------------------------------------------------
def reference_digest(reference: Reference) -> str:
    return sha256(canonical_json(asdict(reference)))


def referenced_modules(reference: Reference) -> set[str]:
    """The ``dlopt`` modules the exported data names (drivers, functions passed as arguments)."""
    found: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, dict):
            if value.get("t") == "ref" and isinstance(value.get("module"), str):
                found.add(value["module"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(asdict(reference))
    return {name for name in found if name.split(".")[0] == TOP_PACKAGE}


# ---------------------------------------------------------------------------------------------
# The code that decides verdicts: the grading package and the dlopt modules it imports
# ---------------------------------------------------------------------------------------------
def package_dirs() -> list[Path]:
    """Where ``dlopt`` is imported from: the grader's copy, which the kernels import too (the
    sandbox lends them exactly this folder)."""
    spec = importlib.util.find_spec(TOP_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot find the {TOP_PACKAGE} package")
    return [Path(p) for p in spec.submodule_search_locations]


def module_file(name: str, roots: list[Path]) -> Path | None:
    """The file that ``import name`` runs (a module or a package's ``__init__``), if any.

    Found on disk, without importing anything: a lesson package's ``__init__`` may import
    widgets and plots that have no place in the grader.
    """
    parts = name.split(".")
    if parts[0] != TOP_PACKAGE:
        return None
    for root in roots:
        base = root.joinpath(*parts[1:])
        for candidate in (base / "__init__.py", base.with_name(base.name + ".py")):
            if candidate.is_file():
                return candidate
    return None


def _imported_names(path: Path, name: str) -> set[str]:
    """Every module ``path`` (module ``name``) may import, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import codec`, `from ..kit import learner`
                levels = package.split(".")
                base = ".".join(levels[:len(levels) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names.add(base)  # `from pkg import name` may name a submodule or an attribute
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _with_parents(name: str) -> Iterator[str]:
    parts = name.split(".")
    for k in range(1, len(parts) + 1):
        yield ".".join(parts[:k])


def verdict_modules(extra: Iterable[str] = ()) -> dict[str, Path]:
    """The ``dlopt`` modules a verdict depends on, by name: every module of the grading
    package, ``extra`` (modules the exported data names), and, transitively, every ``dlopt``
    module any of them imports, with the packages around them (their ``__init__`` runs too)."""
    roots = package_dirs()
    grading = module_file(GRADING_PACKAGE, roots)
    if grading is None:
        raise RuntimeError(f"cannot find {GRADING_PACKAGE} in {roots}")
    todo = [GRADING_PACKAGE, *extra]
    for path in sorted(grading.parent.rglob("*.py")):
        parts = path.relative_to(grading.parent).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        todo.append(".".join((GRADING_PACKAGE, *parts)))
    found: dict[str, Path] = {}
    while todo:
        for name in _with_parents(todo.pop()):
            if name in found or (path := module_file(name, roots)) is None:
                continue
            found[name] = path
            todo.extend(n for n in _imported_names(path, name)
                        if n.split(".")[0] == TOP_PACKAGE)
    return dict(sorted(found.items()))


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def code_digest(path: Path) -> str:
    """A module's code, hashed as Python reads it: comments, layout and docstrings (nothing
    in the grader or the package reads ``__doc__``) change nothing; any statement does."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    scopes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, scopes) and node.body and _is_docstring(node.body[0]):
            node.body = node.body[1:] or [ast.Pass()]
    return sha256(ast.dump(tree).encode("utf-8"))


def grader_code() -> dict[str, Path]:
    """The grader's own modules (``autograder/*.py``), by name."""
    return {f"{GRADER_CODE.name}.{path.stem}": path
            for path in sorted(GRADER_CODE.glob("*.py"))}


# ---------------------------------------------------------------------------------------------
# The libraries the kernels run
# ---------------------------------------------------------------------------------------------
def _versions_here() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    return {"python": platform.python_version(), **{name: version(name) for name in LIBRARIES}}


_VERSIONS_THERE = """
import importlib.metadata as m, json, platform, sys
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return "absent"
print(json.dumps({"python": platform.python_version(), **{n: version(n) for n in sys.argv[1:]}}))
"""


def _kernel_python() -> str:
    """The interpreter of the kernels, resolved the way jupyter_client resolves it."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        command = KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv[0]
    except (NoSuchKernel, IndexError):
        return sys.executable
    major, minor = sys.version_info[:2]
    if command in {"python", f"python{major}", f"python{major}.{minor}"}:
        return sys.executable  # jupyter_client runs these names as the current interpreter
    return shutil.which(command) or command


def kernel_versions() -> dict[str, str]:
    """Python's, numpy's and torch's versions in the kernels that export and run notebooks
    (read from package metadata: nothing is imported)."""
    python = _kernel_python()
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return _versions_here()
    done = subprocess.run([python, "-c", _VERSIONS_THERE, *LIBRARIES], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


# ---------------------------------------------------------------------------------------------
# The fingerprint
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fingerprint:
    digest: str  # what results.json compares
    parts: dict  # what it covers, hash by hash


def grader_parts(course: Course, lesson: str, reference: Reference,
                 options: RunOptions) -> dict:
    """Everything but the submission that decides a verdict for ``lesson``, hashed."""
    modules = {**grader_code(), **verdict_modules(referenced_modules(reference))}
    return {
        "reference": reference_digest(reference),
        "release": sha256(course.release_notebook(lesson).read_bytes()),
        "code": {name: code_digest(path) for name, path in modules.items()},
        "versions": kernel_versions(),
        "options": asdict(options),
    }


def fingerprint(submission_sha256: str, grader: dict) -> Fingerprint:
    """The fingerprint of one submission (the SHA-256 of its bytes) graded by ``grader``."""
    parts = {"submission": submission_sha256, **grader}
    return Fingerprint(sha256(canonical_json(parts)), parts)


def _flat(parts: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in parts.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def changes(before: dict, after: dict) -> list[str]:
    """What differs between two fingerprints' parts, one line each (``code/dlopt.x: changed``,
    ``versions/numpy: 1.26.4 -> 2.0.2``)."""
    old, new = dict(_flat(before)), dict(_flat(after))
    lines = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if a is None or b is None:
            lines.append(f"{key}: {'added' if a is None else 'removed'}")
        elif key.startswith(("versions/", "options/")):
            lines.append(f"{key}: {a} -> {b}")
        else:
            lines.append(f"{key}: changed")
    return lines
