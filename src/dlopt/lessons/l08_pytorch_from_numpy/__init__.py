"""Lesson 08 (PyTorch from NumPy): the labs of ``solutions/08_pytorch_from_numpy``.

Every experiment takes the learner's torch classes (autograd Functions, Modules, Optimizers);
torch provides what belongs to other lessons (linear layers, the loss).

Modules
-------
:mod:`~dlopt.lessons.l08_pytorch_from_numpy.torch_lab`
    Which components work yet, gradcheck of autograd Functions, a digits classifier built
    from the learner's components, and the time of optimizer steps.
:mod:`~dlopt.lessons.l08_pytorch_from_numpy.function_lab`
    A deliberately wrong autograd Function made from the learner's own, for gradcheck to
    catch.
:mod:`~dlopt.lessons.l08_pytorch_from_numpy.residual_lab`
    A deep plain MLP against the same depth with skip connections, from the learner's
    ``ResidualBlock``.
"""

__all__: list[str] = []
