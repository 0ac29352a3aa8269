"""Every lesson, solved, runs top to bottom with Colab's libraries (ipywidgets 7.7.1 included).

What runs is what a student who answered every exercise runs on Colab: the student notebook
of course/ with the answers of solutions/ typed in (conftest.submission), its checks baked as
data, dlopt installed by the notebook's own colab_setup command (build_envs.py). It is executed
by run_notebook.py with the Colab environment's nbclient, jupyter_client and kernel. Then:

- every code cell ran, none raised, nothing was written to stderr;
- every visible check passed: one ``✓`` line per baked ``check(...)`` call of a check cell;
- every widget output whose widget shows an image (a dlopt figure widget) carries an
  ``image/png`` that is that very image, the current figure, as the kernel's widget state
  holds it; so a front end without a widget manager still shows the figure.

Lessons are discovered from solutions/ (conftest.LESSONS), so a new lesson runs here too.
Each lesson is a test of its own (tests/conftest.py: worker_group), ~15 to 30 s on 2 cores.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
from pathlib import Path

import nbformat
import PIL.Image
import pytest
from conftest import LESSONS, answer_sources, submission

from autograder.assemble import is_check_cell, nbgrader_meta
from autograder.release import baked_calls

from .hosts import colab_pins, colab_python

pytestmark = pytest.mark.slow

RUNNER = Path(__file__).resolve().parent / "run_notebook.py"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MODEL_REF = "IPY_MODEL_"


def run_on_colab(nb: nbformat.NotebookNode, folder) -> nbformat.NotebookNode:
    """``nb`` executed by the Colab environment (run_notebook.py); the executed notebook."""
    python = colab_python()
    source, target = folder / "in.ipynb", folder / "out.ipynb"
    nbformat.write(nb, source)
    env = dict(os.environ, IPYTHONDIR=str(folder / "ipython"),
               PYDEVD_DISABLE_FILE_VALIDATION="1")  # the debugger's note on frozen modules
    done = subprocess.run([str(python), str(RUNNER), str(source), str(target)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"the Colab environment could not run it:\n{done.stderr[-3000:]}"
    return nbformat.read(target, as_version=4)


def models_below(state: dict, model_id: str) -> list[dict]:
    """The model ``model_id`` and every model it refers to (children, and so on)."""
    seen, todo, found = set(), [model_id], []
    while todo:
        mid = todo.pop()
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        found.append(state[mid])
        values = list(state[mid].get("state", {}).values())
        while values:
            value = values.pop()
            if isinstance(value, str) and value.startswith(MODEL_REF):
                todo.append(value[len(MODEL_REF):])
            elif isinstance(value, list | tuple):
                values.extend(value)
            elif isinstance(value, dict):
                values.extend(value.values())
    return found


def image_value(model: dict) -> bytes | None:
    """The bytes of an Image model's ``value``, as the widget state stores them."""
    for buffer in model.get("buffers", []):
        if buffer.get("path") == ["value"] and buffer.get("encoding") == "base64":
            return base64.b64decode(buffer["data"])
    return None


@pytest.mark.parametrize("lesson", LESSONS)
def test_the_solved_lesson_runs_clean_with_colabs_libraries(lesson, tmp_path):
    nb = run_on_colab(submission(lesson, answer_sources(lesson)), tmp_path)

    ran = nb.metadata["compat"]["runner"]["packages"]
    pins = colab_pins()
    assert {name: ran[name] for name in ("ipykernel", "ipython", "ipywidgets")} == {
        name: pins[name] for name in ("ipykernel", "ipython", "ipywidgets")}

    code = [c for c in nb.cells if c.cell_type == "code"]
    not_run = [nbgrader_meta(c).get("grade_id") for c in code if c.execution_count is None]
    assert not not_run, f"cells that did not run: {not_run}"
    errors = [f"{nbgrader_meta(c).get('grade_id')}: {o.ename}: {o.evalue}"
              for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, "errors with Colab's libraries:\n" + "\n".join(errors)
    stderr = [f"{nbgrader_meta(c).get('grade_id')}: {o.text[:500]}" for c in code
              for o in c.outputs if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, "written to stderr with Colab's libraries:\n" + "\n".join(stderr)

    for cell in filter(is_check_cell, code):
        printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        calls = baked_calls(cell.source)
        passed = [line for line in printed.splitlines() if line.startswith("✓")]
        assert calls and len(passed) == len(calls) and "✗" not in printed, (
            f"{nbgrader_meta(cell)['grade_id']}: {len(calls)} checks, {len(passed)} passed:\n"
            f"{printed[:2000]}")

    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    figures = 0
    for cell in code:
        for output in cell.outputs:
            view = output.get("data", {}).get(WIDGET_VIEW)
            if not view:
                continue
            where = f"{nbgrader_meta(cell).get('grade_id')}, widget {view['model_id']}"
            models = models_below(state, view["model_id"])
            assert models, f"{where}: no widget state stored for it"
            images = [image_value(m) for m in models if m.get("model_name") == "ImageModel"]
            if not images:
                continue  # a widget with no image (lesson 00's slider) has no figure to show
            figures += 1
            assert "image/png" in output.data, f"{where}: a figure widget without image/png"
            png = base64.b64decode(output.data["image/png"])
            assert png in images, f"{where}: the static PNG is not the figure the widget shows"
            assert PIL.Image.open(io.BytesIO(png)).size[0] > 0
    explorers = sum("Explorer(" in c.source for c in nb.cells if c.cell_type == "code"
                    and "experiment" in c.metadata.get("tags", []))
    assert figures >= explorers, f"{explorers} explorer cells, {figures} figure widgets shown"
