"""Run the grader as an unprivileged user, as instructors without root do.

As root (CI), the tests switch to a system user of their own, ``dlopt-grader`` (created on
first use), with an environment it can run: this one when that user can read it, else a copy
made from Debian's ``/usr/bin/python3.11`` (this environment's interpreter may live in
root's home, mode 700), whose packages are hard links to this environment's, and in which the
course's two packages are installed as regular packages, as an instructor would install them.
Run by a user who is not root, the tests run as that user, in this environment.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import cache
from pathlib import Path

from autograder.course import REPO_ROOT

USER = "dlopt-grader"
SYSTEM_PYTHON = "/usr/bin/python3.11"


def is_root() -> bool:
    return os.geteuid() == 0


@cache
def user() -> pwd.struct_passwd:
    """The unprivileged user the tests grade as (created when missing, as root)."""
    if not is_root():
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", USER], check=True, capture_output=True)
        return pwd.getpwnam(USER)


def folder(prefix: str) -> Path:
    """A new folder the unprivileged user owns, outside root's home."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    if is_root():
        os.chown(path, user().pw_uid, user().pw_gid)
    return path


def give(path: Path) -> None:
    """Hand ``path`` (a tree) to the unprivileged user."""
    if is_root():
        subprocess.run(["chown", "-R", f"{user().pw_uid}:{user().pw_gid}", str(path)],
                       check=True)


def run(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
        ) -> subprocess.CompletedProcess:
    """``command`` as the unprivileged user, with exactly ``env`` (plus PATH)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", **env}
    prefix = ["runuser", "-u", USER, "--"] if is_root() else []
    return subprocess.run([*prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           *command], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _can_run(python: str) -> bool:
    probe = run([python, "-c", "import autograder, dlopt, nbclient, torch"], cwd=Path("/"),
                env={}, timeout=120)
    return probe.returncode == 0


@cache
def python() -> str:
    """An interpreter whose environment the unprivileged user can run, with the grader."""
    if not is_root() or _can_run(sys.executable):
        return sys.executable
    if not os.path.exists(SYSTEM_PYTHON):
        raise RuntimeError(f"the unprivileged user cannot run {sys.executable}, and "
                           f"{SYSTEM_PYTHON} (Debian's python3.11) is missing")
    venv = Path(tempfile.mkdtemp(prefix="dlopt-grader-env-", dir="/var/tmp"))
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--clear", "--without-pip", str(venv)],
                   check=True)
    site = venv / "lib" / "python3.11" / "site-packages"
    shutil.rmtree(site)
    here = sysconfig.get_paths()["purelib"]
    copy = ["cp", "-al", here, str(site)]  # hard links: seconds, no space
    if subprocess.run(copy, capture_output=True).returncode != 0:
        subprocess.run(["cp", "-a", here, str(site)], check=True)
    # The course's packages as regular (not editable) packages, built from this checkout, and
    # the commands nbgrader runs by name (alembic) in the copy's bin/.
    from importlib.metadata import version

    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--no-deps", "--no-build-isolation", "--no-warn-script-location",
                    "--force-reinstall", f"alembic=={version('alembic')}",
                    str(REPO_ROOT), str(REPO_ROOT / "instructor")],
                   check=True, capture_output=True, cwd=tempfile.gettempdir())
    subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    if not _can_run(python):
        raise RuntimeError(f"the unprivileged user cannot run {python}")
    return python
