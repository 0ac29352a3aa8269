"""Lesson 08 (PyTorch from NumPy): what this lesson alone states and computes.

The contract every lesson keeps (structure, checks, student copy, notebook runs) is tested in
test_lesson_contract.py. Here: the graded items are the expected ones, the setup picks a device,
the misconceptions and conventions are stated, the solutions agree with torch beyond the
scenarios (random hyperparameters, seeds, groups), and the student copy's experiments say what is
missing. GPU variants run the same comparisons on CUDA, against torch on the CPU.
"""

from __future__ import annotations

import functools

import lesson_harness as harness
import numpy as np
import pytest
import torch

from dlopt.grading import compare
from dlopt.grading.drivers import torch_modules
from dlopt_instructor.torch_variants import TorchBatchNorm, TorchFunction

LESSON = "08_pytorch_from_numpy"
GRADED = ["hessian_vector_product", "Sigmoid", "ReLU", "BatchNormFunction", "BatchNorm1d",
          "Dropout", "SGD", "RMSprop", "Adam", "AdamW", "ForeachAdam", "ResidualBlock"]
OPTIMIZERS = ["SGD", "RMSprop", "Adam", "AdamW"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
solved, exercises = harness.solved, harness.exercises  # fixtures, for LESSON


# --- what this lesson states --------------------------------------------------------------------
test_graded_items_are_the_expected_ones = harness.graded_functions_test(LESSON, GRADED)


def test_setup_picks_the_device():
    assert "device = best_device()" in harness.cell_sources(LESSON)["setup"]


def test_misconceptions_and_conventions_are_stated():
    text = " ".join(harness.markdown(LESSON).split())
    for phrase in ("ReLU's gradient is 1", "momentum normalizes", "RMSprop sums the mean",
                   "Adam adds the mean and the variance", "unscaled dropout",
                   "dropout still active at evaluation", "without $\\gamma$ and $\\beta$",
                   "batch norm without running statistics", "added after the update",
                   "**unbiased** batch variance", "`p` read as the probability to *keep*",
                   "incremented *after*", "after the square root and the bias correction",
                   "create_graph=True", "torch.cuda.synchronize()"):
        assert phrase in text, phrase


def test_gpu_cells_explain_themselves_without_a_gpu():
    cells = harness.cell_sources(LESSON)
    for grade_id in ("experiment_gpu_matmul", "experiment_gpu_training"):
        assert 'if device == "cpu":' in cells[grade_id] and "On a GPU" in cells[grade_id]


# --- the checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_checks_cover_the_contract(exercises, name):
    """Two groups, a state_dict round trip, a closure and the constructor, in public scenarios."""
    cases = exercises[name].cases
    assert any(c.kwargs.get("group_overrides", {}).get("lr") for c in cases)
    assert any(c.kwargs.get("reload_at") for c in cases)
    assert any(c.kwargs.get("defaults") and c.kwargs.get("invalid") for c in cases)
    assert all(c.kwargs.get("steps", 50) in (0, 50) for c in cases + exercises[name].hidden_cases)


# --- the solutions beyond the scenarios --------------------------------------------------------
def _agree(actual, expected, rtol=1e-7, atol=1e-10):
    problem = compare(actual, expected, rtol, atol)
    assert not problem, problem


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("seed", [3, 4])
def test_optimizers_follow_torch_with_random_hyperparameters(solved, name, seed):
    rng = np.random.default_rng(seed)
    hyper = {"lr": float(rng.uniform(1e-3, 3e-2)), "weight_decay": float(rng.choice([0.0, 0.05])),
             "maximize": bool(rng.integers(2))}
    group = {"lr": float(rng.uniform(1e-3, 3e-2))}
    if name == "SGD":
        hyper.update(momentum=float(rng.uniform(0.1, 0.95)), nesterov=True)
        group["momentum"] = 0.5
    elif name == "RMSprop":
        hyper.update(alpha=float(rng.uniform(0.8, 0.999)), momentum=0.3, centered=True)
        group["centered"] = False
    else:
        hyper.update(betas=(float(rng.uniform(0.5, 0.95)), 0.99), amsgrad=bool(rng.integers(2)))
        group["betas"] = (0.8, 0.9)
    for kwargs in ({}, {"reload_at": 17, "closure": True},
                   {"reload_at": 9, "handoff": "to_torch", "twin": name},
                   {"reload_at": 33, "handoff": "from_torch", "twin": name}):
        args = (hyper,)
        opts = {"seed": seed, "group_overrides": group, **kwargs}
        _agree(torch_modules.run_optimizer(solved[name], *args, **opts),
               torch_modules.run_optimizer(getattr(torch.optim, name), *args, **opts))


def test_foreach_adam_equals_your_adam_and_uses_foreach(solved):
    hyper = {"lr": 0.02, "weight_decay": 0.01, "amsgrad": True, "maximize": True}
    opts = {"seed": 5, "group_overrides": {"lr": 0.004}, "reload_at": 20, "count_foreach": True}
    foreach = torch_modules.run_optimizer(solved["ForeachAdam"], hyper, **opts)
    loop = torch_modules.run_optimizer(solved["Adam"], hyper, **opts)
    assert foreach.pop("uses_torch_foreach") and not loop.pop("uses_torch_foreach")
    _agree(foreach, loop)


def test_adamw_is_decoupled_adam(solved):
    opts = {"seed": 6, "reload_at": 10}
    _agree(torch_modules.run_optimizer(solved["AdamW"], {"lr": 0.01, "weight_decay": 0.3}, **opts),
           torch_modules.run_optimizer(solved["Adam"], {"lr": 0.01, "weight_decay": 0.3,
                                                        "decoupled_weight_decay": True}, **opts))


def test_functions_and_modules_agree_with_torch_on_random_inputs(solved):
    rng = np.random.default_rng(7)
    x, dy = rng.normal(0, 3, size=(6, 5, 4)), rng.normal(size=(6, 5, 4))
    x[0, 0, :2] = 0.0
    for name, fn in (("Sigmoid", torch.sigmoid), ("ReLU", torch.relu)):
        _agree(torch_modules.run_function(solved[name], x, dy),
               torch_modules.run_function(TorchFunction(fn), x, dy), rtol=1e-9, atol=1e-12)
    args = (rng.normal(1, 4, size=(20, 6)), rng.normal(size=6), rng.normal(size=6),
            rng.normal(size=(20, 6)))
    _agree(torch_modules.run_batch_norm_function(solved["BatchNormFunction"], *args, eps=1e-2),
           torch_modules.run_batch_norm_function(TorchBatchNorm, *args, eps=1e-2))
    opts = {"seed": 8, "batch_size": 12, "train_batches": 4,
            "hyperparameters": {"momentum": 0.05, "eps": 1e-4}}
    _agree(torch_modules.run_batch_norm_module(solved["BatchNorm1d"], 7, **opts),
           torch_modules.run_batch_norm_module(torch.nn.BatchNorm1d, 7, **opts))
    _agree(torch_modules.run_dropout(solved["Dropout"], 0.4, seed=9, invalid=(-1.0, 3.0)),
           torch_modules.run_dropout(torch.nn.Dropout, 0.4, seed=9, invalid=(-1.0, 3.0)),
           rtol=0.0, atol=0.02)


def test_hessian_vector_product_matches_the_quadratic_bowl(solved):
    from dlopt.kit import torch_objectives

    v = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(solved["hessian_vector_product"](torch_objectives.quadratic,
                                                                np.zeros(3), v), v)


def test_learners_modules_move_with_the_model(solved):
    bn = solved["BatchNorm1d"](3).double()
    assert bn.running_var.dtype == torch.float64 and bn.num_batches_tracked.dtype == torch.long
    assert set(bn.state_dict()) == set(torch.nn.BatchNorm1d(3).state_dict())


# --- the student copy -----------------------------------------------------------------------------
def test_student_copy_experiments_say_what_is_missing():
    run = harness.run_student_copy(LESSON, experiments=True)
    assert run.raised == harness.check_cell_ids(LESSON)
    for grade_id in ("experiment_gradcheck_activations", "experiment_gradcheck_batch_norm",
                     "experiment_state_dict", "experiment_foreach_timing", "experiment_training"):
        assert "implement `" in run.printed[grade_id], (grade_id, run.printed[grade_id])


# --- on a GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("name", OPTIMIZERS + ["ForeachAdam"])
def test_optimizers_on_cuda_match_torch_on_the_cpu(solved, name):
    reference = (functools.partial(torch.optim.Adam, foreach=True) if name == "ForeachAdam"
                 else getattr(torch.optim, name))
    hyper = {"lr": 0.01, "weight_decay": 0.01}
    opts = {"seed": 10, "group_overrides": {"lr": 0.003}, "reload_at": 25}
    _agree(torch_modules.run_optimizer(solved[name], hyper, device="cuda", **opts),
           torch_modules.run_optimizer(reference, hyper, **opts), rtol=1e-6, atol=1e-9)


@pytest.mark.gpu
@cuda
def test_functions_and_modules_on_cuda_match_torch_on_the_cpu(solved):
    rng = np.random.default_rng(11)
    x, dy = rng.normal(0, 3, size=(5, 4)), rng.normal(size=(5, 4))
    for name, fn in (("Sigmoid", torch.sigmoid), ("ReLU", torch.relu)):
        _agree(torch_modules.run_function(solved[name], x, dy, device="cuda"),
               torch_modules.run_function(TorchFunction(fn), x, dy), rtol=1e-9, atol=1e-12)
    args = (x, rng.normal(size=4), rng.normal(size=4), dy)
    _agree(torch_modules.run_batch_norm_function(solved["BatchNormFunction"], *args, device="cuda"),
           torch_modules.run_batch_norm_function(TorchBatchNorm, *args))
    _agree(torch_modules.run_batch_norm_module(solved["BatchNorm1d"], 4, device="cuda"),
           torch_modules.run_batch_norm_module(torch.nn.BatchNorm1d, 4))
    _agree(torch_modules.run_dropout(solved["Dropout"], 0.3, device="cuda"),
           torch_modules.run_dropout(torch.nn.Dropout, 0.3), rtol=0.0, atol=0.02)


@pytest.mark.gpu
@cuda
def test_training_runs_on_cuda(solved):
    from dlopt.lessons.l08_pytorch_from_numpy import torch_lab

    run = torch_lab.train_with_components(solved["ReLU"], solved["BatchNorm1d"], solved["Dropout"],
                                          solved["Adam"], device="cuda", epochs=3)
    assert run.device == "cuda" and run.test_accuracy[-1] > 0.8


# --- residual blocks, weight decay by group, Adam's name (issue 14, items 7 and 11) --------------
@pytest.mark.parametrize("features,hidden,batch_shape", [(5, None, (4,)), (3, 7, (2, 6)),
                                                         (8, 2, (1,))])
def test_residual_block_matches_the_torch_composition(solved, features, hidden, batch_shape):
    from dlopt.grading.drivers.residual import run_residual_block
    from dlopt_instructor.residual import TorchResidualBlock

    got = run_residual_block(solved["ResidualBlock"], features, hidden, batch_shape=batch_shape,
                             seed=features)
    expected = run_residual_block(TorchResidualBlock, features, hidden, batch_shape=batch_shape,
                                  seed=features)
    assert compare(got, expected, rtol=1e-12, atol=1e-14) == ""
    # and the composition is x + linear2(relu(linear1(x))), by hand
    block = solved["ResidualBlock"](features, hidden).double()
    x = torch.randn(*batch_shape, features, dtype=torch.float64)
    by_hand = x + block.linear2(torch.relu(block.linear1(x)))
    torch.testing.assert_close(block(x), by_hand)


def test_residual_block_driver_asks_for_linear1_and_linear2():
    from dlopt.grading.drivers.residual import run_residual_block

    class InAList(torch.nn.Module):  # the layers are not registered: model.parameters() misses them
        def __init__(self, features, hidden=None):
            super().__init__()
            self.layers = [torch.nn.Linear(features, features), torch.nn.Linear(features, features)]

        def forward(self, x):
            return x + self.layers[1](torch.relu(self.layers[0](x)))

    with pytest.raises(ValueError, match="self.linear1 and self.linear2"):
        run_residual_block(InAList, 4)


def test_a_learners_residual_slips_are_named(exercises):
    class NoSkip(torch.nn.Module):
        def __init__(self, features, hidden=None):
            super().__init__()
            self.linear1 = torch.nn.Linear(features, hidden or features)
            self.linear2 = torch.nn.Linear(hidden or features, features)

        def forward(self, x):
            return self.linear2(torch.relu(self.linear1(x)))

    class DetachedSkip(NoSkip):
        def forward(self, x):
            return x.detach() + super().forward(x)

    for cls, phrase in ((NoSkip, "no skip connection"),
                        (DetachedSkip, "the skip path carries no gradient")):
        message = harness.public_failure(exercises["ResidualBlock"], cls)
        assert harness.MISTAKE_PREFIX in message and phrase in message, message


def test_depth_experiment_quotes_what_it_computes(solved):
    """md_residual_experiment: 16 blocks, 80 steps; the plain network's gradient is about 2e-2 at
    the last block and 1e-10 at the first, it stays at ln 10 and chance accuracy; the residual
    network's is about 0.3 at both ends, its loss falls to about 0.1, its accuracy about 96 %."""
    from dlopt.kit.data import load_digits_split
    from dlopt.lessons.l08_pytorch_from_numpy import residual_lab

    plain, residual = residual_lab.depth_experiment(solved["ResidualBlock"], solved["SGD"],
                                                    load_digits_split(seed=0), depth=16,
                                                    steps=80, lr=0.05)
    assert 1e-11 < plain.grad_norms[0] < 1e-9 and 1e-2 < plain.grad_norms[-1] < 3e-2
    per_block = (plain.grad_norms[-1] / plain.grad_norms[0]) ** (1 / 15)
    assert round(per_block, 1) == 3.5
    assert abs(plain.train_loss[-20:].mean() - np.log(10)) < 0.02
    assert round(plain.test_accuracy, 1) == 0.1
    assert all(round(v, 1) == 0.3 for v in (residual.grad_norms[0], residual.grad_norms[-1]))
    assert round(residual.train_loss[-20:].mean(), 1) == 0.1
    assert round(residual.test_accuracy, 2) == 0.96
    text = " ".join(harness.markdown(LESSON).split())
    weight = torch.nn.Linear(1000, 1000).weight  # torch's default initialization: 1 / (3 fan_in)
    assert abs(weight.var().item() * 3 * 1000 - 1) < 0.02
    for phrase in ("a factor of about 3.5 per block",
                   "about 2e-2 at the last block and 1e-10 at the first",
                   "(about 0.3 at the first block and at the last)", "reaches about 96 %",
                   "variance $1/(3\\,\\text{fan\\_in})$"):
        assert phrase in text, phrase


def test_the_weight_decay_groups_snippet_excludes_biases_and_norm_parameters():
    """md_adamw's snippet, run as written: weight matrices decay, biases and norm layers do not."""
    import re as _re

    text = harness.cell_sources(LESSON)["md_adamw"]
    snippet = _re.search(r"```python\n(.*?)```", text, flags=_re.S).group(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 3), torch.nn.LayerNorm(3))
    namespace = {"model": model, "AdamW": torch.optim.AdamW}
    exec(snippet, namespace)
    decay = {id(p) for p in namespace["decay"]}
    assert decay == {id(model[0].weight), id(model[3].weight)}
    groups = namespace["optimizer"].param_groups
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert len(groups[1]["params"]) == len(list(model.parameters())) - 2
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = [p.detach().clone() for p in model.parameters()]
    namespace["optimizer"].step()
    for p, old in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, old) is (id(p) not in decay)


def test_adam_is_not_called_sub_gradient_descent():
    text = " ".join(harness.cell_sources(LESSON)["md_adam"].split())
    assert 'Misconception: "Adam is sub-gradient descent"' in text
    assert "SGD and Adam receive the same $dw$" in text


def test_gradcheck_demo_uses_the_learners_sigmoid_without_grad_output(solved):
    from dlopt.lessons.l08_pytorch_from_numpy import function_lab, torch_lab

    broken = function_lab.forgets_grad_output(solved["Sigmoid"])
    x = torch.linspace(-2.0, 2.0, 7, dtype=torch.float64, requires_grad=True)
    y = broken.apply(x)
    torch.testing.assert_close(y, torch.sigmoid(x))
    (g,) = torch.autograd.grad(y, x, torch.full_like(y, 3.0))
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(g, s * (1 - s))  # grad_output 3 was ignored
    results = torch_lab.gradcheck_functions({"Sigmoid": solved["Sigmoid"].apply,
                                             "broken": broken.apply})
    assert results == {"Sigmoid": True, "broken": False}
    assert "dlopt_instructor" not in harness.cell_sources(LESSON)["setup"]
