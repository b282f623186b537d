from __future__ import annotations

import pytest

from gemini_cmr.core.synth import make_subject


@pytest.fixture(scope="package")
def pair20():
    """One full 20-phase ukdhp-like subject (with noise and breath-hold shifts)."""
    return make_subject(11, "ukdhp-like", 20)


@pytest.fixture(scope="package")
def pair_aligned():
    """A noise-free subject without breath-hold shifts (for geometric checks), 6 phases."""
    return make_subject(12, "ukdhp-like", 6, misalign=False, noise=False)
