"""Shared fixtures: one local Ray for the whole session (tests/ on the workers' path, dashboard and auth off)."""

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """A 2-CPU local Ray; token auth is disabled for tests only (the CLIs keep it on)."""
    ray = pytest.importorskip("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # Workers see the environment as it is now: generated data goes to a session dir unless one is set.
    os.environ.setdefault("DIAD_CACHE", str(tmp_path_factory.mktemp("diad-cache")))
    # Ray workers inherit this environment: they can import test helpers such as the fake core.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    info = ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield info
    ray.shutdown()
