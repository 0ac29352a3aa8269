"""A widget-heavy lesson in an ipywidgets 7 front end: the classic notebook of Colab's versions.

Colab pins ipywidgets 7.7.1, whose views its own front end renders; the nearest front end that
runs here is the classic notebook (6.5) with widgetsnbextension 3.6, from the Colab
environment (tests/compat/build_envs.py), which also runs the kernel. The test opens the
solved lesson 04 (two figure widgets, sliders, dropdowns, a multiple selection, controls
that a dropdown hides) in headless Chromium, Cell > Run All, and checks, as test_lessons.py
does for JupyterLab 4:

- every cell ran without an error;
- every widget output has a rendered view (ipywidgets 7's DOM), no "Error displaying widget",
  and its images decoded;
- every control of each figure widget that is visible when its turn comes, changed once
  (slider by keyboard, dropdown and multiple selection by choosing), makes the kernel redraw,
  and the page then shows exactly the kernel's new PNG (SHA-1 of the bytes behind the <img>);
  at least one change per widget shows another figure.

Screenshots go to test-artifacts/browser/<test>/. Skipped without the Colab environment or
chromium, failed in CI. Its own notebook server; the browser group's Chromium.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest
from compat.hosts import colab_python
from conftest import answer_sources, submission

from .lab import _IMAGE_SHA1, VIEWPORT, LessonError, controls_script, wait_until
from .server import JupyterLab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LESSON = "04_adaptive_optimizers"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
RUN_TIMEOUT = 300
REDRAW_TIMEOUT = 60
SETTLE = 1.0

# ipywidgets 7's controls, by their DOM classes (widgetsnbextension 3.6).
CONTROLS = {
    "slider": ".widget-slider",
    "dropdown": ".widget-dropdown",
    "select-multiple": ".widget-select-multiple",
    "toggle-buttons": ".widget-toggle-buttons",
}
OPERABLE = "select, input, textarea, button, .ui-slider-handle"


class ClassicNotebook(JupyterLab):
    """``jupyter notebook`` (6.5) of the Colab environment, set up as server.py sets up
    JupyterLab: 127.0.0.1, a free port, a random token, configuration of its own."""

    def __init__(self, python: Path, root: Path, home: Path, log_path: Path):
        super().__init__(root, home, log_path)
        self.python = python

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger note on stderr
        return env

    def command(self) -> list[str]:
        as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        return [
            str(self.python), "-m", "notebook", "--no-browser",
            "--NotebookApp.ip=127.0.0.1", f"--NotebookApp.port={self.port}",
            "--NotebookApp.port_retries=0", f"--NotebookApp.notebook_dir={self.root}",
            f"--NotebookApp.token={self.token}", "--NotebookApp.show_banner=False",
            "--NotebookApp.shutdown_no_activity_timeout=1800",
            *(["--NotebookApp.allow_root=True"] if as_root else []),
        ]


_LOADED = """() => !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook._fully_loaded
    && Jupyter.notebook.kernel && Jupyter.notebook.kernel.is_connected())"""

_RAN = """() => !Jupyter.notebook.kernel_busy && Jupyter.notebook.get_cells()
    .filter(c => c.cell_type === 'code')
    .every(c => typeof c.input_prompt_number === 'number')"""

_OUTPUTS = """() => Jupyter.notebook.get_cells().filter(c => c.cell_type === 'code')
    .map(c => c.output_area.outputs)"""

# Tag each widget output's node (data-nbc-widget=<k>); its model id and cell, in order.
_WIDGETS = """() => {
    const found = [];
    Jupyter.notebook.get_cells().forEach((cell, i) => {
        if (cell.cell_type !== 'code') return;
        const nodes = cell.output_area.element[0].querySelectorAll(':scope > .output_area');
        cell.output_area.outputs.forEach((output, j) => {
            const view = output.data && output.data['WIDGET_VIEW'];
            if (!view) return;
            if (nodes[j]) nodes[j].setAttribute('data-nbc-widget', String(found.length));
            found.push({cell: i, model_id: view.model_id, tagged: !!nodes[j]});
        });
    });
    return found;
}""".replace("WIDGET_VIEW", WIDGET_VIEW)

_RENDERED = """(node) => {
    const text = node.textContent || '';
    const images = Array.from(node.querySelectorAll('img'));
    return {
        views: node.querySelectorAll('.jupyter-widgets').length,
        error: /Error displaying widget|Error rendering|model not found/i.test(text)
            ? text.slice(0, 300) : null,
        images: images.length,
        decoded: images.filter(img => img.complete && img.naturalWidth > 0).length,
    };
}"""

# Evaluated in the kernel, outside the notebook (no cell, no history).
_KERNEL = """(expression) => new Promise(resolve => {
    Jupyter.notebook.kernel.execute('', {shell: {reply: msg => {
        const r = msg.content.user_expressions.r;
        resolve(r.status === 'ok' ? {value: r.data['text/plain']}
                                  : {error: r.ename + ': ' + r.evalue});
    }}}, {silent: true, store_history: false, user_expressions: {r: expression}});
})"""

_CONTROLS = controls_script(CONTROLS, OPERABLE)

# ipywidgets 7 keeps its widgets in Widget.widgets (ipywidgets 8: _instances).
FIGURE_PROBE = ("(lambda w: '%d %s' % (w.redraw_count, __import__('hashlib').sha1("
                "bytes(w.image.value)).hexdigest()))(__import__('ipywidgets').Widget.widgets"
                "[{model_id!r}])")
VERSIONS = ("' '.join(__import__('importlib.metadata').metadata.version(p) for p in "
            "('ipywidgets', 'widgetsnbextension', 'notebook'))")


class Classic:
    """The lesson open in the classic notebook's page."""

    def __init__(self, page, artifacts: Path):
        self.page, self.artifacts = page, artifacts

    def kernel(self, expression: str) -> str:
        reply = self.page.evaluate(_KERNEL, expression)
        if "error" in reply:
            raise LessonError(f"kernel probe failed: {reply['error']}")
        return reply["value"].strip("'\"")

    def figure(self, model_id: str) -> tuple[int, str]:
        count, sha1 = self.kernel(FIGURE_PROBE.format(model_id=model_id)).split()
        return int(count), sha1

    def node(self, k: int):
        return self.page.locator(f'[data-nbc-widget="{k}"]')

    def shown_sha1(self, k: int) -> str | None:
        return self.node(k).evaluate(_IMAGE_SHA1)

    def shows_kernel_figure(self, k: int, model_id: str):
        state = self.figure(model_id)
        return state if self.shown_sha1(k) == state[1] else None

    def change(self, control, kind: str) -> tuple[str, str]:
        """Operate one control as a student would; (before, after) as the page shows them."""
        if kind == "slider":
            readout = control.locator(".widget-readout")
            before = readout.inner_text()
            handle = control.locator(".ui-slider-handle").first
            handle.focus()
            for key in ("ArrowRight", "ArrowLeft"):  # at the right end, the other way
                handle.press(key)
                try:
                    return before, wait_until(lambda: readout.inner_text() != before
                                              and readout.inner_text(), 3,
                                              what="the slider to move")
                except LessonError:
                    continue
            raise LessonError(f"slider at {before} does not move with the arrow keys")
        select = control.locator("select")
        if kind == "dropdown":
            options = select.evaluate("s => Array.from(s.options).map(o => o.value)")
            current = select.evaluate("s => s.value")
            option = options[(options.index(current) + 1) % len(options)]
            select.select_option(value=option)
            return current, option
        if kind == "select-multiple":
            options = select.evaluate("s => Array.from(s.options).map(o => o.value)")
            current = select.evaluate("s => Array.from(s.selectedOptions).map(o => o.value)")
            new = current[:-1] if len(current) > 1 else options[:2]
            select.select_option(value=new)
            return ", ".join(current), ", ".join(new)
        buttons = control.locator("button")
        active = buttons.evaluate_all("bs => bs.map(b => b.classList.contains('mod-active'))")
        names = buttons.evaluate_all("bs => bs.map(b => b.innerText.trim())")
        target = active.index(False)
        buttons.nth(target).click()
        return names[active.index(True)] if True in active else "", names[target]

    def redrawn(self, k: int, model_id: str, count0: int, src0: str | None, what: str):
        """Wait for the kernel's redraw and for the page to show its PNG (lab.py's rule: a
        figure that came out identical must hold still SETTLE seconds)."""
        seen: dict[tuple[int, str], float] = {}

        def done():
            count, sha = self.figure(model_id)
            if count <= count0 or self.shown_sha1(k) != sha:
                return None
            if self.node(k).locator("img").first.get_attribute("src") != src0:
                return count, sha
            first = seen.setdefault((count, sha), time.monotonic())
            return (count, sha) if time.monotonic() - first >= SETTLE else None

        return wait_until(done, REDRAW_TIMEOUT, interval=0.25, what=f"a redraw after {what}")


@pytest.fixture
def classic(browser, tmp_path, artifacts):
    """The classic notebook server of Colab's environment, and a page of its own in the browser
    suite's Chromium (one Playwright per process: a second one inside the first's event loop
    is refused)."""
    python = colab_python()
    root = tmp_path / "root"
    root.mkdir()
    nbformat.write(submission(LESSON, answer_sources(LESSON)), root / f"{LESSON}.ipynb")
    server = ClassicNotebook(python, root, tmp_path / "home", artifacts / "notebook-server.log")
    server.start()
    try:
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.goto(server.url(f"notebooks/{LESSON}.ipynb"), wait_until="domcontentloaded")
            page.wait_for_function(_LOADED, timeout=120_000, polling=200)
            yield Classic(page, artifacts)
        finally:
            context.close()
    finally:
        server.stop()


def test_widgets_render_and_redraw_in_the_classic_notebook(classic):
    page = classic.page
    assert classic.kernel(VERSIONS).split()[:2] == ["7.7.1", "3.6.10"]
    page.evaluate("() => Jupyter.notebook.execute_all_cells()")
    page.wait_for_function(_RAN, timeout=RUN_TIMEOUT * 1000, polling=500)
    errors = [f"{o['ename']}: {o['evalue']}" for outputs in page.evaluate(_OUTPUTS)
              for o in outputs if o["output_type"] == "error"]
    assert not errors, f"errors in the classic notebook: {errors}"

    widgets = wait_until(lambda: (lambda found: found if all(w["tagged"] for w in found)
                                  else None)(page.evaluate(_WIDGETS)), 30,
                         what="every widget output's node")
    assert len(widgets) == 2, f"lesson {LESSON} shows two figure widgets, found {widgets}"
    for k, widget in enumerate(widgets):
        node = classic.node(k)
        node.scroll_into_view_if_needed()
        info = wait_until(lambda node=node: (lambda i: i if i["views"] and i["images"]
                                             and i["decoded"] == i["images"] else None)(
            node.evaluate(_RENDERED)), 30, what=f"widget {k} to render")
        assert info["error"] is None, f"widget {k}: {info['error']}"
        node.screenshot(path=str(classic.artifacts / f"widget-{k}.png"))

        found = node.evaluate(_CONTROLS)
        assert not found["unknown"], f"widget {k}: controls this test cannot operate: " \
            f"{found['unknown']}"
        changed = []
        for j, control in enumerate(found["controls"]):
            locator = node.locator(f'[data-bt-control="{j}"]')
            if not locator.is_visible():  # hidden by the widget's dropdown (for now)
                continue
            count0, sha0 = wait_until(lambda k=k, w=widget: classic.shows_kernel_figure(
                k, w["model_id"]), REDRAW_TIMEOUT, interval=0.25,
                what=f"widget {k} to show the kernel's figure")
            src0 = node.locator("img").first.get_attribute("src")
            locator.scroll_into_view_if_needed()
            before, after = classic.change(locator, control["kind"])
            what = f"widget {k} {control['kind']} '{control['label']}': {before} -> {after}"
            count, sha = classic.redrawn(k, widget["model_id"], count0, src0, what)
            changed.append(sha != sha0)
        assert len(changed) >= 3, f"widget {k}: {len(changed)} controls could be changed"
        assert any(changed), f"widget {k}: no control changed its figure"
        node.screenshot(path=str(classic.artifacts / f"widget-{k}-changed.png"))
