"""The colab_setup cell: one pinned release for the whole course, and nothing of Colab changed.

- pyproject.toml's ``[tool.dlopt-course]`` is the one place the repository and the release tag
  are written; ``release`` writes them into every student notebook (autograder/release.py),
  and the tag is this version's.
- In the Colab environment (Colab's versions, build_envs.py), what pip would change with the
  cell's own arguments is read from ``pip install --dry-run --report``: dlopt, and nothing else;
  without ``--no-deps`` too (dlopt's ranges admit Colab's versions). The same reading on a
  dlopt that asks for ``ipywidgets>=8`` (as it did) finds the upgrade, so the check can fail.
- The install build_envs.py made with the cell's arguments added dlopt and changed nothing.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import tomllib

from autograder.course import REPO_ROOT, Course
from autograder.release import colab_requirement, colab_setup_source, course_release

from . import colab_cell
from .hosts import cell_record, colab_pins, colab_python

PYPROJECT = REPO_ROOT / "pyproject.toml"


def project() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def test_one_constant_names_the_repository_and_the_release():
    repository, tag = course_release(Course(REPO_ROOT))
    meta = project()["project"]
    assert tag == f"v{meta['version']}", (
        f"[tool.dlopt-course] release = {tag!r}, but dlopt's version is {meta['version']}: "
        "students would install another dlopt than this one")
    assert repository == meta["urls"]["Repository"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repository)


def test_a_course_root_with_its_own_pyproject_names_its_own_release(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dlopt-course]\nrepository = "https://github.com/someone/fork"\n'
        'release = "v9.9.9"\n')
    assert course_release(Course(tmp_path)) == ("https://github.com/someone/fork", "v9.9.9")
    assert "git+https://github.com/someone/fork@v9.9.9" in colab_setup_source(
        *course_release(Course(tmp_path)))


@pytest.mark.parametrize("notebook", colab_cell.released_notebooks(),
                         ids=lambda p: p.parent.name)
def test_every_student_notebook_installs_the_pinned_release_alone(notebook):
    repository, tag = course_release(Course(REPO_ROOT))
    source = colab_cell.cell_source(notebook)
    assert source == colab_setup_source(repository, tag), (
        f"{notebook.parent.name}'s colab_setup cell is not the one `release` writes; "
        "run: python -m autograder release")
    arguments = colab_cell.pip_arguments(source)
    assert arguments[0] == "install" and "--no-deps" in arguments
    requirements = [a for a in arguments[1:] if not a.startswith("-")]
    assert requirements == [colab_requirement(repository, tag)]
    assert '"google.colab" in sys.modules' in source


def dry_run(arguments: list[str], folder) -> dict[str, str]:
    """name -> version of what pip would install in the Colab environment."""
    report = folder / "report.json"
    done = subprocess.run([str(colab_python()), "-m", "pip", *arguments, "--dry-run",
                           "--report", str(report)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}


@pytest.fixture
def cell_arguments() -> list[str]:
    return colab_cell.pip_arguments(colab_cell.cell_source(colab_cell.released_notebooks()[0]))


def test_pip_would_install_dlopt_and_change_nothing_of_colab(cell_arguments, tmp_path):
    package = colab_cell.package_copy(tmp_path)
    version = project()["project"]["version"]
    assert dry_run(colab_cell.swap_requirement(cell_arguments, package), tmp_path) == {
        "dlopt": version}
    # Even resolving dlopt's dependencies changes nothing: its ranges admit Colab's versions.
    with_deps = [a for a in cell_arguments if a != "--no-deps"]
    assert dry_run(colab_cell.swap_requirement(with_deps, package), tmp_path) == {
        "dlopt": version}


def test_the_dry_run_sees_an_upgrade_of_colabs_widgets(cell_arguments, tmp_path):
    """The reading above can fail: a dlopt asking for ipywidgets 8, as it did, upgrades them."""
    package = colab_cell.package_copy(tmp_path)
    pyproject = package / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert '"ipywidgets>=7.7.1"' in text
    pyproject.write_text(text.replace('"ipywidgets>=7.7.1"', '"ipywidgets>=8"'))
    with_deps = [a for a in cell_arguments if a != "--no-deps"]
    changes = dry_run(colab_cell.swap_requirement(with_deps, package), tmp_path)
    assert changes["ipywidgets"].startswith("8.") and "widgetsnbextension" in changes


def test_the_cells_install_added_dlopt_and_changed_nothing_else():
    record = cell_record()
    cell = colab_cell.cell_source(colab_cell.released_notebooks()[0])
    assert record["cell"] == cell, "the Colab environment was built with another colab_setup " \
        "cell; rebuild it: python tests/compat/build_envs.py colab"
    def options(arguments):
        return [a for a in arguments if not a.startswith("dlopt")]

    assert options(record["arguments"]) == options(colab_cell.pip_arguments(cell))
    before, after = record["before"], record["after"]
    assert "dlopt" not in before and after.pop("dlopt") == project()["project"]["version"]
    assert after == before
    public = {name: before.get(name, "missing").split("+")[0] for name in colab_pins()}
    assert public == colab_pins(), "the Colab environment does not hold Colab's versions"
