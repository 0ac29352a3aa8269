"""Fixtures of the real-browser tests: Debian's chromium, and a JupyterLab of the tests' own.

One JupyterLab serves the whole session, on 127.0.0.1, a free port and a random token, from a
scratch copy of course/ and solutions/ (see server.py); it is stopped, kernels and all, at the
end. Without /usr/bin/chromium the browser tests are skipped, except in CI (CI=true), where a
missing browser is a failure: CI installs it (.ci/run).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from autograder.course import REPO_ROOT, Course

from .lab import APP_READY, CHROMIUM_ARGS, CLEAN_UP, VIEWPORT, load_jupyterlab
from .server import JupyterLab, make_workspace

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
LESSONS = Course(REPO_ROOT).lessons()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _unavailable(reason: str):
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the browser tests must run in CI; .ci/run installs "
                    f"chromium with apt-get)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"browser tests need Debian's chromium at {CHROMIUM} "
                     f"(apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("browser tests need playwright (python -m pip install -r requirements.txt)")
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts_root() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def artifacts(request, artifacts_root) -> Path:
    """This test's screenshot folder, emptied first: test-artifacts/browser/<test>/."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")
    folder = artifacts_root / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="session")
def lab(chromium, tmp_path_factory, artifacts_root):
    """JupyterLab on a scratch copy of the course; stopped (kernels too) after the session."""
    base = tmp_path_factory.mktemp("jupyterlab")
    server = JupyterLab(make_workspace(base / "root"), base / "home", base / "server.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.copyfile(server.log_path, artifacts_root / "jupyter-server.log")


@pytest.fixture(scope="session")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="session")
def browser_context(browser):
    """One context for the session: JupyterLab's scripts are fetched once, then cached."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    try:
        yield context
    finally:
        context.close()


class LabTab:
    """One JupyterLab page for the lesson tests, loaded once (about 3 s saved per lesson) and
    cleaned between tests; reloaded whenever a test left it unusable."""

    def __init__(self, context, lab):
        self.context, self.lab, self.page = context, lab, None

    def get(self):
        if self.page is not None and not self.page.is_closed():
            try:
                if self.page.evaluate(APP_READY):
                    return self.page
            except Exception:  # noqa: BLE001 - navigated away or crashed: start afresh
                pass
            self.page.close()
        self.page = self.context.new_page()
        self.page.browser_test_console = []
        self.page.on("pageerror",
                     lambda error: self.page.browser_test_console.append(f"pageerror: {error}"))
        load_jupyterlab(self.page, self.lab)
        return self.page

    def clean(self):
        try:
            self.page.evaluate(CLEAN_UP)
            self.page.browser_test_console.clear()
        except Exception:  # noqa: BLE001 - the next get() reloads the page
            self.page.close()


@pytest.fixture(scope="session")
def lab_tab(browser_context, lab):
    return LabTab(browser_context, lab)


@pytest.fixture
def page(lab_tab, artifacts):
    """JupyterLab, with no document open and no kernel running."""
    page = lab_tab.get()
    page.set_viewport_size(VIEWPORT)
    try:
        yield page
    finally:
        lab_tab.clean()


@pytest.fixture
def fresh_page(browser_context):
    """A new, blank page of its own."""
    page = browser_context.new_page()
    try:
        yield page
    finally:
        page.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        page = item.funcargs.get("page") or item.funcargs.get("fresh_page")
        folder = item.funcargs.get("artifacts")
        if page is not None and folder is not None and not (folder / "failure.png").exists():
            try:
                page.screenshot(path=str(folder / "failure.png"), timeout=10_000)
            except Exception:  # noqa: BLE001 - a failing test's screenshot is best effort
                pass
