from __future__ import annotations

import pytest

from tests.core.train.conftest import toy_data  # noqa: F401  (the shared session fixture)


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
