"""Driving a lesson in JupyterLab, the way a student does: open it, Run All, use the widgets.

JupyterLab runs with ``expose_app_in_browser`` (see server.py), so commands go through
``window.jupyterapp`` (the same commands the menus and toolbar buttons run), and the state of the
run (prompts, outputs, the kernel's status) is read from JupyterLab's own models instead of from
CSS classes that change between releases. What is asserted about widgets is read from the page:
their DOM, and the bytes of the PNG each ``<img>`` shows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1400, "height": 900}

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# Seconds. Generous: CI machines have 2 cores, and a lesson's Run All takes 5 to 30 s there.
OPEN_TIMEOUT = 90
RUN_TIMEOUT = 240
REDRAW_TIMEOUT = 60
SETTLE = 1.0  # an unchanged figure must stay unchanged this long to count as redrawn
VALIDATE_TIMEOUT = 240

# The notebook panel showing `path`, as `w`; `app` is JupyterLab itself.
_PANEL = """
    const app = window.jupyterapp;
    const w = app && Array.from(app.shell.widgets('main'))
        .find(x => x.context && x.context.path === path);
"""

_READY = "(path) => {" + _PANEL + """
    if (!w || !w.context.isReady || !w.sessionContext.session) return false;
    const k = w.sessionContext.session.kernel;
    return !!k && k.connectionStatus === 'connected' && k.status === 'idle'
        && w.content.widgets.length === w.model.cells.length;
}"""

_STATE = "(path) => {" + _PANEL + """
    const k = w.sessionContext.session && w.sessionContext.session.kernel;
    let running = 0;
    const pending = [];
    w.content.widgets.forEach((cell, i) => {
        if (cell.model.type !== 'code') return;
        if (cell.model.executionState === 'running') running += 1;
        const empty = cell.model.sharedModel.getSource().trim() === '';  // never executed
        if (!empty && (cell.model.executionCount === null
                       || cell.model.executionCount === undefined))
            pending.push(i);
    });
    return {kernel: k ? k.status : 'dead', running, pending};
}"""

# Resolves when JupyterLab's run is over: every cell ran, or one failed (the kernel then
# aborts the rest); a timeout keeps a hung run from hanging the test.
_RUN = "async ([path, command, index, timeout]) => {" + _PANEL + """
    app.shell.activateById(w.id);
    if (index !== null) {
        w.content.deselectAll();
        w.content.activeCellIndex = index;
    }
    const run = app.commands.execute(command).catch(() => false);
    const late = new Promise(resolve => setTimeout(() => resolve('timeout'), timeout));
    return await Promise.race([run, late]);
}"""

_SAVE = "async (path) => {" + _PANEL + """
    app.shell.activateById(w.id);
    await app.commands.execute('docmanager:save');
    return w.model.dirty;
}"""

# Every widget view among the outputs, in notebook order; its output node is tagged
# data-bt-widget=<k> so that Playwright can find it.
_WIDGETS = "(path) => {" + _PANEL + """
    const found = [];
    w.content.widgets.forEach((cell, i) => {
        if (cell.model.type !== 'code') return;
        cell.model.outputs.toJSON().forEach((output, j) => {
            const view = output.data && output.data['WIDGET_VIEW'];
            if (!view) return;
            const node = cell.outputArea.widgets[j] && cell.outputArea.widgets[j].node;
            if (node) node.setAttribute('data-bt-widget', String(found.length));
            found.push({cell: i, output: j, model_id: view.model_id,
                        png: 'image/png' in output.data, tagged: !!node});
        });
    });
    return found;
}""".replace("WIDGET_VIEW", WIDGET_VIEW)

# Evaluated in the kernel without touching the notebook (no cell, no history, no prompt).
_KERNEL_EXPRESSION = "async ([path, expression]) => {" + _PANEL + """
    const kernel = w.sessionContext.session.kernel;
    const future = kernel.requestExecute(
        {code: '', silent: true, store_history: false, user_expressions: {r: expression}}, true);
    const reply = await future.done;
    const r = reply.content.user_expressions.r;
    if (r.status !== 'ok') return {error: r.ename + ': ' + r.evalue};
    return {value: r.data['text/plain']};
}"""

_OPEN = """async (path) => {
    const app = window.jupyterapp;
    const w = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
    app.shell.activateById(w.id);
}"""

_SHUTDOWN = "async (path) => {" + _PANEL + """
    if (!w) return;
    await w.sessionContext.shutdown();
    w.context.model.dirty = false;
    w.dispose();
}"""

# Between tests: no dialog, no document, no kernel left over.
CLEAN_UP = """async () => {
    const app = window.jupyterapp;
    document.querySelectorAll('.jp-Dialog').forEach(d => {
        const button = d.querySelector('.jp-mod-reject, .jp-mod-accept');
        if (button) button.click();
    });
    for (const w of Array.from(app.shell.widgets('main'))) {
        if (w.context && w.context.model) w.context.model.dirty = false;
        w.dispose();
    }
    const sessions = app.serviceManager.sessions;
    await sessions.refreshRunning();
    for (const s of Array.from(sessions.running())) await sessions.shutdown(s.id);
    document.querySelectorAll('.jp-Dialog').forEach(d => d.remove());
}"""

# JupyterLab has started and restored its layout.
APP_READY = """async () => {
    if (!window.jupyterapp) return false;
    await window.jupyterapp.restored;
    return true;
}"""


def load_jupyterlab(page, lab) -> None:
    """Load JupyterLab (a workspace of the tests' own) in ``page``, file browser folded."""
    page.goto(lab.url("lab/workspaces/browser-tests"), wait_until="domcontentloaded",
              timeout=OPEN_TIMEOUT * 1000)
    page.wait_for_function("() => !!window.jupyterapp", timeout=OPEN_TIMEOUT * 1000,
                           polling=100)
    page.evaluate(APP_READY)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")

# Rendered: the view is attached, shows no error, and every image in it has decoded pixels.
_RENDERED = """(node) => {
    const text = node.textContent || '';
    const images = Array.from(node.querySelectorAll('img'));
    return {
        views: node.querySelectorAll('.jupyter-widgets').length,
        error: /Error displaying widget|Error rendering|model not found|Loading widget/i.test(text)
            ? text.slice(0, 300) : null,
        images: images.length,
        decoded: images.filter(img => img.complete && img.naturalWidth > 0).length,
        height: node.getBoundingClientRect().height,
    };
}"""

# SHA-1 of the PNG the page shows (the bytes behind the <img>'s blob: URL), or null.
_IMAGE_SHA1 = """async (node) => {
    const img = node.querySelector('img.widget-image');
    if (!img || !img.src) return null;
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = await crypto.subtle.digest('SHA-1', bytes);
    return Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, '0')).join('');
}"""

# What a widget shows besides its controls (labels, HTML, messages): a change here is how a
# widget without a figure shows that it reacted.
_SHOWN_TEXT = """(node) => {
    const copy = node.cloneNode(true);
    copy.querySelectorAll(CONTROLS).forEach(c => c.remove());
    return copy.textContent;
}"""

# The controls this driver knows how to change, by ipywidgets 8's DOM classes.
CONTROL_SELECTORS = {
    "slider": ".widget-slider",  # IntSlider, FloatSlider, FloatLogSlider, SelectionSlider, ranges
    "dropdown": ".widget-dropdown",
    "select-multiple": ".widget-select-multiple",
    "toggle-buttons": ".widget-toggle-buttons",
}
# Anything a student could operate; each must sit inside one of the controls above.
OPERABLE = "select, input, textarea, button, .noUi-handle"

# Tags each control (data-bt-control=<k>) and lists it; lists too what could be operated but is
# no known control. Also used, with ipywidgets 7's classes, by test_nbclassic.py.
_CONTROLS_TEMPLATE = """(node) => {
    const kinds = KINDS;
    const controls = [];
    node.querySelectorAll(Object.values(kinds).join(', ')).forEach(el => {
        const kind = Object.keys(kinds).find(k => el.matches(kinds[k]));
        const label = el.querySelector('.widget-label');
        el.setAttribute('data-bt-control', String(controls.length));
        controls.push({kind, label: label ? label.textContent.trim() : ''});
    });
    const inside = Object.values(kinds).join(', ');
    const unknown = Array.from(node.querySelectorAll('OPERABLE'))
        .filter(el => !el.closest(inside)).map(el => el.outerHTML.slice(0, 120));
    return {controls, unknown};
}"""


def controls_script(selectors: dict[str, str], operable: str) -> str:
    """The page function that tags and lists a widget's controls, for these DOM classes."""
    return _CONTROLS_TEMPLATE.replace("KINDS", json.dumps(selectors)).replace(
        "OPERABLE", operable)


_CONTROLS = controls_script(CONTROL_SELECTORS, OPERABLE)

FIGURE_PROBE = (
    "(lambda w: '%d %s' % (w.redraw_count, __import__('hashlib').sha1(bytes(w.image.value))"
    ".hexdigest()))(__import__('ipywidgets').widgets.widget._instances[{model_id!r}])"
)


class LessonError(AssertionError):
    """The lesson misbehaved in the browser (the message says how)."""


@dataclass
class ControlChange:
    widget: int
    kind: str
    label: str
    before: str
    after: str
    redraws: int = 0
    figure_changed: bool | None = None  # None for widgets without a figure
    fixed: bool = False  # a slider with a single position: nothing to move

    def describe(self) -> str:
        return f"widget {self.widget} {self.kind} '{self.label}': {self.before!r} -> {self.after!r}"


@dataclass
class WidgetReport:
    index: int
    cell: int
    model_id: str
    figure: bool
    changes: list[ControlChange] = field(default_factory=list)


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate()`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LessonError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Lesson:
    """One notebook, opened in a JupyterLab page (``load_jupyterlab``) that the tests share."""

    def __init__(self, page, lab, path: str, artifacts: Path):
        self.page = page
        self.lab = lab
        self.path = path  # relative to the server root, e.g. "course/01_activations/01_....ipynb"
        self.artifacts = artifacts
        self.widgets: list[WidgetReport] = []

    # -- opening, running, saving ------------------------------------------------------------
    def open(self) -> Lesson:
        """Open the notebook (File > Open) and wait for its kernel to be idle."""
        if not (self.lab.root / self.path).is_file():
            raise LessonError(f"{self.path} does not exist (is the lesson released? "
                              f"python -m autograder release)")
        self.page.evaluate(_OPEN, self.path)

        def ready():
            if self.page.evaluate(_READY, self.path):
                return True
            dialog = self.dialog_text()
            if dialog:
                raise LessonError(f"JupyterLab shows a dialog while opening: {dialog}")
            return False

        wait_until(ready, OPEN_TIMEOUT, interval=0.2, what="the notebook and its kernel")
        return self

    def dialog_text(self) -> str | None:
        dialogs = self.page.locator(".jp-Dialog")
        return " | ".join(dialogs.all_inner_texts()) if dialogs.count() else None

    def state(self) -> dict:
        return self.page.evaluate(_STATE, self.path)

    def _wait_for_run(self, timeout: float) -> dict:
        """Wait until no cell is queued or running and the kernel is idle, twice in a row."""
        settled = []

        def done():
            state = self.state()
            if state["kernel"] in ("dead", "unknown"):
                raise LessonError(f"the kernel died during Run All ({state['kernel']})")
            quiet = state["running"] == 0 and state["kernel"] == "idle"
            settled.append(quiet)
            return state if quiet and len(settled) >= 2 and settled[-2] else None

        return wait_until(done, timeout, interval=0.15, what="Run All to finish")

    def run_all(self, timeout: float = RUN_TIMEOUT) -> int:
        """Run > Run All Cells; where a failing cell stopped the run (an unanswered exercise
        raises NotImplementedError), go on with Run > Run Selected Cell and All Below from the
        first cell that did not run, as a student moving past an exercise does. Returns the
        number of runs it took.

        After a failing cell the kernel aborts the cells queued behind it, but cells still on
        their way may run out of order (in an incomplete namespace) before it stops aborting.
        Each later run re-runs every cell below its start, so the notebook ends up as one
        in-order pass: what is asserted is the final state of each cell."""
        deadline = time.monotonic() + timeout
        start, runs, retries = None, 0, 0
        while True:
            command = "notebook:run-all-cells" if start is None else "notebook:run-all-below"
            self.page.evaluate(_RUN, [self.path, command, start, timeout * 1000])
            runs += 1
            state = self._wait_for_run(max(5.0, deadline - time.monotonic()))
            pending = state["pending"]
            if not pending:
                return runs
            if start is not None and pending[0] <= start:
                # Nothing ran: the kernel was still aborting the previous run's queue.
                retries += 1
                if retries > 3:
                    raise LessonError(f"cell {pending[0]} never runs (Run All Below from it "
                                      f"leaves it unexecuted)")
                time.sleep(0.5 * retries)
            else:
                retries = 0
            start = pending[0]
            if time.monotonic() > deadline:
                raise LessonError(f"Run All did not finish in {timeout:.0f} s; "
                                  f"cells still unexecuted: {pending}")

    def save(self) -> None:
        dirty = self.page.evaluate(_SAVE, self.path)
        if dirty:
            wait_until(lambda: not self.page.evaluate(
                "(path) => {" + _PANEL + " return w.model.dirty; }", self.path), 30,
                what="the notebook to be saved")

    def saved_notebook(self) -> nbformat.NotebookNode:
        return nbformat.read(self.lab.root / self.path, as_version=4)

    def shutdown(self) -> None:
        try:
            self.page.evaluate(_SHUTDOWN, self.path)
        except Exception:  # noqa: BLE001 - best effort; the server stops its kernels anyway
            pass

    # -- kernel --------------------------------------------------------------------------------
    def kernel_eval(self, expression: str) -> str:
        reply = self.page.evaluate(_KERNEL_EXPRESSION, [self.path, expression])
        if "error" in reply:
            raise LessonError(f"kernel probe failed: {reply['error']}")
        value = reply["value"]
        return value[1:-1] if value[:1] in "'\"" else value

    def figure_state(self, model_id: str) -> tuple[int, str]:
        count, sha1 = self.kernel_eval(FIGURE_PROBE.format(model_id=model_id)).split()
        return int(count), sha1

    # -- widgets -------------------------------------------------------------------------------
    def widget_node(self, index: int, timeout: float = 30):
        """The widget output's DOM node. The output area may replace a node after
        find_widgets tagged it (a view that renders late, a display update): then the widget
        outputs are tagged again, in the same order, until the node is there."""
        node = self.page.locator(f'[data-bt-widget="{index}"]')

        def present():
            if node.count() == 0:
                self.page.evaluate(_WIDGETS, self.path)
            return node.count() > 0

        wait_until(present, timeout, interval=0.5, what=f"the DOM node of widget {index}")
        return node

    def find_widgets(self) -> list[WidgetReport]:
        found = self.page.evaluate(_WIDGETS, self.path)
        untagged = [w for w in found if not w["tagged"]]
        if untagged:
            raise LessonError(f"widget outputs without a DOM node: {untagged}")
        self.widgets = [WidgetReport(k, w["cell"], w["model_id"], w["png"])
                        for k, w in enumerate(found)]
        return self.widgets

    def check_rendered(self, widget: WidgetReport) -> None:
        node = self.widget_node(widget.index)
        node.scroll_into_view_if_needed(timeout=10_000)

        def rendered():
            info = node.evaluate(_RENDERED)
            if info["error"]:
                raise LessonError(f"widget {widget.index} (cell {widget.cell}) shows an error: "
                                  f"{info['error']}")
            ok = info["views"] > 0 and info["height"] > 0 and (
                not widget.figure or (info["images"] > 0 and info["decoded"] == info["images"]))
            return info if ok else None

        wait_until(rendered, 30, what=f"widget {widget.index} (cell {widget.cell}) to render")

    def image_src(self, widget: WidgetReport) -> str | None:
        return self.widget_node(widget.index).locator("img.widget-image").first.get_attribute(
            "src")

    def image_sha1(self, widget: WidgetReport) -> str | None:
        return self.widget_node(widget.index).evaluate(_IMAGE_SHA1)

    def shown_text(self, widget: WidgetReport) -> str:
        return self.widget_node(widget.index).evaluate(
            _SHOWN_TEXT.replace("CONTROLS", json.dumps(", ".join(CONTROL_SELECTORS.values()))))

    def controls(self, widget: WidgetReport) -> list[dict]:
        info = self.widget_node(widget.index).evaluate(_CONTROLS)
        if info["unknown"]:
            raise LessonError(f"widget {widget.index} (cell {widget.cell}) has controls this "
                              f"test cannot operate; teach tests/browser/lab.py: "
                              f"{info['unknown']}")
        return info["controls"]

    def exercise(self, widget: WidgetReport) -> list[ControlChange]:
        """Change every control of ``widget`` once, and check that each change redraws.

        A figure widget (a dlopt FigureWidget) must redraw in the kernel (``redraw_count``
        goes up) and the page must then show exactly the kernel's new PNG; whether the PNG
        differs from the one before is recorded (a control can be inert in some settings, such
        as beta1 without an Adam-family optimizer). Any other widget must change what it shows.

        Controls a widget hides (sliders that do not apply to the chosen schedule, say) are
        revealed by choosing, in turn, each option of its dropdowns and toggle buttons. A
        slider with a single position (nothing to choose yet) is recorded, not moved.
        """
        controls = self.controls(widget)
        if not controls:
            raise LessonError(f"widget {widget.index} (cell {widget.cell}) has no controls")
        done: set[int] = set()
        self._exercise_visible(widget, controls, done)
        selectors = [k for k, c in enumerate(controls)
                     if c["kind"] in ("dropdown", "toggle-buttons")]
        for k in selectors:
            if len(done) == len(controls):
                break
            for option in self._options(widget, k, controls[k]["kind"]):
                if len(done) == len(controls):
                    break
                self._apply(widget, k, controls[k], option)
                self._exercise_visible(widget, controls, done)
        never = [controls[k]["label"] or f"#{k}" for k in range(len(controls)) if k not in done]
        if never:
            raise LessonError(f"widget {widget.index} (cell {widget.cell}): controls never "
                              f"shown, whatever the dropdowns say: {never}")
        return widget.changes

    def _exercise_visible(self, widget: WidgetReport, controls: list[dict],
                          done: set[int]) -> None:
        for k, control in enumerate(controls):
            if k in done or not self._control(widget, k).is_visible():
                continue
            done.add(k)
            self._apply(widget, k, control)

    def _control(self, widget: WidgetReport, k: int):
        return self.widget_node(widget.index).locator(f'[data-bt-control="{k}"]')

    def _options(self, widget: WidgetReport, k: int, kind: str) -> list[str]:
        control = self._control(widget, k)
        if kind == "dropdown":
            return control.locator("select").evaluate(
                "s => Array.from(s.options).map(o => o.value).filter(v => v !== s.value)")
        return control.locator("button").evaluate_all(
            "bs => bs.filter(b => !b.classList.contains('mod-active'))"
            ".map(b => b.innerText.trim())")

    def _apply(self, widget: WidgetReport, k: int, control: dict,
               option: str | None = None) -> ControlChange:
        """Change control ``k`` (to ``option`` if given) and wait for the widget to react."""
        locator = self._control(widget, k)
        locator.scroll_into_view_if_needed(timeout=10_000)
        if control["kind"] == "slider" and self._single_position(locator):
            change = ControlChange(widget.index, "slider", control["label"], "", "", fixed=True)
            widget.changes.append(change)
            return change
        if widget.figure:
            # The page shows the kernel's figure before the change (a previous redraw may
            # still be on its way).
            count0, sha0 = wait_until(
                lambda: (lambda state: state if self.image_sha1(widget) == state[1] else None)(
                    self.figure_state(widget.model_id)),
                REDRAW_TIMEOUT, interval=0.25,
                what=f"widget {widget.index} to show the kernel's figure")
            src0 = self.image_src(widget)
        else:
            text0 = self.shown_text(widget)
        before, after = self._change(locator, control["kind"], widget, control["label"], option)
        change = ControlChange(widget.index, control["kind"], control["label"], before, after)
        if widget.figure:
            count, sha = self._wait_for_redraw(widget, count0, src0, change)
            change.redraws = count - count0
            change.figure_changed = sha != sha0
        else:
            wait_until(lambda: self.shown_text(widget) != text0, REDRAW_TIMEOUT,
                       what=f"widget {widget.index} to react to {change.describe()}")
        widget.changes.append(change)
        return change

    def _wait_for_redraw(self, widget: WidgetReport, count0: int, src0: str | None,
                         change: ControlChange) -> tuple[int, str]:
        """Wait until the kernel has redrawn and the page shows the kernel's current PNG.

        The kernel answers the probe even while it is redrawing (ipykernel 7 serves comm
        messages and requests concurrently), and ``redraw_count`` goes up before the new PNG
        is set. So: when the page got a new image (its blob URL changed), it must match the
        kernel's; when it did not (the figure came out identical), the answer must hold
        still for SETTLE seconds before it counts.
        """
        seen: dict[tuple[int, str], float] = {}

        def redrawn():
            count, sha = self.figure_state(widget.model_id)
            if count <= count0 or self.image_sha1(widget) != sha:
                return None
            if self.image_src(widget) != src0:
                return count, sha
            first = seen.setdefault((count, sha), time.monotonic())
            return (count, sha) if time.monotonic() - first >= SETTLE else None

        return wait_until(redrawn, REDRAW_TIMEOUT, interval=0.25,
                          what=f"a redraw shown in the page after {change.describe()}")

    def _single_position(self, locator) -> bool:
        handle = locator.locator(".noUi-handle").first
        low, high = handle.get_attribute("aria-valuemin"), handle.get_attribute("aria-valuemax")
        return low is not None and low == high

    def _change(self, locator, kind: str, widget: WidgetReport, label: str,
                option: str | None = None) -> tuple[str, str]:
        if kind == "slider":
            return self._move_slider(locator, widget, label)
        if kind == "dropdown":
            select = locator.locator("select")
            options = select.evaluate("s => Array.from(s.options).map(o => o.value)")
            current = select.evaluate("s => s.value")
            if len(options) < 2:
                raise LessonError(f"widget {widget.index} dropdown '{label}' has one option")
            if option is None:
                i = options.index(current)
                option = options[i + 1] if i + 1 < len(options) else options[i - 1]
            select.select_option(value=option)
            return current, option
        if kind == "select-multiple":
            select = locator.locator("select")
            options = select.evaluate("s => Array.from(s.options).map(o => o.value)")
            current = select.evaluate(
                "s => Array.from(s.selectedOptions).map(o => o.value)")
            new = current[:-1] if len(current) > 1 else options[:2]
            select.select_option(value=new)
            return ", ".join(current), ", ".join(new)
        if kind == "toggle-buttons":
            buttons = locator.locator("button")
            names = buttons.evaluate_all("bs => bs.map(b => b.innerText.trim())")
            active = buttons.evaluate_all("bs => bs.map(b => b.classList.contains('mod-active'))")
            current = names[active.index(True)] if True in active else ""
            if option is None:
                option = names[next(i for i, on in enumerate(active) if not on)]
            buttons.nth(names.index(option)).click()
            return current, option
        raise LessonError(f"no way to change a {kind}")

    def _move_slider(self, locator, widget: WidgetReport, label: str) -> tuple[str, str]:
        """Drag the (first) handle a quarter of the track towards the side with more room;
        fall back to the arrow keys should the drag not move it."""
        handle = locator.locator(".noUi-handle").first
        readout = locator.locator(".widget-readout")

        def value():
            now = handle.get_attribute("aria-valuenow")
            text = readout.inner_text() if readout.count() else ""
            return f"{text or now}"

        before = value()
        track = locator.locator(".noUi-base").bounding_box()
        box = handle.bounding_box()
        if track is None or box is None:
            raise LessonError(f"widget {widget.index} slider '{label}' is not visible")
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        room_right = track["x"] + track["width"] - x
        dx = track["width"] / 4 * (1 if room_right > track["width"] / 2 else -1)
        self.page.mouse.move(x, y)
        self.page.mouse.down()
        self.page.mouse.move(x + dx / 2, y, steps=3)
        self.page.mouse.move(x + dx, y, steps=3)
        self.page.mouse.up()
        try:
            return before, wait_until(lambda: value() != before and value(), 2,
                                      what="the slider to move")
        except LessonError:
            handle.focus()
            handle.press("ArrowRight" if dx > 0 else "ArrowLeft")
            after = wait_until(lambda: value() != before and value(), 5,
                               what=f"widget {widget.index} slider '{label}' to move")
            return before, after

    # -- nbgrader --------------------------------------------------------------------------------
    def validate(self) -> str:
        """Click nbgrader's Validate toolbar button; return the dialog's text on success."""
        panel = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        panel.locator(".validate-button").first.click()
        message = self.page.locator("#validation-message")
        message.wait_for(state="visible", timeout=VALIDATE_TIMEOUT * 1000)
        self.screenshot("validate")
        text = message.inner_text()
        classes = message.get_attribute("class") or ""
        self.page.locator(".jp-Dialog .jp-mod-accept").first.click()
        if "validation-success" not in classes:
            raise LessonError(f"nbgrader Validate failed ({classes}):\n{text[:3000]}")
        return text

    # -- screenshots ---------------------------------------------------------------------------
    def screenshot(self, name: str, locator=None, jpeg: bool = False) -> Path:
        path = self.artifacts / (f"{name}.jpg" if jpeg else f"{name}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        options = {"type": "jpeg", "quality": 70} if jpeg else {}
        (locator or self.page).screenshot(path=str(path), timeout=30_000, **options)
        return path

    def failure_screenshot(self) -> None:
        try:
            self.screenshot("failure")
        except Exception:  # noqa: BLE001 - best effort: the page may be gone
            pass

    def screenshot_notebook(self, name: str, page_height: int = 8000,
                            max_pages: int = 8) -> list[Path]:
        """The whole notebook, in a few tall JPEG pages: the viewport grows to ``page_height``
        and the notebook scrolls one screenful at a time."""
        measure = "(path) => {" + _PANEL + """
            const outer = w.content.node.querySelector('.jp-WindowedPanel-outer')
                || w.content.node;
            return [outer.scrollHeight, outer.clientHeight]; }"""
        scroll = "([path, top]) => {" + _PANEL + """
            const outer = w.content.node.querySelector('.jp-WindowedPanel-outer')
                || w.content.node;
            outer.scrollTop = top;
            return outer.scrollTop; }"""
        total, client = self.page.evaluate(measure, self.path)
        chrome = VIEWPORT["height"] - client  # menus, toolbar, status bar
        height = int(min(total + chrome, page_height))
        self.page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        shots = []
        try:
            # JupyterLab lays itself out again on resize: wait for the taller panel.
            wait_until(lambda: self.page.evaluate(measure, self.path)[1] > client
                       or height <= VIEWPORT["height"], 10, what="the notebook to resize")
            top = 0
            while len(shots) < max_pages:
                reached = self.page.evaluate(scroll, [self.path, top])
                time.sleep(0.2)
                shots.append(self.screenshot(f"{name}-{len(shots) + 1}", jpeg=True))
                total, client = self.page.evaluate(measure, self.path)
                top = reached + client
                if top >= total:
                    break
        finally:
            self.page.evaluate(scroll, [self.path, 0])
            self.page.set_viewport_size(VIEWPORT)
        return shots
