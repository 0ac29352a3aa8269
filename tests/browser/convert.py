"""nbconvert runs of the solved lessons, done in a background thread while the browser works.

Each run is ``jupyter nbconvert --to notebook --execute`` then ``jupyter nbconvert --to html``
(what ``--to html --execute`` does, in two commands, so that the executed notebook says which
outputs are widgets), from a scratch copy of the course root. test_nbconvert.py checks the
results; running them alongside the browser tests, which mostly wait on JupyterLab, keeps the
suite within its time budget on a 2-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from .server import make_workspace

TIMEOUT = 300  # seconds per nbconvert command


@dataclass
class Conversion:
    lesson: str
    executed: Path | None = None
    html: Path | None = None
    error: str | None = None


class Conversions:
    """Converts ``lessons`` one after the other in a thread; ``get`` waits for one."""

    def __init__(self, lessons: list[str], workdir: Path, out: Path):
        self.lessons = list(lessons)
        self.workdir = workdir
        self.out = out
        self.results: dict[str, Conversion] = {}
        self._done = {lesson: threading.Event() for lesson in self.lessons}
        self._stopping = False
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="nbconvert", daemon=True)

    def start(self) -> Conversions:
        if self.lessons:
            self._thread.start()
        return self

    def get(self, lesson: str, timeout: float = 3 * TIMEOUT) -> Conversion:
        if lesson not in self._done:  # not selected at collection: convert it now
            self._done[lesson] = threading.Event()
            self.results[lesson] = self._convert(lesson)
            self._done[lesson].set()
        if not self._done[lesson].wait(timeout):
            return Conversion(lesson, error=f"nbconvert of {lesson} did not finish in {timeout} s")
        return self.results[lesson]

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.kill()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        for lesson in self.lessons:
            if self._stopping:
                self.results[lesson] = Conversion(lesson, error="stopped")
            else:
                try:
                    self.results[lesson] = self._convert(lesson)
                except Exception as error:  # noqa: BLE001 - reported by the lesson's test
                    self.results[lesson] = Conversion(lesson, error=repr(error))
            self._done[lesson].set()

    def _convert(self, lesson: str) -> Conversion:
        root = make_workspace(self.workdir / lesson / "root")
        source = root / "solutions" / lesson / f"{lesson}.ipynb"
        executed = self.workdir / lesson / "executed" / f"{lesson}.ipynb"
        self.out.mkdir(parents=True, exist_ok=True)
        # From the course root, as an instructor runs it, with the environment's Jupyter
        # configuration (nbconvert reads no configuration file from the working directory).
        error = self._nbconvert(root, "--to", "notebook", "--execute", str(source),
                                "--output-dir", str(executed.parent), "--output", lesson)
        if error:
            return Conversion(lesson, error=f"nbconvert --execute failed:\n{error}")
        error = self._nbconvert(root, "--to", "html", str(executed), "--output-dir",
                                str(self.out), "--output", lesson)
        if error:
            return Conversion(lesson, error=f"nbconvert --to html failed:\n{error}")
        kept = self.out / f"{lesson}.executed.ipynb"
        kept.write_bytes(executed.read_bytes())
        return Conversion(lesson, executed=kept, html=self.out / f"{lesson}.html")

    def _nbconvert(self, cwd: Path, *args: str) -> str | None:
        """Run ``jupyter nbconvert``; None when it succeeded, else the end of its stderr."""
        env = dict(os.environ, JUPYTER_PLATFORM_DIRS="1")
        with self._lock:
            if self._stopping:
                return "stopped"
            self._process = subprocess.Popen(
                [sys.executable, "-m", "jupyter", "nbconvert", *args], cwd=cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
            process = self._process
        try:
            _, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
            return f"timed out after {TIMEOUT} s\n{stderr[-3000:]}"
        return None if process.returncode == 0 else stderr[-3000:]
