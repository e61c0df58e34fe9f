"""The autouse fixture for tests of tiny torch models: one torch thread for the module
(faster than two fighting over a loaded machine). Import it into a test module to use it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
