"""dlopt.kit.figure_widget: one renderer for every explorer (reused figure, blitting, hold)."""

from __future__ import annotations

import base64
import io

import ipywidgets as W
import numpy as np
import PIL.Image

from dlopt.kit.figure_widget import FigureWidget


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(PIL.Image.open(io.BytesIO(bytes(png))).convert("RGB"))


class Lines(FigureWidget):
    """A slope and an offset; choosing a preset moves both (in the same redraw)."""

    layout = (1, 1)
    figsize = (3.0, 2.0)
    PRESETS = {"flat": (0.0, 0.5), "steep": (3.0, -1.0)}

    def __init__(self):
        self.slope = W.FloatSlider(value=1.0, min=-3.0, max=3.0)
        self.offset = W.FloatSlider(value=0.0, min=-2.0, max=2.0)
        self.preset = W.Dropdown(options=["-", *self.PRESETS], value="-")
        self.colorbar = False
        super().__init__([self.slope, self.offset, self.preset])
        self.redraw()

    def react(self, change):
        if change["owner"] is self.preset and change["new"] in self.PRESETS:
            self.slope.value, self.offset.value = self.PRESETS[change["new"]]

    def draw(self, fig, axes):
        axes.plot([0, 1], [self.offset.value, self.offset.value + self.slope.value])
        if self.colorbar:
            fig.colorbar(axes.scatter([0], [0], c=[0.0]), ax=axes)  # an extra axes
        return [] if self.slope.value >= 0 else ["a falling line"]


def test_every_change_redraws_once_into_the_same_figure():
    widget = Lines()
    figure = widget.figure
    assert widget.redraw_count == 1 and bytes(widget.image.value).startswith(b"\x89PNG")
    before = bytes(widget.image.value)
    widget.offset.value = 0.5
    assert widget.redraw_count == 2 and widget.figure is figure
    assert bytes(widget.image.value) != before
    widget.colorbar = True  # a draw that adds axes gets a fresh figure each time
    widget.slope.value = -1.0
    widget.slope.value = -1.5
    assert widget.redraw_count == 4 and len(widget.figure.axes) == 2
    assert widget.messages == ["a falling line"] and "a falling line" in widget.message.value


def test_hold_batches_changes_and_react_joins_the_same_redraw():
    widget = Lines()
    with widget.hold():
        widget.slope.value = 2.0
        widget.offset.value = 1.0
        with widget.hold():  # nested: still one redraw, at the outermost end
            widget.slope.value = 2.5
        assert widget.redraw_count == 1
    assert widget.redraw_count == 2
    with widget.hold():
        pass
    assert widget.redraw_count == 2  # nothing changed: no redraw
    widget.preset.value = "steep"  # moves two other controls: still one redraw
    assert widget.redraw_count == 3 and (widget.slope.value, widget.offset.value) == (3.0, -1.0)


def test_the_mimebundle_carries_the_current_png_and_the_messages():
    widget = Lines()
    widget.slope.value = -2.0
    bundle = widget._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"]) == bytes(widget.image.value)
    assert bundle["text/plain"] == "a falling line"
    assert "application/vnd.jupyter.widget-view+json" in bundle


class Blitted(FigureWidget):
    """A costly static background (many lines) and one animated line over it."""

    layout = (1, 1)
    figsize = (3.0, 2.0)
    margins = {"left": 0.15, "right": 0.95, "bottom": 0.15, "top": 0.9}

    def __init__(self, animated: bool = True):
        self.height = W.FloatSlider(value=0.2, min=0.0, max=1.0)
        self.animated = animated
        self.backgrounds_drawn = 0
        self.line = None
        super().__init__([self.height])
        self.redraw()

    def prepare(self, axes):
        if self.line is None:
            for k in range(30):
                axes.plot([0, 1], [k / 30, 1 - k / 30], color="0.8")
            axes.set_xlim(0, 1)
            axes.set_ylim(0, 1)
            self.invalidate()
        else:
            self.line.remove()

    def render(self):
        if self._background is None:
            self.backgrounds_drawn += 1
        return super().render()

    def draw(self, fig, axes):
        # above the spines, as blitting draws it: then both ways give the same pixels
        (self.line,) = axes.plot([0, 1], [self.height.value] * 2, color="tab:red", lw=3,
                                 zorder=3)
        self.line.set_animated(self.animated)
        return []


def test_blitting_draws_the_background_once_and_gives_the_full_draws_pixels():
    blitted, full = Blitted(animated=True), Blitted(animated=False)
    for value in (0.4, 0.7, 0.1):
        blitted.height.value = value
        full.height.value = value
        np.testing.assert_array_equal(_pixels(blitted.image.value), _pixels(full.image.value))
    assert blitted.backgrounds_drawn == 1 and blitted.redraw_count == 4
