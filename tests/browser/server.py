"""A JupyterLab of the browser tests' own, on a scratch copy of the course.

The server listens on 127.0.0.1 only, on a free port, behind a random token. Its configuration,
user settings, workspaces and runtime files live in a folder of their own, so nothing of the
user's ~/.jupyter is read or written, and the repository itself is never touched: the server's
root is a copy of course/ and solutions/ (notebooks stay output-free in the repository) with
the nbgrader configuration next to them, in the same layout, so the formgrader and the Validate
button find the course exactly as they do at the repository root.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Copied into the scratch root, keeping the layout: autograder/nbgrader_config.py computes the
# course root from its own location, and nbgrader reads nbgrader_config.py from its cwd.
COPIED = ("course", "solutions", "nbgrader_config.py", "autograder/nbgrader_config.py")

# Server-side settings: window.jupyterapp for driving the UI, and no news or update checks
# (no prompt asking to receive news, no request leaving the machine).
LAB_CONFIG = {
    "LabApp": {
        "expose_app_in_browser": True,
        "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
    },
}

# JupyterLab user settings (JUPYTERLAB_SETTINGS_DIR); everything else keeps its default, so the
# tests see the lab a student sees.
LAB_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def make_workspace(root: Path) -> Path:
    """Copy the course's notebooks and nbgrader configuration under ``root``."""
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for rel in COPIED:
        src, dst = REPO_ROOT / rel, root / rel
        if src.is_dir():
            shutil.copytree(src, dst, ignore=ignore)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return root


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` in a subprocess; ``start()`` returns once its REST API answers."""

    def __init__(self, root: Path, home: Path, log_path: Path):
        self.root = root
        self.home = home
        self.log_path = log_path
        self.token = secrets.token_hex(24)
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str, **query: str) -> str:
        params = "&".join([f"token={self.token}"] + [f"{k}={v}" for k, v in query.items()])
        return f"{self.base_url}/{path.lstrip('/')}?{params}"

    def environment(self) -> dict[str, str]:
        dirs = {name: self.home / name for name in ("config", "data", "runtime", "settings",
                                                    "workspaces", "ipython")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        (dirs["config"] / "jupyter_lab_config.json").write_text(json.dumps(LAB_CONFIG, indent=2))
        for rel, values in LAB_USER_SETTINGS.items():
            path = dirs["settings"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values, indent=2))
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            IPYTHONDIR=str(dirs["ipython"]),
            JUPYTER_PLATFORM_DIRS="1",
            PYTHONUNBUFFERED="1",
        )
        env.pop("JUPYTER_TOKEN", None)
        return env

    def command(self) -> list[str]:
        # CI runs as root, and jupyter refuses root unless told it is fine.
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        root = ["--ServerApp.allow_root=True"] if as_root else []
        return [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root}",
            f"--IdentityProvider.token={self.token}",
            # A safety net should the test process die without stopping the server.
            "--ServerApp.shutdown_no_activity_timeout=1800",
            "--ServerApp.terminals_enabled=False",
            *root,
        ]

    def start(self, timeout: float = 120.0) -> JupyterLab:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = self.environment()
        for attempt in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            # cwd = the course root: nbgrader's formgrader and Validate read nbgrader_config.py
            # from the server's working directory.
            self.process = subprocess.Popen(
                self.command(), cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_ready(timeout):
                return self
            self._terminate()
            if attempt == 2:
                break
        raise RuntimeError(f"JupyterLab did not start; its log:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=5) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        return False

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(self.url(path), method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Shut the server down (its kernels with it), politely first."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.api("POST", "api/shutdown")
                self.process.wait(timeout=30)
            except (urllib.error.URLError, ConnectionError, TimeoutError,
                    subprocess.TimeoutExpired):
                pass
        self._terminate()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _terminate(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None
