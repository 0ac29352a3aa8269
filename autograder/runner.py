"""Execute one notebook in a fresh kernel, with time limits, in a worker process of its own.

The grader calls :func:`execute`; it starts ``python -m autograder.runner`` which runs the
notebook with nbclient and saves it after every cell, so that what ran survives a kill. The
parent enforces the whole-notebook budget by killing the worker and the kernel (a kernel that
ignores SIGINT is killed all the same).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder.course import REPO_ROOT

PID_FILE = "kernel.pid"
KERNEL_NAME = "python3"  # the kernel spec every notebook runs in
MAX_CELL_OUTPUT = 2_000_000  # characters of outputs kept per cell


@dataclass
class Execution:
    notebook: nbformat.NotebookNode  # with the outputs of every cell that ran
    status: str  # "ok", "timeout" (whole budget), "dead" (kernel died), "error" (runner failed)
    detail: str = ""


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def execute(nb: nbformat.NotebookNode, workdir: Path, *, cell_timeout: float,
            budget: float, env: dict[str, str] | None = None,
            sandbox: dict | None = None) -> Execution:
    """Run ``nb`` in a fresh kernel; never raises for the notebook.

    Without ``sandbox`` the kernel runs in ``workdir`` with the grader's rights (the
    instructor's trusted notebook). With ``sandbox`` (the fields of
    :class:`autograder.sandbox.Spec` but ``workdir``) it runs sandboxed, and ``env`` is the
    kernel's whole environment.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    source, output = workdir / "input.ipynb", workdir / "executed.ipynb"
    nbformat.write(nb, source)
    os.chmod(source, 0o600)  # the root sandbox lends the kernel this folder: not these files
    job = {"notebook": str(source), "output": str(output), "cwd": str(workdir),
           "cell_timeout": cell_timeout, "env": env or {}, "sandbox": sandbox}
    worker = subprocess.Popen(
        [sys.executable, "-m", "autograder.runner"], cwd=REPO_ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = worker.communicate(json.dumps(job), timeout=budget)
        status = json.loads(out.strip().splitlines()[-1]) if out.strip() else {
            "status": "error", "detail": err.strip().splitlines()[-1] if err.strip() else "?"}
    except subprocess.TimeoutExpired:
        status = {"status": "timeout",
                  "detail": f"the notebook did not finish within {budget:g} s and was stopped"}
    except (json.JSONDecodeError, IndexError):
        status = {"status": "error", "detail": "the runner's report could not be read"}
    finally:
        if worker.poll() is None:
            _kill_group(worker.pid)
        worker.communicate()  # reap it and close its pipes
        pid_file = workdir / PID_FILE
        if pid_file.exists():  # the kernel runs in a session of its own
            _kill_group(int(pid_file.read_text() or 0) or -1)
    executed = nbformat.read(output, as_version=4) if output.exists() else nb
    return Execution(executed, status["status"], status.get("detail", ""))


def _run(job: dict) -> dict:
    if (job["sandbox"] or {}).get("backend") == "userns":
        # First, while this process has one thread: a namespace for the kernel's tmpfs.
        from autograder.sandbox.root import Limits
        from autograder.sandbox.userns import private_mounts

        job["places"] = private_mounts(Path(job["cwd"]) / "run",
                                       Limits(**job["sandbox"]["limits"]))
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(job["notebook"], as_version=4)
    output = Path(job["output"])

    def save(**_):
        tmp = output.with_suffix(".tmp")
        nbformat.write(nb, tmp)
        os.chmod(tmp, 0o600)
        os.replace(tmp, output)

    def on_cell_executed(cell, **_):
        _cap_outputs(cell)
        save()

    km, cwd = None, job["cwd"]
    if job["sandbox"]:
        km, cwd = _sandboxed_kernel_manager(Path(job["cwd"]), job["sandbox"],
                                            job.get("places"))
        env = dict(job["env"])
    else:
        env = {**os.environ, **job["env"]}
    client = NotebookClient(
        nb, km=km, timeout=job["cell_timeout"], kernel_name=KERNEL_NAME, allow_errors=True,
        interrupt_on_timeout=True, shutdown_kernel="immediate", store_widget_state=False,
        error_on_timeout={"ename": "CellTimeout", "evalue": (
            f"this cell did not finish within {job['cell_timeout']:g} s and was interrupted"),
            "traceback": []},
        resources={"metadata": {"path": cwd}})

    def remember_kernel(**_):
        pid = getattr(client.km.provisioner, "pid", None)
        if pid:
            (Path(job["cwd"]) / PID_FILE).write_text(str(pid))

    client.on_notebook_start = remember_kernel
    client.on_cell_executed = on_cell_executed
    launch = {"env": env, "cleanup_kc": True}  # shut the kernel down, even one we made
    if km is not None:  # a sandboxed kernel does not inherit the worker's pipes
        launch.update(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client.execute(**launch)
        result = {"status": "ok"}
    except DeadKernelError:
        result = {"status": "dead", "detail": "the kernel died (did the code exit or crash it?)"}
    except Exception as exc:  # noqa: BLE001 - reported to the grader, which flags it
        result = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"[:500]}
    save()
    return result


def _cap_outputs(cell) -> None:
    """Keep at most MAX_CELL_OUTPUT characters of a cell's outputs (an output flood)."""
    size = sum(len(json.dumps(out)) for out in cell.get("outputs", []))
    if size <= MAX_CELL_OUTPUT:
        return
    kept, room = [], MAX_CELL_OUTPUT
    for out in cell.outputs:
        if out.get("output_type") == "stream":
            out["text"] = out.get("text", "")[:room]
        elif len(json.dumps(out)) > room:
            continue
        room -= len(json.dumps(out))
        kept.append(out)
        if room <= 0:
            break
    kept.append(nbformat.v4.new_output("stream", name="stderr", text=(
        f"[grader: {size:,} characters of output cut to {MAX_CELL_OUTPUT:,}]\n")))
    cell.outputs = kept


def _sandboxed_kernel_manager(workdir: Path, sandbox: dict, places: dict | None = None):
    """A kernel manager whose kernel starts inside the sandbox ``sandbox["backend"]``
    (:mod:`autograder.sandbox`); ``places`` are the userns backend's tmpfs."""
    from jupyter_client.manager import AsyncKernelManager

    from autograder.sandbox import root, userns

    settings = {k: v for k, v in sandbox.items() if k != "backend"}
    limits = root.Limits(**settings.pop("limits"))
    run = workdir / "run"
    if places is None:  # the root backend
        spec = root.Spec(workdir=str(workdir), limits=limits, **settings)
        run, home = root.prepare(workdir, spec.uid)

        def wrapped(cmd: list[str]) -> list[str]:
            return root.wrap(cmd, spec, run / "sandbox.json")
    else:
        home = places["home"]

        def wrapped(cmd: list[str]) -> list[str]:
            userns.lock_sockets_when_bound(places["ipc"])
            return userns.wrap(cmd, places=places, limits=limits,
                               connection_file=run / "kernel.json", **settings)

    class SandboxedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return wrapped(super().format_kernel_cmd(extra_arguments))

    km = SandboxedKernelManager(kernel_name=KERNEL_NAME, transport="ipc",
                                ip=str(run / "ipc" / "kernel"),
                                connection_file=str(run / "kernel.json"))
    if places is not None:  # bwrap gives the kernel a session of its own: no group signals
        km.kernel_spec.interrupt_mode = "message"
    return km, str(home)


if __name__ == "__main__":
    print(json.dumps(_run(json.loads(sys.stdin.read()))))
