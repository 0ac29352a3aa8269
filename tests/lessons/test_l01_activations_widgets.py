"""dlopt.lessons.l01_activations.widgets, headless: build an explorer, move a control, and the
figure changes.

A learner's unfinished function (raising NotImplementedError) must give a message naming it,
while the other functions are still drawn.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlopt.lessons.l01_activations import widgets
from dlopt_instructor.oracles import torch_derivative, torch_function


def _pair(fn):
    return torch_function(fn), torch_derivative(fn)


def relu(x):
    raise NotImplementedError("replace this line with your code")


def relu_grad(x):
    raise NotImplementedError("replace this line with your code")


ACTIVATIONS = {"sigmoid": _pair(torch.sigmoid), "tanh": _pair(torch.tanh), "gelu": _pair(F.gelu)}


def _curves(ax):
    """Labelled lines of an axes (the activation curves, not the grey zero lines)."""
    return {line.get_label(): line for line in ax.get_lines()
            if not line.get_label().startswith("_")}


@pytest.fixture
def explorer():
    return widgets.ActivationExplorer(ACTIVATIONS, x_range=(-3.0, 3.0), n_points=51)


def test_activation_explorer_draws_every_selected_function(explorer):
    left, right = explorer.figure.axes
    assert set(_curves(left)) == set(_curves(right)) == {"sigmoid", "tanh", "gelu"}
    x, y = _curves(right)["sigmoid"].get_data()
    np.testing.assert_allclose(y, torch_derivative(torch.sigmoid)(x))
    assert explorer.messages == [] and explorer.message.value == ""
    assert bytes(explorer.image.value).startswith(b"\x89PNG")


def test_moving_the_range_slider_redraws(explorer):
    before = bytes(explorer.image.value)
    explorer.x_range.value = (-1.0, 4.0)
    assert bytes(explorer.image.value) != before
    x, _ = _curves(explorer.figure.axes[0])["tanh"].get_data()
    assert x[0] == -1.0 and x[-1] == 4.0


def test_changing_the_selection_redraws(explorer):
    before = bytes(explorer.image.value)
    explorer.select.value = ("tanh",)
    assert bytes(explorer.image.value) != before
    assert set(_curves(explorer.figure.axes[0])) == {"tanh"}


def test_unimplemented_functions_get_a_message_and_the_others_still_draw():
    explorer = widgets.ActivationExplorer({**ACTIVATIONS, "relu": (relu, relu_grad)})
    assert explorer.messages == ["implement `relu` first", "implement `relu_grad` first"]
    assert "implement `relu` first" in explorer.message.value
    assert "relu" not in _curves(explorer.figure.axes[0])
    assert {"sigmoid", "tanh", "gelu"} <= set(_curves(explorer.figure.axes[0]))
    texts = [t.get_text() for t in explorer.figure.axes[0].texts]
    assert any("implement `relu` first" in t for t in texts)  # also in the static picture


def test_a_function_that_breaks_differently_is_reported_not_raised():
    explorer = widgets.ActivationExplorer({"bad": (lambda x: x.sum(), torch_function(torch.tanh))})
    assert explorer.messages[0].startswith("`<lambda>` returned shape ()")


def test_mimebundle_has_the_widget_view_and_a_static_png(explorer):
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == bytes(explorer.image.value)
    unfinished = widgets.ActivationExplorer({"relu": (relu, relu_grad)})
    assert "implement `relu` first" in unfinished._repr_mimebundle_()["text/plain"]


def test_depth_explorer_redraws_for_a_new_depth_and_init():
    explorer = widgets.DepthExplorer(ACTIVATIONS, depth=6, width=16, batch_size=16)
    norms = _curves(explorer.figure.axes[0])
    assert set(norms) == {"sigmoid", "tanh", "gelu"}
    assert len(norms["tanh"].get_xdata()) == 6
    before = bytes(explorer.image.value)
    explorer.depth.value = 9
    assert len(_curves(explorer.figure.axes[0])["tanh"].get_xdata()) == 9
    assert bytes(explorer.image.value) != before
    before = bytes(explorer.image.value)
    explorer.init.value = "he"
    assert bytes(explorer.image.value) != before
    assert "he init" in explorer.figure.axes[0].get_title()


def test_depth_explorer_with_unimplemented_functions():
    explorer = widgets.DepthExplorer({"tanh": _pair(torch.tanh), "relu": (relu, relu_grad)},
                                     depth=4, width=8, batch_size=8)
    assert explorer.messages == ["relu: implement `relu` first"]
    assert set(_curves(explorer.figure.axes[0])) == {"tanh"}
    nothing = widgets.DepthExplorer({"relu": (relu, relu_grad)}, depth=4, width=8)
    assert nothing.messages == ["relu: implement `relu` first"]
    assert bytes(nothing.image.value).startswith(b"\x89PNG")
