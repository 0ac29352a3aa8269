"""A figure widget displays the same bundle under ipywidgets 7.7.1 (Colab's) and 8 (ours).

IPython's own ``display`` is called, as a notebook cell does, in the Colab environment and in
this one; what reaches the front end must be the widget view, the static PNG and the text,
each time the widget is shown. ipywidgets 7 displays widgets through ``_ipython_display_``,
which knows no static format (without dlopt's override the PNG is missing there).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .hosts import colab_python

SHOW = r'''
import json
import ipywidgets as W
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display
from dlopt.kit.figure_widget import FigureWidget

class Line(FigureWidget):
    layout = (1, 1)
    figsize = (2.0, 1.5)

    def __init__(self):
        self.slope = W.FloatSlider(value=1.0, min=-2.0, max=2.0)
        super().__init__([self.slope])
        self.redraw()

    def draw(self, fig, axes):
        axes.plot([0, 1], [0, self.slope.value])
        return [] if self.slope.value >= 0 else ["a falling line"]

shown = []
InteractiveShell.instance().display_pub.publish = (
    lambda data, metadata=None, **kwargs: shown.append(data))
widget = Line()
display(widget)
widget.slope.value = -1.0
display(widget)
png = widget._repr_mimebundle_()["image/png"]
print(json.dumps({"version": W.__version__, "redraws": widget.redraw_count,
                  "formats": [sorted(data) for data in shown],
                  "current": shown[-1].get("image/png") == png,
                  "text": shown[-1].get("text/plain")}))
'''


@pytest.mark.parametrize("where", ["colab", "course"])
def test_a_figure_widget_shows_its_view_and_its_png(where):
    python = colab_python() if where == "colab" else sys.executable
    done = subprocess.run([str(python), "-c", SHOW], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    assert found["version"].startswith("7.7." if where == "colab" else "8.")
    view = "application/vnd.jupyter.widget-view+json"
    assert found["formats"] == [[view, "image/png", "text/plain"]] * 2
    assert found["redraws"] == 2 and found["current"] and found["text"] == "a falling line"
