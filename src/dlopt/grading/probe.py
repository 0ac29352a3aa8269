"""Runs inside a student's kernel during grading: call the student's function, report plain data.

The grader sends a payload (function name, scenarios as plain data, a nonce) and reads back one
display output of type :data:`RESULT_MIME`. Nothing here decides a verdict: a student who
patches this module can only change which values are reported, and values are all a student's
function could have returned anyway. The grader rebuilds them with
:func:`dlopt.grading.codec.decode`.
"""

from __future__ import annotations

import json

from dlopt.grading import Case, Outcome, call, codec

__all__ = ["RESULT_MIME", "run"]

RESULT_MIME = "application/vnd.dlopt.result+json"


def _user_namespace() -> dict:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            return shell.user_ns
    except ImportError:  # pragma: no cover - kernels always have IPython
        pass
    import __main__

    return vars(__main__)


def run(payload: str) -> list[dict]:
    """Call the named function on every scenario of ``payload`` and publish the outcomes."""
    request = json.loads(payload)
    name = request["function"]
    fn = _user_namespace().get(name)
    driver = request.get("driver")
    driver = None if driver is None else codec.decode(driver)
    outcomes = []
    for case in request["cases"]:
        if fn is None:
            outcome = Outcome(error="NameError", error_types=("NameError",),
                              message=f"name '{name}' is not defined: did its cell run?")
        elif not callable(fn):
            outcome = Outcome(error="TypeError", error_types=("TypeError",),
                              message=f"'{name}' is a {codec.describe_type(fn)}, "
                                      f"not a function")
        else:
            scenario = Case("", *codec.decode(case["args"]), **codec.decode(case["kwargs"]))
            outcome = call(fn, scenario, driver=driver)
        outcomes.append(outcome.to_plain())
    result = {"nonce": request["nonce"], "function": name, "outcomes": outcomes}
    from IPython.display import publish_display_data

    publish_display_data({RESULT_MIME: result, "text/plain": f"results for {name}"})
    return outcomes
