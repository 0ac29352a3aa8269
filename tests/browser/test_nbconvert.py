"""`jupyter nbconvert --to html` of each solved lesson shows static figures where widgets were.

Where no widget frontend runs (an HTML export, GitHub), a FigureWidget's output should still
show its figure: the widget puts a static image/png in its mimebundle next to the widget view.
Each solved lesson (a scratch copy of solutions/) is executed by nbconvert itself, exactly as
``jupyter nbconvert --to html --execute`` does, but in two commands so that the executed
notebook says which outputs are widgets:

    jupyter nbconvert --to notebook --execute <lesson>.ipynb   # nbconvert's ExecutePreprocessor
    jupyter nbconvert --to html <executed>.ipynb

Then, for every widget output with a static image/png, the HTML must show that very PNG at that
cell's output (an <img> data URI), not a widget-view placeholder that only renders with
JavaScript from the internet. The HTML files are kept in test-artifacts/browser/nbconvert/.
No browser is needed; these run with the browser suite (marker ``browser``), and the
conversions themselves run in the background while the browser tests do (convert.py).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nbformat
import pytest

from .conftest import LESSONS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


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


@pytest.mark.parametrize("lesson", LESSONS)
def test_html_shows_static_figures_where_the_widgets_were(lesson, conversions, artifacts_root):
    run = conversions.get(lesson)
    assert run.error is None, run.error
    html_path, executed = run.html, run.executed
    nb = nbformat.read(executed, as_version=4)
    widgets = [(i, cell, output) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
               for output in cell.outputs if WIDGET_VIEW in output.get("data", {})]
    parser = CellOutputs()
    parser.feed(html_path.read_text(encoding="utf-8"))

    problems = []
    for i, cell, output in widgets:
        png = output["data"].get("image/png")
        if png is None:
            continue  # a plain widget (no figure): nothing static to show
        shown = parser.cells.get(cell.get("id"))
        if shown is None:
            problems.append(f"cell {i}: not found in the HTML (id cell-id={cell.get('id')})")
            continue
        expected = "data:image/png;base64," + re.sub(r"\s", "", png)
        if expected not in [re.sub(r"\s", "", src) for src in shown["images"]]:
            placeholder = " (a widget-view placeholder instead)" if shown["views"] else ""
            problems.append(f"cell {i}: the widget's static PNG is not in the HTML{placeholder}")
    assert not problems, (
        f"{html_path.relative_to(artifacts_root.parent.parent)}: widget outputs without their "
        f"static figure:\n  " + "\n  ".join(problems) + "\n(nbconvert --execute stores the "
        "widget state in the notebook, and the HTML exporter then prefers the widget view to "
        "the image/png unless the environment's jupyter_nbconvert_config.json, installed by "
        "requirements.txt from jupyter-config/, ranks the static formats first)")
