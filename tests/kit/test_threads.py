"""dlopt.kit.threads: ``n`` torch threads inside, the caller's setting restored after."""

import pytest
import torch

from dlopt.kit.threads import cpu_threads
from dlopt.lessons.l09_performance import gpu_timing


def test_cpu_threads_restores_the_setting_even_after_an_error():
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), cpu_threads(1):
        raise KeyError("boom")
    assert torch.get_num_threads() == before


def test_none_leaves_the_setting_alone_and_restores_it():
    before = torch.get_num_threads()
    with cpu_threads(None):
        assert torch.get_num_threads() == before
        torch.set_num_threads(1)
    assert torch.get_num_threads() == before


def test_cpu_threads_decorates_and_keeps_the_name():
    @cpu_threads(1)
    def threads_inside():
        return torch.get_num_threads()

    assert threads_inside() == 1 and threads_inside.__name__ == "threads_inside"
    assert threads_inside() == 1  # the decorator works more than once


def test_lesson_09_offers_the_same_context():
    assert gpu_timing.cpu_threads is cpu_threads
