"""Shared fixtures: the real Mongo server fixtures live in tests/mongo_server.py."""
import numpy as np
import pytest

try:
    from tests.mongo_server import *  # noqa: F401,F403 - mongo_server_url, mongo_url, mongo_db
except ImportError as _e:  # pragma: no cover - only while the module is missing
    if "mongo_server" not in str(_e):
        raise


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
