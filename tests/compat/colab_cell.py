"""The student notebooks' colab_setup cell, read as pip arguments (standard library only).

``python -m autograder release`` writes the cell (autograder/release.py, from
``[tool.dlopt-course]`` in pyproject.toml); build_envs.py installs dlopt into the compatibility
environment with the cell's own arguments, and the tests read what pip would change with them.
Here nothing can reach GitHub, so the cell's ``dlopt @ git+URL@TAG`` is swapped for the same
package built from this checkout; every other argument is the cell's.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COURSE = ROOT / "course"
GRADE_ID = "colab_setup"

__all__ = ["cell_source", "package_copy", "pip_arguments", "released_notebooks", "swap_requirement"]


def released_notebooks() -> list[Path]:
    """Every student notebook in course/ (course/LESSON/LESSON.ipynb)."""
    return sorted(p for p in COURSE.glob("*/*.ipynb") if p.stem == p.parent.name)


def cell_source(notebook: Path) -> str:
    """The source of the notebook's colab_setup cell."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = [cell for cell in nb["cells"]
             if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == GRADE_ID]
    if len(found) != 1:
        raise ValueError(f"{notebook}: expected one {GRADE_ID} cell, found {len(found)}")
    source = found[0]["source"]
    return "".join(source) if isinstance(source, list) else source


def pip_arguments(source: str) -> list[str]:
    """What the cell passes to ``python -m pip``: ``["install", ..., "dlopt @ ..."]``.

    The cell must make exactly one ``subprocess.run([sys.executable, "-m", "pip", ...])``
    call, with literal strings only (so that this reads the very command Colab runs).
    """
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and ast.unparse(node.func) == "subprocess.run"]
    if len(calls) != 1 or not calls[0].args or not isinstance(calls[0].args[0], ast.List):
        raise ValueError("the colab_setup cell must make one subprocess.run([...]) call")
    head, *rest = calls[0].args[0].elts
    if ast.unparse(head) != "sys.executable" or not all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in rest):
        raise ValueError("the colab_setup cell must run [sys.executable, '-m', 'pip', ...] "
                         "with literal strings")
    words = [e.value for e in rest]
    if words[:2] != ["-m", "pip"]:
        raise ValueError(f"the colab_setup cell runs {words[:2]}, not '-m pip'")
    return words[2:]


def swap_requirement(arguments: list[str], package: Path) -> list[str]:
    """The arguments with the cell's ``dlopt @ ...`` requirement pointing at ``package``."""
    dlopt = [i for i, a in enumerate(arguments) if a.replace(" ", "").startswith("dlopt@")]
    if len(dlopt) != 1:
        raise ValueError(f"expected one 'dlopt @ URL' requirement in {arguments}")
    swapped = list(arguments)
    swapped[dlopt[0]] = f"dlopt @ {package.resolve().as_uri()}"
    return swapped


def package_copy(folder: Path) -> Path:
    """dlopt's source as the release tag would hold it (pyproject.toml, README.md, src/),
    copied into ``folder``/dlopt, so pip builds it without writing into the checkout."""
    target = folder / "dlopt"
    target.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "src", target / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return target
