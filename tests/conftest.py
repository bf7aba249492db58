"""Shared fixtures: the real Mongo server fixtures live in tests/mongo_server.py."""
import numpy as np
import pytest

from tests.mongo_server import *  # noqa: F401,F403 - mongo_server_url, mongo_url, mongo_db, server_process


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
