"""Lesson 08's name for the course's test functions, which take torch tensors as they are.

Used by lesson 08 (the ``f`` of its Hessian-vector product exercise and the checks of it).

The functions are :mod:`dlopt.kit.objectives`' own, not copies: given a tensor, each computes
with torch operations, so that autograd can differentiate it (twice, for a Hessian-vector
product), and returns a 0-d tensor for one point ``w``; given an array, the same function
computes with NumPy. One formula per function, for both.
"""

from __future__ import annotations

from dlopt.kit.objectives import himmelblau, quadratic, rosenbrock, sum_of_sines, wavy_bowl

__all__ = ["himmelblau", "quadratic", "rosenbrock", "sum_of_sines", "wavy_bowl"]
