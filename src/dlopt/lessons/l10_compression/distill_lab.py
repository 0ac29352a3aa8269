"""Lesson 10: knowledge distillation with a learner's ``distillation_loss``.

A large teacher MLP is trained on every labelled training digit. Small students then learn
with only a few labels per class:

- "cross-entropy, few labels": the student sees only its labelled examples;
- "distilled, with T²": it also sees every training input *without its label* (the transfer
  set), and learns the teacher's softened probabilities there: the learner's
  ``distillation_loss`` with ``alpha`` on the labelled examples and ``alpha = 1`` (the soft
  term alone) on the unlabelled ones;
- "distilled, without T²": the same, with the soft term divided by ``T**2`` (so that it
  enters the loss as the bare KL divergence);
- "cross-entropy, all labels": the student trained on every label, the ceiling of plain
  training.

The student's gradient is the learner's ``dlogits``, pushed through the network by
``logits.backward(dlogits)``; Adam updates the student.

The interface assumed (lesson 10): ``loss, dlogits = distillation_loss(student_logits,
teacher_logits, y, T, alpha)``, the loss averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from dlopt.kit.data import DigitsSplit
from dlopt.kit.learner import LearnerError, function_name
from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l10_compression.digits_mlp import (
    Trained,
    check_learner,
    classifier_accuracy,
    make_mlp,
    tensors,
    train_classifier,
)

__all__ = [
    "DistillationResult",
    "distillation_experiment",
    "labelled_subset",
    "problem_with_distillation",
    "train_teacher",
]


def problem_with_distillation(kd_fn: Callable) -> str | None:
    """Try the learner's ``distillation_loss`` on a small batch; a message, or None."""
    s = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
    t = s[::-1].copy()

    def check(result):
        if not (isinstance(result, tuple) and len(result) == 2):
            return f"must return a pair (loss, dlogits); got {type(result).__name__}"
        if np.shape(result[1]) != s.shape:
            return f"must return dlogits of the logits' shape {s.shape}"
        return None

    return check_learner(kd_fn, s.copy(), t, np.array([0, 1, 2]), 2.0, 0.5, check=check)


def train_teacher(digits: DigitsSplit, sizes: Sequence[int] = (64, 256, 256, 10), *,
                  steps: int = 200, seed: int = 0) -> Trained:
    """The teacher: a wider MLP trained on every labelled training digit (SGD, momentum)."""
    return train_classifier(digits, sizes, steps=steps, seed=seed)


def labelled_subset(y: np.ndarray, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` examples of every class, drawn by a seeded generator."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False)
                                   for c in np.unique(y)]))


@dataclass
class DistillationResult:
    """Test accuracy of the teacher and of each way of training the student.

    Attributes
    ----------
    teacher_accuracy : float
    student_accuracy : dict of str to float
        By variant (see the module's docstring).
    curves : dict of str to ndarray
        Test accuracy every ``eval_every`` steps, by variant.
    steps : ndarray
    n_labelled : int
    n_transfer : int
    T, alpha : float
    student_sizes : tuple of int
    """

    teacher_accuracy: float
    student_accuracy: dict[str, float] = field(default_factory=dict)
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    n_labelled: int = 0
    n_transfer: int = 0
    T: float = 1.0
    alpha: float = 0.5
    student_sizes: tuple[int, ...] = ()


def _kd_grad(kd_fn: Callable, s: torch.Tensor, t: torch.Tensor, y: torch.Tensor, T: float,
             alpha: float) -> torch.Tensor:
    """The learner's dlogits for a batch, checked and as a tensor."""
    _, dlogits = kd_fn(s.detach().double().numpy(), t.double().numpy(), y.numpy(), T, alpha)
    dlogits = np.asarray(dlogits, dtype=np.float64)
    if dlogits.shape != tuple(s.shape):
        raise LearnerError(f"`{function_name(kd_fn)}` returned dlogits of shape "
                           f"{dlogits.shape}; expected {tuple(s.shape)}")
    return torch.from_numpy(dlogits).to(s.dtype)


@cpu_threads(1)
def distillation_experiment(kd_fn: Callable, teacher: Trained, digits: DigitsSplit, *,
                            per_class: int = 5, student_sizes: Sequence[int] = (64, 32, 10),
                            T: float = 4.0, alpha: float = 0.5, steps: int = 150,
                            batch_size: int = 64, lr: float = 1e-2, eval_every: int = 25,
                            variants: Sequence[str] = ("cross-entropy, few labels",
                                                       "distilled, with T²",
                                                       "distilled, without T²",
                                                       "cross-entropy, all labels"),
                            seed: int = 0) -> DistillationResult:
    """Train one student per variant from the same initial weights; measure test accuracy.

    Every step uses all ``10 * per_class`` labelled examples and, for the distilled
    variants, a mini-batch of ``batch_size`` training inputs without labels (the transfer
    set; "cross-entropy, all labels" uses such a mini-batch *with* its labels instead).
    """
    X, y, X_test, y_test = tensors(digits)
    labelled = torch.from_numpy(labelled_subset(digits.y_train, per_class, seed=seed))
    with torch.no_grad():
        teacher_logits = teacher.model(X)
    result = DistillationResult(teacher.test_accuracy, n_labelled=len(labelled),
                                n_transfer=len(X), T=T, alpha=alpha,
                                student_sizes=tuple(student_sizes))
    no_labels = torch.zeros(batch_size, dtype=torch.int64)  # never used: alpha = 1 below
    marks = [0] + [s for s in range(1, steps + 1) if s % eval_every == 0 or s == steps]
    result.steps = np.array(marks)
    for variant in variants:
        student = make_mlp(student_sizes, seed=seed + 1)
        optimizer = torch.optim.Adam(student.parameters(), lr=lr)
        rng = np.random.default_rng(seed + 2)
        curve = [classifier_accuracy(student, X_test, y_test)]
        with cpu_threads(1):
            for step in range(1, steps + 1):
                optimizer.zero_grad(set_to_none=True)
                batch = torch.from_numpy(rng.choice(len(X), batch_size, replace=False))
                if variant == "cross-entropy, all labels":
                    F.cross_entropy(student(X[batch]), y[batch]).backward()
                elif variant == "cross-entropy, few labels":
                    F.cross_entropy(student(X[labelled]), y[labelled]).backward()
                else:
                    s_lab, s_unl = student(X[labelled]), student(X[batch])
                    t_lab, t_unl = teacher_logits[labelled], teacher_logits[batch]
                    if variant == "distilled, with T²":
                        g_lab = _kd_grad(kd_fn, s_lab, t_lab, y[labelled], T, alpha)
                        g_unl = _kd_grad(kd_fn, s_unl, t_unl, no_labels, T, 1.0)
                    else:  # the soft term without T**2: alpha = 1 gives T**2 KL, divided here
                        g_lab = (alpha * _kd_grad(kd_fn, s_lab, t_lab, y[labelled], T, 1.0) / T**2
                                 + (1 - alpha) * _kd_grad(kd_fn, s_lab, t_lab, y[labelled], T,
                                                          0.0))
                        g_unl = _kd_grad(kd_fn, s_unl, t_unl, no_labels, T, 1.0) / T**2
                    torch.autograd.backward([s_lab, s_unl], [g_lab, g_unl])
                optimizer.step()
                if step in marks:
                    curve.append(classifier_accuracy(student, X_test, y_test))
        result.curves[variant] = np.array(curve)
        result.student_accuracy[variant] = curve[-1]
    return result
