"""Shared test fixtures. Real data lives in ../shared/data (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GEMINI_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data, or skip with the reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real scanner data not found at {SHARED_DATA} (set GEMINI_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A throw-away Orthanc PACS on free localhost ports (tests/orthanc.py), or skip with the reason."""
    from tests.orthanc import OrthancUnavailable, start_orthanc

    try:
        server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    except OrthancUnavailable as exc:
        pytest.skip(f"no Orthanc PACS for the tests: {exc}")
    yield server
    server.stop()
