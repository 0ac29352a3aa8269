"""The base of every explorer: controls, an off-screen figure shown as a PNG, and messages.

Drawing with Agg into an ``ipywidgets.Image`` (no pyplot, no global state) redraws in any
frontend and tests headless; the static ``image/png`` in the mimebundle is what nbconvert and
GitHub show where no widget frontend runs.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

import ipywidgets as W

from dlopt.kit import plotting

__all__ = ["FigureWidget"]


class FigureWidget(W.VBox):
    """Controls above an image of a figure and a line of messages.

    Subclasses implement ``draw(fig, axes) -> list of messages`` and call ``redraw()`` at the
    end of ``__init__``; ``layout`` is the (rows, columns) grid of axes, ``figsize`` in inches.
    ``redraw_count`` and ``figure`` let tests check that a control change redrew.
    """

    figsize = (8.0, 3.4)
    layout = (1, 2)

    def __init__(self, controls: Sequence[W.Widget]):
        self.image = W.Image(format="png")
        self.message = W.HTML()
        self.messages: list[str] = []
        self.figure = None
        self.redraw_count = 0
        super().__init__([W.HBox(list(controls)), self.image, self.message])
        for control in controls:
            control.observe(lambda _change: self.redraw(), names="value")

    def draw(self, fig, axes) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def redraw(self) -> None:
        """Draw the figure for the current control values."""
        fig, axes = plotting.new_figure(*self.layout, figsize=self.figsize)
        self.messages = self.draw(fig, axes)
        self.figure = fig
        self.redraw_count += 1
        self.image.value = plotting.figure_png(fig)
        self.message.value = "<br>".join(
            f"<span style='color:#b00'>{html.escape(m)}</span>" for m in self.messages)

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs) or {}
        data["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        if self.messages:
            data["text/plain"] = "\n".join(self.messages)
        return data
