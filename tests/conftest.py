"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, the shipped model, Dovecot.
The helpers they use live in tests/support."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from classifier.model import PriorityModel
from classifier.registry import ModelRegistry
from intake.config import Config
from intake.customers import import_customers, parse_customers
from intake.db.engine import make_engine, make_sessions
from intake.db.migrate import upgrade
from tests.support.config import FIXED_NOW, ROOT, make_config, missing_service
from tests.support.database import PG_ADMIN, create_pg_database, drop_pg_database
from tests.support.dns import DkimKey, LocalDns
from tests.support.network import free_port
from tests.support.servers import Dovecot

# The opt-in checks against a real Znuny run only where one is named (docs/ZNUNY.md).
ZNUNY_LIVE = ("ZNUNY_URL", "ZNUNY_USER", "ZNUNY_PASSWORD")
collect_ignore = [] if all(os.environ.get(k) for k in ZNUNY_LIVE) else ["test_znuny_live.py"]


@pytest.fixture(scope="session")
def model() -> PriorityModel:
    return ModelRegistry(ROOT / "models").load()


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A real Dovecot IMAP server on loopback, started by the project's own script."""
    if shutil.which("dovecot") is None:
        missing_service(
            "dovecot is not installed (`make test` installs it: scripts/test-services.sh)"
        )
    # Dovecot's auth process (an unprivileged user) must be able to enter every parent
    # directory, which pytest's private temporary tree does not allow.
    workdir = Path(tempfile.mkdtemp(prefix="intake-dovecot-"))
    workdir.chmod(0o755)
    server = Dovecot(free_port(), "support@example.com", "imap-secret", workdir)
    result = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "start-dovecot.sh"),
            str(workdir),
            str(server.port),
            server.user,
            server.password,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        missing_service(f"dovecot did not start: {result.stdout}{result.stderr}")
    yield server
    pid = int((workdir / "dovecot.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL at 127.0.0.1:5432: {exc}")
    return PG_ADMIN


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database of each kind; PostgreSQL gets a database of its own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'intake.db'}"
        upgrade(url)
        yield url
        return
    yield request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database, for tests where the database kind does not matter."""
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    upgrade(url)
    return url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A migrated PostgreSQL database of the test's own (several instances share it)."""
    name = create_pg_database(pg_server)
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        drop_pg_database(pg_server, name)


@pytest.fixture
def cfg(tmp_path: Path, db_url: str) -> Config:
    return make_config(tmp_path, db_url)


@pytest.fixture
def engine(cfg: Config) -> Iterator[Engine]:
    engine = make_engine(cfg.database.url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine, cfg: Config) -> sessionmaker[Session]:
    """Sessions on a database that holds the example customers."""
    factory = make_sessions(engine)
    with factory.begin() as session:
        import_customers(
            session, parse_customers(ROOT / "examples" / "customers.yaml"), cfg, FIXED_NOW
        )
    return factory


@pytest.fixture(scope="session")
def key() -> DkimKey:
    """The DKIM key of muster.example (customer K-1001)."""
    return DkimKey("muster.example")


@pytest.fixture
def dns(key: DkimKey) -> Iterator[LocalDns]:
    """A DNS server on loopback that publishes `key`; tests add the records they need."""
    server = LocalDns().start()
    server.publish(key.name, key.record)
    yield server
    server.stop()
