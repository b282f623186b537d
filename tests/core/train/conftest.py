from __future__ import annotations

import pytest

from tests.toy_data import write_toy_dataset


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """4 toy subjects (3 train, 1 val), 4 phases each, LR 6 x 32 x 32 at 2 x 2 x 8 mm."""
    return write_toy_dataset(tmp_path_factory.mktemp("toy") / "data", n_subjects=4, seed=0, n_phases=4,
                             lr_shape=(6, 32, 32))


TINY = {"model": {"depth": 24, "widths": [4, 8, 16]}, "disc_width": 4, "crop": 32, "batch_size": 2,
        "lr": 3e-3, "amp": "off", "num_threads": 1, "checkpoint_every": 1000}


def load_script(path):
    """A script that is not a package module (recipes/, scripts/) imported from its file."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
