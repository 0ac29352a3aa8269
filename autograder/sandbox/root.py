"""The root backend: a student's kernel in namespaces, as a uid of its own, with limits.

The kernel command that jupyter_client would run is wrapped as::

    unshare --mount --net --pid --fork --kill-child --mount-proc \\
        python autograder/sandbox/root.py SPEC.json -- <kernel command>

The wrapper starts as root inside fresh mount, network and PID
namespaces, and before it drops privileges it

- hides the course root, the repository (solutions/, the gradebook, the grader's
  configuration), the grading scratch folder (other submissions), the grader's home, /tmp and
  /dev/shm behind empty tmpfs mounts, and puts back read-only only what the kernel needs: the
  Python installation, the dlopt sources, and this submission's own folder;
- gives the kernel a size-limited tmpfs as its home and working directory;
- runs the kernel as an unprivileged uid of its own (one per worker slot, so one student's
  process bomb cannot starve another's), with no supplementary groups, ``no_new_privs``, and
  limits on address space, processes, CPU time, file size and open files.

The network namespace has no interfaces up, so there is no network. Kernel and grader talk
over Unix sockets in a folder that is made read-only for the kernel once its sockets exist.
When the kernel exits or is killed, the PID namespace takes every process it started with it.

Requirements on the host: Linux, root (or CAP_SYS_ADMIN), ``unshare`` from util-linux. See
:func:`available`. This file runs as a script inside the namespaces: standard library only.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BASE_UID = 61000  # sandbox uids: BASE_UID + worker slot
SOCKETS = 5  # shell, iopub, stdin, control, heartbeat
PR_SET_NO_NEW_PRIVS = 38


@dataclass
class Limits:
    """Resource limits of one sandboxed kernel."""

    memory_bytes: int = 4 << 30  # address space; torch needs ~2 GiB of it just to import
    processes: int = 256  # threads count too (BLAS and torch pools)
    cpu_seconds: int = 600
    file_bytes: int = 256 << 20  # largest single file the kernel may write
    open_files: int = 1024
    home_bytes: int = 512 << 20  # size of the tmpfs the kernel works in
    tmp_bytes: int = 64 << 20  # size of the fresh /tmp and /dev/shm


@dataclass
class Spec:
    """What the wrapper needs to know; written as JSON next to the kernel's connection file."""

    uid: int
    workdir: str  # this submission's folder: run/ (sockets) and home/ (the kernel's cwd)
    hide: list[str]
    keep: list[str]  # paths under hidden ones to put back read-only
    limits: Limits = field(default_factory=Limits)


@functools.lru_cache(maxsize=1)
def available() -> str:
    """'' if the sandbox can run here, else the reason it cannot."""
    if sys.platform != "linux":
        return "the root sandbox needs Linux namespaces"
    if os.geteuid() != 0:
        return ("the root sandbox needs root, to give each kernel a uid of its own: grade as "
                "root, or use --sandbox userns (or auto)")
    if shutil.which("unshare") is None:
        return "the root sandbox needs 'unshare' (util-linux)"
    probe = subprocess.run(["unshare", "--mount", "--net", "--pid", "--fork", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"namespaces are not available here ({probe.stderr.strip()[:200]})"
    return ""


def paths_to_keep() -> list[str]:
    """The Python installation and the dlopt sources, which the kernel must be able to read."""
    import dlopt

    dlopt_src = str(Path(dlopt.__file__).resolve().parent.parent)
    return sorted({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, dlopt_src)})


def prepare(workdir: Path, uid: int) -> tuple[Path, Path]:
    """Create ``run/ipc`` (sockets) and ``home`` in ``workdir``; return (run, home)."""
    run, home = workdir / "run", workdir / "home"
    (run / "ipc").mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    os.chmod(workdir, 0o711)  # the kernel may traverse it, not list or write it
    os.chmod(run, 0o755)
    os.chmod(run / "ipc", 0o777)  # the kernel binds its sockets here; locked after start
    os.chown(home, uid, uid)
    return run, home


def wrap(kernel_cmd: list[str], spec: Spec, spec_path: Path) -> list[str]:
    spec_path.write_text(json.dumps(asdict(spec)))
    here = str(Path(__file__).resolve())
    # First hop: ignore SIGINT, then exec unshare. jupyter_client interrupts a kernel by
    # sending SIGINT to its whole process group; only the kernel itself may act on it.
    return [sys.executable, "-I", here, "--ignore-sigint", "unshare", "--mount", "--net",
            "--pid", "--fork", "--kill-child", "--mount-proc",
            sys.executable, "-I", here, str(spec_path), "--", *kernel_cmd]


# ---------------------------------------------------------------------------------------------
# Inside the namespaces (as root, then as the sandbox user)
# ---------------------------------------------------------------------------------------------
def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _build_filesystem(spec: Spec) -> None:
    hold = "/mnt"
    _mount("-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", hold)
    keep = [p for p in [*spec.keep, spec.workdir] if os.path.exists(p)]
    held = {}
    for k, path in enumerate(keep):
        target = f"{hold}/{k}"
        os.mkdir(target)
        _mount("--bind", path, target)
        held[path] = target
    size = spec.limits.tmp_bytes
    for path in sorted(spec.hide, key=len):
        if os.path.isdir(path) and not os.path.islink(path):
            _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path)
    for path, source in held.items():
        if not any(_under(path, hidden) for hidden in spec.hide):
            continue
        os.makedirs(path, exist_ok=True)
        _mount("--bind", source, path)
        if path != spec.workdir:
            _mount("-o", "remount,bind,ro", path)
    subprocess.run(["umount", "-l", hold], check=True)
    home = os.path.join(spec.workdir, "home")
    _mount("-t", "tmpfs", "-o", f"size={spec.limits.home_bytes},mode=0700,uid={spec.uid},"
           f"gid={spec.uid}", "tmpfs", home)


def _drop_privileges(spec: Spec) -> None:
    limits = spec.limits
    for which, value in ((resource.RLIMIT_AS, limits.memory_bytes),
                         (resource.RLIMIT_NPROC, limits.processes),
                         (resource.RLIMIT_CPU, limits.cpu_seconds),
                         (resource.RLIMIT_FSIZE, limits.file_bytes),
                         (resource.RLIMIT_NOFILE, limits.open_files),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))
    os.setgroups([])
    os.setgid(spec.uid)
    os.setuid(spec.uid)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _lock_sockets_when_bound(ipc: str, child: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(os.listdir(ipc)) >= SOCKETS:
            break
        if os.waitpid(child, os.WNOHANG) != (0, 0):
            return
        time.sleep(0.05)
    os.chmod(ipc, 0o555)  # no more files there: the kernel cannot fill the grader's disk


def main(argv: list[str]) -> int:
    if argv[0] == "--ignore-sigint":
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited through exec
        os.execvp(argv[1], argv[1:])
    spec_path, separator, *kernel_cmd = argv
    assert separator == "--" and kernel_cmd, "usage: SPEC.json -- KERNEL COMMAND"
    data = json.loads(Path(spec_path).read_text())
    spec = Spec(**{**data, "limits": Limits(**data["limits"])})
    connection_file = kernel_cmd[kernel_cmd.index("-f") + 1]
    os.chown(connection_file, spec.uid, spec.uid)  # jupyter_client wrote it 0600 for root
    _build_filesystem(spec)
    home = os.path.join(spec.workdir, "home")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("JPY_", "IPY_"))}  # no parent polling across namespaces
    env["HOME"] = home
    child = os.fork()
    if child == 0:
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # the kernel handles interrupts
            _drop_privileges(spec)
            os.chdir(home)
            os.execvpe(kernel_cmd[0], kernel_cmd, env)
        finally:
            os._exit(127)
    _lock_sockets_when_bound(os.path.join(spec.workdir, "run", "ipc"), child)
    while True:  # PID 1 of the namespace: reap everything until the kernel exits
        pid, status = os.wait()
        if pid == child:
            return os.waitstatus_to_exitcode(status) & 0xFF


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
