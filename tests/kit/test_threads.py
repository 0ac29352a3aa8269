"""dlopt.kit.threads: one torch thread inside, the caller's setting restored after."""

import torch

from dlopt.kit.threads import single_threaded


def test_single_threaded_restores_the_setting_even_after_an_error():
    before = torch.get_num_threads()
    with single_threaded():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    try:
        with single_threaded():
            raise KeyError("boom")
    except KeyError:
        pass
    assert torch.get_num_threads() == before


def test_single_threaded_decorates_and_keeps_the_name():
    @single_threaded()
    def threads_inside():
        return torch.get_num_threads()

    assert threads_inside() == 1 and threads_inside.__name__ == "threads_inside"
