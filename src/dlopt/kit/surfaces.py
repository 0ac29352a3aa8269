"""Two-dimensional landscapes for optimizer explorers: a function, its gradient, and a view.

Used by lessons 03 and 04
(:class:`dlopt.lessons.l03_gradient_descent.explorer.ConvergenceExplorer` and the experiments
around it).

A :class:`Surface` bundles a function of a point ``(x, y)``, its gradient, a view box for a
contour plot, a start point from which plain gradient descent has something to show, and the
value that loss curves are measured against (``floor``: the minimum, or for a surface without
one the lowest value inside the view). The functions that make
one are named ``<objective>_surface``: the objective itself (a function of points) lives in
:mod:`dlopt.kit.objectives` under the plain name.

- :func:`quadratic_surface`: ``1/2 w^T H w`` with eigenvalues ``1/condition_number`` and
  ``1``, so the largest curvature is ``L = 1`` for every condition number (gradient descent is
  stable for ``lr < 2``) and the valley gets flatter as the condition number grows. Built on
  :func:`dlopt.kit.objectives.quadratic`.
- :func:`rosenbrock_surface`: the banana valley of :func:`dlopt.kit.objectives.rosenbrock`.
- :func:`beale_surface`: Beale's function, flat plateaus and steep walls, minimum 0 at
  ``(3, 0.5)``.
- :func:`saddle_surface`: ``x**2 - y**2``, unbounded below; a run stops when it leaves the
  view.

Every function takes points of shape ``(..., 2)`` (one point, or a grid of points) and returns
values of shape ``(...)``; gradients have the points' shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dlopt.kit import objectives

__all__ = [
    "Surface",
    "beale_surface",
    "default_surfaces",
    "quadratic_surface",
    "rosenbrock_surface",
    "saddle_surface",
]


@dataclass(frozen=True, eq=False)
class Surface:
    """A 2-D objective with what a plot and an explorer need.

    Attributes
    ----------
    name : str
        Label shown in the explorer's dropdown.
    f : callable
        ``f(points) -> values``: points of shape (..., 2), values of shape (...).
    grad : callable
        ``grad(points) -> gradients`` of shape (..., 2).
    xlim, ylim : (float, float)
        The view box of contour plots.
    start : (float, float)
        A default start point inside the view.
    floor : float
        Loss curves show ``f - floor``: the minimum value, or for a surface unbounded below
        the lowest value inside the view.
    minimum : (float, float) or None
        Where the minimum is (marked on contour plots); None if there is none.
    limit : float
        A run is stopped as diverged when a point leaves the view box enlarged ``limit``
        times about its centre (1: the view itself).
    unbounded : bool
        True when ``f`` has no minimum (leaving the view is then expected, not a divergence).
    log_levels : bool
        Contour levels log-spaced in ``f - floor`` (valleys), or evenly spaced (the saddle).
    """

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    grad: Callable[[np.ndarray], np.ndarray]
    xlim: tuple[float, float]
    ylim: tuple[float, float]
    start: tuple[float, float]
    floor: float = 0.0
    minimum: tuple[float, float] | None = None
    limit: float = 10.0
    unbounded: bool = False
    log_levels: bool = True
    _grids: dict = field(default_factory=dict, repr=False, compare=False)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corners, shape (2,) each, of the box a run must stay in."""
        centre = np.array([sum(self.xlim), sum(self.ylim)]) / 2.0
        half = np.array([self.xlim[1] - self.xlim[0], self.ylim[1] - self.ylim[0]]) / 2.0
        return centre - self.limit * half, centre + self.limit * half

    def grid(self, n: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``X, Y, Z`` on an ``n x n`` grid over the view, computed once per ``n`` and cached.

        Returns
        -------
        X, Y, Z : ndarray, shape (n, n) each
            Coordinates and ``f`` (one vectorized call on an (n, n, 2) array of points).
        """
        if n not in self._grids:
            x = np.linspace(*self.xlim, n)
            y = np.linspace(*self.ylim, n)
            X, Y = np.meshgrid(x, y)
            Z = self.f(np.stack([X, Y], axis=-1))
            for array in (X, Y, Z):
                array.flags.writeable = False
            self._grids[n] = (X, Y, Z)
        return self._grids[n]

    def levels(self, n_levels: int = 18, n: int = 160) -> np.ndarray:
        """Contour levels over the view: log-spaced in ``f - floor`` (shifted back by
        ``floor``), or evenly spaced when ``log_levels`` is False.

        Returns
        -------
        ndarray, shape (n_levels,), increasing
        """
        Z = self.grid(n)[2] - self.floor
        top = float(np.percentile(Z, 98.0))
        if not self.log_levels:
            return self.floor + np.linspace(float(Z.min()), top, n_levels + 2)[1:-1]
        bottom = max(float(np.min(Z[Z > 0], initial=top)), top * 1e-7)
        return self.floor + np.geomspace(bottom, top, n_levels)


# --- the surfaces ----------------------------------------------------------------------------
def quadratic_surface(condition_number: float = 20.0, angle: float = 0.0) -> Surface:
    """``f(w) = 1/2 w^T H w``, the eigenvalues of ``H`` being ``1/condition_number`` and ``1``.

    Parameters
    ----------
    condition_number : float >= 1
        ``kappa = L / mu``: the ratio of the largest to the smallest curvature. ``L = 1``
        whatever ``kappa``, so gradient descent is stable for ``lr < 2`` and takes about
        ``kappa`` steps per factor ``e`` along the flat direction with ``lr = 1``.
    angle : float
        Rotation of the valley in radians; 0 puts the flat direction along x.

    Returns
    -------
    Surface
        Minimum 0 at the origin; ``H`` is available as ``surface.f.H``.
    """
    kappa = float(condition_number)
    if not kappa >= 1.0:
        raise ValueError(f"condition_number must be >= 1, got {condition_number}")
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    H = R @ np.diag([1.0 / kappa, 1.0]) @ R.T

    def f(points):
        return objectives.quadratic(points, H)

    def grad(points):
        return np.asarray(points, dtype=np.float64) @ H  # H is symmetric

    f.H = H
    return Surface(f"quadratic (κ = {kappa:g})", f, grad, xlim=(-3.0, 3.0), ylim=(-2.0, 2.0),
                   start=(-2.6, 1.6), floor=0.0, minimum=(0.0, 0.0))


def rosenbrock_surface() -> Surface:
    """Rosenbrock's valley ``(1 - x)**2 + 100 (y - x**2)**2``: minimum 0 at ``(1, 1)``.

    The curvature across the valley is about 2500 times the curvature along it near the
    minimum, and the valley bends, so the direction of steepest descent keeps changing.
    """
    return Surface("Rosenbrock", objectives.rosenbrock, objectives.rosenbrock_grad,
                   xlim=(-2.0, 2.0), ylim=(-1.0, 3.0), start=(-1.2, 1.0), floor=0.0,
                   minimum=(1.0, 1.0))


def _beale_terms(points):
    p = np.asarray(points, dtype=np.float64)
    x, y = p[..., 0], p[..., 1]
    return x, y, 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3


def _beale(points):
    _, _, a, b, c = _beale_terms(points)
    return a * a + b * b + c * c


def _beale_grad(points):
    x, y, a, b, c = _beale_terms(points)
    dx = 2.0 * (a * (y - 1.0) + b * (y**2 - 1.0) + c * (y**3 - 1.0))
    dy = 2.0 * x * (a + 2.0 * b * y + 3.0 * c * y**2)
    return np.stack([dx, dy], axis=-1)


def beale_surface() -> Surface:
    """Beale's function: minimum 0 at ``(3, 0.5)``, flat plateaus beside steep walls.

    ``(1.5 - x + xy)**2 + (2.25 - x + xy**2)**2 + (2.625 - x + xy**3)**2``
    """
    return Surface("Beale", _beale, _beale_grad, xlim=(-4.5, 4.5), ylim=(-4.5, 4.5),
                   start=(1.0, 1.5), floor=0.0, minimum=(3.0, 0.5))


def _saddle(points):
    p = np.asarray(points, dtype=np.float64)
    return p[..., 0] ** 2 - p[..., 1] ** 2


def _saddle_grad(points):
    return np.asarray(points, dtype=np.float64) * np.array([2.0, -2.0])


def saddle_surface() -> Surface:
    """The saddle ``x**2 - y**2``: a stationary point at the origin that is not a minimum.

    Unbounded below, so it is shown in a bounded view (the square of half-side 2) and a run
    stops when it leaves the view. Loss curves show ``f + 4``, ``-4`` being the lowest value
    inside the view. Start just off the x-axis: gradient descent first slides towards the
    saddle, then the tiny y offset grows geometrically and it escapes.
    """
    return Surface("saddle x² − y²", _saddle, _saddle_grad, xlim=(-2.0, 2.0), ylim=(-2.0, 2.0),
                   start=(1.8, 0.01), floor=-4.0, minimum=None, limit=1.0, unbounded=True,
                   log_levels=False)


def default_surfaces() -> dict[str, Surface]:
    """The explorer's surfaces, by name: a quadratic of condition number 20, Rosenbrock,
    Beale and the saddle (new objects on each call)."""
    return {s.name: s for s in (quadratic_surface(20.0), rosenbrock_surface(),
                                 beale_surface(), saddle_surface())}
