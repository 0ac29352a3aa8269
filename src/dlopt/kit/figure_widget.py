"""The base of every explorer: controls, one off-screen figure shown as a PNG, and messages.

Used by the explorers of lessons 01, 02, 03, 04, 05, 06, 07 and 10.

Drawing with Agg into an ``ipywidgets.Image`` (no pyplot, no global state) redraws in any
frontend and tests headless; the static ``image/png`` in the mimebundle is what nbconvert and
GitHub show where no widget frontend runs. It works with ipywidgets 7.7 (what Colab ships) and
8: both display the same bundle, the widget view beside the PNG (tests/compat runs every lesson
under ipywidgets 7.7.1).

There is one renderer, :meth:`FigureWidget.redraw`, for every explorer of the course:

- one figure, made once and reused from redraw to redraw (:meth:`FigureWidget.prepare` clears
  its axes by default; an explorer that keeps a costly background, such as contour lines,
  overrides it);
- *blitting* where it helps: artists an explorer marks as animated (``set_animated(True)``:
  lines, texts, a whole axis or axes) are drawn over a cached picture of the rest, which is
  drawn again only after :meth:`FigureWidget.invalidate` (for instance when the contours
  change);
- :meth:`FigureWidget.hold` batches control changes into one redraw, and
  :meth:`FigureWidget.react` lets an explorer adjust other controls after a change (a new
  objective moves the start point) within that same redraw;
- a fast PNG encoding (:func:`dlopt.kit.plotting.figure_png`).

The browser tests read ``redraw_count`` and ``image.value`` (the PNG the kernel shows).
"""

from __future__ import annotations

import base64
import contextlib
import html
from collections.abc import Iterator, Mapping, Sequence

import ipywidgets as W
import numpy as np
from IPython.display import display

from dlopt.kit import plotting

__all__ = ["FigureWidget"]

#: ipywidgets 7 (Colab pins 7.7.1) displays widgets with ``_ipython_display_`` and has no
#: ``_repr_mimebundle_``; ipywidgets 8 has only ``_repr_mimebundle_``.
_WIDGETS_7 = not hasattr(W.Widget, "_repr_mimebundle_")


class FigureWidget(W.VBox):
    """Controls above an image of a figure and a line of messages.

    Subclasses implement ``draw(fig, axes) -> list of messages`` and call :meth:`redraw` at
    the end of ``__init__``. Every change of a control's value redraws once.

    Class attributes
    ----------------
    layout : (int, int)
        The (rows, columns) grid of axes.
    figsize : (float, float)
        Inches.
    dpi : float
        Pixels per inch of the PNG.
    margins : mapping or None
        Fixed subplot margins (see :func:`dlopt.kit.plotting.new_figure`); None for the
        constrained layout, which fits any labels but costs about one extra draw per redraw.

    Attributes
    ----------
    figure : matplotlib Figure
        The one figure, reused from redraw to redraw (unless a draw adds axes).
    messages : list of str
        What the last draw could not show ("adam: implement `adam_step` first").
    redraw_count : int
        Redraws so far (tests check that a control change redrew exactly once).
    image : ipywidgets.Image
        The PNG of the figure after the last redraw.
    """

    figsize = (8.0, 3.4)
    layout = (1, 2)
    dpi = 80.0
    margins: Mapping[str, float] | None = None

    def __init__(self, controls: Sequence[W.Widget]):
        self.image = W.Image(format="png")
        self.message = W.HTML()
        self.messages: list[str] = []
        self.figure = None
        self.axes = None
        self.redraw_count = 0
        self._holding = 0
        self._pending = False
        self._background = None
        super().__init__([W.HBox(list(controls)), self.image, self.message])
        for control in controls:
            control.observe(self._on_change, names="value")

    # -- what a subclass provides --------------------------------------------------------------
    def draw(self, fig, axes) -> list[str]:  # pragma: no cover - abstract
        """Draw the figure for the current control values; return the messages to show."""
        raise NotImplementedError

    def react(self, change: dict) -> None:
        """Adjust other controls after ``change`` (an ipywidgets change dict); no redraw here.

        Called before the redraw that the change causes; controls set here redraw with it,
        once. The default does nothing.
        """

    def prepare(self, axes) -> None:
        """Make the axes ready for :meth:`draw`: by default, clear them all.

        A draw that added axes (a colorbar's) gets a fresh figure instead: the space such
        axes took from the others cannot be given back. An explorer that keeps
        part of its figure from one redraw to the next (contour lines, a log axis whose ticks
        are costly to lay out) overrides this, removes only what it redraws, and calls
        :meth:`invalidate` when the kept part changes.
        """
        if len(self.figure.axes) != np.size(axes):
            self._make_figure()
            return
        for ax in self.figure.axes:
            ax.cla()
        self.invalidate()

    # -- controls --------------------------------------------------------------------------------
    def _on_change(self, change) -> None:
        with self.hold():
            self.react(change)
            self._pending = True

    @contextlib.contextmanager
    def hold(self) -> Iterator[FigureWidget]:
        """Change several controls with one redraw at the end (none inside the block).

        Holds nest: only the outermost one redraws, and only when something changed (or
        :meth:`redraw` was called) inside it.
        """
        self._holding += 1
        try:
            yield self
        finally:
            self._holding -= 1
        if not self._holding and self._pending:
            self.redraw()

    # -- the renderer ----------------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget the cached background: the next redraw draws the whole figure again."""
        self._background = None

    def _make_figure(self):
        self.figure, self.axes = plotting.new_figure(*self.layout, figsize=self.figsize,
                                                     dpi=self.dpi, margins=self.margins)
        self.invalidate()

    def redraw(self) -> None:
        """Draw the figure for the current control values and show it (inside :meth:`hold`,
        at the end of the block)."""
        if self._holding:
            self._pending = True
            return
        self._pending = False
        if self.figure is None:
            self._make_figure()
        self.prepare(self.axes)  # may make a new figure: read self.axes after it
        self.messages = list(self.draw(self.figure, self.axes))
        self.redraw_count += 1
        self.image.value = self.render()
        self.message.value = "<br>".join(
            f"<span style='color:#b00'>{html.escape(m)}</span>" for m in self.messages)

    def _animated(self) -> list:
        """Animated artists in drawing order: whole axes, and the animated children of others
        (by z-order, as matplotlib draws them: an axis and its grid below the lines)."""
        found = []
        for ax in self.figure.axes:
            if ax.get_animated():
                found.append(ax)
            else:
                found += sorted((a for a in ax.get_children() if a.get_animated()),
                                key=lambda a: a.get_zorder())
        return found

    def render(self) -> bytes:
        """The figure as PNG bytes, blitting the animated artists over a cached background.

        Without animated artists this is one full draw. With them, the rest of the figure is
        drawn once and kept as pixels (until :meth:`invalidate`); each render restores those
        pixels and draws only the animated artists over them.
        """
        fig = self.figure
        animated = self._animated()
        if not animated:
            return plotting.figure_png(fig)
        canvas = fig.canvas
        if self._background is None:
            canvas.draw()  # skips the animated artists
            self._background = canvas.copy_from_bbox(fig.bbox)
        else:
            canvas.restore_region(self._background)
        for artist in animated:
            fig.draw_artist(artist)
        return plotting.figure_png(fig, draw=False)

    # -- what a notebook shows ------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs):
        """The widget view, the static PNG of the current figure, and the messages as text.

        A front end with a widget manager shows the view; one without (nbconvert, GitHub, a
        notebook opened without its kernel) shows the PNG.
        """
        if _WIDGETS_7:
            data = _widget_view_bundle(self)
        else:
            data = super()._repr_mimebundle_(**kwargs) or {}
        data["image/png"] = base64.b64encode(bytes(self.image.value)).decode("ascii")
        if self.messages:
            data["text/plain"] = "\n".join(self.messages)
        return data

    if _WIDGETS_7:
        def _ipython_display_(self, **kwargs):
            """ipywidgets 7 displays a widget here, with no static format; show the full bundle
            instead (ipywidgets 8 has no such method: IPython then asks for the bundle)."""
            display(self._repr_mimebundle_(), raw=True)
            if self._view_name is not None:
                self._handle_displayed(**kwargs)


def _widget_view_bundle(widget: W.Widget) -> dict:
    """What ipywidgets 7's ``Widget._ipython_display_`` shows: a short repr and, while the
    widget is open, its view (the same bundle as ipywidgets 8's ``_repr_mimebundle_``)."""
    plaintext = repr(widget)
    data = {"text/plain": plaintext if len(plaintext) <= 110 else plaintext[:110] + "…"}
    if widget._view_name is not None and widget.comm is not None:
        data["application/vnd.jupyter.widget-view+json"] = {
            "version_major": 2, "version_minor": 0, "model_id": widget._model_id}
    return data
