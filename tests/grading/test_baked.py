"""dlopt.grading.baked: the release's visible checks say what Exercise.check says, from data.

Each test checks one learner function twice: with the instructor's :class:`Exercise` (its
public scenarios alone, as nbgrader's release used to show it) and with the baked check that
the release writes instead (:func:`pack` of the exported public scenarios, then
:func:`check`). The printed line, the exception type and its message must be the same.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest

from dlopt.grading import Case, CheckFailed, DamagedCheckData, Exercise, Mistake, check
from dlopt.grading.baked import BAKED_FORMAT, pack, public_only, unpack
from dlopt.grading.drivers.update_rule import run_update_rule
from dlopt.kit.objectives import quadratic, rosenbrock


def stable_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def naive_sigmoid(x):
    return np.exp(x) / (1 + np.exp(x))


def sigmoid_exercise() -> Exercise:
    exercise = Exercise(
        "sigmoid", reference=stable_sigmoid,
        cases=[Case("a few values", np.array([-2.0, 0.0, 2.0])),
               Case("large magnitudes", np.array([-1000.0, -40.0, 40.0, 1000.0]))],
        mistakes=[Mistake("exp(x)/(1+exp(x)) overflows", naive_sigmoid),
                  Mistake("sign flipped", lambda x: 1 / (1 + np.exp(x)))])
    exercise.add_hidden(Case("hidden batch", np.linspace(-5.0, 5.0, 7)))
    return exercise


def sgd_step(w, dw, state, *, lr):
    return w - lr * dw, state


def sgd_exercise() -> Exercise:
    """An exercise checked through a driver (100 steps of an update rule)."""
    exercise = Exercise(
        "sgd_step", reference=sgd_step, driver=run_update_rule,
        cases=[Case("Rosenbrock from (-1.2, 1)", np.array([-1.2, 1.0]), rosenbrock, 100,
                    lr=1e-3),
               Case("a quadratic", np.array([1.0, -2.0]), quadratic, 50,
                    objective_kwargs={"H": np.diag([2.0, 0.5])}, lr=0.1)],
        mistakes=[Mistake("gradient ascent: w + lr * dw",
                          lambda w, dw, state, *, lr: (w + lr * dw, state)),
                  Mistake("lr ignored", lambda w, dw, state, *, lr: (w - dw, state))],
        rtol=1e-9, atol=1e-12)
    exercise.add_hidden(Case("hidden quadratic", np.array([3.0, 1.0]), quadratic, 20, lr=0.05))
    return exercise


def public_exercise(exercise: Exercise) -> Exercise:
    """What the learner ran before baking: the exercise without its hidden scenarios."""
    public = copy.copy(exercise)
    public.hidden_cases = []
    return public


def baked(exercise: Exercise) -> str:
    """What the release writes into the check cell (the instructor's outputs, public only)."""
    return pack(public_only(exercise.collect(exercise.reference).to_plain()))


def outcome(run) -> tuple[str, str, str]:
    """(exception type or 'ok', its message, what was printed) of ``run()``."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        try:
            run()
        except (CheckFailed, NotImplementedError) as exc:
            return type(exc).__name__, str(exc), printed.getvalue()
    return "ok", "", printed.getvalue()


def both(exercise: Exercise, fn) -> tuple[tuple, tuple]:
    data = baked(exercise)
    return (outcome(lambda: public_exercise(exercise).check(fn)),
            outcome(lambda: check(exercise.function, fn, data)))


def unanswered_sigmoid(x):
    raise NotImplementedError("replace this line with your code")


def unanswered_sgd_step(w, dw, state, *, lr):
    raise NotImplementedError("replace this line with your code")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a notebook prints these
@pytest.mark.parametrize("make, fn, kind, words", [
    (sigmoid_exercise, stable_sigmoid, "ok", "✓ sigmoid: all 2 public scenarios pass."),
    (sigmoid_exercise, naive_sigmoid, "CheckFailed",
     "This matches a classic mistake: exp(x)/(1+exp(x)) overflows"),
    (sigmoid_exercise, unanswered_sigmoid, "NotImplementedError",
     "sigmoid is not implemented yet"),
    (sigmoid_exercise, lambda x: stable_sigmoid(x)[:, None], "CheckFailed",
     "returned shape (3, 1), expected (3,)"),
    (sigmoid_exercise, lambda x: float(stable_sigmoid(x).sum()), "CheckFailed",
     "did a sum or mean reduce it?"),
    (sigmoid_exercise, lambda x: stable_sigmoid(x) + (x > 30) * 1e-3, "CheckFailed",
     "2 of 4 entries are wrong; the first at index 2"),
    (sgd_exercise, sgd_step, "ok", "✓ sgd_step: all 2 public scenarios pass."),
    (sgd_exercise, lambda w, dw, state, *, lr: (w + lr * dw, state), "CheckFailed",
     "This matches a classic mistake: gradient ascent: w + lr * dw"),
    (sgd_exercise, unanswered_sgd_step, "NotImplementedError", "sgd_step is not implemented"),
], ids=["pass", "named mistake", "stub", "wrong shape", "reduced", "numeric diagnosis",
        "driver pass", "driver named mistake", "driver stub"])
def test_the_baked_check_says_what_the_exercise_says(make, fn, kind, words):
    ours, theirs = both(make(), fn)
    assert theirs == ours
    assert theirs[0] == kind
    assert words in theirs[1] + theirs[2]


def test_a_pass_prints_and_returns_nothing(capsys):
    assert check("sigmoid", stable_sigmoid, baked(sigmoid_exercise())) is None
    assert capsys.readouterr().out == "✓ sigmoid: all 2 public scenarios pass.\n"


def test_an_input_changed_in_place_is_reported():
    def relu_in_place(x):
        x[x < 0] = 0
        return x

    exercise = Exercise("relu", reference=lambda x: np.maximum(x, 0),
                        cases=[Case("mixed signs", np.array([-1.0, 2.0]))])
    with pytest.raises(CheckFailed, match=r"changed its input \(argument 1\) in place"):
        check("relu", relu_in_place, baked(exercise))


def test_hidden_scenarios_are_never_packed():
    plain = sigmoid_exercise().collect(stable_sigmoid).to_plain()
    with pytest.raises(ValueError, match=r"hidden scenarios \['hidden batch'\]"):
        pack(plain)
    data = unpack(pack(public_only(plain)))
    assert [c.label for c in data.cases] == ["a few values", "large magnitudes"]
    assert not any(c.hidden for c in data.cases)


def test_unpack_gives_back_the_exported_data():
    exercise = sgd_exercise()
    plain = public_only(exercise.collect(exercise.reference).to_plain())
    data = unpack(pack(plain))
    assert data.to_plain() == plain
    assert data.driver is run_update_rule
    assert data.mistakes == ["gradient ascent: w + lr * dw", "lr ignored"]
    assert (data.rtol, data.atol) == (1e-9, 1e-12)


def test_packing_is_deterministic_and_compact():
    plain = public_only(sgd_exercise().collect(sgd_step).to_plain())
    reordered = dict(reversed(list(plain.items())))
    assert pack(plain) == pack(reordered) == pack(copy.deepcopy(plain))
    blob = pack(plain)
    assert blob.isascii() and not set(blob) & set("\"'\\\n ")
    assert len(blob) < len(json.dumps(plain))


def packed_json(value) -> str:
    """``value`` packed the way :func:`pack` packs (base64 of zlib of JSON), unchecked."""
    return base64.b64encode(zlib.compress(json.dumps(value).encode())).decode()


@pytest.mark.parametrize("damage", [
    lambda blob: blob[:-20],
    lambda blob: blob[:40] + "#" + blob[41:],
    lambda blob: "",
    lambda blob: packed_json({"format": BAKED_FORMAT}),
    lambda blob: packed_json({"format": BAKED_FORMAT, "exercise": {"function": "sigmoid"}}),
], ids=["cut", "edited", "emptied", "no exercise", "incomplete exercise"])
def test_damaged_data_says_how_to_restore_the_cell(damage):
    blob = damage(baked(sigmoid_exercise()))
    with pytest.raises(DamagedCheckData, match="restore the cell|download the notebook"):
        check("sigmoid", stable_sigmoid, blob)


def test_data_of_another_format_or_function_is_refused():
    future = packed_json({"format": BAKED_FORMAT + 1, "exercise": {}})
    with pytest.raises(DamagedCheckData, match=f"dlopt reads format {BAKED_FORMAT}"):
        check("sigmoid", stable_sigmoid, future)
    with pytest.raises(DamagedCheckData, match="is for 'sigmoid', not 'tanh'"):
        check("tanh", np.tanh, baked(sigmoid_exercise()))


def test_a_driver_missing_from_the_installed_dlopt_asks_for_matching_versions():
    plain = public_only(sgd_exercise().collect(sgd_step).to_plain())
    plain["driver"] = {"t": "ref", "module": "dlopt.grading.drivers.no_such_driver",
                       "name": "run"}
    with pytest.raises(DamagedCheckData, match="update dlopt, or download the notebook"):
        check("sgd_step", sgd_step, pack(plain))


def test_a_baked_check_needs_neither_torch_nor_scikit_learn(tmp_path):
    """A notebook opened alone: only the string and the installed dlopt, in a fresh process."""
    blob = baked(sigmoid_exercise())
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from dlopt.grading import check

        def sigmoid(x):
            return 1 / (1 + np.exp(-x))

        check("sigmoid", sigmoid, "{blob}")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sklearn"))
        print("imported:", heavy)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "✓ sigmoid: all 2 public scenarios pass." in done.stdout
    assert "imported: []" in done.stdout
