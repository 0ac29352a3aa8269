"""Sandboxes for students' kernels, one backend per kind of host.

- ``root`` (:mod:`autograder.sandbox.root`): as root on Linux; namespaces set up by hand, and
  a uid of its own per concurrent kernel.
- ``userns`` (:mod:`autograder.sandbox.userns`): as any user on Linux where unprivileged user
  namespaces are allowed; bubblewrap sets up the namespaces and drops every capability.
- ``none``: the kernel runs with the grader's rights (trusted work only).

``auto`` picks ``root`` when running as root, ``userns`` otherwise. Both backends hide the
same places, keep the same paths, cut the network and apply the same :class:`Limits`; the
README's "The sandbox" section lists what each isolates and what it cannot.
"""

from __future__ import annotations

import os

from autograder.sandbox.root import BASE_UID, Limits, Spec, paths_to_keep

__all__ = ["BACKENDS", "BASE_UID", "Limits", "Spec", "choose", "paths_to_keep", "unavailable"]

BACKENDS = ("auto", "root", "userns", "none")


def choose(requested: str) -> str:
    """The backend ``requested`` means on this host: ``auto`` becomes root or userns."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown sandbox '{requested}' (choose from {', '.join(BACKENDS)})")
    if requested == "auto":
        return "root" if os.geteuid() == 0 else "userns"
    return requested


def unavailable(backend: str) -> str:
    """'' if ``backend`` (root, userns or none) can run here, else why not and the fix."""
    if backend == "none":
        return ""
    if backend == "root":
        from autograder.sandbox.root import available
    else:
        from autograder.sandbox.userns import available
    return available()
