"""nbconvert's HTML shows a figure widget's static PNG, even when the widget state is stored.

`jupyter nbconvert --to html --execute` stores the widgets' state in the notebook; the HTML
exporter then prefers the widget view, which needs JavaScript from the internet, to the PNG
every dlopt figure widget puts beside it. The environment's Jupyter configuration
(jupyter-config/, installed by requirements.txt) ranks the static formats first. This test
converts a notebook shaped like an executed lesson: one figure widget, one plain slider, and
their stored state.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys

import ipywidgets as W
import nbformat
import pytest
from ipywidgets.embed import embed_data
from nbformat.v4 import new_code_cell, new_notebook, new_output

from dlopt.kit.figure_widget import FigureWidget

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


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


@pytest.mark.slow
def test_html_export_shows_the_figure_widgets_png(tmp_path):
    nb, png = executed_notebook_with_widgets()
    path = tmp_path / "lesson.ipynb"
    nbformat.write(nb, path)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "user-config")}  # no ~/.jupyter
    done = subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    html = (tmp_path / "lesson.html").read_text(encoding="utf-8")
    views = re.findall(rf'<script type="{re.escape(WIDGET_VIEW)}">', html)
    config = os.path.join(sys.prefix, "etc", "jupyter", "jupyter_nbconvert_config.json")
    shows_png = f"data:image/png;base64,{png}" in html
    assert shows_png, (
        "nbconvert's HTML shows the figure widget as a widget view (an empty box offline) "
        f"instead of its static PNG: is {config} installed? "
        "Run: python -m pip install -r requirements.txt (see jupyter-config/README.md)")
    assert len(views) == 1, (
        f"expected the plain slider, and only it, as a widget view; found {len(views)} views")
