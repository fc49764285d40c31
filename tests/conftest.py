"""Shared test fixtures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.dialogue import Engine
from ivr.dialplan import load_dialplan
from ivr.portal.demo import DEMO_PINS
from tests.postgres import PostgresCluster

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "dialplans" / "demo.yaml"


@pytest.fixture(scope="session")
def demo_engine() -> Engine:
    """An engine of the demo dialplan, shared by the session's tests."""
    return Engine(load_dialplan(DEMO))


PORTAL_DIALPLAN = ROOT / "dialplans" / "anywhere_portal.yaml"
PORTAL_EXAMPLES = ROOT / "examples" / "portal"
__all__ = ["DEMO", "DEMO_PINS", "PORTAL_DIALPLAN", "PORTAL_EXAMPLES", "ROOT"]


@pytest.fixture(scope="session")
def fast_portal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of examples/portal whose PIN hashes use argon2's minimum cost (tests only).

    The demo PINs stay the same; verifying one costs ~0.05 ms instead of ~100 ms.
    """
    from ivr.portal.demo import copy_with_cheap_hashes

    return copy_with_cheap_hashes(PORTAL_EXAMPLES, tmp_path_factory.mktemp("portal"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session (Unix socket in a temp dir, no
    TCP); each test takes its own database with ``new_database()``. Tests that stop
    the server use a cluster of their own instead."""
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> str:
    """A fresh database with the lockout schema: its ``postgresql://`` URL."""
    from ivr.portal.lockout_pg import init_schema

    url = postgres.url(postgres.new_database())
    init_schema(url)
    return url


@pytest.fixture
def keep_ivr_log_level() -> Iterator[None]:
    """`ivr serve` quiets the ``ivr`` logger for the process; give it back afterwards."""
    logger = logging.getLogger("ivr")
    level = logger.level
    yield
    logger.setLevel(level)
