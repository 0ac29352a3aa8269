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
            budget: float, env: dict[str, str] | None = None) -> Execution:
    """Run ``nb`` with the kernel's working directory ``workdir``; never raises for the notebook."""
    workdir.mkdir(parents=True, exist_ok=True)
    source, output = workdir / "input.ipynb", workdir / "executed.ipynb"
    nbformat.write(nb, source)
    job = {"notebook": str(source), "output": str(output), "cwd": str(workdir),
           "cell_timeout": cell_timeout, "env": env or {}}
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
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.read(job["notebook"], as_version=4)
    output = Path(job["output"])

    def save(**_):
        tmp = output.with_suffix(".tmp")
        nbformat.write(nb, tmp)
        os.replace(tmp, output)

    client = NotebookClient(
        nb, timeout=job["cell_timeout"], kernel_name="python3", allow_errors=True,
        interrupt_on_timeout=True, shutdown_kernel="immediate", store_widget_state=False,
        error_on_timeout={"ename": "CellTimeout", "evalue": (
            f"this cell did not finish within {job['cell_timeout']:g} s and was interrupted"),
            "traceback": []},
        resources={"metadata": {"path": job["cwd"]}})

    def remember_kernel(**_):
        pid = getattr(client.km.provisioner, "pid", None)
        if pid:
            (Path(job["cwd"]) / PID_FILE).write_text(str(pid))

    client.on_notebook_start = remember_kernel
    client.on_cell_executed = save
    env = {**os.environ, **job["env"]}
    try:
        client.execute(env=env)
        result = {"status": "ok"}
    except DeadKernelError:
        result = {"status": "dead", "detail": "the kernel died (did the code exit or crash it?)"}
    except Exception as exc:  # noqa: BLE001 - reported to the grader, which flags it
        result = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"[:500]}
    save()
    return result


if __name__ == "__main__":
    print(json.dumps(_run(json.loads(sys.stdin.read()))))
