"""nbconvert's HTML shows a figure widget's static PNG, even when the widget state is stored.

`jupyter nbconvert --to html --execute` stores the widgets' state in the notebook; the HTML
exporter then prefers the widget view, which needs JavaScript from the internet, to the PNG
every dlopt figure widget puts beside it. The environment's Jupyter configuration
(jupyter-config/, installed by requirements.txt) ranks the static formats first.

- ``test_html_export_shows_the_figure_widgets_png``: a notebook shaped like an executed lesson
  (one figure widget, one plain slider, their stored state), in about a second;
- ``test_html_shows_static_figures_where_the_widgets_were``: every solved lesson, executed in a
  kernel (nbclient, which nbconvert's ``--execute`` runs; the run the lesson tests share, see
  lesson_harness.py), then ``jupyter nbconvert --to html``. Every widget output with a static
  image/png must show that very PNG at that cell's output (an <img> data URI), not a
  widget-view placeholder. The HTML goes to test-artifacts/nbconvert/.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import ipywidgets as W
import lesson_harness as harness
import nbformat
import pytest
from conftest import LESSONS
from ipywidgets.embed import embed_data
from nbformat.v4 import new_code_cell, new_notebook, new_output

from dlopt.kit.figure_widget import FigureWidget

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "nbconvert"


class LineWidget(FigureWidget):
    layout = (1, 1)
    figsize = (3.0, 2.0)

    def __init__(self):
        self.slope = W.FloatSlider(value=1.0, min=-2.0, max=2.0, description="slope")
        super().__init__([self.slope])
        self.redraw()

    def draw(self, fig, axes):
        axes.plot([0, 1], [0, self.slope.value])
        return []


def executed_notebook_with_widgets() -> tuple[nbformat.NotebookNode, str]:
    """A notebook as `nbconvert --execute` leaves it: widget outputs and the widget state."""
    figure, slider = LineWidget(), W.IntSlider(3)
    nb = new_notebook()
    for widget in (figure, slider):
        cell = new_code_cell("widget")
        cell.outputs = [new_output("display_data", data=widget._repr_mimebundle_())]
        nb.cells.append(cell)
    state = embed_data(views=[figure, slider])["manager_state"]
    nb.metadata["widgets"] = {WIDGET_STATE: state}
    assert figure.model_id in state["state"] and slider.model_id in state["state"]
    png = base64.b64encode(bytes(figure.image.value)).decode("ascii")
    figure.close_all()
    return nb, png


def to_html(path: Path, out: Path, env: dict | None = None) -> str:
    """``jupyter nbconvert --to html`` of ``path`` into ``out``; the HTML."""
    done = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(path),
                           "--output-dir", str(out)], cwd=out, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return (out / f"{path.stem}.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_html_export_shows_the_figure_widgets_png(tmp_path):
    nb, png = executed_notebook_with_widgets()
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "user-config")}  # no ~/.jupyter
    html = to_html(path, tmp_path, env)
    views = re.findall(rf'<script type="{re.escape(WIDGET_VIEW)}">', html)
    config = os.path.join(sys.prefix, "etc", "jupyter", "jupyter_nbconvert_config.json")
    shows_png = f"data:image/png;base64,{png}" in html
    assert shows_png, (
        "nbconvert's HTML shows the figure widget as a widget view (an empty box offline) "
        f"instead of its static PNG: is {config} installed? "
        "Run: python -m pip install -r requirements.txt (see jupyter-config/README.md)")
    assert len(views) == 1, (
        f"expected the plain slider, and only it, as a widget view; found {len(views)} views")


class CellOutputs(HTMLParser):
    """Per cell id (the lab template's ``id="cell-id=..."``): the <img> sources and the widget
    view placeholders (<script type="application/vnd.jupyter.widget-view+json">) in it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.cells: dict[str, dict[str, list[str]]] = {}
        self._cell: str | None = None
        self._in_view = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        element_id = attrs.get("id") or ""
        if tag == "div" and element_id.startswith("cell-id="):
            self._cell = element_id[len("cell-id="):]
            self.cells[self._cell] = {"images": [], "views": []}
        elif self._cell and tag == "img":
            self.cells[self._cell]["images"].append(attrs.get("src") or "")
        elif self._cell and tag == "script" and attrs.get("type") == WIDGET_VIEW:
            self._in_view = True

    def handle_data(self, data):
        if self._in_view and data.strip():
            self.cells[self._cell]["views"].append(data.strip())

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_view = False


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS)
def test_html_shows_static_figures_where_the_widgets_were(lesson, tmp_path):
    nb = harness.executed_solution(lesson)
    assert WIDGET_STATE in nb.metadata.get("widgets", {}) or not any(
        WIDGET_VIEW in out.get("data", {}) for c in nb.cells if c.cell_type == "code"
        for out in c.outputs), "the executed notebook should store its widgets' state"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    executed = ARTIFACTS / f"{lesson}.ipynb"
    nbformat.write(nb, executed)
    parser = CellOutputs()
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "user-config")}  # no ~/.jupyter
    parser.feed(to_html(executed, ARTIFACTS, env))

    problems = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            png = output.get("data", {}).get("image/png")
            if WIDGET_VIEW not in output.get("data", {}) or png is None:
                continue  # not a widget, or a plain widget (no figure): nothing static to show
            shown = parser.cells.get(cell.get("id"))
            if shown is None:
                problems.append(f"cell {i}: not found in the HTML (id cell-id={cell.get('id')})")
                continue
            expected = "data:image/png;base64," + re.sub(r"\s", "", png)
            if expected not in [re.sub(r"\s", "", src) for src in shown["images"]]:
                placeholder = " (a widget-view placeholder instead)" if shown["views"] else ""
                problems.append(f"cell {i}: the widget's static PNG is not in the HTML"
                                f"{placeholder}")
    assert not problems, (
        f"test-artifacts/nbconvert/{lesson}.html: widget outputs without their static figure:"
        "\n  " + "\n  ".join(problems) + "\n(the HTML exporter prefers the stored widget view "
        "to the image/png unless the environment's jupyter_nbconvert_config.json, installed by "
        "requirements.txt from jupyter-config/, ranks the static formats first)")
